//! The resumable HTTP download loop of both the recorder (a recording's media track) and the
//! migrator (a video playback), under the rule of [`crate::resume`]: request (with `Range` and
//! `If-Range` when bytes are already there), check the status and where a `206` starts, truncate
//! or append, stream the body with a stall timeout, then check the length the server announced.
//! What differs between the callers is given by [`Options`] and a small [`Hooks`] trait.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::resume;

/// How a failed download is to be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Asking again cannot help (a 4xx answer, a refused redirect).
    Permanent,
    /// A later attempt may succeed.
    Transient,
    /// A write failed because the disk is full (ENOSPC, EDQUOT): not retried.
    DiskFull,
    /// `cancel` turned true.
    Cancelled,
}

/// A failed download. `message` names no URL: the caller prefixes the one it may show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadError {
    pub kind: ErrorKind,
    pub message: String,
}

impl DownloadError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }
}

/// Why [`fetch_resumable`] stopped: the download failed, or a hook did.
#[derive(Debug)]
pub enum Failure<E> {
    Download(DownloadError),
    Hook(E),
}

/// The caller's policy.
#[derive(Debug, Clone)]
pub struct Options {
    /// Requests in all, at least one.
    pub attempts: u32,
    /// The pause before the second attempt, doubled after each failure up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Sent with every request (cookies, for instance).
    pub headers: HeaderMap,
    /// Timeout of a whole request, body included.
    pub request_timeout: Option<Duration>,
    /// The longest wait for the next chunk of the body.
    pub stall: Option<Duration>,
    /// Keep the validator beside the file (`<dest>.validator`) so that a later run may resume
    /// the bytes; otherwise it lives only as long as this call, and bytes found in `dest` at the
    /// start are not trusted.
    pub persist_validator: bool,
}

/// Whether the disks have room for the body about to be written.
pub enum Room {
    Yes,
    /// Not now: drop the answer, [`Hooks::wait_for_room`], then ask again (not an attempt).
    Wait,
}

/// The caller-specific parts of the loop.
pub trait Hooks {
    type Error;
    /// Whether an unsuccessful answer is permanent. Default: every 4xx other than 416.
    fn permanent(&self, status: StatusCode) -> bool {
        status.is_client_error() && status != StatusCode::RANGE_NOT_SATISFIABLE
    }
    /// Room for `needed` more bytes (0 when the size is unknown)?
    fn room(&self, _needed: u64) -> Room {
        Room::Yes
    }
    /// Waits until there is room for `needed` bytes.
    fn wait_for_room(
        &mut self,
        _needed: u64,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }
    /// `done` of `total` bytes are in the file.
    fn progress(&self, _done: u64, _total: Option<u64>) {}
    /// Attempt `attempt` failed with `error`; the next resumes at byte `have` after `delay`.
    fn retrying(&self, _attempt: u32, _error: &DownloadError, _have: u64, _delay: Duration) {}
}

/// Hooks that change nothing.
pub struct NoHooks;
impl Hooks for NoHooks {
    type Error = std::convert::Infallible;
}

/// Whether an I/O error says the disk (or the quota) is full.
pub fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

fn reqwest_error(e: reqwest::Error) -> DownloadError {
    let kind = if e.is_redirect() {
        ErrorKind::Permanent
    } else {
        ErrorKind::Transient
    };
    DownloadError::new(kind, crate::error_chain(&e.without_url()))
}

enum Step {
    Done,
    NeedSpace(u64),
}

/// Downloads `url` into `dest`, resuming across attempts (and across runs with
/// [`Options::persist_validator`]). Resolves to the size of the file. Stops early with
/// [`ErrorKind::Cancelled`] when `cancel` turns true.
pub async fn fetch_resumable<H: Hooks>(
    client: &reqwest::Client,
    url: &url::Url,
    dest: &Path,
    options: &Options,
    hooks: &mut H,
    mut cancel: Option<watch::Receiver<bool>>,
) -> Result<u64, Failure<H::Error>> {
    let fail = |e: DownloadError| Failure::Download(e);
    let mut out = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dest)
        .await
        .map_err(|e| {
            fail(DownloadError::transient(format!(
                "temp file {}: {e}",
                dest.display()
            )))
        })?;
    let mut have = out.metadata().await.map(|m| m.len()).unwrap_or(0);
    let mut validator = if have > 0 && options.persist_validator {
        resume::saved_validator(dest).await
    } else {
        None
    };
    if have > 0 && validator.is_none() {
        out.set_len(0)
            .await
            .map_err(|e| fail(DownloadError::transient(e.to_string())))?;
        have = 0;
    }
    let cancelled = |c: &Option<watch::Receiver<bool>>| c.as_ref().is_some_and(|c| *c.borrow());
    let mut total: Option<u64> = None;
    let mut delay = options.first_delay;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = attempt_once(
            client,
            url,
            dest,
            options,
            hooks,
            &mut cancel,
            &mut out,
            &mut have,
            &mut validator,
            &mut total,
        )
        .await;
        let e = match result {
            Ok(Step::Done) => {
                if !options.persist_validator {
                    resume::forget(dest).await;
                }
                return Ok(have);
            }
            Ok(Step::NeedSpace(needed)) => {
                attempt -= 1;
                hooks.wait_for_room(needed).await.map_err(Failure::Hook)?;
                continue;
            }
            Err(e) => e,
        };
        if cancelled(&cancel) {
            return Err(fail(DownloadError::new(ErrorKind::Cancelled, "cancelled")));
        }
        if e.kind != ErrorKind::Transient || attempt >= options.attempts.max(1) {
            return Err(fail(e));
        }
        hooks.retrying(attempt, &e, have, delay);
        match cancel.as_mut() {
            Some(c) => tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = c.changed() => return Err(fail(DownloadError::new(ErrorKind::Cancelled, "cancelled"))),
            },
            None => tokio::time::sleep(delay).await,
        }
        delay = (delay * 2).min(options.max_delay);
    }
}

async fn changed(cancel: &mut Option<watch::Receiver<bool>>) {
    match cancel {
        Some(c) => {
            if c.changed().await.is_err() {
                std::future::pending::<()>().await
            }
        }
        None => std::future::pending().await,
    }
}

#[allow(clippy::too_many_arguments)]
async fn attempt_once<H: Hooks>(
    client: &reqwest::Client,
    url: &url::Url,
    dest: &Path,
    options: &Options,
    hooks: &mut H,
    cancel: &mut Option<watch::Receiver<bool>>,
    out: &mut tokio::fs::File,
    have: &mut u64,
    validator: &mut Option<String>,
    total: &mut Option<u64>,
) -> Result<Step, DownloadError> {
    let mut request = client.get(url.clone()).headers(options.headers.clone());
    if let Some(t) = options.request_timeout {
        request = request.timeout(t);
    }
    let request = resume::resume_request(request, *have, validator.as_deref());
    let resp = request.send().await.map_err(reqwest_error)?;
    let status = resp.status();
    match status {
        StatusCode::PARTIAL_CONTENT if *have > 0 => {
            let (start, t) = resume::content_range(resp.headers())
                .ok_or_else(|| DownloadError::transient("206 without a usable Content-Range"))?;
            if start != *have {
                return Err(DownloadError::transient(format!(
                    "asked for byte {have}, got {start}"
                )));
            }
            *total = t.or(resp.content_length().map(|n| *have + n)).or(*total);
        }
        s if s.is_success() => {
            // The first answer, a server that ignored Range, or a file that changed (If-Range
            // sent it whole): start over.
            if *have > 0 {
                out.set_len(0)
                    .await
                    .map_err(|e| DownloadError::transient(e.to_string()))?;
                *have = 0;
            }
            *total = match resume::content_range(resp.headers()) {
                Some((0, Some(t))) if s == StatusCode::PARTIAL_CONTENT => Some(t),
                _ => resp.content_length(),
            };
            *validator = resume::response_validator(resp.headers());
            if options.persist_validator {
                resume::save_validator(dest, validator.as_deref())
                    .await
                    .map_err(|e| {
                        DownloadError::transient(format!(
                            "{}: {e}",
                            resume::validator_path(dest).display()
                        ))
                    })?;
            }
        }
        StatusCode::RANGE_NOT_SATISFIABLE if *total == Some(*have) && *have > 0 => {
            return Ok(Step::Done);
        }
        s => {
            if s == StatusCode::RANGE_NOT_SATISFIABLE {
                // The bytes do not match what the server has: start over next time.
                let _ = out.set_len(0).await;
                *have = 0;
            }
            let kind = if hooks.permanent(s) {
                ErrorKind::Permanent
            } else {
                ErrorKind::Transient
            };
            return Err(DownloadError::new(kind, format!("HTTP {s}")));
        }
    }
    // Unknown size (chunked): the caller's margin must still be free.
    let needed = total.map_or(0, |t| t.saturating_sub(*have));
    if let Room::Wait = hooks.room(needed) {
        return Ok(Step::NeedSpace(needed));
    }
    hooks.progress(*have, *total);
    let mut body = resp.bytes_stream();
    loop {
        let next = async {
            match options.stall {
                Some(stall) => tokio::time::timeout(stall, body.next()).await.ok(),
                None => Some(body.next().await),
            }
        };
        let next = tokio::select! {
            n = next => n,
            _ = changed(cancel) => return Err(DownloadError::new(ErrorKind::Cancelled, "cancelled")),
        };
        match next {
            None => {
                let stall = options.stall.unwrap_or_default();
                return Err(DownloadError::transient(format!("no data for {stall:?}")));
            }
            Some(None) => break,
            Some(Some(Err(e))) => return Err(reqwest_error(e)),
            Some(Some(Ok(chunk))) => {
                if let Err(e) = out.write_all(&chunk).await {
                    let kind = if is_no_space(&e) {
                        ErrorKind::DiskFull
                    } else {
                        ErrorKind::Transient
                    };
                    // Which bytes reached the file is unknown (tokio reports a failed write on
                    // the next one, and part of a chunk may be in): start over rather than
                    // resume at a byte that may be wrong.
                    let _ = out.set_len(0).await;
                    let at = std::mem::take(have);
                    return Err(DownloadError::new(
                        kind,
                        format!("writing the temp file {} at byte {at}: {e}", dest.display()),
                    ));
                }
                *have += chunk.len() as u64;
                hooks.progress(*have, *total);
            }
        }
    }
    if let Err(e) = out.flush().await {
        let kind = if is_no_space(&e) {
            ErrorKind::DiskFull
        } else {
            ErrorKind::Transient
        };
        return Err(DownloadError::new(
            kind,
            format!("writing the temp file {}: {e}", dest.display()),
        ));
    }
    match *total {
        Some(t) if t != *have => Err(DownloadError::transient(format!(
            "the server announced {t} bytes, {have} arrived"
        ))),
        _ => Ok(Step::Done),
    }
}

#[cfg(test)]
mod tests {
    //! The loop against a real HTTP server on 127.0.0.1 that answers each connection from a
    //! script: an answer cut short, then what a server does with `Range` and `If-Range`.

    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// One answer: the head and the body bytes actually sent before the connection closes.
    type Answer = (String, Vec<u8>);

    /// Serves `answer(n, request_head)` to the n-th connection; returns the URL and the heads
    /// of the requests seen.
    async fn server(
        answer: impl Fn(usize, &str) -> Answer + Send + 'static,
    ) -> (url::Url, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!(
            "http://{}/media.webm",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            for n in 0.. {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut byte).await.unwrap() == 0 {
                        break;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let (reply, body) = answer(n, &head);
                log.lock().unwrap().push(head);
                conn.write_all(reply.as_bytes()).await.unwrap();
                let _ = conn.write_all(&body).await;
                let _ = conn.shutdown().await;
            }
        });
        (url, seen)
    }

    fn whole(etag: &str, body: &[u8], sent: usize) -> Answer {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"{etag}\"\r\nConnection: close\r\n\r\n",
            body.len()
        );
        (head, body[..sent].to_vec())
    }

    fn rest(etag: &str, body: &[u8], from: usize) -> Answer {
        let head = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{}\r\n\
             Content-Length: {}\r\nETag: \"{etag}\"\r\nConnection: close\r\n\r\n",
            body.len() - 1,
            body.len(),
            body.len() - from
        );
        (head, body[from..].to_vec())
    }

    fn options() -> Options {
        Options {
            attempts: 3,
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
            headers: HeaderMap::new(),
            request_timeout: Some(Duration::from_secs(10)),
            stall: Some(Duration::from_secs(10)),
            persist_validator: false,
        }
    }

    fn v1() -> Vec<u8> {
        (0..1000u32).map(|i| (i % 251) as u8).collect()
    }

    /// Downloads `url` into a new directory: the outcome and the bytes left in the file.
    async fn fetch(url: &url::Url) -> (Result<u64, DownloadError>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("media.webm");
        let client = reqwest::Client::new();
        let result = fetch_resumable(&client, url, &dest, &options(), &mut NoHooks, None)
            .await
            .map_err(|e| match e {
                Failure::Download(e) => e,
                Failure::Hook(never) => match never {},
            });
        (result, std::fs::read(&dest).unwrap_or_default())
    }

    #[tokio::test]
    async fn an_answer_cut_short_is_resumed_from_its_last_byte() {
        let (url, seen) = server(|n, head| match n {
            0 => whole("v1", &v1(), 400),
            _ if head.contains("if-range: \"v1\"") => rest("v1", &v1(), 400),
            _ => whole("v1", &v1(), 1000),
        })
        .await;
        let (size, bytes) = fetch(&url).await;
        assert_eq!(size.unwrap(), 1000);
        assert_eq!(bytes, v1());
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[1].contains("range: bytes=400-"), "{}", seen[1]);
    }

    #[tokio::test]
    async fn a_file_replaced_between_attempts_is_taken_whole_not_spliced() {
        let v2: Vec<u8> = (0..1200u32).map(|i| (i % 7) as u8 + 100).collect();
        let v2_server = v2.clone();
        let (url, seen) = server(move |n, head| match n {
            0 => whole("v1", &v1(), 400),
            // What a server does with If-Range naming a version it no longer has.
            _ if head.contains("if-range: \"v1\"") => whole("v2", &v2_server, v2_server.len()),
            _ => rest("v2", &v2_server, 400),
        })
        .await;
        let (size, bytes) = fetch(&url).await;
        assert_eq!(size.unwrap(), 1200);
        assert_eq!(bytes, v2);
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_missing_file_is_permanent_after_one_request_and_a_short_one_is_refused() {
        let (url, seen) = server(|_, _| {
            let head = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            (head.into(), Vec::new())
        })
        .await;
        let e = fetch(&url).await.0.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Permanent);
        assert_eq!(e.message, "HTTP 404 Not Found");
        assert_eq!(seen.lock().unwrap().len(), 1);

        // Every attempt ends early: three requests, then a transient failure, and no attempt
        // is taken for the whole file.
        let (url, seen) = server(|_, _| whole("v1", &v1(), 400)).await;
        let e = fetch(&url).await.0.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Transient, "{}", e.message);
        assert_eq!(seen.lock().unwrap().len(), 3);
    }
}
