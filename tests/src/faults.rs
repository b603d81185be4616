//! Run-time knobs of the fake server: injected faults (delays, throttling, errors, dropped
//! connections) and behaviour switches (2.0 redirect, protected recordings). Owns only the knob
//! state; the server reads it on every request. Every setter takes effect for the next request.

use std::sync::Mutex;
use std::time::Duration;

/// Bandwidth limit applied to media bodies (`video/*` and `audio/*` responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    /// Bytes per second once the limit applies. Must be positive.
    pub bytes_per_sec: u64,
    /// The first `after_bytes` bytes of each response go out at full speed, so that a player can
    /// start and then stall in the middle.
    pub after_bytes: u64,
}

/// Shared, thread-safe fault and behaviour knobs. Get it from
/// [`FakeBbb::faults`](crate::FakeBbb::faults). Killing the whole server is
/// [`FakeBbb::die`](crate::FakeBbb::die); requests are counted by
/// [`FakeBbb::request_count`](crate::FakeBbb::request_count).
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<State>,
}

#[derive(Debug, Default, Clone)]
struct State {
    delay: Duration,
    api_delay: Duration,
    throttle: Option<Throttle>,
    fail_500: Option<CountedPrefix>,
    api_html_404: u64,
    drop_media: u64,
    short_ranges: u64,
    truncated_media: u64,
    redirect_20: bool,
    protected: bool,
    api_20_urls: bool,
    files_changed: u64,
    hidden_files: Vec<String>,
    player_knobs: Option<String>,
}

#[derive(Debug, Clone)]
struct CountedPrefix {
    remaining: u64,
    prefix: Option<String>,
}

impl Faults {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        // A panic while holding this lock can only come from a bug in a one-line closure; the
        // state stays consistent, so a poisoned lock is still usable.
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Delay every request by `delay` before it is handled (zero disables).
    pub fn set_delay(&self, delay: Duration) {
        self.with(|s| s.delay = delay);
    }

    /// Extra delay for API calls only (`/bigbluebutton/api/...`), e.g. to trip a client timeout.
    pub fn set_api_delay(&self, delay: Duration) {
        self.with(|s| s.api_delay = delay);
    }

    /// Limit media bodies to `bytes_per_sec` after the first `after_bytes` bytes of each
    /// response; `None` removes the limit.
    pub fn set_throttle(&self, throttle: Option<Throttle>) {
        self.with(|s| s.throttle = throttle.filter(|t| t.bytes_per_sec > 0));
    }

    /// Answer the next `n` requests whose path starts with `prefix` (all paths when `None`) with
    /// HTTP 500. Replaces any previous setting.
    pub fn fail_next(&self, n: u64, prefix: Option<&str>) {
        self.with(|s| {
            s.fail_500 = Some(CountedPrefix {
                remaining: n,
                prefix: prefix.map(str::to_owned),
            })
        });
    }

    /// Answer the next `n` API calls with nginx's HTML 404 page instead of XML: what BBB's proxy
    /// returns when bbb-web takes too long (bigbluebutton issue #10570).
    pub fn api_html_404_next(&self, n: u64) {
        self.with(|s| s.api_html_404 = n);
    }

    /// For the next `n` media requests, send about half of the body and then drop the
    /// connection.
    pub fn drop_media_next(&self, n: u64) {
        self.with(|s| s.drop_media = n);
    }

    /// For the next `n` media answers to a Range request (206), announce the rest of the file in
    /// Content-Range but send only half of it and end the body cleanly (chunked): a server or
    /// proxy that delivers fewer bytes than it announced, which only a size check can notice.
    /// A request that takes a pending drop (`drop_media_next`) is not shortened as well.
    pub fn short_ranges_next(&self, n: u64) {
        self.with(|s| s.short_ranges = n);
    }

    /// For the next `n` whole media answers (200, not Range), send no Content-Length, only half
    /// of the file, and end the body cleanly (chunked): a server or proxy that cuts a file
    /// without saying how long it is, which no size check can notice, only a look at the file.
    /// A request that takes a pending drop (`drop_media_next`) is not shortened as well.
    pub fn truncate_media_next(&self, n: u64) {
        self.with(|s| s.truncated_media = n);
    }

    /// Redirect `/playback/presentation/2.0/playback.html?meetingId=ID` to the 2.3 player with
    /// 301, as servers upgraded to BBB 2.3+ do.
    pub fn set_redirect_20(&self, on: bool) {
        self.with(|s| s.redirect_20 = on);
    }

    /// Scalelite-style protected recordings: recording files need the cookie set by a one-time
    /// token URL, and getRecordings returns token URLs (`/recording/<id>/<format>?token=`).
    pub fn set_protected(&self, on: bool) {
        self.with(|s| s.protected = on);
    }

    /// Make getRecordings list presentation playbacks with the legacy 2.0 URL
    /// (`/playback/presentation/2.0/playback.html?meetingId=ID`), as old servers do.
    pub fn set_api_20_urls(&self, on: bool) {
        self.with(|s| s.api_20_urls = on);
    }

    /// Make every file look replaced by a new version with the same bytes: its Last-Modified
    /// moves one second on (and so its ETag), so `If-Range` with an older validator gets the
    /// whole file.
    pub fn change_files(&self) {
        self.with(|s| s.files_changed += 1);
    }

    pub(crate) fn files_changed(&self) -> u64 {
        self.with(|s| s.files_changed)
    }

    /// Answer 404 for every recording file whose path inside its recording ends with one of
    /// `suffixes` (e.g. `svgs/slide2.svg`), as a server that lost that file would. Replaces any
    /// previous list; an empty list serves everything again.
    pub fn hide_files(&self, suffixes: &[&str]) {
        self.with(|s| s.hidden_files = suffixes.iter().map(|x| (*x).to_owned()).collect());
    }

    pub(crate) fn is_hidden(&self, file: &str) -> bool {
        self.with(|s| s.hidden_files.iter().any(|h| file.ends_with(h.as_str())))
    }

    /// Test knobs of the sample 2.3 player (samples/player/2.3/whiteboard.js), served as
    /// `/playback/presentation/2.3/knobs.json`: e.g. `{"extraFont": "NotBundled-Regular"}` or
    /// `{"failAt": 5.0, "failText": "Something went wrong"}`. `None` serves no knobs (404).
    pub fn set_player_knobs(&self, knobs: Option<serde_json::Value>) {
        self.with(|s| s.player_knobs = knobs.map(|k| k.to_string()));
    }

    pub(crate) fn player_knobs(&self) -> Option<String> {
        self.with(|s| s.player_knobs.clone())
    }

    /// Clear every fault and switch, back to a healthy plain server.
    pub fn reset(&self) {
        self.with(|s| *s = State::default());
    }

    pub(crate) fn delay(&self, is_api: bool) -> Duration {
        self.with(|s| s.delay + if is_api { s.api_delay } else { Duration::ZERO })
    }

    pub(crate) fn throttle(&self) -> Option<Throttle> {
        self.with(|s| s.throttle)
    }

    /// Consumes one injected 500 if this path matches.
    pub(crate) fn take_fail_500(&self, path: &str) -> bool {
        self.with(|s| match &mut s.fail_500 {
            Some(f)
                if f.remaining > 0 && f.prefix.as_deref().is_none_or(|p| path.starts_with(p)) =>
            {
                f.remaining -= 1;
                true
            }
            _ => false,
        })
    }

    pub(crate) fn take_api_html_404(&self) -> bool {
        self.with(|s| take_one(&mut s.api_html_404))
    }

    pub(crate) fn take_drop_media(&self) -> bool {
        self.with(|s| take_one(&mut s.drop_media))
    }

    pub(crate) fn take_short_range(&self) -> bool {
        self.with(|s| take_one(&mut s.short_ranges))
    }

    pub(crate) fn take_truncated_media(&self) -> bool {
        self.with(|s| take_one(&mut s.truncated_media))
    }

    pub(crate) fn redirect_20(&self) -> bool {
        self.with(|s| s.redirect_20)
    }

    pub(crate) fn protected(&self) -> bool {
        self.with(|s| s.protected)
    }

    pub(crate) fn api_20_urls(&self) -> bool {
        self.with(|s| s.api_20_urls)
    }
}

fn take_one(n: &mut u64) -> bool {
    if *n > 0 {
        *n -= 1;
        true
    } else {
        false
    }
}
