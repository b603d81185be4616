//! Whether a ledger database's schema is the one this build expects: the versions of the
//! migrations applied to it (sqlx's `_sqlx_migrations` table) against those compiled in. Only
//! compares; applying them stays with each backend's `open`.

/// The migration versions of one ledger database and of this build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaVersions {
    /// Compiled into this build (`migrations/<backend>`).
    pub known: Vec<i64>,
    /// Applied to the database; empty before the first writing run.
    pub applied: Vec<i64>,
}

impl SchemaVersions {
    /// `applied` (read from the database's `_sqlx_migrations`) against what `migrator` holds.
    pub fn of(migrator: &sqlx::migrate::Migrator, applied: Vec<i64>) -> Self {
        let known = migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| m.version)
            .collect();
        SchemaVersions { known, applied }
    }

    /// Known but not applied: the next writing run (`claim`, `import`, `retry`) applies them.
    pub fn pending(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self
            .known
            .iter()
            .filter(|k| !self.applied.contains(k))
            .copied()
            .collect();
        v.sort_unstable();
        v
    }

    /// Applied but unknown here: the database was upgraded by a newer bbb-migrate, which this
    /// one must not write to (sqlx refuses to run its migrations then).
    pub fn unknown(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self
            .applied
            .iter()
            .filter(|a| !self.known.contains(a))
            .copied()
            .collect();
        v.sort_unstable();
        v
    }
}

/// The migration versions applied to the database behind `pool`: none when sqlx's table is not
/// there yet (it is made by the first migration run). `table_present` counts that table in the
/// backend's catalogue, the one statement that differs between the backends.
pub(super) async fn applied_versions<DB>(
    pool: &sqlx::Pool<DB>,
    table_present: &'static str,
) -> Result<Vec<i64>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let present: i64 = sqlx::query_scalar(table_present).fetch_one(pool).await?;
    if present == 0 {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_and_unknown_versions_are_told_apart() {
        let v = SchemaVersions {
            known: vec![1, 2],
            applied: vec![1],
        };
        assert_eq!((v.pending(), v.unknown()), (vec![2], vec![]));
        let v = SchemaVersions {
            known: vec![1, 2],
            applied: vec![1, 2, 3],
        };
        assert_eq!((v.pending(), v.unknown()), (vec![], vec![3]));
        let fresh = SchemaVersions {
            known: vec![1, 2],
            applied: vec![],
        };
        assert_eq!(fresh.pending(), vec![1, 2]);
    }
}
