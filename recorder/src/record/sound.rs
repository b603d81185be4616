//! Where the recording's sound comes from and how it is cut: the recording's own media
//! (downloaded in the background while the page plays) or the page's sound through the private
//! PulseAudio server; the playback's duration from the media and metadata.xml.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use url::Url;

use bbb_common::redact;

use super::{AudioMode, Event, Player, Session};
use crate::encode::AudioCut;
use crate::error::{Context as _, Phase, RecordError};
use crate::fetch::{download, fetch_metadata};
use crate::playback;
use crate::pulse;
use crate::timeline::MediaClock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SoundPlan {
    None,
    /// The recording's own media file, cut on the media timeline.
    Source,
    /// The browser's output captured from the private PulseAudio sink.
    Pulse,
}

impl Session<'_> {
    /// Starts capturing the page's sound when the private sound server runs. Opening its monitor
    /// takes about a second: done before the page loads, so a page's first second is heard (a
    /// generic page's media time starts at its load).
    pub(super) fn start_sound_capture(
        &mut self,
        clock: &Arc<Mutex<MediaClock>>,
        start: f64,
    ) -> Result<(), RecordError> {
        if let Some(server) = self.pulse.as_deref() {
            let capture = pulse::SoundCapture::start(
                server,
                Arc::clone(clock),
                start,
                &self.work.join("sound.wav"),
            )?;
            self.sound_capture = Some(capture);
        }
        Ok(())
    }

    /// The playback's duration and where its sound comes from: for BBB, the media element's
    /// duration checked against metadata.xml and the recording's own media (its download started
    /// now); otherwise the page's media or `--duration`, and the page's sound if it can be heard.
    pub(super) async fn plan_media(
        &mut self,
        page: &chromiumoxide::Page,
        player: &Player,
    ) -> Result<(f64, SoundPlan), RecordError> {
        match &player.base {
            Some(base) => {
                let cookies = self.cookie_header(page, base).await;
                let meta = fetch_metadata(self.http, base, &cookies).await?;
                let meta_duration = meta.duration_ms.map(|ms| ms as f64 / 1000.0);
                let duration = match (player.duration, meta_duration) {
                    (Some(d), Some(m)) => {
                        if (d - m).abs() > 1.0 {
                            (self.report)(Event::Warning(format!(
                                "the media lasts {d:.3} s but metadata.xml says {m:.3} s; following the media"
                            )));
                        }
                        d
                    }
                    (Some(d), None) => d,
                    (None, Some(m)) => m,
                    (None, None) => {
                        return Err(RecordError::permanent(
                            Phase::Probe,
                            "neither the media element nor metadata.xml gives the playback's duration",
                        ));
                    }
                };
                let sound = match self.req.audio {
                    AudioMode::None => SoundPlan::None,
                    AudioMode::Pulse => SoundPlan::Pulse,
                    AudioMode::Auto | AudioMode::Source => {
                        // An earlier attempt may have downloaded it whole already.
                        if self.media_path.is_none() {
                            self.media_download =
                                Some(self.start_media_download(base, &cookies).await?);
                        }
                        SoundPlan::Source
                    }
                };
                Ok((duration, sound))
            }
            None => {
                if self.req.audio == AudioMode::Source {
                    return Err(RecordError::permanent(
                        Phase::Audio,
                        "--audio source needs a BBB playback; this page is not one",
                    ));
                }
                let duration = self.req.duration.or(player.duration).ok_or_else(|| {
                    RecordError::permanent(
                        Phase::Probe,
                        "this page is not a BBB playback and has no media with a finite duration: pass --duration",
                    )
                })?;
                let sound = match (self.req.audio, &self.pulse) {
                    (AudioMode::None, _) | (_, None) => SoundPlan::None,
                    (_, Some(_)) => SoundPlan::Pulse,
                };
                Ok((duration, sound))
            }
        }
    }

    /// Find the recording's primary media and download it into the recording's download
    /// directory in the background (real time needs it whole only when the recording ends).
    pub(super) async fn start_media_download(
        &self,
        base: &Url,
        cookies: &str,
    ) -> Result<tokio::task::JoinHandle<Result<PathBuf, RecordError>>, RecordError> {
        for candidate in playback::MEDIA_CANDIDATES {
            let url = base.join(candidate).transient(Phase::Audio, "media URL")?;
            let mut request = self.http.head(url.clone());
            if !cookies.is_empty() {
                request = request.header(reqwest::header::COOKIE, cookies);
            }
            let response = request
                .send()
                .await
                .transient(Phase::Audio, "probing the media")?;
            if response.status().is_success() {
                let dest = self.downloads.join(format!(
                    "media.{}",
                    candidate.rsplit('.').next().unwrap_or("bin")
                ));
                let http = self.http.clone();
                let cookies = cookies.to_owned();
                return Ok(tokio::spawn(async move {
                    download(&http, url, &cookies, dest).await
                }));
            }
            if response.status().is_server_error() {
                return Err(RecordError::transient(
                    Phase::Audio,
                    format!("{} answered {}", redact::url(&url), response.status()),
                ));
            }
        }
        Err(RecordError::permanent(
            Phase::Audio,
            format!(
                "the recording at {} has no webcams or audio media",
                redact::url(base)
            ),
        ))
    }

    /// The sound cut to the recorded span `start..end`: the page's capture finished, or the
    /// recording's downloaded media. `None` for a silent recording.
    pub(super) async fn finish_sound(
        &mut self,
        sound: SoundPlan,
        start: f64,
        end: f64,
    ) -> Result<Option<AudioCut>, RecordError> {
        Ok(match sound {
            SoundPlan::None => None,
            SoundPlan::Pulse => {
                let capture = self.sound_capture.take().ok_or_else(|| {
                    RecordError::transient(Phase::Audio, "the sound capture is gone")
                })?;
                let duration = end - start;
                let wav = tokio::task::spawn_blocking(move || capture.finish(duration))
                    .await
                    .map_err(|e| RecordError::transient(Phase::Audio, e.to_string()))??;
                Some(AudioCut {
                    source: wav,
                    start: 0.0,
                    duration,
                })
            }
            SoundPlan::Source => {
                let source = match (self.media_path.take(), self.media_download.take()) {
                    (Some(path), _) => path,
                    (None, Some(download)) => self.watched(download, Phase::Audio).await?,
                    (None, None) => {
                        return Err(RecordError::transient(
                            Phase::Audio,
                            "the media was not downloaded",
                        ));
                    }
                };
                Some(AudioCut {
                    source,
                    start,
                    duration: end - start,
                })
            }
        })
    }
}
