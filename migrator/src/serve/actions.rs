//! `serve --allow-actions`: retry, cancel and flag a recording's job from the page, changing the
//! ledger exactly as `bbb-migrate retry --record-id ID`, `cancel --record-id ID` and
//! `flag --record-id ID --note TEXT` (or `--clear`) do.
//!
//! A request that changes the ledger must come from this server's own page: it is a JSON POST
//! with the `X-Bbb-Migrate` header (which no other site's page can send without a CORS
//! preflight, and none is answered), not marked cross-site by the browser (`Sec-Fetch-Site`),
//! and, when no token guards the server, addressed to an IP address or `localhost` (a page
//! of another site whose name was made to resolve to 127.0.0.1 sends its own name).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;

use super::{Shared, refused};
use crate::ledger::any::AnyLedger;
use crate::ledger::{JobStore, Requeue, SystemClock, TARGET_FILE};
use crate::recording::RecordId;

/// The header the page sends with every action.
pub const ACTION_HEADER: &str = "x-bbb-migrate";

fn answer(status: StatusCode, text: impl Into<String>) -> Response {
    let body = serde_json::json!({ "message": text.into() }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `None` when the request is one this server's page made, else the refusal.
fn not_from_our_page(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let forbidden = |why: &str| Some(answer(StatusCode::FORBIDDEN, why));
    if !shared.actions {
        return forbidden("actions are off: start serve with --allow-actions");
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json || !headers.contains_key(ACTION_HEADER) {
        return forbidden("not a request of this server's page");
    }
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if site.is_some_and(|s| s != "same-origin" && s != "none") {
        return forbidden("a cross-site request");
    }
    if shared.token.is_none() {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !is_address(host) {
            return forbidden("addressed by a name other than localhost: use the IP address");
        }
    }
    None
}

/// Whether a `Host` header names an IP address or `localhost` (with or without a port).
fn is_address(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => {
            return rest
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

// The refusals of this module are the HTTP answers themselves, made once per request: their
// size costs nothing here.
#[allow(clippy::result_large_err)]
/// An action's body (`{"record_id": "...", "note": "..."}`) with its record id validated as
/// the CLI's.
fn parse_body(body: &str) -> Result<(RecordId, serde_json::Value), Response> {
    let value: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| answer(StatusCode::BAD_REQUEST, format!("not JSON: {e}")))?;
    let id = value["record_id"]
        .as_str()
        .ok_or_else(|| answer(StatusCode::BAD_REQUEST, "no record_id"))?;
    let id = RecordId::parse(id).map_err(|e| answer(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok((id, value))
}

/// The most of a flag's note kept: a sentence for whoever fixes the cause, not a document.
const MAX_NOTE_CHARS: usize = 500;

#[allow(clippy::result_large_err)] // as above
/// Checks the request and reads its body.
fn admit(
    shared: &Shared,
    headers: &HeaderMap,
    body: &str,
) -> Result<(RecordId, serde_json::Value), Response> {
    if let Some(no) = refused(shared, headers) {
        return Err(no);
    }
    if let Some(no) = not_from_our_page(shared, headers) {
        return Err(no);
    }
    let (id, value) = parse_body(body)?;
    // `serve --record-id`: the page shows only those, and acts on nothing else either.
    if !shared.only.is_empty() && !shared.only.iter().any(|o| o == id.as_str()) {
        return Err(answer(
            StatusCode::FORBIDDEN,
            format!("{id} is not among the recordings this server was started for"),
        ));
    }
    Ok((id, value))
}

/// What the page may ask.
#[derive(Debug, Clone, Copy)]
pub(super) enum Action {
    /// As `retry --record-id ID`: the job back in the queue, whatever its state but running or
    /// succeeded.
    Retry,
    /// As `cancel --record-id ID`: a pending job at once, a running one by its worker at its
    /// next heartbeat.
    Cancel,
    /// As `flag --record-id ID --note TEXT` (the body's `note`), or `--clear` without one.
    Flag,
}

impl Action {
    async fn apply(self, ledger: &AnyLedger, id: &RecordId, body: &serde_json::Value) -> Response {
        let unavailable =
            |e: crate::ledger::LedgerError| answer(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        match self {
            Action::Retry => match ledger
                .requeue(&Requeue::Recordings(vec![id.to_string()]))
                .await
            {
                Ok(n) => {
                    tracing::info!(record_id = %id, "serve: re-queued {n} job(s) on request");
                    answer(StatusCode::OK, format!("{id}: re-queued {n} job(s)"))
                }
                Err(e) => unavailable(e),
            },
            Action::Cancel => match ledger.cancel(id.as_str(), TARGET_FILE).await {
                Ok(true) => {
                    tracing::info!(record_id = %id, "serve: cancel requested");
                    answer(StatusCode::OK, format!("{id}: cancel requested"))
                }
                Ok(false) => answer(
                    StatusCode::CONFLICT,
                    format!("{id}: no pending or running job"),
                ),
                Err(e) => unavailable(e),
            },
            Action::Flag => {
                let note = match &body["note"] {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(n) if !n.trim().is_empty() => {
                        Some(n.trim().chars().take(MAX_NOTE_CHARS).collect::<String>())
                    }
                    _ => {
                        return answer(
                            StatusCode::BAD_REQUEST,
                            "note: a text saying what is wrong, or null to clear the flag",
                        );
                    }
                };
                match ledger.flag(id.as_str(), TARGET_FILE, note.as_deref()).await {
                    Ok(true) => {
                        tracing::info!(record_id = %id, flagged = note.is_some(), "serve: flag set");
                        answer(
                            StatusCode::OK,
                            match note {
                                Some(_) => format!("{id}: flagged: `retry --flagged` redoes it"),
                                None => format!("{id}: flag cleared"),
                            },
                        )
                    }
                    Ok(false) => answer(StatusCode::CONFLICT, format!("{id}: no placed recording")),
                    Err(e) => unavailable(e),
                }
            }
        }
    }
}

/// One action request: checked, then applied to the ledger opened for it.
pub(super) async fn act(
    action: Action,
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let (id, body) = match admit(&shared, &headers, &body) {
        Ok(admitted) => admitted,
        Err(no) => return no,
    };
    let ledger = match AnyLedger::open(
        shared.ledger_url.expose_secret(),
        Arc::new(SystemClock),
        shared.policy.clone(),
    )
    .await
    {
        Ok(l) => l,
        Err(e) => return answer(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let answer = action.apply(&ledger, &id, &body).await;
    ledger.close().await;
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_and_localhost_pass_the_host_check() {
        for ok in [
            "127.0.0.1:8090",
            "127.0.0.1",
            "localhost:8090",
            "[::1]:8090",
            "10.1.2.3:80",
        ] {
            assert!(is_address(ok), "{ok}");
        }
        for no in [
            "evil.example:8090",
            "evil.example",
            "",
            "[nonsense]:1",
            "127.0.0.1.evil.example",
        ] {
            assert!(!is_address(no), "{no}");
        }
    }
}
