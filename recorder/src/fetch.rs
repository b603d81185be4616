//! A recording's own files over HTTP, as the recorder reads them itself (not through the
//! browser): bounded text files (`metadata.xml`, `shapes.svg`, `panzooms.xml`), refused above
//! [`MAX_RECORDING_FILE`], and the media track, downloaded with retries and resumed under the
//! shared rule of `bbb_common::resume`. Every URL in a message is redacted.

use std::path::PathBuf;
use std::time::Duration;

use bbb_common::{redact, resume};
use futures::StreamExt;
use url::Url;

use crate::error::{Context as _, Phase, RecordError};
use crate::playback;

pub async fn fetch_text(
    http: &reqwest::Client,
    url: &Url,
    cookies: &str,
) -> Result<String, RecordError> {
    let mut request = http.get(url.clone());
    if !cookies.is_empty() {
        request = request.header(reqwest::header::COOKIE, cookies);
    }
    let response = request
        .send()
        .await
        .transient(Phase::Probe, &format!("fetching {}", redact::url(url)))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
        return Err(RecordError::permanent(
            Phase::Probe,
            format!("playback not found: {} answered {status}", redact::url(url)),
        ));
    }
    if !status.is_success() {
        let class = if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        {
            RecordError::transient
        } else {
            RecordError::permanent
        };
        return Err(class(
            Phase::Probe,
            format!("{} answered {status}", redact::url(url)),
        ));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_RECORDING_FILE)
    {
        return Err(too_large(url));
    }
    let mut body = Vec::new();
    let mut response = response;
    while let Some(chunk) = response
        .chunk()
        .await
        .transient(Phase::Probe, &format!("reading {}", redact::url(url)))?
    {
        if body.len() + chunk.len() > MAX_RECORDING_FILE as usize {
            return Err(too_large(url));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The largest recording file the recorder reads itself (metadata.xml, shapes.svg,
/// panzooms.xml): a long lecture's shapes.svg is tens of megabytes; anything far larger is a
/// hostile or broken server, refused before it fills the memory.
const MAX_RECORDING_FILE: u64 = 256 << 20;

fn too_large(url: &Url) -> RecordError {
    RecordError::permanent(
        Phase::Probe,
        format!(
            "{} is larger than {} MiB: refused",
            redact::url(url),
            MAX_RECORDING_FILE >> 20
        ),
    )
}

pub async fn fetch_metadata(
    http: &reqwest::Client,
    base: &Url,
    cookies: &str,
) -> Result<playback::Metadata, RecordError> {
    let url = base
        .join("metadata.xml")
        .transient(Phase::Probe, "metadata URL")?;
    let text = fetch_text(http, &url, cookies).await?;
    playback::parse_metadata(&text).map_err(|e| {
        RecordError::permanent(
            Phase::Probe,
            format!("{} is not a recording's metadata: {e}", redact::url(&url)),
        )
    })
}

/// Downloads the recording's media track `url` into `dest`, with retries, resuming where an
/// attempt stopped under the shared rule (`bbb_common::resume`): `Range` with `If-Range`
/// naming the version the bytes came from, so a file replaced on the server between attempts
/// is sent whole and never spliced onto the old bytes.
pub async fn download(
    http: &reqwest::Client,
    url: Url,
    cookies: &str,
    dest: PathBuf,
) -> Result<PathBuf, RecordError> {
    use tokio::io::AsyncWriteExt;
    let ph = Phase::Audio;
    let mut last_error = String::new();
    // The version of the bytes in `dest`. Each recording run downloads into its own directory,
    // so the bytes only ever come from this run's earlier attempts.
    let mut validator: Option<String> = None;
    for attempt in 0..5u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt))).await;
        }
        let have = tokio::fs::metadata(&dest)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        let mut request = http.get(url.clone()).timeout(Duration::from_secs(3600));
        if !cookies.is_empty() {
            request = request.header(reqwest::header::COOKIE, cookies);
        }
        let request = resume::resume_request(request, have, validator.as_deref());
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                last_error = e.to_string();
                continue;
            }
        };
        let status = response.status();
        if !status.is_success() {
            last_error = format!("answered {status}");
            if status.is_client_error() && status != reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
                return Err(RecordError::permanent(
                    ph,
                    format!("downloading {}: {last_error}", redact::url(&url)),
                ));
            }
            if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
                let _ = tokio::fs::remove_file(&dest).await;
            }
            continue;
        }
        let append = status == reqwest::StatusCode::PARTIAL_CONTENT && have > 0;
        if append {
            // The server must continue exactly where the bytes end.
            match resume::content_range(response.headers()) {
                Some((start, _)) if start == have => {}
                other => {
                    last_error = format!("asked for byte {have}, got {other:?}");
                    let _ = tokio::fs::remove_file(&dest).await;
                    continue;
                }
            }
        } else {
            // A whole file (the first answer, or the file changed and If-Range sent it all).
            validator = resume::response_validator(response.headers());
        }
        let expected = response
            .content_length()
            .map(|n| if append { have + n } else { n });
        let mut file = if append {
            tokio::fs::OpenOptions::new().append(true).open(&dest).await
        } else {
            tokio::fs::File::create(&dest).await
        }
        .transient(ph, "writing the media")?;
        let mut stream = response.bytes_stream();
        let mut broken = false;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => file
                    .write_all(&bytes)
                    .await
                    .transient(ph, "writing the media")?,
                Err(e) => {
                    last_error = e.to_string();
                    broken = true;
                    break;
                }
            }
        }
        file.flush().await.transient(ph, "writing the media")?;
        drop(file);
        let size = tokio::fs::metadata(&dest)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        if !broken && expected.is_none_or(|e| e == size) {
            return Ok(dest);
        }
        if !broken {
            last_error = format!("got {size} bytes, expected {expected:?}");
        }
    }
    Err(RecordError::transient(
        ph,
        format!("downloading {}: {last_error}", redact::url(&url)),
    ))
}
