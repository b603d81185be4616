//! The HTTP side: request routing, request counting, fault injection at request level, and the
//! listener that tracks every connection so that the server can "die" (stop accepting and cut
//! all open connections at once). Owns no recording data and no knob state.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::api::{self, UrlMaker};
use crate::catalog::{self, ApiRecording};
use crate::checksum::{self, ChecksumAlgorithm};
use crate::faults::Faults;
use crate::files::{self, BodyFaults, is_record_id};
use crate::protect::Protection;

/// Everything the request handlers share with the [`FakeBbb`](crate::FakeBbb) handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub samples: Option<PathBuf>,
    pub secret: String,
    pub accepted: Vec<ChecksumAlgorithm>,
    pub base_url: String,
    pub faults: Faults,
    pub added: Mutex<BTreeMap<String, ApiRecording>>,
    pub counts: Mutex<HashMap<String, u64>>,
    /// Every file body answered: path, status, first byte, whether the request had If-Range.
    pub served: Mutex<Vec<(String, u16, u64, bool)>>,
    pub protection: Protection,
    pub conns: ConnRegistry,
    pub kill: watch::Sender<bool>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Stops accepting and cuts every open connection. Idempotent.
    pub(crate) fn die(&self) {
        self.kill.send_replace(true);
        self.conns.shutdown_all();
    }

    pub(crate) fn presentation_url(&self, record_id: &str) -> String {
        format!("{}/playback/presentation/2.3/{record_id}", self.base_url)
    }

    pub(crate) fn video_url(&self, record_id: &str) -> String {
        format!("{}/playback/video/{record_id}/", self.base_url)
    }

    pub(crate) fn token_url(&self, record_id: &str, format: &str) -> String {
        let token = self.protection.mint(record_id, format);
        format!(
            "{}/recording/{record_id}/{format}?token={token}",
            self.base_url
        )
    }
}

impl UrlMaker for Shared {
    fn playback_url(&self, record_id: &str, format: &str) -> String {
        if self.faults.protected() && matches!(format, "presentation" | "video") {
            return self.token_url(record_id, format);
        }
        match format {
            "presentation" if self.faults.api_20_urls() => format!(
                "{}/playback/presentation/2.0/playback.html?meetingId={record_id}",
                self.base_url
            ),
            "presentation" => self.presentation_url(record_id),
            "video" => self.video_url(record_id),
            other => format!("{}/{other}/{record_id}/", self.base_url),
        }
    }

    fn rebase(&self, url: &str) -> String {
        // Keep the path of the original server's URL, put it on this server.
        match url::Url::parse(url) {
            Ok(u) if u.has_host() => {
                let mut s = format!("{}{}", self.base_url, u.path());
                if let Some(q) = u.query() {
                    s.push('?');
                    s.push_str(q);
                }
                s
            }
            _ => url.to_owned(),
        }
    }

    fn protected(&self) -> bool {
        self.faults.protected()
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    *lock(&shared.counts).entry(path.clone()).or_insert(0) += 1;
    tracing::debug!(method = %req.method(), %path, %query, "request");

    let is_api = path.starts_with("/bigbluebutton/api");
    let delay = shared.faults.delay(is_api);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if shared.faults.take_fail_500(&path) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>500 Internal Server Error</h1></body></html>",
        )
            .into_response();
    }
    let head_only = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => return StatusCode::METHOD_NOT_ALLOWED.into_response(),
    };
    let headers = req.headers();

    if is_api {
        return api_call(&shared, &path, &query);
    }
    if let Some(rest) = path.strip_prefix("/playback/presentation/2.3/") {
        return player_23(&shared, rest, headers, head_only).await;
    }
    if let Some(rest) = path.strip_prefix("/playback/presentation/2.0/") {
        return player_20(&shared, rest, &query, headers, head_only).await;
    }
    if let Some(rest) = path.strip_prefix("/presentation/") {
        let Some((id, file)) = rest.split_once('/') else {
            return files::not_found();
        };
        return recording_file(&shared, "presentation", id, file, headers, head_only).await;
    }
    if let Some(rest) = path.strip_prefix("/playback/video/") {
        return match rest.split_once('/') {
            // nginx redirects a directory without its slash.
            None if is_record_id(rest) => redirect(
                StatusCode::MOVED_PERMANENTLY,
                &format!("/playback/video/{rest}/"),
            ),
            None => files::not_found(),
            Some((id, "")) => {
                recording_file(&shared, "video", id, "index.html", headers, head_only).await
            }
            Some((id, file)) => {
                recording_file(&shared, "video", id, file, headers, head_only).await
            }
        };
    }
    if let Some(rest) = path.strip_prefix("/recording/") {
        return redeem_token(&shared, rest, &query);
    }
    // `/moved/<anything>?to=<URL>`: a 302 to any URL, as a compromised or misconfigured server
    // could answer (tests of the migrator's redirect policy).
    if path.starts_with("/moved/")
        && let Some((_, to)) =
            url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "to")
    {
        return redirect(StatusCode::FOUND, &to);
    }
    files::not_found()
}

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/xml;charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn redirect(status: StatusCode, location: &str) -> Response {
    Response::builder()
        .status(status)
        .header(header::LOCATION, location)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn api_call(shared: &Shared, path: &str, query: &str) -> Response {
    if shared.faults.take_api_html_404() {
        return files::not_found();
    }
    let call = path
        .trim_start_matches("/bigbluebutton/api")
        .trim_matches('/');
    match call {
        "" => xml(StatusCode::OK, api::version()),
        "getRecordings" => {
            if !checksum::verify(&shared.accepted, call, query, &shared.secret) {
                return xml(StatusCode::OK, api::checksum_error());
            }
            let mut all = match shared.samples.as_deref().map(catalog::scan_samples) {
                None => Default::default(),
                Some(Ok(all)) => all,
                // The samples broke after the start: a loud answer, never a shorter listing.
                Some(Err(e)) => {
                    tracing::error!(error = %e, "the samples cannot be listed");
                    return (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("fake BBB server: {e}\n"),
                    )
                        .into_response();
                }
            };
            // Recordings added by the test win over samples with the same id.
            all.extend(lock(&shared.added).clone());
            let body = api::get_recordings(&all, &api::Query::parse(query), shared);
            xml(StatusCode::OK, body)
        }
        _ => xml(
            StatusCode::OK,
            api::failed("unsupportedRequest", "This request is not supported."),
        ),
    }
}

/// Faults for a media body of `len` bytes (`partial`: an answer to a Range request): the
/// throttle, a drop at half the body when one is pending, and a clean end at half the body when
/// a short range (partial) or a truncation (whole) is pending.
fn body_faults(shared: &Shared, len: u64, partial: bool) -> BodyFaults {
    let drop_after = shared.faults.take_drop_media().then_some(len / 2);
    let cut = if partial {
        shared.faults.take_short_range()
    } else {
        shared.faults.take_truncated_media()
    };
    let end_after = (drop_after.is_none() && cut).then_some(len / 2);
    BodyFaults {
        throttle: shared.faults.throttle(),
        drop_after,
        end_after,
    }
}

async fn serve_under(
    shared: &Shared,
    root: Option<PathBuf>,
    rel: &str,
    headers: &HeaderMap,
    head_only: bool,
) -> Option<Response> {
    let path = files::resolve(&root?, rel)?;
    let version = shared.faults.files_changed();
    let response = files::serve_file(&path, headers, head_only, version, |len, partial| {
        body_faults(shared, len, partial)
    })
    .await;
    let start = response
        .headers()
        .get(axum::http::header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if !head_only {
        let if_range = headers.contains_key(axum::http::header::IF_RANGE);
        lock(&shared.served).push((rel.to_owned(), response.status().as_u16(), start, if_range));
    }
    Some(response)
}

/// `/playback/presentation/2.3/<x>`: a file of the player when one has that path, else the
/// player page for any single segment (the page itself reports bad ids).
async fn player_23(shared: &Shared, rest: &str, headers: &HeaderMap, head_only: bool) -> Response {
    if rest == "knobs.json" {
        return match shared.faults.player_knobs() {
            Some(json) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                json,
            )
                .into_response(),
            None => files::not_found(),
        };
    }
    let root = shared
        .samples
        .as_ref()
        .map(|s| s.join("player").join("2.3"));
    if !rest.is_empty()
        && let Some(r) = serve_under(shared, root.clone(), rest, headers, head_only).await
    {
        return r;
    }
    let segment = rest.strip_suffix('/').unwrap_or(rest);
    if segment.contains('/') {
        return files::not_found();
    }
    serve_under(shared, root, "index.html", headers, head_only)
        .await
        .unwrap_or_else(files::not_found)
}

/// `/playback/presentation/2.0/<file>`: the legacy player, or a 301 to the 2.3 player when the
/// redirect knob is on (nginx's `$arg_meetingId` rewrite on upgraded servers).
async fn player_20(
    shared: &Shared,
    rest: &str,
    query: &str,
    headers: &HeaderMap,
    head_only: bool,
) -> Response {
    if rest == "playback.html" && shared.faults.redirect_20() {
        let meeting_id = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "meetingId")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let target: String = url::form_urlencoded::byte_serialize(meeting_id.as_bytes()).collect();
        return redirect(
            StatusCode::MOVED_PERMANENTLY,
            &format!("/playback/presentation/2.3/{target}"),
        );
    }
    let root = shared
        .samples
        .as_ref()
        .map(|s| s.join("player").join("2.0"));
    serve_under(shared, root, rest, headers, head_only)
        .await
        .unwrap_or_else(files::not_found)
}

/// A file of one recording: `format` is `presentation` or `video` (the directory under
/// `recordings/`, and the protected-recording cookie's format).
async fn recording_file(
    shared: &Shared,
    format: &str,
    id: &str,
    file: &str,
    headers: &HeaderMap,
    head_only: bool,
) -> Response {
    if !is_record_id(id) || shared.faults.is_hidden(file) {
        return files::not_found();
    }
    if shared.faults.protected() {
        let cookies = headers.get(header::COOKIE).and_then(|c| c.to_str().ok());
        if !shared.protection.allows(cookies, id, format) {
            return (StatusCode::FORBIDDEN, "Forbidden").into_response();
        }
    }
    let root = shared
        .samples
        .as_ref()
        .map(|s| s.join("recordings").join(format).join(id));
    serve_under(shared, root, file, headers, head_only)
        .await
        .unwrap_or_else(files::not_found)
}

/// `/recording/<id>/<format>?token=T`: a valid token sets the cookie and redirects (302) to the
/// playback; anything else is a 404, as Scalelite answers unknown or used tokens.
fn redeem_token(shared: &Shared, rest: &str, query: &str) -> Response {
    let Some((id, format)) = rest.split_once('/') else {
        return files::not_found();
    };
    let format = format.trim_end_matches('/');
    if !is_record_id(id) || !matches!(format, "presentation" | "video") {
        return files::not_found();
    }
    let token = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let Some((name, value)) = shared.protection.redeem(&token, id, format) else {
        return files::not_found();
    };
    let location = match format {
        "video" => shared.video_url(id),
        _ => shared.presentation_url(id),
    };
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, location)
        .header(
            header::SET_COOKIE,
            format!("{name}={value}; Path=/; HttpOnly; Max-Age=21600"),
        )
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Open connections, each kept as a duplicate of its socket so that [`Shared::die`] can shut it
/// down from outside the task that serves it.
#[derive(Debug, Default)]
pub(crate) struct ConnRegistry {
    next: AtomicU64,
    open: Mutex<HashMap<u64, std::net::TcpStream>>,
}

impl ConnRegistry {
    fn shutdown_all(&self) {
        for (_, s) in lock(&self.open).drain() {
            // Shutting the duplicate affects the shared socket: the serving task's reads and
            // writes fail at once and its client sees the connection cut.
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A TCP listener that registers each accepted connection and refuses to serve once killed.
pub(crate) struct TrackedListener {
    pub inner: TcpListener,
    pub shared: Arc<Shared>,
}

impl axum::serve::Listener for TrackedListener {
    type Io = TrackedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(pair) => pair,
                Err(e) => {
                    // Typically EMFILE; back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            };
            if *self.shared.kill.borrow() {
                // Accepted in the instant before the serve loop stopped: cut it.
                drop(stream);
                continue;
            }
            let dup = match stream.as_fd().try_clone_to_owned() {
                Ok(fd) => std::net::TcpStream::from(fd),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot track connection; dropping it");
                    continue;
                }
            };
            let id = self.shared.conns.next.fetch_add(1, Ordering::Relaxed);
            lock(&self.shared.conns.open).insert(id, dup);
            let io = TrackedStream {
                inner: stream,
                id,
                shared: Arc::clone(&self.shared),
            };
            return (io, addr);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An accepted connection; leaves the registry when dropped.
pub(crate) struct TrackedStream {
    inner: TcpStream,
    id: u64,
    shared: Arc<Shared>,
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        lock(&self.shared.conns.open).remove(&self.id);
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves until [`Shared::die`] is called, then drops the listener (closing the port).
pub(crate) async fn run(listener: TcpListener, shared: Arc<Shared>) {
    let mut killed = shared.kill.subscribe();
    let tracked = TrackedListener {
        inner: listener,
        shared: Arc::clone(&shared),
    };
    let serve = axum::serve(tracked, router(Arc::clone(&shared)));
    tokio::select! {
        r = serve => {
            if let Err(e) = r {
                tracing::error!(error = %e, "fake BBB server stopped");
            }
        }
        _ = killed.wait_for(|k| *k) => {}
    }
    // Connections accepted while the select was deciding are cut as well.
    shared.conns.shutdown_all();
    tracing::debug!("fake BBB server is dead");
}
