//! `fake_bbb`: a fake BigBlueButton / Scalelite server on 127.0.0.1 for the end-to-end tests of
//! `bbb-record` and `bbb-migrate`. It serves the sample recordings in their real on-disk layout,
//! the sample 2.3 and 2.0 players, the video playback format, the getRecordings API (checksum,
//! filters, pagination) and Scalelite's one-time token URLs, and it can misbehave on demand
//! (see [`Faults`]).
//!
//! Samples directory layout (fixed):
//! ```text
//! <samples>/recordings/presentation/<recordId>/metadata.xml, shapes.svg, video/webcams.webm, ...
//! <samples>/recordings/video/<recordId>/index.html, video-0.m4v, metadata.xml
//! <samples>/player/2.3/index.html (+ assets)     served at /playback/presentation/2.3/
//! <samples>/player/2.0/playback.html (+ assets)  served at /playback/presentation/2.0/
//! ```
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use fake_bbb::{ApiRecording, FakeBbb};
//! let bbb = FakeBbb::builder().samples_dir("/work/main/samples").start().await?;
//! bbb.add_recording(ApiRecording::new(ApiRecording::synthetic_id(1)));
//! let url = bbb.get_recordings_url("recordID=0"); // signed with the secret
//! bbb.faults().fail_next(2, Some("/bigbluebutton/api/"));
//! // ... run the client against `url`, then:
//! assert_eq!(bbb.request_count("/bigbluebutton/api/getRecordings"), 3);
//! # Ok(()) }
//! ```
//!
//! This crate never prints: it logs through `tracing`.
#![forbid(clippy::print_stdout, clippy::print_stderr)]

mod api;
mod catalog;
mod checksum;
mod faults;
mod files;
pub mod mariadb;
pub mod media;
pub mod postgres;
mod protect;
mod server;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use api::MAX_LIMIT;
pub use catalog::{ApiPlayback, ApiRecording, PlaybackUrl, PreviewImage};
pub use checksum::{ChecksumAlgorithm, checksum};
pub use faults::{Faults, Throttle};
pub use files::is_record_id;

use server::{Shared, lock};

/// The API example secret from BBB's documentation, also used by the spec's test vectors.
pub const DEFAULT_SECRET: &str = "639259d4-9dd8-4b25-bf01-95f9567eaf4b";

/// Configures a [`FakeBbb`] before it starts.
#[derive(Debug, Clone)]
pub struct Builder {
    samples: Option<PathBuf>,
    secret: String,
    algorithm: ChecksumAlgorithm,
    accepted: Vec<ChecksumAlgorithm>,
    port: u16,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            samples: None,
            secret: DEFAULT_SECRET.to_owned(),
            algorithm: ChecksumAlgorithm::Sha1,
            accepted: ChecksumAlgorithm::ALL.to_vec(),
            port: 0,
        }
    }
}

impl Builder {
    /// The samples directory (layout in the crate docs). Without one, only recordings added with
    /// [`FakeBbb::add_recording`] exist and every file is a 404. The server does not start
    /// when this folder cannot be listed: no `recordings/` in it, or a `metadata.xml` that is
    /// missing or malformed (the error names it); if that happens later, getRecordings answers
    /// HTTP 500 with the same message.
    pub fn samples_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.samples = Some(dir.into());
        self
    }

    /// The shared secret (default [`DEFAULT_SECRET`]). An empty secret disables the checksum
    /// check, as on BBB.
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secret = secret.into();
        self
    }

    /// The algorithm of the URLs this library signs ([`FakeBbb::get_recordings_url`]); default
    /// SHA-1. The server accepts every algorithm of [`Builder::accepted_checksums`] whatever this is.
    pub fn checksum(mut self, algorithm: ChecksumAlgorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The algorithms the server accepts, like bbb-web's `supportedChecksumAlgorithms`
    /// (default: all four).
    pub fn accepted_checksums(mut self, algorithms: &[ChecksumAlgorithm]) -> Self {
        self.accepted = algorithms.to_vec();
        self
    }

    /// The port on 127.0.0.1; 0 (the default) lets the OS choose.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    async fn bind(self) -> std::io::Result<(TcpListener, Arc<Shared>, ChecksumAlgorithm)> {
        // A samples tree the server cannot list is an error now, not an empty listing later.
        if let Some(samples) = &self.samples {
            catalog::scan_samples(samples).map_err(std::io::Error::other)?;
        }
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            samples: self.samples,
            secret: self.secret,
            accepted: self.accepted,
            base_url: format!("http://{addr}"),
            faults: Faults::default(),
            added: Mutex::new(BTreeMap::new()),
            counts: Mutex::new(HashMap::new()),
            served: Mutex::new(Vec::new()),
            protection: Default::default(),
            conns: Default::default(),
            kill: watch::channel(false).0,
        });
        tracing::info!(base_url = %shared.base_url, "fake BBB server listening");
        Ok((listener, shared, self.algorithm))
    }

    /// Starts the server on the current tokio runtime.
    pub async fn start(self) -> std::io::Result<FakeBbb> {
        let (listener, shared, algorithm) = self.bind().await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(server::run(listener, Arc::clone(&shared)));
        Ok(FakeBbb {
            shared,
            addr,
            algorithm,
            task: Some(task),
            thread: None,
        })
    }

    /// Starts the server on its own runtime thread, for synchronous tests. The thread ends when
    /// the handle is shut down or dropped.
    pub fn start_blocking(self) -> std::io::Result<FakeBbb> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("fake-bbb".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    match self.bind().await {
                        Ok((listener, shared, algorithm)) => {
                            let addr = listener.local_addr();
                            let _ = tx.send(addr.map(|a| (Arc::clone(&shared), a, algorithm)));
                            server::run(listener, shared).await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                });
            })?;
        let (shared, addr, algorithm) = rx
            .recv()
            .map_err(|_| std::io::Error::other("fake-bbb thread ended before starting"))??;
        Ok(FakeBbb {
            shared,
            addr,
            algorithm,
            task: None,
            thread: Some(thread),
        })
    }
}

/// A running fake BBB server. Dropping it kills the server.
#[derive(Debug)]
pub struct FakeBbb {
    shared: Arc<Shared>,
    addr: SocketAddr,
    algorithm: ChecksumAlgorithm,
    task: Option<tokio::task::JoinHandle<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeBbb {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The BBB API base, `http://127.0.0.1:PORT/bigbluebutton/api/`: append the call name and
    /// its signed query.
    pub fn api_url(&self) -> String {
        format!("{}/bigbluebutton/api/", self.shared.base_url)
    }

    /// The server URL as BBB admins give it (`bbb-conf --secret`): `.../bigbluebutton/`.
    pub fn server_url(&self) -> String {
        format!("{}/bigbluebutton/", self.shared.base_url)
    }

    pub fn secret(&self) -> &str {
        &self.shared.secret
    }

    /// The checksum of `call` with `query` (as it will be sent) under this server's secret and
    /// the builder's algorithm.
    pub fn sign(&self, call: &str, query: &str) -> String {
        checksum(self.algorithm, call, query, &self.shared.secret)
    }

    /// A complete, validly signed getRecordings URL for `query` (may be empty).
    pub fn get_recordings_url(&self, query: &str) -> String {
        let sum = self.sign("getRecordings", query);
        let sep = if query.is_empty() { "" } else { "&" };
        format!("{}getRecordings?{query}{sep}checksum={sum}", self.api_url())
    }

    /// The 2.3 player URL of a recording on this server.
    pub fn presentation_url(&self, record_id: &str) -> String {
        self.shared.presentation_url(record_id)
    }

    /// The 2.0 player URL of a recording on this server.
    pub fn legacy_presentation_url(&self, record_id: &str) -> String {
        format!(
            "{}/playback/presentation/2.0/playback.html?meetingId={record_id}",
            self.shared.base_url
        )
    }

    /// The video-format playback URL (with its trailing slash).
    pub fn video_url(&self, record_id: &str) -> String {
        self.shared.video_url(record_id)
    }

    /// The run-time knobs; changes apply to the next request.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Adds (or replaces) a recording that exists only in the API listing; the samples directory
    /// is never touched.
    pub fn add_recording(&self, recording: ApiRecording) {
        lock(&self.shared.added).insert(recording.record_id.clone(), recording);
    }

    pub fn add_recordings(&self, recordings: impl IntoIterator<Item = ApiRecording>) {
        let mut added = lock(&self.shared.added);
        for r in recordings {
            added.insert(r.record_id.clone(), r);
        }
    }

    /// Removes every recording added with [`FakeBbb::add_recording`].
    pub fn clear_added_recordings(&self) {
        lock(&self.shared.added).clear();
    }

    /// A fresh Scalelite-style one-time URL, `/recording/<id>/<format>?token=T`. Redeemed once,
    /// it sets the cookie that opens the recording's files (needed while
    /// [`Faults::set_protected`] is on) and redirects (302) to the playback.
    pub fn protected_token_url(&self, record_id: &str, format: &str) -> String {
        self.shared.token_url(record_id, format)
    }

    /// Requests received so far whose path starts with `path_prefix` (query strings ignored;
    /// counted before any fault applies).
    pub fn request_count(&self, path_prefix: &str) -> u64 {
        lock(&self.shared.counts)
            .iter()
            .filter(|(p, _)| p.starts_with(path_prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// Every path requested so far, with its count.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        lock(&self.shared.counts)
            .iter()
            .map(|(p, n)| (p.clone(), *n))
            .collect()
    }

    /// The file bodies answered so far whose path (below the recording or playback root, e.g.
    /// `<recordId>/video-0.m4v`) ends with `suffix`: HTTP status, first byte and whether the
    /// request carried `If-Range`, in order.
    pub fn served(&self, suffix: &str) -> Vec<(u16, u64, bool)> {
        lock(&self.shared.served)
            .iter()
            .filter(|(p, ..)| p.ends_with(suffix))
            .map(|(_, status, start, if_range)| (*status, *start, *if_range))
            .collect()
    }

    pub fn reset_request_counts(&self) {
        lock(&self.shared.counts).clear();
    }

    /// Makes the server die now: the port stops accepting and every open connection is cut
    /// mid-flight, as when a host crashes. It stays dead.
    pub fn die(&self) {
        self.shared.die();
    }

    /// Kills the server and waits until its listener is closed.
    pub async fn shutdown(mut self) {
        self.shared.die();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Kills the server and waits for it, from synchronous code.
    pub fn shutdown_blocking(mut self) {
        self.shared.die();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FakeBbb {
    fn drop(&mut self) {
        self.shared.die();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
