//! A throw-away PostgreSQL server for tests: `initdb` into a fresh directory, then the server on
//! 127.0.0.1 with a port chosen by the OS and its unix socket inside that directory, trust
//! authentication for the superuser `bbb`. Uses Debian's binaries (`/usr/lib/postgresql/<ver>/bin`,
//! package `postgresql`; `PG_BIN_DIR` overrides). PostgreSQL refuses to run as root, so under
//! root the server and `initdb` run as the `postgres` system user (`runuser`) and the directory
//! is given to that user. Dropping the handle stops the server (fast shutdown, then SIGKILL) and
//! removes the directory.
//!
//! ```no_run
//! use fake_bbb::postgres::Postgres;
//! let pg = Postgres::start().expect("postgres");
//! pg.create_database("ledger").unwrap();
//! let url = pg.url("ledger"); // postgres://bbb@127.0.0.1:PORT/ledger
//! assert_eq!(pg.psql("ledger", "SELECT 1").unwrap(), "1");
//! pg.restart().unwrap(); // same port, same data: clients must reconnect
//! ```

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The superuser created by `initdb`; trust authentication, so URLs carry no password.
pub const SUPERUSER: &str = "bbb";

/// A running PostgreSQL server owned by the test. See the module docs.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    root: PathBuf,
    port: u16,
    as_postgres: bool,
}

fn bin_dir() -> io::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let ver = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((ver, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "PostgreSQL server binaries not found in /usr/lib/postgresql/<version>/bin: \
             install the Debian package `postgresql` (or set PG_BIN_DIR)",
        )
    })
}

fn check(what: &str, out: Output) -> io::Result<Output> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(io::Error::other(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        )))
    }
}

fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

impl Postgres {
    /// Creates the cluster and starts the server. Errors name what is missing or what failed
    /// (with the server log).
    pub fn start() -> io::Result<Postgres> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let bin = bin_dir()?;
        // The effective uid of this process is the owner of /proc/self.
        let as_postgres = std::fs::metadata("/proc/self")?.uid() == 0;
        let root = std::env::temp_dir().join(format!(
            "bbb-pg-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(root.join("sock"))?;
        let mut pg = Postgres {
            bin,
            root,
            port: 0,
            as_postgres,
        };
        if as_postgres {
            check(
                "chown postgres",
                Command::new("chown")
                    .args(["-R", "postgres:"])
                    .arg(&pg.root)
                    .output()?,
            )?;
        }
        let data = pg.root.join("data");
        check(
            "initdb",
            pg.server_cmd("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"])
                .output()?,
        )?;
        // Another process may grab the port between our probe and the server's bind: retry.
        let mut last = None;
        for _ in 0..5 {
            pg.port = free_port()?;
            match pg.pg_ctl_start() {
                Ok(()) => return Ok(pg),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("postgres did not start")))
    }

    fn server_cmd(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn pg_ctl_start(&self) -> io::Result<()> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.root.join("sock").display()
        );
        let out = self
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(self.root.join("data"))
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "60", "-o", &opts, "start"])
            .output()?;
        check("pg_ctl start", out).map(|_| ()).map_err(|e| {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            io::Error::other(format!("{e}\nserver log:\n{log}"))
        })
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster directory (data, socket and log inside).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// `postgres://bbb@127.0.0.1:PORT/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `sql` in database `db` with psql (stop on the first error) and returns its unaligned,
    /// tuples-only output, trimmed.
    pub fn psql(&self, db: &str, sql: &str) -> io::Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", SUPERUSER, "-d", db, "-X", "-q", "-A", "-t"])
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()?;
        let out = check("psql", out)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Creates database `name` (letters, digits and `_` only).
    pub fn create_database(&self, name: &str) -> io::Result<()> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("database name {name:?}: use letters, digits and _"),
            ));
        }
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))
            .map(|_| ())
    }

    /// Stops the server: fast shutdown (clients are disconnected), SIGKILL if it does not stop
    /// within 20 s. The data stays; [`Postgres::restart`] starts it again.
    pub fn stop(&self) -> io::Result<()> {
        let data = self.root.join("data");
        if !data.join("postmaster.pid").exists() {
            return Ok(());
        }
        let out = self
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-m", "fast", "-w", "-t", "20", "stop"])
            .output()?;
        if out.status.success() {
            return Ok(());
        }
        self.kill()
    }

    /// SIGKILL to the postmaster (a crash); its children exit when they notice.
    pub fn kill(&self) -> io::Result<()> {
        let pidfile = self.root.join("data").join("postmaster.pid");
        let Ok(text) = std::fs::read_to_string(&pidfile) else {
            return Ok(());
        };
        let pid = text.lines().next().unwrap_or("").trim().to_owned();
        if pid.is_empty() {
            return Ok(());
        }
        let _ = Command::new("kill").args(["-KILL", &pid]).status()?;
        // Gone, or a zombie waiting for whoever adopted it (pg_ctl's daemon is not our child).
        let stat = PathBuf::from(format!("/proc/{pid}/stat"));
        let dead = || {
            std::fs::read_to_string(&stat).map_or(true, |s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
        };
        for _ in 0..100 {
            if dead() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(io::Error::other(format!(
            "postmaster {pid} survived SIGKILL"
        )))
    }

    /// Stops the server and starts it again on the same port with the same data.
    pub fn restart(&self) -> io::Result<()> {
        self.stop()?;
        self.pg_ctl_start()
    }
}

impl Drop for Postgres {
    /// Stops the server, and fails the test when it cannot: a server left running would hold
    /// its port and memory for the rest of the run and hide a broken harness. Its directory is
    /// kept then (the server log is in it).
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            let msg = format!(
                "the test PostgreSQL server in {} did not stop: {e}",
                self.root.display()
            );
            // A second panic while a test is already failing would abort the whole binary.
            if std::thread::panicking() {
                tracing::error!("{msg}");
            } else {
                panic!("{msg}");
            }
            return;
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
