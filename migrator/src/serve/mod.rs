//! `bbb-migrate serve`: the state of a migration over HTTP, from the same ledger the workers
//! write: `/api/status` (the JSON of `status --json`), `/metrics` (Prometheus text), so that
//! the monitoring a university already runs can watch a migration of weeks, and `/`, a page
//! that draws `/api/status` live (`page/`: built in, no external asset, a strict content
//! security policy, every ledger text set as text), with the gallery of placed outputs and their
//! contact sheets (`gallery`). It only reads, unless started with `--allow-actions`
//! (`actions`: retry, cancel and flag from the page).
//!
//! Listening on anything but loopback needs a token (`[serve] token` or
//! `BBB_MIGRATE_SERVE_TOKEN`, never the command line), asked of every data request as
//! `Authorization: Bearer <token>`. The page's own files hold no data and are served to anyone;
//! the page asks for the token and sends it with its requests.

mod actions;
mod gallery;
pub mod metrics;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::ledger::any::AnyLedger;
use crate::ledger::{JobStore, RetryPolicy, SystemClock};
use crate::report::Report;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "serve: {0} is not a loopback address, and no token is set ([serve] token or \
         BBB_MIGRATE_SERVE_TOKEN): anyone who reaches the port would read the migration"
    )]
    NeedsToken(SocketAddr),
    #[error("serve: cannot listen on {0}: {1}")]
    Bind(SocketAddr, #[source] std::io::Error),
}

/// Refuses a listener that anyone on the network could read without a token.
pub fn check_listen(listen: SocketAddr, token: Option<&SecretString>) -> Result<(), ServeError> {
    let has_token = token.is_some_and(|t| !t.expose_secret().is_empty());
    if listen.ip().is_loopback() || has_token {
        Ok(())
    } else {
        Err(ServeError::NeedsToken(listen))
    }
}

pub async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ServeError::Bind(listen, e))
}

/// What `serve` serves and allows.
pub struct ServeOptions {
    /// The ledger's URL: opened for each request, so that a SQLite ledger is read as it is now
    /// (a read-only open with no writer around takes the file as immutable), and a database
    /// that restarts costs one failed request, not the server.
    pub ledger_url: SecretString,
    /// The ledger's retry policy, for the actions (the CLI's).
    pub policy: RetryPolicy,
    /// `--record-id`s: the recordings shown (empty: all).
    pub only: Vec<String>,
    pub token: Option<SecretString>,
    /// `--allow-actions`: retry and cancel from the page.
    pub actions: bool,
}

struct Shared {
    ledger_url: SecretString,
    policy: RetryPolicy,
    only: Vec<String>,
    /// SHA-256 of the token: requests are compared digest to digest, so the comparison takes
    /// the same time whatever the bytes sent.
    token: Option<[u8; 32]>,
    actions: bool,
}

/// Serves until `shutdown` resolves; requests under way are finished first.
pub async fn run(
    listener: tokio::net::TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = options
        .token
        .filter(|t| !t.expose_secret().is_empty())
        .map(|t| Sha256::digest(t.expose_secret().as_bytes()).into());
    let shared = Arc::new(Shared {
        ledger_url: options.ledger_url,
        policy: options.policy,
        only: options.only,
        token,
        actions: options.actions,
    });
    let app = Router::new()
        .route(
            "/",
            get(|| async { page(PAGE_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/page.js",
            get(|| async { page(PAGE_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/page.css",
            get(|| async { page(PAGE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/api/status", get(status))
        .route("/api/serve", get(serve_info))
        .route("/api/gallery", get(gallery::gallery))
        .route("/api/attempts/{record_id}", get(gallery::attempts))
        .route("/sheet/{job_id}", get(gallery::sheet))
        .route(
            "/api/flag",
            post(|s, h, b| actions::act(actions::Action::Flag, s, h, b)),
        )
        .route(
            "/api/retry",
            post(|s, h, b| actions::act(actions::Action::Retry, s, h, b)),
        )
        .route(
            "/api/cancel",
            post(|s, h, b| actions::act(actions::Action::Cancel, s, h, b)),
        )
        .route("/metrics", get(metrics))
        .with_state(shared);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

const PAGE_HTML: &str = include_str!("page/index.html");
const PAGE_JS: &str = include_str!("page/page.js");
const PAGE_CSS: &str = include_str!("page/page.css");

/// Only this server's own script and style, fetches to itself, no frames, no forms posted
/// anywhere: text from the ledger that slipped into markup could still run nothing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn page(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `None` when the request may be answered, else the refusal.
fn refused(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let want = shared.token.as_ref()?;
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| <[u8; 32]>::from(Sha256::digest(t.trim().as_bytes())));
    if sent.as_ref() == Some(want) {
        return None;
    }
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a token is needed: Authorization: Bearer <[serve] token>\n",
        )
            .into_response(),
    )
}

async fn read(shared: &Shared) -> Result<Report, Response> {
    let url = shared.ledger_url.expose_secret();
    let report = match AnyLedger::open_read_only(url, Arc::new(SystemClock)).await {
        Ok(ledger) => {
            let report = Report::read(&ledger, &shared.only).await;
            ledger.close().await;
            report
        }
        Err(e) => Err(e),
    };
    report.map_err(|e| {
        tracing::warn!("serve: {e}");
        (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response()
    })
}

/// What the page needs to know of this server: whether it offers the actions.
async fn serve_info(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(no) = refused(&shared, &headers) {
        return no;
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "actions": shared.actions }).to_string(),
    )
        .into_response()
}

async fn status(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(no) = refused(&shared, &headers) {
        return no;
    }
    match read(&shared).await {
        Ok(report) => (
            [(header::CONTENT_TYPE, "application/json")],
            format!(
                "{:#}\n",
                report.to_json(chrono::Utc::now().timestamp_millis())
            ),
        )
            .into_response(),
        Err(e) => e,
    }
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(no) = refused(&shared, &headers) {
        return no;
    }
    match read(&shared).await {
        Ok(report) => {
            let now_ms = chrono::Utc::now().timestamp_millis();
            (
                [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
                metrics::render(&report, now_ms),
            )
                .into_response()
        }
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_listens_without_a_token() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(check_listen(at("127.0.0.1:8090"), None).is_ok());
        assert!(check_listen(at("[::1]:8090"), None).is_ok());
        let open = check_listen(at("0.0.0.0:8090"), None).unwrap_err();
        assert!(open.to_string().contains("0.0.0.0:8090"), "{open}");
        let empty = SecretString::from("");
        assert!(check_listen(at("192.0.2.1:8090"), Some(&empty)).is_err());
        let token = SecretString::from("t0k3n");
        assert!(check_listen(at("0.0.0.0:8090"), Some(&token)).is_ok());
    }
}
