//! `bbb-record`: turns a BigBlueButton presentation playback (2.3+ and legacy 2.0 players), or any
//! other page, into an MP4/WebM/MKV file.
//!
//! Chromium runs on a private Xvfb display and is driven through the DevTools protocol; the
//! screen is grabbed with x11grab and every frame is placed on the playback's media clock; the
//! sound is the recording's own, cut on the same timeline, so picture and sound are in sync by
//! construction. Fast mode (`--fast`) steps the paused player from one picture change to the
//! next instead of playing it. See `recorder/design/` for the timing and output-lifecycle notes.
//!
//! Modules: [`playback`] (what a URL/page is, metadata.xml), [`fetch`] (the recording's files
//! over HTTP), [`browser`] (Chromium), [`capture`]
//! (frame sources: the display, the screencast, fast mode's stepped player), [`overlay`] (fast
//! mode's webcam area, from the recording's video), [`picture`] (decoded and compressed pictures
//! to the BGR0 the pipeline works in), [`timeline`] (media clock and output slots), [`pipeline`] (the encoding
//! thread), [`encode`] (libav encode/mux, atomic placement), [`record`] (one recording end to end),
//! [`progress`] (what the user sees), [`pulse`] (sound of other pages), [`error`] (classes, phases, exit codes),
//! [`requests`] (what the page may load; [`assets`]: the player's CDN files, bundled) and
//! [`render_watch`] (the player's failure states: a broken picture is never a success);
//! [`contact_sheet`] makes the JPEG of a finished video's frames for a person to look over.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod assets;
pub mod browser;
pub mod capture;
pub mod clock_feed;
pub mod contact_sheet;
pub mod encode;
pub mod error;
pub mod fetch;
pub mod overlay;
pub mod picture;
pub mod pipeline;
pub mod playback;
pub mod progress;
pub mod pulse;
pub mod record;
pub mod render_watch;
pub mod requests;
pub mod timeline;
