//! A recording's own files over HTTP, as the recorder reads them itself (not through the
//! browser): bounded text files (`metadata.xml`, `shapes.svg`, `panzooms.xml`), refused above
//! [`MAX_RECORDING_FILE`], and the media track, downloaded with retries and resumed by the
//! shared loop of `bbb_common::download`. Every URL in a message is redacted.

use std::path::PathBuf;
use std::time::Duration;

use bbb_common::download::{self, ErrorKind, Failure, NoHooks};
use bbb_common::redact;
use reqwest::header::{HeaderMap, HeaderValue};
use url::Url;

use crate::error::{Context as _, Phase, RecordError};
use crate::playback;

/// A recording file the server must have: its absence is a permanent error.
pub async fn fetch_text(
    http: &reqwest::Client,
    url: &Url,
    cookies: &str,
) -> Result<String, RecordError> {
    match fetch_optional_text(http, url, cookies).await? {
        Some(text) => Ok(text),
        None => Err(RecordError::permanent(
            Phase::Probe,
            format!(
                "playback not found: {} answered 404 or 410",
                redact::url(url)
            ),
        )),
    }
}

/// A recording file the server may not have (a recording without chat has no slides_new.xml):
/// `None` when it answers 404 or 410, any other failure an error.
pub async fn fetch_optional_text(
    http: &reqwest::Client,
    url: &Url,
    cookies: &str,
) -> Result<Option<String>, RecordError> {
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
        return Ok(None);
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
    Ok(Some(String::from_utf8_lossy(&body).into_owned()))
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

/// Downloads the recording's media track `url` into `dest` through the shared resumable loop
/// (`bbb_common::download`): five attempts (a minute without data ends one), each resuming
/// where the last stopped with `Range` and `If-Range` naming the version the bytes came from,
/// so a file replaced on the server between attempts is sent whole and never spliced onto the
/// old bytes. Each recording run
/// downloads into its own directory, so no validator is kept for a later run.
pub async fn download(
    http: &reqwest::Client,
    url: Url,
    cookies: &str,
    dest: PathBuf,
) -> Result<PathBuf, RecordError> {
    let mut headers = HeaderMap::new();
    if !cookies.is_empty() {
        let value = HeaderValue::from_str(cookies)
            .map_err(|e| RecordError::permanent(Phase::Audio, format!("cookie header: {e}")))?;
        headers.insert(reqwest::header::COOKIE, value);
    }
    let options = download::Options {
        attempts: 5,
        first_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(4),
        headers,
        request_timeout: Some(Duration::from_secs(3600)),
        // A connection that stops sending is given up and resumed, rather than waited on
        // for the rest of the hour.
        stall: Some(Duration::from_secs(60)),
        persist_validator: false,
    };
    match download::fetch_resumable(http, &url, &dest, &options, &mut NoHooks, None).await {
        Ok(_) => Ok(dest),
        Err(Failure::Hook(never)) => match never {},
        Err(Failure::Download(e)) => {
            let class = match e.kind {
                ErrorKind::Permanent => RecordError::permanent,
                ErrorKind::Transient | ErrorKind::DiskFull | ErrorKind::Cancelled => {
                    RecordError::transient
                }
            };
            Err(class(
                Phase::Audio,
                format!("downloading {}: {}", redact::url(&url), e.message),
            ))
        }
    }
}
