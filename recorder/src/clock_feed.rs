//! Where the media clock's samples come from while a recording plays: the BBB player's own time
//! events (sent by the page through the `__bbbRecord` binding, see `playback::page`), or, for
//! any other page, the wall time since it loaded. The play loop in `record` reads one feed and
//! does not care which; the stepped source of a faster-than-real-time capture is a third.

use std::time::Duration;

use chromiumoxide::cdp::js_protocol::runtime::EventBindingCalled;
use chromiumoxide::listeners::EventStream;
use futures::StreamExt;

use crate::capture::wall_now;
use crate::playback::page::{PageMessage, wall_micros};
use crate::timeline::{ClockSample, WallMicros};

/// How often the wall feed samples its clock.
const WALL_SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// What a feed reports.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    /// The media showed `media` at `wall`.
    Time(ClockSample),
    /// The media ended: the sample of its end (the duration when the page knows it).
    Ended(ClockSample),
    /// The media waits for data at this media time.
    Waiting(f64),
    /// A defect the page's render watcher saw (`kind`, `text`) at media time `at`.
    Defect { kind: String, text: String, at: f64 },
    /// The media element reported an error (network or decoding).
    MediaError,
    /// The page's event stream ended: no more time will come.
    Closed,
}

impl FeedEvent {
    /// The feed's reading of one page message.
    pub fn from_message(message: PageMessage) -> FeedEvent {
        match message {
            PageMessage::Time { w, m } => FeedEvent::Time(ClockSample {
                wall: wall_micros(w),
                media: m,
            }),
            // The end is the duration when the page gives one, never before the last time.
            PageMessage::Ended { w, m, d } => FeedEvent::Ended(ClockSample {
                wall: wall_micros(w),
                media: d.unwrap_or(m).max(m),
            }),
            PageMessage::Waiting { m } => FeedEvent::Waiting(m),
            PageMessage::Defect { kind, text, m } => FeedEvent::Defect { kind, text, at: m },
            PageMessage::Error => FeedEvent::MediaError,
        }
    }
}

/// One source of media time.
pub enum ClockFeed<'s> {
    /// The player's time events.
    Player(&'s mut EventStream<EventBindingCalled>),
    /// Media time = `start` + the wall time since `t0`, sampled every 100 ms.
    Wall {
        t0: WallMicros,
        start: f64,
        tick: tokio::time::Interval,
    },
}

impl<'s> ClockFeed<'s> {
    /// A wall-time feed whose media time is `start` now.
    pub fn wall(start: f64) -> ClockFeed<'s> {
        ClockFeed::Wall {
            t0: wall_now(),
            start,
            tick: tokio::time::interval(WALL_SAMPLE_EVERY),
        }
    }

    /// How far past the end time the loop goes on before it stops: a wall feed's samples come
    /// every 100 ms, so the encoder gets the slots of the last moments before the loop ends;
    /// the player's feed ends exactly where its media time reaches the end.
    pub fn end_margin(&self) -> f64 {
        match self {
            ClockFeed::Player(_) => 0.0,
            ClockFeed::Wall { .. } => 0.2,
        }
    }

    /// The next event (cancel-safe: a `select!` may drop it and call again).
    pub async fn next(&mut self) -> FeedEvent {
        match self {
            ClockFeed::Player(messages) => loop {
                let Some(message) = messages.next().await else {
                    return FeedEvent::Closed;
                };
                // Anything else on the binding is not ours to read.
                if let Some(m) = PageMessage::parse(&message.payload) {
                    return FeedEvent::from_message(m);
                }
            },
            ClockFeed::Wall { t0, start, tick } => {
                tick.tick().await;
                FeedEvent::Time(wall_sample(*t0, *start, wall_now()))
            }
        }
    }
}

/// The wall feed's sample at `now`.
fn wall_sample(t0: WallMicros, start: f64, now: WallMicros) -> ClockSample {
    ClockSample {
        wall: now,
        media: start + (now - t0) as f64 / 1e6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_messages_become_clock_events() {
        let time = FeedEvent::from_message(PageMessage::Time { w: 1500.25, m: 3.0 });
        assert_eq!(
            time,
            FeedEvent::Time(ClockSample {
                wall: 1_500_250,
                media: 3.0
            })
        );
        // An end with the duration known is at the duration, never before the last time shown.
        let ended = |m, d| match FeedEvent::from_message(PageMessage::Ended { w: 0.0, m, d }) {
            FeedEvent::Ended(s) => s.media,
            other => panic!("{other:?}"),
        };
        assert_eq!(ended(9.9, Some(10.0)), 10.0);
        assert_eq!(ended(10.2, Some(10.0)), 10.2);
        assert_eq!(ended(7.0, None), 7.0);
        assert_eq!(
            FeedEvent::from_message(PageMessage::Error),
            FeedEvent::MediaError
        );
    }

    #[test]
    fn the_wall_feed_counts_media_time_from_its_start() {
        let s = wall_sample(1_000_000, 4.0, 3_500_000);
        assert_eq!(s.wall, 3_500_000);
        assert!((s.media - 6.5).abs() < 1e-9, "{}", s.media);
    }

    #[tokio::test]
    async fn the_wall_feed_advances_with_the_wall_clock() {
        let mut feed = ClockFeed::wall(2.0);
        assert_eq!(feed.end_margin(), 0.2);
        let mut medias = Vec::new();
        for _ in 0..3 {
            match feed.next().await {
                FeedEvent::Time(s) => medias.push(s.media),
                other => panic!("{other:?}"),
            }
        }
        assert!(medias[0] >= 2.0 && medias[0] < 2.1, "{medias:?}");
        // Samples come every 100 ms (the first at once).
        assert!(medias[2] - medias[0] >= 0.19, "{medias:?}");
    }
}
