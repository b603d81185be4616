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
    let mut out = Vec::new();
    write_row(&mut out, &HEADER);
    for r in recs {
        let cells = row(r, tz, rewrite_23);
        let refs: Vec<&str> = cells.iter().map(String::as_str).collect();
        write_row(&mut out, &refs);
    }
    out
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
