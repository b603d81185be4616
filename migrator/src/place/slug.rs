//! Python-compatible claim file names (spec 7.2): Django 4.2 `slugify` of the first 40 code points
//! of the meeting name plus the local start date in Pod's `TIME_ZONE`.

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use unicode_normalization::UnicodeNormalization;

/// Python's `str.isspace()` on the ASCII range, which is what `\s` matches once the text has been
/// reduced to ASCII: it includes the separators U+001C..U+001F.
fn py_space(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r' | '\x1c'..='\x1f'
    )
}

/// `django.utils.text.slugify(value, allow_unicode=False)`.
pub fn slugify(value: &str) -> String {
    // NFKD, then drop everything that is not ASCII (encode("ascii", "ignore")).
    let ascii: String = value.nfkd().filter(char::is_ascii).collect();
    // lower(), then remove [^\w\s-].
    let kept: String = ascii
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || py_space(*c))
        .collect();
    // Collapse [-\s]+ into '-'.
    let mut out = String::with_capacity(kept.len());
    let mut in_run = false;
    for c in kept.chars() {
        if c == '-' || py_space(c) {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out.trim_matches(|c| c == '-' || c == '_').to_owned()
}

/// The local start date `YYYY-MM-DD` in Pod's time zone.
pub fn local_date(start_time_ms: i64, tz: Tz) -> String {
    match Utc.timestamp_millis_opt(start_time_ms).single() {
        Some(t) => t.with_timezone(&tz).format("%Y-%m-%d").to_string(),
        None => "0000-00-00".to_owned(),
    }
}

/// `get_video_file_name` without the extension: `slugify(name[0:40] + " " + date)`.
pub fn file_stem(name: &str, start_time_ms: i64, tz: Tz) -> String {
    // Python strips with str.strip() (Unicode whitespace) before slicing 40 code points.
    let head: String = name.trim().chars().take(40).collect();
    slugify(&format!("{head} {}", local_date(start_time_ms, tz)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris() -> Tz {
        "Europe/Paris".parse().unwrap()
    }

    #[test]
    fn spec_7_2_vectors_europe_paris() {
        let v: &[(&str, i64, &str)] = &[
            ("Fred's Room", 1530718721124, "freds-room-2018-07-04"),
            ("тест", 1504087272607, "2017-08-30"),
            (
                "Let&#39;s Talk English: Episode 5",
                1504111840674,
                "let39s-talk-english-episode-5-2017-08-30",
            ),
            (
                "Soutenance de stage de fin d'études de Master 2 Informatique",
                1710325200000,
                "soutenance-de-stage-de-fin-detudes-de-m-2024-03-13",
            ),
            (
                "Cours n°3 : l'œuvre & ses « enjeux »",
                1704063599000,
                "cours-n3-luvre-ses-enjeux-2023-12-31",
            ),
            (
                "Cours n°3 : l'œuvre & ses « enjeux »",
                1704063600000,
                "cours-n3-luvre-ses-enjeux-2024-01-01",
            ),
            ("  __Réunion__  ", 1710325200000, "reunion__-2024-03-13"),
            ("A_B-C  D", 1710325200123, "a_b-c-d-2024-03-13"),
            (
                "Cours de Mathématiques — L1 (groupe A)",
                1710325200000,
                "cours-de-mathematiques-l1-groupe-a-2024-03-13",
            ),
        ];
        for (name, t, want) in v {
            assert_eq!(&file_stem(name, *t, paris()), want, "name {name:?}");
        }
    }

    #[test]
    fn utc_moves_the_new_year_boundary() {
        // 1704063600000 is 2024-01-01 00:00 in Paris but 2023-12-31 23:00 UTC.
        let name = "Cours n°3 : l'œuvre & ses « enjeux »";
        assert_eq!(
            file_stem(name, 1704063599000, Tz::UTC),
            "cours-n3-luvre-ses-enjeux-2023-12-31"
        );
        assert_eq!(
            file_stem(name, 1704063600000, Tz::UTC),
            "cours-n3-luvre-ses-enjeux-2023-12-31"
        );
        assert_eq!(
            file_stem("Fred's Room", 1530718721124, Tz::UTC),
            "freds-room-2018-07-04"
        );
        // 1504087272607 = 2017-08-30 10:01 UTC.
        assert_eq!(file_stem("тест", 1504087272607, Tz::UTC), "2017-08-30");
    }

    #[test]
    fn slugify_edge_cases() {
        assert_eq!(slugify("  --Hello   World--  "), "hello-world");
        assert_eq!(slugify("a\x1cb"), "a-b");
        assert_eq!(slugify("ﬁ"), "fi");
        assert_eq!(slugify(""), "");
    }
}
