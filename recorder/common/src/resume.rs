//! The rule for resuming an interrupted HTTP download: the bytes already on disk are trusted only
//! when the server's name for their version (a strong ETag, else Last-Modified) was kept beside
//! them, and a resumed request asks `Range` together with `If-Range` naming that version, so a
//! file that changed between attempts comes back whole (`200`) instead of being spliced onto the
//! old bytes. Both the recorder (recording media) and the migrator (video playbacks) download
//! through this rule; their loops differ only in what they watch while the bytes arrive.

use std::path::{Path, PathBuf};

use reqwest::header::{CONTENT_RANGE, ETAG, HeaderMap, IF_RANGE, LAST_MODIFIED, RANGE};

/// The sidecar of a partial download that holds its validator: `<dest>.validator`.
pub fn validator_path(dest: &Path) -> PathBuf {
    let mut p = dest.as_os_str().to_owned();
    p.push(".validator");
    p.into()
}

/// What `If-Range` may name for this answer: a strong ETag, else Last-Modified (RFC 9110
/// §13.1.5: a weak ETag may not be used there).
pub fn response_validator(headers: &HeaderMap) -> Option<String> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    text(ETAG)
        .filter(|e| !e.starts_with("W/"))
        .or_else(|| text(LAST_MODIFIED))
        .map(str::to_owned)
}

/// The validator kept for the partial file `dest`, if any. Without one, the bytes in `dest` must
/// not be resumed from.
pub async fn saved_validator(dest: &Path) -> Option<String> {
    tokio::fs::read_to_string(validator_path(dest))
        .await
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Keeps (or, for `None`, forgets) the validator of the bytes that `dest` now starts with.
pub async fn save_validator(dest: &Path, validator: Option<&str>) -> std::io::Result<()> {
    let path = validator_path(dest);
    match validator {
        Some(v) => tokio::fs::write(&path, v).await,
        None => match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// Removes the validator sidecar of `dest` (after the file is complete or given up).
pub async fn forget(dest: &Path) {
    let _ = save_validator(dest, None).await;
}

/// The request for the bytes from `have` on: `Range`, with `If-Range` naming `validator`. Bytes
/// from an earlier run must have a validator (see [`saved_validator`]: without one they are not
/// kept); within one run a server that sends none is resumed with `Range` alone, as the bytes
/// came from the same answer seconds ago.
pub fn resume_request(
    request: reqwest::RequestBuilder,
    have: u64,
    validator: Option<&str>,
) -> reqwest::RequestBuilder {
    if have == 0 {
        return request;
    }
    let request = request.header(RANGE, format!("bytes={have}-"));
    match validator {
        Some(v) => request.header(IF_RANGE, v),
        None => request,
    }
}

/// `Content-Range: bytes START-END/TOTAL` -> (START, TOTAL; `None` for `*`).
pub fn content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let s = headers
        .get(CONTENT_RANGE)?
        .to_str()
        .ok()?
        .strip_prefix("bytes ")?;
    let (range, total) = s.split_once('/')?;
    let start = range.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(reqwest::header::HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn content_ranges() {
        let h = headers(&[(CONTENT_RANGE, "bytes 100-199/200")]);
        assert_eq!(content_range(&h), Some((100, Some(200))));
        let h = headers(&[(CONTENT_RANGE, "bytes 5-9/*")]);
        assert_eq!(content_range(&h), Some((5, None)));
        assert_eq!(
            content_range(&headers(&[(CONTENT_RANGE, "items 1-2/3")])),
            None
        );
        assert_eq!(content_range(&HeaderMap::new()), None);
    }

    #[test]
    fn a_weak_etag_is_not_a_validator() {
        let lm = "Wed, 01 Jan 2025 00:00:00 GMT";
        let h = headers(&[(ETAG, "\"abc\""), (LAST_MODIFIED, lm)]);
        assert_eq!(response_validator(&h).as_deref(), Some("\"abc\""));
        let h = headers(&[(ETAG, "W/\"abc\""), (LAST_MODIFIED, lm)]);
        assert_eq!(response_validator(&h).as_deref(), Some(lm));
        assert_eq!(response_validator(&headers(&[(ETAG, "W/\"abc\"")])), None);
    }

    #[test]
    fn a_resumed_request_names_the_version_it_continues() {
        let client = reqwest::Client::new();
        let r = resume_request(client.get("http://127.0.0.1/x"), 10, Some("\"v1\""))
            .build()
            .unwrap();
        assert_eq!(r.headers()[RANGE], "bytes=10-");
        assert_eq!(r.headers()[IF_RANGE], "\"v1\"");
        let r = resume_request(client.get("http://127.0.0.1/x"), 10, None)
            .build()
            .unwrap();
        assert_eq!(r.headers()[RANGE], "bytes=10-");
        assert!(r.headers().get(IF_RANGE).is_none());
        let r = resume_request(client.get("http://127.0.0.1/x"), 0, Some("\"v1\""))
            .build()
            .unwrap();
        assert!(r.headers().get(RANGE).is_none() && r.headers().get(IF_RANGE).is_none());
    }

    #[tokio::test]
    async fn the_validator_sidecar() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("video.partial");
        assert_eq!(saved_validator(&dest).await, None);
        save_validator(&dest, Some("\"v1\"")).await.unwrap();
        assert_eq!(saved_validator(&dest).await.as_deref(), Some("\"v1\""));
        assert_eq!(
            validator_path(&dest),
            d.path().join("video.partial.validator")
        );
        save_validator(&dest, None).await.unwrap();
        save_validator(&dest, None).await.unwrap();
        assert_eq!(saved_validator(&dest).await, None);
    }
}
