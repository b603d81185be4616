//! Mode 3 CSV export, byte-compatible with the Python command (spec 10): `;` delimiter, `"` quote,
//! minimal quoting, CRLF line ends, UTF-8 without BOM, the same 13 columns. Written by hand rather
//! than with the `csv` crate so that the quoting rule is exactly Python's `QUOTE_MINIMAL`.

use chrono_tz::Tz;

use crate::place::slug::local_date;
use crate::recording::Recording;

pub const HEADER: [&str; 13] = [
    "meeting_name",
    "recording_name",
    "start_date",
    "origin",
    "origin_server_name",
    "origin_version",
    "origin_context",
    "origin_id",
    "origin_label",
    "description",
    "published",
    "state",
    "source_url",
];

/// Python `csv.writer` QUOTE_MINIMAL: quote a field holding the delimiter, the quote character or a
/// line-terminator character; double the quotes inside. A row of one empty field is written `""`.
pub fn write_row(out: &mut Vec<u8>, fields: &[&str]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b';');
        }
        let needs = f.contains([';', '"', '\r', '\n']) || (fields.len() == 1 && f.is_empty());
        if needs {
            out.push(b'"');
            out.extend_from_slice(f.replace('"', "\"\"").as_bytes());
            out.push(b'"');
        } else {
            out.extend_from_slice(f.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// `Generic_recording.as_list()`.
pub fn row(rec: &Recording, tz: Tz, rewrite_23: bool) -> Vec<String> {
    vec![
        rec.name.clone(),
        rec.meta("bbb-recording-name").to_owned(),
        local_date(rec.start_time_ms, tz),
        rec.meta("bbb-origin").to_owned(),
        rec.meta("bbb-origin-server-name").to_owned(),
        rec.meta("bbb-origin-version").to_owned(),
        rec.meta("bbb-context").to_owned(),
        rec.meta("bbb-context-id").to_owned(),
        rec.meta("bbb-context-label").to_owned(),
        rec.meta("bbb-recording-description").to_owned(),
        rec.published.clone(),
        rec.state.clone(),
        rec.source_url(rewrite_23),
    ]
}

pub fn export(recs: &[Recording], tz: Tz, rewrite_23: bool) -> Vec<u8> {
    export_with_owners(recs, tz, rewrite_23, None)
}

/// The 14th column of `--use-database-moodle`.
pub const OWNERS_HEADER: &str = "Moodle_owners";

/// With `owners` (one list per recording, in order), the header and every row get the 14th
/// column `Moodle_owners`: the Python `repr` of the list of `str(Generic_user)`.
pub fn export_with_owners(
    recs: &[Recording],
    tz: Tz,
    rewrite_23: bool,
    owners: Option<&[Vec<String>]>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut header: Vec<&str> = HEADER.to_vec();
    if owners.is_some() {
        header.push(OWNERS_HEADER);
    }
    write_row(&mut out, &header);
    for (i, r) in recs.iter().enumerate() {
        let mut cells = row(r, tz, rewrite_23);
        if let Some(o) = owners {
            cells.push(py_repr_list(o.get(i).map(Vec::as_slice).unwrap_or(&[])));
        }
        let refs: Vec<&str> = cells.iter().map(String::as_str).collect();
        write_row(&mut out, &refs);
    }
    out
}

/// `str(Generic_user)` of the Python command: "first last (username)".
pub fn generic_user(first_name: &str, last_name: &str, username: &str) -> String {
    format!("{first_name} {last_name} ({username})")
}

/// Python's `repr(list_of_str)`: `['a', "it's"]`, `[]`.
pub fn py_repr_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| py_repr_str(s)).collect();
    format!("[{}]", inner.join(", "))
}

/// Python 3's `repr(str)`: single quotes unless the text has a `'` and no `"`; backslash, the
/// quote, `\t`, `\n`, `\r` escaped; other non-printable characters as `\xNN`, `\uNNNN` or
/// `\UNNNNNNNN`; printable non-ASCII text kept as is.
pub fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !py_printable(c) => {
                let n = c as u32;
                if n < 0x100 {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n < 0x10000 {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `str.isprintable` for one character: not a control, format, separator (other than
/// the ASCII space), surrogate or unassigned/private character. Covers the characters that
/// occur in names; rarer unassigned code points are treated as printable.
fn py_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let n = c as u32;
    !matches!(n,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(f: &str) -> String {
        let mut v = Vec::new();
        write_row(&mut v, &["x", f]);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn python_repr_of_owner_lists() {
        let l = |v: &[&str]| py_repr_list(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(l(&[]), "[]");
        assert_eq!(l(&["Jean Dupont (jdupont)"]), "['Jean Dupont (jdupont)']");
        // Spec 10's vector: a quote inside switches to double quotes, the next item keeps single.
        assert_eq!(
            l(&["Jean D'Arc (jdarc)", "Marie Curie (mcurie)"]),
            "[\"Jean D'Arc (jdarc)\", 'Marie Curie (mcurie)']"
        );
        assert_eq!(l(&["a'b\"c"]), "['a\\'b\"c']");
        assert_eq!(l(&["back\\slash\ttab\nnl"]), "['back\\\\slash\\ttab\\nnl']");
        assert_eq!(l(&["Élodie Ærø (é)"]), "['Élodie Ærø (é)']");
        assert_eq!(
            l(&["nb\u{a0}sp\u{7f}\u{200b}"]),
            "['nb\\xa0sp\\x7f\\u200b']"
        );
        assert_eq!(
            generic_user("Jean", "Dupont", "jdupont"),
            "Jean Dupont (jdupont)"
        );
        let mut v = Vec::new();
        write_row(
            &mut v,
            &["x", &l(&["Jean D'Arc (jdarc)", "Marie Curie (mcurie)"])],
        );
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "x;\"[\"\"Jean D'Arc (jdarc)\"\", 'Marie Curie (mcurie)']\"\r\n"
        );
    }

    #[test]
    fn spec_10_quoting_vectors() {
        assert_eq!(one("a;b"), "x;\"a;b\"\r\n");
        assert_eq!(one("q\"uote"), "x;\"q\"\"uote\"\r\n");
        assert_eq!(one("line\nbreak"), "x;\"line\nbreak\"\r\n");
        assert_eq!(one("cr\rhere"), "x;\"cr\rhere\"\r\n");
        assert_eq!(
            one("[\"Jean D'Arc (jdarc)\", 'Marie Curie (mcurie)']"),
            "x;\"[\"\"Jean D'Arc (jdarc)\"\", 'Marie Curie (mcurie)']\"\r\n"
        );
        assert_eq!(one("Let&#39;s Talk"), "x;\"Let&#39;s Talk\"\r\n");
        assert_eq!(
            one("plain, with comma 'and' spaces "),
            "x;plain, with comma 'and' spaces \r\n"
        );
        assert_eq!(one(""), "x;\r\n");
        let mut v = Vec::new();
        write_row(&mut v, &[""]);
        assert_eq!(v, b"\"\"\r\n");
    }
}
