//! The gallery of `serve`: each placed output with its recording (name, date, origin server),
//! its contact sheet and what makes it worth a look (flat tiles, recorded defects, no sheet, a
//! flag), as `/api/gallery`; the sheets' JPEGs as `/sheet/<job id>`; and a recording's attempt
//! history as `/api/attempts/<record id>`. Reads only.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bbb_common::recorder_protocol::{ContactSheet, TileKind};
use secrecy::ExposeSecret;

use super::{Shared, refused};
use crate::ledger::any::AnyLedger;
use crate::ledger::{JobStore, LedgerError, PlacedJob, SystemClock};
use crate::recording::{RecordId, Recording};

/// Why a placed output deserves a person's look, from what the ledger knows of it.
pub fn concerns(
    sheet: Option<&ContactSheet>,
    sheet_error: Option<&str>,
    degraded: &[String],
) -> Vec<String> {
    let mut out: Vec<String> = degraded.to_vec();
    match sheet {
        Some(s) => {
            let spread: Vec<_> = s
                .tiles
                .iter()
                .filter(|t| t.kind == TileKind::Spread)
                .collect();
            let flat = spread.iter().filter(|t| t.flat).count();
            if flat > 0 {
                out.push(format!(
                    "{flat} of {} frames are one flat colour",
                    spread.len()
                ));
            }
        }
        None => out.push(match sheet_error {
            Some(why) => format!("no contact sheet: {why}"),
            None => "no contact sheet".into(),
        }),
    }
    out
}

/// One gallery entry as `/api/gallery` gives it.
fn entry(p: &PlacedJob) -> serde_json::Value {
    // The payload is what the workers run the job from; a row this build cannot read still
    // shows, by its record id.
    let rec: Option<Recording> = serde_json::from_str(&p.payload).ok();
    let output: serde_json::Value = p
        .output
        .as_deref()
        .and_then(|o| serde_json::from_str(o).ok())
        .unwrap_or_default();
    let sheet: Option<ContactSheet> = p
        .sheet_layout
        .as_deref()
        .and_then(|l| serde_json::from_str(l).ok());
    let degraded: Vec<String> = output["degraded"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(Into::into))
                .collect()
        })
        .unwrap_or_default();
    let sheet_error = output["sheet_error"].as_str();
    let origin = rec
        .as_ref()
        .map(|r| r.meta("bbb-origin-server-name"))
        .filter(|o| !o.is_empty());
    serde_json::json!({
        "job_id": p.id,
        "record_id": p.recording_id,
        "target": p.target,
        "name": rec.as_ref().map(|r| r.name.as_str()),
        "start_time_ms": rec.as_ref().map(|r| r.start_time_ms),
        "origin": origin,
        "kind": output["kind"],
        "mode": p.recording_mode,
        "fast_fallback": output["fast_fallback"],
        "path": p.output_path,
        "bytes": p.output_bytes,
        "duration_secs": output["duration_secs"],
        "finished_at_ms": p.finished_at_ms,
        "flagged": p.flagged_at_ms.is_some(),
        "flagged_at_ms": p.flagged_at_ms,
        "flag_note": p.flag_note,
        "sheet": sheet,
        "concerns": concerns(sheet.as_ref(), sheet_error, &degraded),
    })
}

async fn open(shared: &Shared) -> Result<AnyLedger, Response> {
    AnyLedger::open_read_only(shared.ledger_url.expose_secret(), Arc::new(SystemClock))
        .await
        .map_err(unavailable)
}

fn unavailable(e: LedgerError) -> Response {
    tracing::warn!("serve: {e}");
    (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response()
}

fn json(v: serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn shown(shared: &Shared, record_id: &str) -> bool {
    shared.only.is_empty() || shared.only.iter().any(|o| o == record_id)
}

async fn placed(shared: &Shared) -> Result<Vec<PlacedJob>, Response> {
    let ledger = open(shared).await?;
    let placed = ledger.placed().await;
    ledger.close().await;
    let mut placed = placed.map_err(unavailable)?;
    placed.retain(|p| shown(shared, &p.recording_id));
    Ok(placed)
}

/// `/api/gallery`: the placed outputs, the latest first.
pub(super) async fn gallery(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(no) = refused(&shared, &headers) {
        return no;
    }
    match placed(&shared).await {
        Ok(placed) => json(serde_json::json!({
            "placed": placed.iter().map(entry).collect::<Vec<_>>(),
        })),
        Err(no) => no,
    }
}

/// `/sheet/<job id>`: a contact sheet's JPEG.
pub(super) async fn sheet(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(job_id): Path<i64>,
) -> Response {
    if let Some(no) = refused(&shared, &headers) {
        return no;
    }
    if !shared.only.is_empty() {
        match placed(&shared).await {
            Ok(p) if p.iter().any(|p| p.id == job_id) => {}
            Ok(_) => return StatusCode::NOT_FOUND.into_response(),
            Err(no) => return no,
        }
    }
    let ledger = match open(&shared).await {
        Ok(l) => l,
        Err(no) => return no,
    };
    let sheet = ledger.sheet(job_id).await;
    ledger.close().await;
    match sheet {
        Ok(Some((_, jpeg))) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                // A job's sheet changes only when the job is redone, which gives it a new
                // output; a short cache spares the database a page of many sheets.
                (header::CACHE_CONTROL, "private, max-age=60"),
            ],
            jpeg,
        )
            .into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => unavailable(e),
    }
}

/// `/api/attempts/<record id>`: every attempt at the recording's jobs, oldest first.
pub(super) async fn attempts(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(record_id): Path<String>,
) -> Response {
    if let Some(no) = refused(&shared, &headers) {
        return no;
    }
    let Ok(id) = RecordId::parse(&record_id) else {
        return (StatusCode::BAD_REQUEST, "not a record id\n").into_response();
    };
    if !shown(&shared, id.as_str()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let ledger = match open(&shared).await {
        Ok(l) => l,
        Err(no) => return no,
    };
    let history = async {
        let mut out = Vec::new();
        for job in ledger.jobs().await? {
            if job.recording_id == id.as_str() {
                for a in ledger.attempts(job.id).await? {
                    out.push(serde_json::json!({ "target": job.target, "attempt": a }));
                }
            }
        }
        Ok::<_, LedgerError>(out)
    }
    .await;
    ledger.close().await;
    match history {
        Ok(list) => json(serde_json::json!({ "record_id": id.as_str(), "attempts": list })),
        Err(e) => unavailable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bbb_common::recorder_protocol::SheetTile;

    fn tile(kind: TileKind, flat: bool) -> SheetTile {
        SheetTile {
            at: 1.0,
            kind,
            luma: if flat { 0.0 } else { 120.0 },
            flat,
        }
    }

    #[test]
    fn flat_spread_frames_defects_and_a_missing_sheet_are_concerns() {
        let sheet = ContactSheet {
            columns: 4,
            tile_width: 320,
            tile_height: 180,
            duration: 60.0,
            tiles: vec![
                tile(TileKind::Spread, true),
                tile(TileKind::Spread, false),
                // A flat frame right after a change is not counted: a slide may be blank.
                tile(TileKind::Change, true),
            ],
        };
        assert_eq!(
            concerns(Some(&sheet), None, &[]),
            ["1 of 2 frames are one flat colour"]
        );
        let fine = ContactSheet {
            tiles: vec![tile(TileKind::Spread, false)],
            ..sheet
        };
        assert!(concerns(Some(&fine), None, &[]).is_empty());
        assert_eq!(
            concerns(
                None,
                Some("bbb-record not found"),
                &["slide 2 missing".into()]
            ),
            ["slide 2 missing", "no contact sheet: bbb-record not found"]
        );
    }
}
