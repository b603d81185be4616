//! How a URL appears in a message, a log line or the ledger: one rule for every URL we show.
//!
//! A URL from a BBB server may carry a Scalelite one-time `token=`, an API `checksum=`, or user
//! info; a database URL may carry a password. The rule: scheme, host, port and path are kept (they
//! say which recording or server is meant); a password becomes `***`; every query value becomes
//! `<redacted>` (the parameter names stay, so a reader still sees that a token was there); the
//! fragment is dropped. Text that is not a URL is cut before any `?` or `#`, any user info is
//! masked, and at most 80 characters are kept.

use url::Url;

/// What replaces each query value.
pub const HIDDEN_VALUE: &str = "<redacted>";

/// `text` fit for a message, whether or not it parses as a URL.
pub fn url_text(text: &str) -> String {
    match Url::parse(text.trim()) {
        Ok(u) => url(&u),
        Err(_) => not_a_url(text),
    }
}

/// `u` fit for a message.
pub fn url(u: &Url) -> String {
    let mut shown = u.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.set_fragment(None);
    shown.set_query(None);
    let mut text = shown.to_string();
    if u.query().is_some() {
        // Built by hand: `Url::set_query` would percent-encode the marker.
        let names: Vec<String> = u
            .query_pairs()
            .map(|(name, _)| {
                name.chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                    .take(40)
                    .collect()
            })
            .collect();
        text.push('?');
        text.push_str(
            &names
                .iter()
                .map(|n| format!("{n}={HIDDEN_VALUE}"))
                .collect::<Vec<_>>()
                .join("&"),
        );
    }
    text
}

fn not_a_url(text: &str) -> String {
    let head = text.split(['?', '#']).next().unwrap_or("");
    // `scheme://user:password@host...` that failed to parse: the user info goes.
    let head = match (head.find("://"), head.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &head[..s + 3], &head[at..]),
        _ => head.to_owned(),
    };
    head.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_passwords_and_fragments_are_hidden() {
        assert_eq!(
            url_text("https://u:pw@bbb.example.org/recording/x/video?token=abc&b=1#f"),
            "https://u:***@bbb.example.org/recording/x/video?token=<redacted>&b=<redacted>"
        );
        assert_eq!(
            url_text("postgres://bbb:s3cret@db.example.org:5432/ledger?sslmode=require"),
            "postgres://bbb:***@db.example.org:5432/ledger?sslmode=<redacted>"
        );
        let page = "https://bbb.example.org/playback/presentation/2.3/x";
        assert_eq!(url_text(page), page);
    }

    #[test]
    fn a_hostile_parameter_name_cannot_smuggle_text() {
        let shown = url_text("https://h/p?%3Cscript%3E%20token=1&=2");
        assert_eq!(shown, "https://h/p?scripttoken=<redacted>&=<redacted>");
    }

    #[test]
    fn text_that_is_no_url() {
        assert_eq!(url_text("no url ?token=abc"), "no url ");
        assert_eq!(
            url_text("x://u:p@ss@[bad/path?token=1"),
            "x://***@[bad/path"
        );
        assert_eq!(url_text(&"a".repeat(200)).len(), 80);
    }

    #[test]
    fn no_secret_survives() {
        for (text, secret) in [
            ("https://h/r/1/video?token=T0KEN", "T0KEN"),
            (
                "https://h/api/getRecordings?meetingID=m&checksum=C5UM",
                "C5UM",
            ),
            ("postgres://u:PASSW@h/db", "PASSW"),
            ("https://h/x#TOKEN2", "TOKEN2"),
            ("not a url://u:PASSW3@h", "PASSW3"),
        ] {
            assert!(
                !url_text(text).contains(secret),
                "{text} -> {}",
                url_text(text)
            );
        }
    }
}
