//! One statement text for PostgreSQL and MySQL/MariaDB where the dialects differ only in
//! placeholders: statements are written with MySQL's `?` and turned into PostgreSQL's numbered
//! `$1..$n` (at compile time for literals), so Pod's and Moodle's queries are not kept twice.
//!
//! The `?` form has three limits: a parameter used twice is written, and bound, twice (`?`
//! cannot repeat one the way `$1` can); no PostgreSQL `?` operators (jsonb `?`, `?|`, `?&`); no
//! backslash escapes in string literals (MySQL reads `\'` as a quote, PostgreSQL does not, so
//! where the literal ends is dialect specific anyway). A `?` inside a '…' literal (or a "…"
//! identifier or MySQL string) is left alone.

use sqlx::mysql::MySqlPool;
use sqlx::postgres::PgPool;

/// A borrowed pool of either engine: what [`per_dialect!`] dispatches on. `PodDb` and `MoodleDb`
/// convert into it, so one macro serves both.
#[derive(Debug, Clone, Copy)]
pub enum DialectPool<'a> {
    Pg(&'a PgPool),
    My(&'a MySqlPool),
}

/// Byte index of the first `?` placeholder at or after `i` (outside quotes), or `sql.len()`.
/// `i` must be outside quotes: the start, or just after a placeholder. A doubled quote inside a
/// literal (`'it''s'`) closes and reopens it, which leaves the state right.
const fn next_placeholder(sql: &[u8], mut i: usize) -> usize {
    let mut quote = 0u8;
    while i < sql.len() {
        let b = sql[i];
        if quote != 0 {
            if b == quote {
                quote = 0;
            }
        } else if b == b'\'' || b == b'"' {
            quote = b;
        } else if b == b'?' {
            return i;
        }
        i += 1;
    }
    sql.len()
}

/// Decimal digits of `n`.
const fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// The length of [`numbered`]`(sql)`; a `const fn` so that [`pg_sql!`] can size its buffer.
pub const fn numbered_len(sql: &str) -> usize {
    let sql = sql.as_bytes();
    let (mut len, mut n, mut i) = (sql.len(), 0, next_placeholder(sql, 0));
    while i < sql.len() {
        n += 1;
        // `?` becomes `$` and the number.
        len += digits(n);
        i = next_placeholder(sql, i + 1);
    }
    len
}

/// [`numbered`] into a fixed buffer, at compile time. `N` must be [`numbered_len`]`(sql)`.
pub const fn numbered_bytes<const N: usize>(sql: &str) -> [u8; N] {
    let sql = sql.as_bytes();
    let mut out = [0u8; N];
    let (mut at, mut from, mut n) = (0, 0, 0);
    loop {
        let next = next_placeholder(sql, from);
        while from < next {
            out[at] = sql[from];
            at += 1;
            from += 1;
        }
        if next == sql.len() {
            break;
        }
        n += 1;
        out[at] = b'$';
        let d = digits(n);
        let mut k = 0;
        while k < d {
            // Most significant digit first.
            let mut v = n;
            let mut j = d - 1 - k;
            while j > 0 {
                v /= 10;
                j -= 1;
            }
            out[at + 1 + k] = b'0' + (v % 10) as u8;
            k += 1;
        }
        at += 1 + d;
        from = next + 1;
    }
    assert!(at == N, "numbered_bytes: N is not numbered_len(sql)");
    out
}

/// The PostgreSQL form of a statement written with `?`: the k-th placeholder becomes `$k`.
pub fn numbered(sql: &str) -> String {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(numbered_len(sql));
    let (mut from, mut n) = (0, 0);
    loop {
        let next = next_placeholder(bytes, from);
        // `?` and quotes are ASCII: `from` and `next` are character boundaries.
        out.push_str(&sql[from..next]);
        if next == bytes.len() {
            return out;
        }
        n += 1;
        out.push('$');
        out.push_str(&n.to_string());
        from = next + 1;
    }
}

/// The PostgreSQL form of a constant `?` statement, computed at compile time: a
/// `&'static str`, so the statement stays static SQL (no `AssertSqlSafe`) on both engines.
macro_rules! pg_sql {
    // Items are not hygienic: the names are odd so that `$sql` (often a const) cannot be one.
    ($sql:expr) => {{
        const PG_SQL_INPUT_: &str = $sql;
        const PG_SQL_LEN_: usize = $crate::place::sql_dialect::numbered_len(PG_SQL_INPUT_);
        const PG_SQL_BYTES_: [u8; PG_SQL_LEN_] =
            $crate::place::sql_dialect::numbered_bytes::<PG_SQL_LEN_>(PG_SQL_INPUT_);
        const PG_SQL_: &str = match ::core::str::from_utf8(&PG_SQL_BYTES_) {
            Ok(s) => s,
            Err(_) => panic!("pg_sql: not UTF-8"),
        };
        PG_SQL_
    }};
}
pub(crate) use pg_sql;

/// Runs `body` on the pool of `db` (anything that converts into a [`DialectPool`]), with `sql`
/// being the statement in that pool's dialect: `per_dialect!(db, "… = ?", |sql, pool| body)`.
///
/// A macro, not a generic function: the body is the same tokens in both arms but is type-checked
/// once per pool type, so `sqlx::query(sql).bind(x).fetch_one(pool)` needs no `Database` bounds
/// for every bound and decoded type, and `?` (or `return`) in it acts on the calling function.
///
/// A string literal is converted at compile time and stays `&'static str`; any other expression
/// (a statement built with validated table names) is converted at run time and passed as
/// `AssertSqlSafe`, which the caller vouches for by building it from validated parts only.
macro_rules! per_dialect {
    ($db:expr, $sql:literal, |$s:ident, $p:ident| $body:expr) => {
        match $crate::place::sql_dialect::DialectPool::from($db) {
            $crate::place::sql_dialect::DialectPool::Pg($p) => {
                let $s: &'static str = $crate::place::sql_dialect::pg_sql!($sql);
                $body
            }
            $crate::place::sql_dialect::DialectPool::My($p) => {
                let $s: &'static str = $sql;
                $body
            }
        }
    };
    ($db:expr, $sql:expr, |$s:ident, $p:ident| $body:expr) => {
        match $crate::place::sql_dialect::DialectPool::from($db) {
            $crate::place::sql_dialect::DialectPool::Pg($p) => {
                let $s = ::sqlx::AssertSqlSafe($crate::place::sql_dialect::numbered(&$sql));
                $body
            }
            $crate::place::sql_dialect::DialectPool::My($p) => {
                let $s = ::sqlx::AssertSqlSafe($sql);
                $body
            }
        }
    };
}
pub(crate) use per_dialect;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE b = ? AND c IN (?, ?)"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"
        );
        assert_eq!(numbered("SELECT 1"), "SELECT 1");
        assert_eq!(numbered("?"), "$1");
        assert_eq!(numbered(""), "");
    }

    #[test]
    fn literals_keep_their_question_marks() {
        assert_eq!(
            numbered("SELECT 'why?', ? FROM t WHERE u = 'a?''b?' AND v = ? AND \"w?\" = ?"),
            "SELECT 'why?', $1 FROM t WHERE u = 'a?''b?' AND v = $2 AND \"w?\" = $3"
        );
        // An empty literal right before a placeholder (Moodle's notice UPDATE).
        assert_eq!(
            numbered("UPDATE t SET intro = ? WHERE id = ? AND coalesce(intro, '') = ?"),
            "UPDATE t SET intro = $1 WHERE id = $2 AND coalesce(intro, '') = $3"
        );
        // Non-ASCII text around placeholders is copied whole.
        assert_eq!(numbered("SELECT 'é?' || ?, 'ü'"), "SELECT 'é?' || $1, 'ü'");
        // An unterminated literal swallows the rest (the server rejects the statement).
        assert_eq!(numbered("SELECT ? || 'x?"), "SELECT $1 || 'x?");
    }

    #[test]
    fn repeated_parameter_is_written_twice() {
        // PostgreSQL's `$1 … $1` is `? … ?` here, bound twice.
        assert_eq!(
            numbered("SELECT 1 FROM a WHERE f = ? UNION ALL SELECT 1 FROM b WHERE g = ? LIMIT 1"),
            "SELECT 1 FROM a WHERE f = $1 UNION ALL SELECT 1 FROM b WHERE g = $2 LIMIT 1"
        );
    }

    #[test]
    fn ten_and_more() {
        let sql = ["?"; 12].join(",");
        let pg = numbered(&sql);
        assert_eq!(pg, "$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12");
        assert_eq!(numbered_len(&sql), pg.len());
    }

    #[test]
    fn compile_time_matches_run_time() {
        const SQL: &str = "UPDATE t SET a = ?, b = 'x?' WHERE c = ? AND d IN (?,?,?,?,?,?,?,?)";
        let pg: &'static str = pg_sql!(SQL);
        assert_eq!(pg, numbered(SQL));
        assert_eq!(pg_sql!("SELECT ?"), "SELECT $1");
        assert_eq!(pg_sql!("SELECT 'é'"), "SELECT 'é'");
    }
}
