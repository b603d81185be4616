//! Download of a video playback (spec 7.3): the HTML page at `/playback/video/<id>/` names the file
//! in a `<source>` tag; protected Scalelite token URLs need the cookie the page sets, so each job
//! gets its own client with a cookie jar. The file is fetched resumably (HTTP Range) into the
//! job's temp file by the shared loop of `bbb_common::download` (which checks its size against
//! what the server announced), behind the job's free-space gate.

use std::path::Path;
use std::time::Duration;

use std::future::Future;

use bbb_common::download::{self, DownloadError, ErrorKind, Failure, Room};
use bbb_common::redact;
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use tokio::sync::watch;

use crate::api::error_chain;
use crate::error::{ErrorClass, JobError, Phase};
use crate::playback_hosts::PlaybackHosts;
use crate::worker::space::SpaceSettings;

/// Pod's `VIDEO_ALLOWED_EXTENSIONS` that a BBB video page may name.
const VIDEO_EXTENSIONS: &[&str] = &[
    "m4v", "mp4", "webm", "mkv", "mov", "ogv", "ogg", "mpeg", "mpg", "avi", "flv", "3gp", "wmv",
];

/// Every `src` of a `<source>` tag whose extension is a video extension; the Python command
/// takes the last one.
pub fn video_sources(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(i) = lower[pos..].find("<source") {
        let start = pos + i;
        let end = lower[start..]
            .find('>')
            .map(|e| start + e)
            .unwrap_or(lower.len());
        let tag = &html[start..end];
        let tag_lower = &lower[start..end];
        if let Some(src) = attr(tag, tag_lower, "src") {
            let path = src.split(['?', '#']).next().unwrap_or("");
            let ext = path.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
            if path.contains('.') && VIDEO_EXTENSIONS.contains(&ext.as_str()) {
                out.push(src);
            }
        }
        pos = end;
    }
    out
}

fn attr(tag: &str, tag_lower: &str, name: &str) -> Option<String> {
    let mut from = 0;
    while let Some(i) = tag_lower[from..].find(name) {
        let at = from + i;
        from = at + name.len();
        let before_ok = at > 0 && tag_lower.as_bytes()[at - 1].is_ascii_whitespace();
        let rest = tag[from..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let v = rest[1..].trim_start();
        let (q, body) = match v.chars().next()? {
            c @ ('"' | '\'') => (Some(c), &v[1..]),
            _ => (None, v),
        };
        let value = match q {
            Some(q) => body.split(q).next()?,
            None => body.split(|c: char| c.is_whitespace() || c == '/').next()?,
        };
        return Some(value.replace("&amp;", "&"));
    }
    None
}

/// Spec 7.3 `manage_recording_url`: a page still at a token URL (`/recording/<id>/video?token=`,
/// no redirect) serves its file at `/video/<id>/<file>` with the cookie of the page; otherwise the
/// source is relative to the page URL.
pub fn file_url(page: &url::Url, src: &str) -> Result<url::Url, url::ParseError> {
    if let Ok(abs) = url::Url::parse(src) {
        return Ok(abs);
    }
    let has_token = page.query_pairs().any(|(k, _)| k == "token");
    if has_token {
        let segment = page.path().split('/').nth(2).unwrap_or("");
        let mut u = page.clone();
        u.set_query(None);
        u.set_path(&format!("/video/{segment}/{src}"));
        return Ok(u);
    }
    page.join(src)
}

fn is_video_url(u: &url::Url) -> bool {
    let ext = u
        .path()
        .rsplit('.')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    u.path().contains('.') && VIDEO_EXTENSIONS.contains(&ext.as_str())
}

/// A redirect our policy refused stays refused; any other failure to get an answer may pass.
fn send_error_class(e: &reqwest::Error) -> ErrorClass {
    if e.is_redirect() {
        ErrorClass::Permanent
    } else {
        ErrorClass::Transient
    }
}

fn status_class(s: StatusCode) -> ErrorClass {
    // A playback that is gone stays gone; anything else may pass on a later try.
    if matches!(s.as_u16(), 400 | 404 | 410) {
        ErrorClass::Permanent
    } else {
        ErrorClass::Transient
    }
}

#[derive(Debug, Clone)]
pub struct DownloadSettings {
    pub stall: Duration,
    pub retries: u32,
    pub retry_delay: Duration,
    /// Every redirect hop and the video file the page names must pass it, as the page did.
    pub hosts: PlaybackHosts,
}

/// Downloads the video playback at `page_url` into `dest`. `progress(done, total)` is called as
/// bytes arrive. Resolves to the byte count, or stops early when `cancel` turns true. No byte of
/// the body is written before `space` has room for what the server announced; a full disk
/// (ENOSPC, EDQUOT) while writing ends the download at once (transient), since retrying into a
/// full disk cannot help.
pub async fn download_video(
    record_id: &str,
    page_url: &str,
    dest: &Path,
    settings: &DownloadSettings,
    space: &SpaceSettings,
    cancel: watch::Receiver<bool>,
    progress: &(dyn Fn(u64, Option<u64>) + Send + Sync),
) -> Result<u64, JobError> {
    let err = |class, msg: String| JobError::new(record_id, Phase::Download, class, msg);
    let page = url::Url::parse(page_url).map_err(|e| {
        err(
            ErrorClass::Permanent,
            format!(
                "invalid video playback URL {:?}: {e}",
                redact::url_text(page_url)
            ),
        )
    })?;
    let shown = redact::url_text(page_url);
    // A fresh jar per job: token cookies of one recording must not leak to another.
    let hosts = settings.hosts.clone();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                attempt.error("more than 10 redirects")
            } else if hosts.allows(attempt.url()) {
                attempt.follow()
            } else {
                let why = format!(
                    "a redirect to {} (not an allowed playback host)",
                    redact::url_text(attempt.url().as_str())
                );
                attempt.error(why)
            }
        }))
        .cookie_store(true)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("bbb-migrate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| err(ErrorClass::Transient, error_chain(&e.without_url())))?;

    let file = if is_video_url(&page) {
        page.clone()
    } else {
        let resp = client
            .get(page.clone())
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .map_err(|e| {
                err(
                    send_error_class(&e),
                    format!("video page {shown}: {}", error_chain(&e.without_url())),
                )
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(err(
                status_class(status),
                format!("video page {shown}: HTTP {status}"),
            ));
        }
        // A Scalelite token URL redirects to the playback once its cookie is set: relative
        // sources are relative to where we landed, as in a browser.
        let landed = resp.url().clone();
        let is_video = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("video/"));
        if is_video {
            landed
        } else {
            let html = resp.text().await.map_err(|e| {
                err(
                    ErrorClass::Transient,
                    format!("video page {shown}: {}", error_chain(&e.without_url())),
                )
            })?;
            let src = video_sources(&html).pop().ok_or_else(|| {
                err(
                    ErrorClass::Permanent,
                    format!("video page {shown} names no video <source>"),
                )
            })?;
            file_url(&landed, &src).map_err(|e| {
                err(
                    ErrorClass::Permanent,
                    format!("video source {src:?} on {landed}: {e}"),
                )
            })?
        }
    };

    // The page (untrusted HTML) names the file: it must point where the page itself may.
    if !settings.hosts.allows(&file) {
        return Err(err(
            ErrorClass::Permanent,
            format!(
                "video page {shown} names {}, which is not on an allowed playback host",
                redact::url_text(file.as_str())
            ),
        ));
    }
    let options = download::Options {
        attempts: settings.retries + 1,
        first_delay: settings.retry_delay,
        max_delay: Duration::from_secs(60),
        headers: Default::default(),
        request_timeout: None,
        stall: Some(settings.stall),
        // The validator is kept beside the temp file: a later run of this job resumes the bytes.
        persist_validator: true,
    };
    let mut hooks = JobHooks {
        record_id,
        space,
        cancel: cancel.clone(),
        progress,
    };
    match download::fetch_resumable(&client, &file, dest, &options, &mut hooks, Some(cancel)).await
    {
        Ok(0) => Err(err(ErrorClass::Transient, format!("{file}: empty file"))),
        Ok(size) => Ok(size),
        Err(Failure::Hook(e)) => Err(e),
        Err(Failure::Download(e)) => {
            let class = match e.kind {
                ErrorKind::Permanent => ErrorClass::Permanent,
                // A full disk is not retried here, but the job is: once space is freed.
                ErrorKind::Transient | ErrorKind::DiskFull | ErrorKind::Cancelled => {
                    ErrorClass::Transient
                }
            };
            let message = match e.kind {
                ErrorKind::Cancelled => e.message,
                _ => format!("{file}: {}", e.message),
            };
            Err(err(class, message))
        }
    }
}

/// The job's side of the shared download loop: which answers are final, the free-space gate,
/// progress, and the log line of a retry.
struct JobHooks<'a> {
    record_id: &'a str,
    space: &'a SpaceSettings,
    cancel: watch::Receiver<bool>,
    progress: &'a (dyn Fn(u64, Option<u64>) + Send + Sync),
}

impl download::Hooks for JobHooks<'_> {
    type Error = JobError;

    fn permanent(&self, status: StatusCode) -> bool {
        status_class(status) == ErrorClass::Permanent
    }

    fn room(&self, needed: u64) -> Room {
        if self.space.has_room(needed) {
            Room::Yes
        } else {
            Room::Wait
        }
    }

    fn wait_for_room(&mut self, needed: u64) -> impl Future<Output = Result<(), JobError>> + Send {
        self.space
            .wait(self.record_id, Phase::Download, needed, &mut self.cancel)
    }

    fn progress(&self, done: u64, total: Option<u64>) {
        (self.progress)(done, total);
    }

    fn retrying(&self, attempt: u32, error: &DownloadError, have: u64, delay: Duration) {
        tracing::warn!(
            record_id = self.record_id,
            "download attempt {attempt}: {}; resuming at byte {have} in {delay:?}",
            error.message
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_found_and_the_last_wins() {
        let html = r#"<html><video><SOURCE src="video-0.m4v" type="video/mp4">
            <source type="video/webm" src='video-1.webm'/><source src="poster.png">
            <track src="captions.vtt"></video></html>"#;
        assert_eq!(video_sources(html), vec!["video-0.m4v", "video-1.webm"]);
        assert!(video_sources("<html>nothing</html>").is_empty());
    }

    #[test]
    fn file_urls_follow_the_python_rules() {
        let page = url::Url::parse("https://h/playback/video/abc-1/").unwrap();
        assert_eq!(
            file_url(&page, "video-0.m4v").unwrap().as_str(),
            "https://h/playback/video/abc-1/video-0.m4v"
        );
        let tok = url::Url::parse("https://sl.example/recording/abc-1/video?token=xyz").unwrap();
        assert_eq!(
            file_url(&tok, "video-0.m4v").unwrap().as_str(),
            "https://sl.example/video/abc-1/video-0.m4v"
        );
        assert_eq!(
            file_url(&page, "https://cdn/x.m4v").unwrap().as_str(),
            "https://cdn/x.m4v"
        );
    }
}
