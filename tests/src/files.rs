//! Serving files from the samples directory: the only place where a request turns into a
//! filesystem path. Owns record-id and path-segment validation, Content-Type, HTTP Range
//! (single ranges; 206 / 416) and the media body stream with its faults (throttle, drop).

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::faults::Throttle;

/// `^[a-z0-9]{40}-[0-9]{13}$`, the only record id shape BBB produces (bbb-playback.md).
pub use bbb_common::record_id::is_canonical as is_record_id;

/// A path segment we accept from a URL: `[A-Za-z0-9._~-]+`, not starting with a dot. This rules
/// out `..`, hidden files, percent-encoded tricks, backslashes and NULs in one rule; every file
/// name BBB writes fits it.
fn is_safe_segment(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'~'))
}

/// Joins URL path segments under `root`, or `None` if any segment is unsafe or the result
/// (symlinks resolved) is not a regular file inside `root`.
pub(crate) fn resolve(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut path = root.to_path_buf();
    for seg in rel.split('/') {
        if !is_safe_segment(seg) {
            return None;
        }
        path.push(seg);
    }
    // A symlink in the samples could still point outside: compare canonical paths.
    let canonical_root = root.canonicalize().ok()?;
    let canonical = path.canonicalize().ok()?;
    (canonical.starts_with(&canonical_root) && canonical.is_file()).then_some(canonical)
}

/// Content-Type by extension, as nginx's mime.types maps BBB's files.
pub(crate) fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("xml") => "text/xml",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webm") => "video/webm",
        Some("mp4" | "m4v") => "video/mp4",
        Some("ogg" | "opus") => "audio/ogg",
        Some("json") => "application/json",
        Some("vtt") => "text/vtt",
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css",
        Some("js" | "mjs") => "application/javascript",
        Some("txt") => "text/plain; charset=utf-8",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// The outcome of reading a `Range` header against a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeRequest {
    /// No usable Range header (absent, malformed, or several ranges): send the whole file.
    Full,
    /// Inclusive byte range.
    Partial(u64, u64),
    Unsatisfiable,
}

/// Parses one `bytes=a-b`, `bytes=a-` or `bytes=-n` range (RFC 9110 §14.1.2). Multi-range
/// requests are answered with the full body, which the RFC allows.
pub(crate) fn parse_range(header: Option<&HeaderValue>, len: u64) -> RangeRequest {
    let Some(spec) = header
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().strip_prefix("bytes="))
    else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim(), b.trim()) {
        ("", suffix) => match num(suffix) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if len == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Partial(len.saturating_sub(n), len - 1),
            None => RangeRequest::Full,
        },
        (start, "") => match num(start) {
            Some(s) if s < len => RangeRequest::Partial(s, len - 1),
            Some(_) => RangeRequest::Unsatisfiable,
            None => RangeRequest::Full,
        },
        (start, end) => match (num(start), num(end)) {
            (Some(s), Some(e)) if s > e => RangeRequest::Full,
            (Some(s), Some(_)) if s >= len => RangeRequest::Unsatisfiable,
            (Some(s), Some(e)) => RangeRequest::Partial(s, e.min(len - 1)),
            _ => RangeRequest::Full,
        },
    }
}

/// Faults that apply to one media body.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BodyFaults {
    pub throttle: Option<Throttle>,
    /// Send this many bytes, then fail the body so that the connection is dropped.
    pub drop_after: Option<u64>,
    /// Send this many bytes, then end the body cleanly: fewer than the response announced (its
    /// Content-Range; a whole answer announces no length), sent chunked since a Content-Length
    /// cannot lie over HTTP/1.1.
    pub end_after: Option<u64>,
}

/// Whether the faults for media bodies apply to this Content-Type.
pub(crate) fn is_media(content_type: &str) -> bool {
    content_type.starts_with("video/") || content_type.starts_with("audio/")
}

/// Serves `path` (already resolved by [`resolve`]) with Range support. `faults` is consulted only
/// for media types and only when a body is sent.
/// `version` moves the file's modification time on by that many seconds (see
/// [`Faults::change_files`](crate::Faults::change_files)).
pub(crate) async fn serve_file(
    path: &Path,
    headers: &HeaderMap,
    head_only: bool,
    version: u64,
    faults: impl FnOnce(u64, bool) -> BodyFaults,
) -> Response {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(_) => return not_found(),
    };
    let (len, modified) = match file.metadata().await {
        Ok(m) => (
            m.len(),
            m.modified().unwrap_or(std::time::UNIX_EPOCH) + Duration::from_secs(version),
        ),
        Err(_) => return not_found(),
    };
    let ctype = content_type(path);
    // Validators as nginx makes them for static files: ETag "<mtime hex>-<size hex>" and
    // Last-Modified. `If-Range` keeps a Range only when it names the current file.
    let mtime = modified
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let etag = format!("\"{mtime:x}-{len:x}\"");
    let last_modified = httpdate::fmt_http_date(modified);
    let range = match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) if v != etag && v != last_modified => None,
        _ => headers.get(header::RANGE),
    };
    let (status, start, end) = match parse_range(range, len) {
        RangeRequest::Full => (StatusCode::OK, 0, len.checked_sub(1)),
        RangeRequest::Partial(s, e) => (StatusCode::PARTIAL_CONTENT, s, Some(e)),
        RangeRequest::Unsatisfiable => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [
                    (header::CONTENT_RANGE, format!("bytes */{len}")),
                    (header::ACCEPT_RANGES, "bytes".to_owned()),
                ],
            )
                .into_response();
        }
    };
    let body_len = end.map_or(0, |e| e - start + 1);
    let faults = if !head_only && body_len > 0 && is_media(ctype) {
        faults(body_len, status == StatusCode::PARTIAL_CONTENT)
    } else {
        BodyFaults::default()
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, ctype)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, &last_modified);
    if faults.end_after.is_none() {
        builder = builder.header(header::CONTENT_LENGTH, body_len);
    }
    if let (StatusCode::PARTIAL_CONTENT, Some(e)) = (status, end) {
        builder = builder.header(header::CONTENT_RANGE, format!("bytes {start}-{e}/{len}"));
    }
    if head_only || body_len == 0 {
        return builder.body(Body::empty()).unwrap_or_else(|_| internal());
    }
    if file.seek(SeekFrom::Start(start)).await.is_err() {
        return internal();
    }
    builder
        .body(Body::from_stream(body_stream(file, body_len, faults)))
        .unwrap_or_else(|_| internal())
}

struct StreamState {
    file: tokio::fs::File,
    remaining: u64,
    sent: u64,
    faults: BodyFaults,
}

fn body_stream(
    file: tokio::fs::File,
    len: u64,
    faults: BodyFaults,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send {
    let state = StreamState {
        file,
        remaining: len,
        sent: 0,
        faults,
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.remaining == 0 || st.faults.end_after.is_some_and(|e| st.sent >= e) {
            return None;
        }
        if st.faults.drop_after.is_some_and(|d| st.sent >= d) {
            st.remaining = 0;
            // Let the server flush what was already sent: failing the body at once can discard
            // the buffered bytes, and the client must see a partial body, not a bare reset.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let err = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "injected drop");
            return Some((Err(err), st));
        }
        // Small chunks while throttled so that the rate is smooth; large ones otherwise.
        let mut chunk = if st.faults.throttle.is_some() {
            16 * 1024
        } else {
            64 * 1024
        };
        chunk = chunk.min(st.remaining);
        if let Some(d) = st.faults.drop_after.or(st.faults.end_after) {
            chunk = chunk.min(d - st.sent).max(1);
        }
        let mut buf = vec![0u8; chunk as usize];
        if let Err(e) = st.file.read_exact(&mut buf).await {
            st.remaining = 0;
            return Some((Err(e), st));
        }
        if let Some(t) = st.faults.throttle {
            // Only the bytes past `after_bytes` are paced.
            let paced = (st.sent + chunk).saturating_sub(st.sent.max(t.after_bytes));
            if paced > 0 {
                let secs = paced as f64 / t.bytes_per_sec as f64;
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            }
        }
        st.sent += chunk;
        st.remaining -= chunk;
        Some((Ok(Bytes::from(buf)), st))
    })
}

pub(crate) fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html")],
        NGINX_404,
    )
        .into_response()
}

fn internal() -> Response {
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// The page nginx sends for a 404, which is also what BBB's proxy returns when bbb-web is too slow.
pub(crate) const NGINX_404: &str = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str, len: u64) -> RangeRequest {
        parse_range(Some(&HeaderValue::from_str(s).unwrap()), len)
    }

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(range("bytes=0-9", 100), Partial(0, 9));
        assert_eq!(range("bytes=90-200", 100), Partial(90, 99));
        assert_eq!(range("bytes=50-", 100), Partial(50, 99));
        assert_eq!(range("bytes=-10", 100), Partial(90, 99));
        assert_eq!(range("bytes=-500", 100), Partial(0, 99));
        assert_eq!(range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(range("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(range("bytes=0-1,5-6", 100), Full);
        assert_eq!(range("bytes=9-1", 100), Full);
        assert_eq!(range("items=0-1", 100), Full);
        assert_eq!(range("bytes=x-1", 100), Full);
    }

    #[test]
    fn segments() {
        assert!(is_safe_segment("slide-1.png"));
        for bad in ["", ".", "..", ".hidden", "a\\b", "%2e%2e", "a b", "a\0b"] {
            assert!(!is_safe_segment(bad), "{bad:?}");
        }
    }
}
