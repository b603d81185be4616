//! Which playback URLs the migrator fetches, records or hands on. Every URL in a getRecordings
//! answer is untrusted: a server being switched off (often a shared Scalelite) could name
//! `file:///etc/passwd`, an internal admin page or a cloud metadata address, and whatever we record
//! lands in a directory Pod publishes. A playback URL is used only when its scheme is http or https
//! and its host name is the BBB/Scalelite server's own (`[bbb] base_url`) or one listed in
//! `[bbb] playback_hosts`, on any port. The same check applies to every redirect hop of a
//! download and to the video file a playback page names.

use bbb_common::redact;
use url::Url;

/// The host names playback URLs may point at.
#[derive(Debug, Clone, Default)]
pub struct PlaybackHosts {
    /// Lower-case host names (no port), the server's first.
    hosts: Vec<String>,
}

impl PlaybackHosts {
    /// From `[bbb] base_url` (when set: with `--use-cache` alone there is none) and
    /// `[bbb] playback_hosts`. A listed name must be a bare host name.
    pub fn new(base_url: Option<&str>, listed: &[String]) -> Result<Self, String> {
        let mut hosts = Vec::new();
        if let Some(base) = base_url {
            let u = Url::parse(base).map_err(|e| format!("[bbb] base_url: {e}"))?;
            if let Some(h) = u.host_str() {
                hosts.push(h.to_ascii_lowercase());
            }
        }
        for name in listed {
            let parsed = Url::parse(&format!("http://{name}/"))
                .ok()
                .filter(|u| u.host_str().is_some_and(|h| h.eq_ignore_ascii_case(name)))
                .ok_or_else(|| {
                    format!(
                        "[bbb] playback_hosts: {name:?} is not a host name (no scheme, port or path)"
                    )
                })?;
            hosts.push(parsed.host_str().expect("checked").to_ascii_lowercase());
        }
        hosts.dedup();
        Ok(PlaybackHosts { hosts })
    }

    /// The allowed host names, the server's first (handed to `bbb-record --allow-host`).
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// Whether `url` may be fetched.
    pub fn allows(&self, url: &Url) -> bool {
        matches!(url.scheme(), "http" | "https")
            && url
                .host_str()
                .is_some_and(|h| self.hosts.iter().any(|a| a.eq_ignore_ascii_case(h)))
    }

    /// `url` parsed, or why it is refused (the URL redacted: no query, no user info).
    pub fn check(&self, url: &str) -> Result<Url, String> {
        let parsed = Url::parse(url.trim())
            .map_err(|e| format!("playback URL {} is not a URL: {e}", redact::url_text(url)))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "playback URL {} refused: scheme {:?} (only http and https are fetched)",
                redact::url_text(url),
                parsed.scheme()
            ));
        }
        if !self.allows(&parsed) {
            return Err(format!(
                "playback URL {} refused: host {:?} is not the BBB server's{} nor in [bbb] playback_hosts",
                redact::url_text(url),
                parsed.host_str().unwrap_or(""),
                match self.hosts.first() {
                    Some(h) => format!(" ({h})"),
                    None => String::new(),
                }
            ));
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> PlaybackHosts {
        PlaybackHosts::new(
            Some("https://bbb.example.org/bigbluebutton/"),
            &["Backend-1.example.org".into()],
        )
        .unwrap()
    }

    #[test]
    fn only_http_on_the_servers_hosts_passes() {
        let h = hosts();
        for ok in [
            "https://bbb.example.org/playback/presentation/2.3/abc",
            "http://BBB.example.org:8080/playback/presentation/2.0/playback.html?meetingId=x",
            "https://backend-1.example.org/presentation/x/video/webcams.webm",
        ] {
            assert!(h.check(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("file:///etc/passwd", "scheme \"file\""),
            ("javascript:alert(1)", "scheme \"javascript\""),
            ("data:text/html,<script>x</script>", "scheme \"data\""),
            ("ftp://bbb.example.org/x", "scheme \"ftp\""),
            (
                "https://169.254.169.254/latest/meta-data/",
                "host \"169.254.169.254\"",
            ),
            (
                "https://bbb.example.org.evil.test/x",
                "host \"bbb.example.org.evil.test\"",
            ),
            ("https://evil.test/?token=s3cr3t", "host \"evil.test\""),
            ("not a url", "is not a URL"),
        ] {
            let e = h.check(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn a_listed_name_must_be_a_bare_host() {
        for bad in [
            "https://x.example.org",
            "x.example.org:443",
            "x.example.org/p",
            "",
        ] {
            assert!(PlaybackHosts::new(None, &[bad.into()]).is_err(), "{bad:?}");
        }
        let h = PlaybackHosts::new(None, &[]).unwrap();
        assert!(h.check("https://bbb.example.org/x").is_err());
    }
}
