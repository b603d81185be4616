//! `bbb-migrate doctor`: runs every check a run depends on, in the order a run meets them (the
//! programs, the BBB API, the ledger, Pod, the directories, free space, a test recording), prints
//! one line per check (or JSON) and exits 1 when one failed. The findings and their rendering
//! are the library's (`bbb_migrator::doctor`); this module only gathers them with the same
//! lookups, clients and pre-checks the other commands use, so that doctor's "ok" means what a
//! run will meet. Writes nothing but a probe file in the claim directory, the temp dir when it
//! is missing (as `claim` makes it) and the test recording in it, removed at once.

use super::*;

use bbb_migrator::api::FetchError;
use bbb_migrator::api::xml::ResponseError;
use bbb_migrator::doctor::{self, Check, Report, host, human_bytes, test_page::TestPage};
use bbb_migrator::worker::recorder::RecorderCommand;
use bbb_migrator::worker::space;

/// The test recording's length: long enough for the encoder to settle, short enough to wait for.
const TEST_RECORDING_SECS: f64 = 5.0;
/// What the test recording may take on the wall clock: Chromium's first start on a cold host
/// takes a while, a debug build of the recorder too.
const TEST_RECORDING_TIMEOUT: Duration = Duration::from_secs(120);

/// The programs a recording needs, as found.
struct Programs {
    recorder: Option<PathBuf>,
    browser: Option<PathBuf>,
    pulseaudio: bool,
}

impl App {
    pub(super) async fn doctor(
        &self,
        json: bool,
        browser: Option<&Path>,
        skip_recording: bool,
    ) -> Res<i32> {
        let mut report = Report::new(self.secrets());
        let programs = self.doctor_programs(&mut report, browser).await;
        let api = self.doctor_api(&mut report).await;
        let ledger = self.doctor_ledger(&mut report).await;
        let registered = self.doctor_pod(&mut report).await;
        let claim_dir = self.doctor_dirs(&mut report, registered.as_deref());
        self.doctor_space(
            &mut report,
            api.as_ref(),
            ledger.as_ref(),
            claim_dir.as_ref(),
        )
        .await?;
        if let Some(l) = ledger {
            l.close().await;
        }
        if skip_recording {
            report.push(Check::skipped(
                "test-recording",
                "not made (--skip-recording)",
            ));
        } else {
            let check = self
                .doctor_recording(&programs, browser, claim_dir.as_ref())
                .await;
            report.push(check);
        }

        let mut o = out();
        if json {
            let _ = serde_json::to_writer_pretty(&mut o, &report.to_json());
            let _ = writeln!(o);
        } else {
            for l in report.lines() {
                let _ = writeln!(o, "{l}");
            }
        }
        Ok(if report.passed() {
            exit::OK
        } else {
            exit::FAILED
        })
    }

    /// Everything secret in the configuration, for [`Report::new`] to mask.
    fn secrets(&self) -> Vec<String> {
        self.s
            .secrets
            .iter()
            .map(|v| v.expose_secret().to_owned())
            .collect()
    }

    async fn doctor_programs(&self, report: &mut Report, browser: Option<&Path>) -> Programs {
        let recorder = self.s.recorder.program.clone();
        let starts = match &recorder {
            None => {
                report.push(Check::failure(
                    "recorder",
                    match &self.s.recorder_command {
                        Some(c) => format!("[recorder] command {c:?} not found"),
                        None => "bbb-record not found next to bbb-migrate nor on PATH".into(),
                    },
                    "install bbb-record beside bbb-migrate or set [recorder] command",
                ));
                false
            }
            // The recorder links libav: a missing or wrong library stops it before it can
            // print its version.
            Some(p) => {
                let check = match version("bbb-record", p).await {
                    Ok(v) => Check::ok("recorder", format!("{} ({v})", p.display())),
                    Err(e) => Check::failure(
                        "recorder",
                        e,
                        "reinstall bbb-record with its libav libraries (Debian: libavcodec, libavformat, libavfilter, libswscale, libswresample)",
                    ),
                };
                let starts = check.status == doctor::Status::Ok;
                report.push(check);
                starts
            }
        };
        if self.s.recorder.fast {
            report.push(fast_mode(recorder.as_deref().filter(|_| starts)).await);
        }

        let found = host::find_browser(browser);
        let browser_path = match found {
            Err(e) => {
                report.push(Check::failure(
                    "chromium",
                    e,
                    "install Debian's `chromium` package (or give its path with --browser)",
                ));
                None
            }
            Ok(p) => {
                report.push(match version("Chromium", &p).await {
                    Ok(v) => Check::ok("chromium", format!("{} ({v})", p.display())),
                    Err(e) => Check::failure(
                        "chromium",
                        e,
                        "reinstall Chromium: bbb-record cannot start it",
                    ),
                });
                Some(p)
            }
        };

        report.push(match host::find_in_path("Xvfb") {
            Some(p) => Check::ok("xvfb", p.display().to_string()),
            None => Check::failure(
                "xvfb",
                "Xvfb not found on PATH",
                "install Debian's `xvfb` package: bbb-record draws the browser on it",
            ),
        });

        let pulse = host::find_in_path("pulseaudio");
        report.push(match &pulse {
            Some(p) => match version("PulseAudio", p).await {
                Ok(v) => Check::ok("pulseaudio", format!("{} ({v})", p.display())),
                Err(e) => Check::warning(
                    "pulseaudio",
                    e,
                    "reinstall Debian's `pulseaudio` package (optional: BBB playbacks keep their sound without it)",
                ),
            },
            None => Check::warning(
                "pulseaudio",
                "pulseaudio not found on PATH: pages that are not BBB playbacks are recorded without sound",
                "install Debian's `pulseaudio` package (optional: BBB playbacks keep their sound without it)",
            ),
        });
        Programs {
            recorder,
            browser: browser_path,
            pulseaudio: pulse.is_some(),
        }
    }

    /// One cheap authenticated call: getRecordings of a recordID that does not exist. A right
    /// secret and checksum algorithm get an answer (with no recording), a wrong one the
    /// server's checksumError.
    async fn doctor_api(&self, report: &mut Report) -> Option<ApiClient> {
        // One retry at most: doctor answers in seconds, and a server that needs the whole
        // retry schedule of a run to answer is worth a failure line.
        let client = need(&self.s.bbb.api).cloned().and_then(|mut s| {
            s.retries = s.retries.min(1);
            ApiClient::new(s).map_err(|e| usage(format!("HTTP client: {e}")))
        });
        let client = match client {
            Ok(c) => c,
            Err(f) => {
                report.push(Check::failure(
                    "bbb-api",
                    f.message,
                    "set [bbb] base_url and secret (or BBB_URL, BBB_SECRET)",
                ));
                return None;
            }
        };
        let shown = bbb_common::redact::url_text(self.s.bbb.base_url.as_deref().unwrap_or(""));
        let probe = RecordId::parse("bbb-migrate-doctor-probe").expect("a valid record id");
        let algo = format!("{:?}", self.s.bbb.checksum).to_lowercase();
        match client.get_recording(&probe).await {
            Ok(_) => {
                report.push(Check::ok(
                    "bbb-api",
                    format!("{shown}: authenticated getRecordings answered ({algo} checksum)"),
                ));
                Some(client)
            }
            Err(e) => {
                report.push(api_failure(&shown, &algo, &e));
                None
            }
        }
    }

    async fn doctor_ledger(&self, report: &mut Report) -> Option<AnyLedger> {
        let url = self.ledger_url();
        let shown = bbb_common::redact::url_text(url);
        let hint = "check [ledger] url (or BBB_MIGRATE_LEDGER) and that its database is up and reachable from this host";
        let ledger = match check_ledger_url(url) {
            Err(f) => Err((f.message, hint)),
            Ok(()) => AnyLedger::open_read_only(url, Arc::new(SystemClock))
                .await
                .map_err(|e| {
                    // Told apart by the typed cause: no answer at all, or an answer that refused.
                    let hint = if e.is_unreachable() {
                        "the database server did not answer: check that it is up, its address \
                         in [ledger] url, and the firewall between this host and it"
                    } else {
                        hint
                    };
                    (e.to_string(), hint)
                }),
        };
        let ledger = match ledger {
            Ok(l) => l,
            Err((e, hint)) => {
                report.push(Check::failure("ledger", e, hint));
                report.push(Check::skipped(
                    "ledger-clock",
                    "not compared: the ledger could not be opened",
                ));
                return None;
            }
        };
        let not_yet =
            bbb_migrator::ledger::sqlite::sqlite_path(url).is_some_and(|p| !Path::new(&p).exists());
        report.push(match ledger.schema_versions().await {
            Err(e) => Check::failure("ledger", e.to_string(), hint),
            Ok(_) if not_yet => Check::ok(
                "ledger",
                format!("{shown}: no file yet; the first claim or import creates it"),
            ),
            Ok(v) if !v.unknown().is_empty() => Check::failure(
                "ledger",
                format!(
                    "{shown}: migration(s) {:?} were applied by a newer bbb-migrate",
                    v.unknown()
                ),
                "upgrade bbb-migrate on this host to the version the other hosts run",
            ),
            Ok(v) if v.applied.is_empty() => Check::ok(
                "ledger",
                format!("{shown}: reachable, no schema yet; the first claim or import creates it"),
            ),
            Ok(v) if !v.pending().is_empty() => Check::warning(
                "ledger",
                format!(
                    "{shown}: migration(s) {:?} not applied yet; the next claim or import applies them",
                    v.pending()
                ),
                "upgrade bbb-migrate on every host sharing this ledger before that run",
            ),
            Ok(v) => Check::ok(
                "ledger",
                format!(
                    "{shown}: reachable, migrations current ({} applied)",
                    v.applied.len()
                ),
            ),
        });
        let before = chrono::Utc::now().timestamp_millis();
        report.push(match ledger.database_now_ms().await {
            Ok(None) => Check::ok(
                "ledger-clock",
                "not needed: SQLite leases follow this host's clock",
            ),
            Ok(Some(db)) => {
                let after = chrono::Utc::now().timestamp_millis();
                let offset = doctor::clock_offset_ms(before, db, after);
                let detail = format!(
                    "this host's clock is {:+.1} s from the database's (asked in {} ms)",
                    -offset as f64 / 1000.0,
                    after - before
                );
                if offset.abs() <= doctor::CLOCK_TOLERANCE_MS {
                    Check::ok("ledger-clock", detail)
                } else {
                    Check::warning(
                        "ledger-clock",
                        detail,
                        "synchronise this host's clock (chrony or systemd-timesyncd): leases follow the database clock, and a worker that misjudges them stops late or early",
                    )
                }
            }
            Err(e) => Check::failure("ledger-clock", e.to_string(), hint),
        });
        Some(ledger)
    }

    /// With `[pod] database_url`: `claim`'s own pre-check (the recorder row and its directory),
    /// read-only. The registered directory, which the files go to, when it passed.
    async fn doctor_pod(&self, report: &mut Report) -> Option<String> {
        if self.s.pod.database_url.is_none() {
            report.push(Check::ok(
                "pod",
                "not used ([pod] database_url not set): files go to [pod] recorder_directory",
            ));
            return None;
        }
        match self.claim_registration(true).await {
            Ok(Some(r)) => {
                let rec = &r.recorder;
                let check = if rec.manager_id.is_some() {
                    Check::warning(
                        "pod",
                        format!(
                            "recorder {} ({:?}), directory {:?}: it has a manager",
                            rec.id, rec.name, rec.directory
                        ),
                        "remove the recorder's manager in Pod's admin: Pod notifies the manager instead of offering the files for manual claim",
                    )
                } else {
                    Check::ok(
                        "pod",
                        format!(
                            "recorder {} ({:?}), directory {:?}",
                            rec.id, rec.name, rec.directory
                        ),
                    )
                };
                report.push(check);
                let dir = rec.directory.clone();
                r.db.close().await;
                Some(dir)
            }
            Ok(None) => None,
            Err(f) => {
                report.push(Check::failure(
                    "pod",
                    f.message,
                    "fix [pod] database_url or recorder_id, or create the recorder in Pod's admin",
                ));
                None
            }
        }
    }

    /// The claim directory (exists, this user can create a file in it) and the temp dir
    /// (`claim`'s pre-check: outside the recorder root, on the claim directory's filesystem).
    fn doctor_dirs(&self, report: &mut Report, registered: Option<&str>) -> Option<ClaimDir> {
        let claim_dir = match self.claim_dir(registered) {
            Ok(c) => c,
            Err(f) => {
                report.push(Check::failure(
                    "claim-dir",
                    f.message,
                    "set [pod] default_recorder_path and recorder_directory",
                ));
                report.push(Check::skipped("temp-dir", "no claim directory"));
                return None;
            }
        };
        let dir = claim_dir.dir.display().to_string();
        if !claim_dir.dir.is_dir() {
            report.push(Check::failure(
                "claim-dir",
                format!("{dir} does not exist or is not a directory"),
                "create it: it must be the Pod recorder's directory under [pod] default_recorder_path",
            ));
            report.push(Check::skipped("temp-dir", "no claim directory"));
            return None;
        }
        report.push(match claim_dir.probe_writable() {
            Ok(()) => Check::ok("claim-dir", format!("{dir}: exists, writable")),
            Err(e) => Check::failure(
                "claim-dir",
                format!("{dir}: cannot create a file in it: {e}"),
                "make it writable for the user running bbb-migrate (on a writable filesystem); Pod must still read it",
            ),
        });
        let temp = claim_dir.temp_dir.display().to_string();
        let hint = "set [pod] temp_dir to a directory on the claim directory's filesystem, outside [pod] default_recorder_path";
        // `check(true)` makes the temp dir when missing, then compares the two filesystems.
        report.push(match claim_dir.check(true) {
            Err(e) => Check::failure("temp-dir", e.to_string(), hint),
            Ok(()) => Check::ok(
                "temp-dir",
                format!("{temp}: on the claim directory's filesystem, outside the recorder root"),
            ),
        });
        Some(claim_dir)
    }

    /// Free space against what the selection still needs: the worker's own estimate of each
    /// output (a video's `<size>` from getRecordings; a presentation's length at a generous
    /// bitrate, since the size the API gives for it is that of its slides) for every selected
    /// recording not yet done in the ledger, plus `[worker] free_space_margin_mb`. A warning
    /// only: the workers wait for space rather than fail.
    async fn doctor_space(
        &self,
        report: &mut Report,
        api: Option<&ApiClient>,
        ledger: Option<&AnyLedger>,
        claim_dir: Option<&ClaimDir>,
    ) -> Res<()> {
        let Some(claim_dir) = claim_dir else {
            report.push(Check::skipped("free-space", "no claim directory"));
            return Ok(());
        };
        let Some(api) = api else {
            report.push(Check::skipped(
                "free-space",
                "not estimated: the recording list cannot be fetched",
            ));
            return Ok(());
        };
        let filter = &self.s.filter;
        let fetched = match api.fetch(self.s.bbb.fetch, &CacheMode::Off).await {
            Ok(f) => f,
            Err(e) => {
                report.push(Check::failure(
                    "free-space",
                    format!("the recording list could not be fetched: {e}"),
                    "check [bbb] fetch (prefix works on BBB and Scalelite) and the server's logs",
                ));
                return Ok(());
            }
        };
        let (selected, _) = select::select(fetched.recordings, filter);
        let done = match ledger {
            Some(l) => by_recording(l.jobs().await.unwrap_or_default()),
            None => BTreeMap::new(),
        };
        let rewrite = self.s.bbb.rewrite_23;
        let todo: Vec<u64> = selected
            .iter()
            .filter(|r| {
                done.get(r.record_id.as_str())
                    .is_none_or(|j| j.state != JobState::Succeeded)
            })
            .filter_map(|r| {
                let p = r.playback(rewrite)?;
                Some(worker::estimated_bytes(
                    r,
                    &p,
                    self.s.recorder.default_length_secs,
                ))
            })
            .collect();
        let needed: u64 = todo.iter().sum();
        let margin = self.s.free_space_margin;
        let mut dirs = vec![claim_dir.dir.clone()];
        // One filesystem holds a file in the temp dir and then, linked, in the claim directory:
        // counted once.
        if !bbb_migrator::place::same_filesystem(&claim_dir.temp_dir, &claim_dir.dir)
            .unwrap_or(false)
        {
            dirs.push(claim_dir.temp_dir.clone());
        }
        let mut short = Vec::new();
        let mut seen = Vec::new();
        for d in &dirs {
            match space::free_bytes(d) {
                Ok(free) => {
                    seen.push(format!("{} free in {}", human_bytes(free), d.display()));
                    if free < needed.saturating_add(margin) {
                        short.push(d.display().to_string());
                    }
                }
                Err(e) => short.push(format!("{} ({e})", d.display())),
            }
        }
        let detail = format!(
            "{} recording(s) to do, estimated at most {} + {} margin; {}",
            todo.len(),
            human_bytes(needed),
            human_bytes(margin),
            seen.join(", ")
        );
        report.push(if short.is_empty() {
            Check::ok("free-space", detail)
        } else {
            Check::warning(
                "free-space",
                format!("{detail}: not enough in {}", short.join(", ")),
                "free some space or migrate in parts (--limit, --since/--until); workers wait for space rather than fail",
            )
        });
        Ok(())
    }

    /// A short recording of a page served by this process, through `bbb-record` supervised as
    /// the workers supervise it, into the temp dir; checks its exit, the length it says it
    /// wrote and the length of the file.
    async fn doctor_recording(
        &self,
        programs: &Programs,
        browser: Option<&Path>,
        claim_dir: Option<&ClaimDir>,
    ) -> Check {
        const NAME: &str = "test-recording";
        let Some(program) = programs.recorder.clone() else {
            return Check::skipped(NAME, "not made: bbb-record not found");
        };
        if programs.browser.is_none() {
            return Check::skipped(NAME, "not made: Chromium not found");
        }
        let page = match TestPage::start().await {
            Ok(p) => p,
            Err(e) => {
                return Check::failure(
                    NAME,
                    format!("cannot serve the test page on 127.0.0.1: {e}"),
                    "allow listening on the loopback interface",
                );
            }
        };
        // In the temp dir, where real recordings are made, when it is there.
        let work = claim_dir
            .map(|c| c.temp_dir.as_path())
            .filter(|t| t.is_dir())
            .map(|t| {
                tempfile::Builder::new()
                    .prefix("bbb-migrate-doctor-")
                    .tempdir_in(t)
            })
            .unwrap_or_else(|| {
                tempfile::Builder::new()
                    .prefix("bbb-migrate-doctor-")
                    .tempdir()
            });
        let work = match work {
            Ok(w) => w,
            Err(e) => {
                return Check::failure(
                    NAME,
                    format!("cannot make a directory for it: {e}"),
                    "check the temp dir's permissions",
                );
            }
        };
        let output = work
            .path()
            .join(format!("doctor.{}", self.s.recorder.format.ext()));
        let mut extra_args = vec![
            "--duration".to_owned(),
            TEST_RECORDING_SECS.to_string(),
            // The page's sound goes through a private PulseAudio server when there is one; the
            // recording is then made without sound, as such pages would be.
            "--audio".to_owned(),
            if programs.pulseaudio { "auto" } else { "none" }.to_owned(),
        ];
        if let Some(b) = browser {
            extra_args.push("--browser".to_owned());
            extra_args.push(b.display().to_string());
        }
        let cmd = RecorderCommand {
            program,
            timeout: TEST_RECORDING_TIMEOUT,
            grace: self.s.recorder.grace,
            accept_broken: false,
            // Fast mode is for BBB playbacks; the test page is not one.
            fast: false,
            allow_hosts: Vec::new(),
            extra_args,
        };
        let (_cancel_tx, cancel) = watch::channel(false);
        let started = std::time::Instant::now();
        let said = cmd
            .run("doctor", &page.url(), &output, cancel, &|_| {}, &|| None)
            .await;
        let took = started.elapsed();
        drop(page);
        let hint = "run bbb-record by hand on any page with -v (e.g. `bbb-record https://example.org --duration 5 -o /tmp/t.mp4 -v`) to see why";
        let said = match said {
            Ok(s) => s,
            Err(e) => return Check::failure(NAME, e.message, hint),
        };
        let bytes = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
        let file_secs = match bbb_migrator::media::duration(&output) {
            Ok(d) => d,
            Err(e) => {
                return Check::failure(NAME, format!("the file is not whole: {e}"), hint);
            }
        };
        let wrote = said.done_secs.unwrap_or(file_secs);
        if !bbb_migrator::media::matches(TEST_RECORDING_SECS, file_secs)
            || !bbb_migrator::media::matches(TEST_RECORDING_SECS, wrote)
        {
            return Check::failure(
                NAME,
                format!(
                    "{TEST_RECORDING_SECS} s asked, bbb-record says {wrote:.2} s, the file lasts {file_secs:.2} s"
                ),
                hint,
            );
        }
        // Only the container's length is read here (the migrator does not decode media), so
        // nothing is claimed of the sound.
        Check::ok(
            NAME,
            format!(
                "{file_secs:.2} s of a local page recorded in {:.1} s ({}, {})",
                took.as_secs_f64(),
                human_bytes(bytes),
                self.s.recorder.format.ext(),
            ),
        )
    }
}

/// `program --version`, off the runtime's threads.
async fn version(label: &'static str, program: &Path) -> Result<String, String> {
    let program = program.to_path_buf();
    tokio::task::spawn_blocking(move || host::version(label, &program))
        .await
        .map_err(|e| e.to_string())?
}

/// With `[recorder] fast = true` every presentation is recorded with `bbb-record --fast`: a
/// recorder older than fast mode refuses that command line (exit 2), so every presentation job
/// would fail. Its `--help` says whether it has the option. `recorder`: the configured
/// `bbb-record`, when it was found and starts (else the `recorder` check has already failed).
async fn fast_mode(recorder: Option<&Path>) -> Check {
    const NAME: &str = "recorder-fast";
    const HINT: &str =
        "upgrade bbb-record to a version with fast mode, or set [recorder] fast = false";
    let Some(program) = recorder else {
        return Check::skipped(NAME, "not checked: bbb-record does not start");
    };
    let asked = {
        let program = program.to_path_buf();
        tokio::task::spawn_blocking(move || host::help_lists("bbb-record", &program, "--fast"))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
    };
    match asked {
        Ok(true) => Check::ok(
            NAME,
            format!(
                "{} accepts --fast ([recorder] fast = true)",
                program.display()
            ),
        ),
        Ok(false) => Check::failure(
            NAME,
            format!(
                "{} does not accept --fast (its --help does not list it): with [recorder] fast = true every presentation would fail",
                program.display()
            ),
            HINT,
        ),
        Err(e) => Check::failure(NAME, e, HINT),
    }
}

/// What a failed getRecordings call says about the setup.
fn api_failure(shown: &str, algo: &str, e: &FetchError) -> Check {
    const NAME: &str = "bbb-api";
    match e {
        FetchError::Response {
            source: ResponseError::Failed { key, .. },
            ..
        } if key == "checksumError" => Check::failure(
            NAME,
            format!("{shown}: checksumError: wrong secret or checksum algorithm ({algo})"),
            "set [bbb] secret to the server's (`bbb-conf --secret`) and [bbb] checksum to its algorithm",
        ),
        FetchError::Http { .. } => Check::failure(
            NAME,
            format!("{shown}: unreachable: {e}"),
            "check [bbb] base_url, DNS, the firewall and the server",
        ),
        FetchError::Status { .. } | FetchError::Response { .. } => Check::failure(
            NAME,
            format!("{shown}: {e}"),
            "check that [bbb] base_url is the server's API URL (https://HOST/bigbluebutton/)",
        ),
        FetchError::Cache { .. } => Check::failure(NAME, e.to_string(), "run without --use-cache"),
    }
}
