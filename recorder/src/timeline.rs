//! The media timeline: turns capture instants (wall clock) into playback media time, and fills the
//! constant-rate output slots from frames stamped with media time.
//!
//! Design (see `recorder/design/timing.md`): the player reports its media clock (`currentTime`)
//! many times a second, each report stamped in the page with the wall clock. A frame grabbed at
//! wall time `w` shows what the player drew for media time `m(w - L)`, where `L` is the delay
//! between the player's redraw and the pixels reaching the X server. Between two reports the media
//! clock advances at the playback rate but never beyond the next report, so a stall (buffering)
//! holds the media time instead of drifting. Output frame `k` is the captured frame whose media
//! time is nearest to `start + k / fps`.
//!
//! Pure logic, no I/O: unit-tested here, driven by `record`.

use std::collections::VecDeque;

/// Microseconds since the Unix epoch (the clock x11grab and the page's `Date.now()` share).
pub type WallMicros = i64;

/// One report of the player's media clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockSample {
    pub wall: WallMicros,
    pub media: f64,
}

/// What the media time was at a given wall instant, as far as the reports received tell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MediaTime {
    /// Known: the media time in seconds.
    At(f64),
    /// Not decidable yet: wait for a later report (or for the instant to age).
    Pending,
    /// Before the first report: the playback had not started.
    Before,
}

/// The player's media clock as reported, with the capture latency correction.
#[derive(Debug)]
pub struct MediaClock {
    samples: VecDeque<ClockSample>,
    latency: WallMicros,
    /// How far the clock may run past the last report when no later report exists and the
    /// instant is older than `settle` (the player reports every 1/f s while it plays).
    max_extrapolation: WallMicros,
    settle: WallMicros,
    /// Per reader (the picture pipeline, the sound capture): the instant before which it will ask
    /// nothing more. Reports are forgotten once every reader is past them, so a long recording's
    /// clock holds seconds of reports, not hours (about 30 a second).
    readers: Vec<WallMicros>,
}

/// One consumer of the clock's answers, registered with [`MediaClock::reader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockReader(usize);

impl MediaClock {
    /// `latency_us`: redraw-to-screen delay to subtract from capture instants; `report_interval_us`:
    /// the player's redraw period (1/f).
    pub fn new(latency_us: WallMicros, report_interval_us: WallMicros) -> Self {
        MediaClock {
            samples: VecDeque::new(),
            latency: latency_us,
            max_extrapolation: report_interval_us * 3 / 2,
            settle: 1_000_000,
            readers: Vec::new(),
        }
    }

    /// The clock of a stepped capture (fast mode), whose frames are stamped with their media
    /// time in microseconds instead of a wall instant: the identity over `start..end`, with
    /// nothing pending and no latency.
    pub fn stepped(start: f64, end: f64) -> Self {
        let mut clock = MediaClock::new(0, 33_333);
        let at = |media: f64| (media * 1e6).round() as WallMicros;
        clock.push(ClockSample {
            wall: at(start),
            media: start,
        });
        // One second past the end, so the last slots are not extrapolated.
        clock.push(ClockSample {
            wall: at(end + 1.0),
            media: end + 1.0,
        });
        clock
    }

    /// Register a consumer. Until it calls [`MediaClock::done_before`], nothing is forgotten.
    pub fn reader(&mut self) -> ClockReader {
        self.readers.push(WallMicros::MIN);
        ClockReader(self.readers.len() - 1)
    }

    /// `reader` will ask about no instant before `wall` any more (grab instants for
    /// [`MediaClock::media_at`], plain instants for [`MediaClock::media_at_instant`]). Reports
    /// that no reader can need are forgotten.
    pub fn done_before(&mut self, reader: ClockReader, wall: WallMicros) {
        let mark = &mut self.readers[reader.0];
        *mark = (*mark).max(wall);
        if let Some(&oldest) = self.readers.iter().min() {
            self.prune_before(oldest);
        }
    }

    /// Number of reports held.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.samples.len()
    }

    /// Add a report. Reports whose media time does not increase are dropped (the player repeats
    /// the same time for its first samples after play, and while it stalls), except that a
    /// stall's first report is kept so the held time starts from the right instant.
    pub fn push(&mut self, sample: ClockSample) {
        if let Some(last) = self.samples.back()
            && (sample.wall < last.wall || sample.media <= last.media)
        {
            return;
        }
        self.samples.push_back(sample);
    }

    /// The latest media time reported.
    pub fn latest(&self) -> Option<ClockSample> {
        self.samples.back().copied()
    }

    /// The media time shown by a frame grabbed at `grab` (wall clock), seen from wall time `now`.
    pub fn media_at(&self, grab: WallMicros, now: WallMicros) -> MediaTime {
        self.media_at_instant(grab - self.latency, now)
    }

    /// The media time at wall instant `w` itself (no capture latency: sound is stamped when it
    /// reached the sink), seen from wall time `now`.
    pub fn media_at_instant(&self, w: WallMicros, now: WallMicros) -> MediaTime {
        // Index of the first report strictly after w.
        let after = self.samples.partition_point(|s| s.wall <= w);
        if after == 0 {
            return MediaTime::Before;
        }
        let s1 = self.samples[after - 1];
        let elapsed = (w - s1.wall) as f64 / 1e6;
        match self.samples.get(after) {
            Some(s2) => MediaTime::At((s1.media + elapsed).min(s2.media)),
            None if now - w >= self.settle => {
                // No report since: the playback stalled (or ended) after s1.
                let run = (w - s1.wall).min(self.max_extrapolation) as f64 / 1e6;
                MediaTime::At(s1.media + run)
            }
            None => MediaTime::Pending,
        }
    }

    /// Forget reports that no question about an instant at or after `wall` needs, keeping a margin
    /// of the capture latency plus one second and always the last two reports.
    fn prune_before(&mut self, wall: WallMicros) {
        if wall == WallMicros::MIN {
            return;
        }
        while self.samples.len() > 2 && self.samples[1].wall < wall - self.latency - 1_000_000 {
            self.samples.pop_front();
        }
    }
}

/// Fills constant-rate output slots `start + k/fps` with the captured frame nearest in media time.
#[derive(Debug)]
pub struct SlotFiller<F> {
    fps: u32,
    start: f64,
    next_slot: u64,
    last_slot: Option<u64>,
    previous: Option<(f64, F)>,
}

impl<F> SlotFiller<F> {
    pub fn new(fps: u32, start: f64) -> Self {
        SlotFiller {
            fps,
            start,
            next_slot: 0,
            last_slot: None,
            previous: None,
        }
    }

    /// Stop emitting at this many slots (known once the end media time is known).
    pub fn set_total_slots(&mut self, total: u64) {
        self.last_slot = Some(total);
    }

    /// Number of slots the interval `[start, end)` holds at this frame rate.
    pub fn slots_for(&self, end: f64) -> u64 {
        ((end - self.start) * self.fps as f64).round().max(0.0) as u64
    }

    pub fn emitted(&self) -> u64 {
        self.next_slot
    }

    /// Whether a frame has been offered: the remaining slots can be filled with it.
    pub fn has_frame(&self) -> bool {
        self.previous.is_some()
    }

    fn slot_time(&self, slot: u64) -> f64 {
        self.start + slot as f64 / self.fps as f64
    }

    fn room(&self) -> bool {
        self.last_slot.is_none_or(|last| self.next_slot < last)
    }

    /// Offer a frame with its media time; `emit(slot, frame)` is called for every slot that is
    /// now decided (it may be the previous frame, emitted several times to hold it).
    pub fn push(&mut self, media: f64, frame: F, mut emit: impl FnMut(u64, &F)) {
        let media = match &self.previous {
            Some((previous, _)) if media < *previous => *previous,
            _ => media,
        };
        if let Some((previous_media, previous_frame)) = &self.previous {
            let boundary = (previous_media + media) / 2.0;
            while self.room() && self.slot_time(self.next_slot) < boundary {
                emit(self.next_slot, previous_frame);
                self.next_slot += 1;
            }
        }
        self.previous = Some((media, frame));
    }

    /// Emit the remaining slots up to `total` with the last frame; returns the slots emitted.
    pub fn finish(&mut self, total: u64, mut emit: impl FnMut(u64, &F)) -> u64 {
        if let Some((_, frame)) = &self.previous {
            while self.next_slot < total {
                emit(self.next_slot, frame);
                self.next_slot += 1;
            }
        }
        self.next_slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(samples: &[(i64, f64)]) -> MediaClock {
        let mut c = MediaClock::new(0, 33_333);
        for &(wall, media) in samples {
            c.push(ClockSample { wall, media });
        }
        c
    }

    #[test]
    fn reports_are_forgotten_once_every_reader_is_past_them() {
        let mut c = MediaClock::new(40_000, 33_333);
        let (picture, sound) = (c.reader(), c.reader());
        // An hour of reports at 30 a second, both readers following 2 s behind.
        let step = 33_333;
        for k in 0..108_000i64 {
            let wall = 1_000_000 + k * step;
            c.push(ClockSample {
                wall,
                media: k as f64 * step as f64 / 1e6,
            });
            if k % 30 == 0 && k > 60 {
                c.done_before(picture, wall - 2_000_000);
                c.done_before(sound, wall - 2_000_000);
            }
        }
        assert!(c.held() < 200, "{} reports held", c.held());
        // What the readers may still ask is answered as before pruning.
        let last = 1_000_000 + 107_999 * step;
        let ask = last - 2_000_000;
        match c.media_at(ask, last + 5_000_000) {
            MediaTime::At(m) => {
                let exact = (ask - 40_000 - 1_000_000) as f64 / 1e6;
                assert!((m - exact).abs() < 1e-3, "{m} against {exact}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_reader_that_has_not_moved_keeps_every_report() {
        let mut c = MediaClock::new(0, 33_333);
        let (picture, _sound) = (c.reader(), c.reader());
        for k in 0..1000i64 {
            c.push(ClockSample {
                wall: 1_000_000 + k * 10_000,
                media: k as f64 / 100.0,
            });
        }
        c.done_before(picture, 11_000_000);
        assert_eq!(c.held(), 1000);
        assert!(matches!(
            c.media_at(1_005_000, 20_000_000),
            MediaTime::At(m) if (m - 0.005).abs() < 1e-9
        ));
    }

    #[test]
    fn media_time_advances_between_reports() {
        let c = clock(&[(1_000_000, 0.0), (1_100_000, 0.1), (1_200_000, 0.2)]);
        assert_eq!(c.media_at(999_999, 5_000_000), MediaTime::Before);
        match c.media_at(1_050_000, 5_000_000) {
            MediaTime::At(m) => assert!((m - 0.05).abs() < 1e-9),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stall_holds_media_time_instead_of_drifting() {
        // Reports at 0.0, 0.1, then the player stalls for 2 s of wall time, then resumes at 0.1.
        let c = clock(&[
            (1_000_000, 0.0),
            (1_100_000, 0.1),
            (1_100_000 + 33_000, 0.1), // repeated: dropped
            (3_100_000, 0.133),
            (3_133_000, 0.166),
        ]);
        for wall in [1_500_000, 2_000_000, 3_000_000] {
            match c.media_at(wall, 10_000_000) {
                MediaTime::At(m) => assert!(m <= 0.133 + 1e-9, "drifted to {m} at {wall}"),
                other => panic!("{other:?}"),
            }
        }
        // Playing again: between the two reports after the stall.
        match c.media_at(3_120_000, 10_000_000) {
            MediaTime::At(m) => assert!((m - 0.153).abs() < 1e-9, "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn recent_frames_wait_for_the_next_report() {
        let c = clock(&[(1_000_000, 0.0)]);
        assert_eq!(c.media_at(1_010_000, 1_020_000), MediaTime::Pending);
        // Aged past the settle time with no report: extrapolate at most 1.5 report intervals.
        match c.media_at(1_500_000, 3_000_000) {
            MediaTime::At(m) => assert!((m - 0.05).abs() < 1e-3, "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn latency_shifts_grab_instants_back() {
        let mut c = MediaClock::new(40_000, 33_333);
        c.push(ClockSample {
            wall: 1_000_000,
            media: 1.0,
        });
        c.push(ClockSample {
            wall: 2_000_000,
            media: 2.0,
        });
        match c.media_at(1_540_000, 9_000_000) {
            MediaTime::At(m) => assert!((m - 1.5).abs() < 1e-9),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stepped_clock_reads_frame_stamps_as_media_time() {
        let c = MediaClock::stepped(2.5, 10.0);
        assert_eq!(c.media_at(2_499_999, 0), MediaTime::Before);
        for (stamp, media) in [
            (2_500_000, 2.5),
            (2_533_333, 2.533_333),
            (9_966_667, 9.966_667),
        ] {
            match c.media_at(stamp, 0) {
                MediaTime::At(m) => assert!((m - media).abs() < 1e-9, "{m} for {stamp}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn slots_take_the_nearest_frame_and_hold_the_last() {
        let mut filler = SlotFiller::new(10, 0.0);
        let mut out = Vec::new();
        // Frames at media 0.0, 0.04 (nearest to slot 0), 0.26 (a gap: slots 1..2 hold 0.04 or take 0.26).
        for (m, id) in [(0.0, 'a'), (0.04, 'b'), (0.26, 'c')] {
            filler.push(m, id, |slot, f| out.push((slot, *f)));
        }
        let total = filler.slots_for(0.5);
        assert_eq!(total, 5);
        filler.finish(total, |slot, f| out.push((slot, *f)));
        // slot 0 (0.0): a vs b boundary 0.02 -> a; slot 1 (0.1): boundary b|c = 0.15 -> b;
        // slot 2 (0.2) -> c; slots 3, 4 hold c.
        assert_eq!(out, vec![(0, 'a'), (1, 'b'), (2, 'c'), (3, 'c'), (4, 'c')]);
    }

    #[test]
    fn slot_total_caps_emission() {
        let mut filler = SlotFiller::new(10, 5.0);
        filler.set_total_slots(2);
        let mut n = 0;
        for i in 0..20 {
            filler.push(5.0 + i as f64 * 0.05, i, |_, _| n += 1);
        }
        assert_eq!(n, 2);
        assert_eq!(filler.finish(2, |_, _| n += 1), 2);
    }
}
