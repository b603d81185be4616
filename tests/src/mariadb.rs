//! A throw-away MariaDB server for tests: `mariadb-install-db` into a private temp directory, then
//! `mariadbd` on 127.0.0.1 with an OS-chosen port, its socket in that directory and strict SQL
//! mode (Pod's schema has no defaults; a non-strict server would hide missing columns by storing
//! zero dates). Dropping the handle stops the server (SIGTERM, a grace period, then SIGKILL) and
//! removes the directory.
//!
//! ```no_run
//! let db = fake_bbb::mariadb::MariaDb::start().unwrap();
//! db.create_database("pod").unwrap();
//! db.sql("pod", "CREATE TABLE t (x int NOT NULL)").unwrap();
//! let url = db.url("pod"); // mysql://bbb:…@127.0.0.1:PORT/pod
//! ```

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Where the binaries come from when they are missing.
const PACKAGE_HINT: &str = "MariaDB is not installed: install the Debian package `mariadb-server` (mariadbd, mariadb-install-db, mariadb)";

/// The account the tests connect with over TCP (root only exists on the socket).
const USER: &str = "bbb";
/// Test-only password of a server that listens on loopback and lives for one test.
const PASSWORD: &str = "bbb-test";

/// Strict everywhere: a missing NOT NULL column is an error, not a zero value.
const SQL_MODE: &str = "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A running MariaDB server. See the module docs.
#[derive(Debug)]
pub struct MariaDb {
    dir: PathBuf,
    socket: PathBuf,
    port: u16,
    child: Option<Child>,
}

fn find(name: &str) -> anyhow::Result<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    if let Ok(p) = which::which(name) {
        return Ok(p);
    }
    bail!("{name} not found. {PACKAGE_HINT}")
}

/// The uid/gid of `mysql`: mariadbd refuses to run as root, so as root the data directory is
/// handed to that account and the server drops to it.
fn mysql_account() -> anyhow::Result<(u32, u32)> {
    let name = c"mysql";
    // SAFETY: getpwnam reads a static buffer; we copy the two integers out immediately and no
    // other thread of the harness calls it concurrently in a way that matters for two integers.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!(
            "running as root, but there is no `mysql` account to run mariadbd as. {PACKAGE_HINT}"
        );
    }
    // SAFETY: pw is non-null and points to getpwnam's passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok((uid, gid))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", path.display()))?;
    if path.is_dir() {
        for e in std::fs::read_dir(path)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    // The OS picks the port; it is released just before mariadbd binds it, and a lost race makes
    // start() retry with a new one.
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl MariaDb {
    /// Installs a fresh data directory and starts the server; returns once it accepts queries.
    pub fn start() -> anyhow::Result<MariaDb> {
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start() {
                Ok(db) => return Ok(db),
                Err(e) => {
                    let port_race = format!("{e:#}").contains("Address already in use");
                    if !port_race {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("mariadbd did not start")))
    }

    fn try_start() -> anyhow::Result<MariaDb> {
        let install = find("mariadb-install-db")?;
        let server = find("mariadbd")?;
        find("mariadb")?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("bbb-mariadb-{}-{n}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(dir.join("data"))?;
        std::fs::create_dir_all(dir.join("tmp"))?;
        let mut db = MariaDb {
            socket: dir.join("mysqld.sock"),
            dir,
            port: free_port()?,
            child: None,
        };
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        // Not root: the server simply runs as the current user, which owns the directory.
        let user_arg = if root {
            let (uid, gid) = mysql_account()?;
            chown_tree(&db.dir, uid, gid)?;
            Some("--user=mysql")
        } else {
            None
        };
        let datadir = db.dir.join("data");
        let out = Command::new(&install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .args(user_arg)
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", install.display()))?;
        if !out.status.success() {
            bail!(
                "mariadb-install-db failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let log = db.dir.join("error.log");
        let mut cmd = Command::new(&server);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--socket={}", db.socket.display()))
            .arg(format!("--port={}", db.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!(
                "--pid-file={}",
                db.dir.join("mysqld.pid").display()
            ))
            .arg(format!("--tmpdir={}", db.dir.join("tmp").display()))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--sql-mode={SQL_MODE}"))
            .arg("--character-set-server=utf8mb4")
            .arg("--collation-server=utf8mb4_unicode_ci")
            .arg("--default-time-zone=+00:00")
            .arg("--skip-name-resolve")
            .arg("--skip-log-bin")
            .arg("--innodb-buffer-pool-size=32M")
            .args(user_arg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe. A test process that dies without running Drop
        // (SIGKILL, abort) must not leave the server running; the signal follows the spawning
        // thread, so a server shared between tests must be started from a thread that outlives them.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        db.child = Some(
            cmd.spawn()
                .with_context(|| format!("running {}", server.display()))?,
        );
        db.wait_ready(&log)?;
        db.root_sql(
            "",
            &format!(
                "CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';\n\
                 GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'127.0.0.1' WITH GRANT OPTION;"
            ),
        )?;
        Ok(db)
    }

    fn wait_ready(&mut self, log: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "mariadbd exited ({status}) before accepting connections:\n{}",
                    tail.join("\n")
                );
            }
            if self.socket.exists()
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.root_sql("", "SELECT 1").is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "mariadbd did not accept connections within 60 s (log {})",
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The unix socket (root may connect through it without a password).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `mysql://USER:PASSWORD@127.0.0.1:PORT/<db>` for sqlx.
    pub fn url(&self, db: &str) -> String {
        format!("mysql://{USER}:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty utf8mb4 database (Pod's and Moodle's charset). Names are test-chosen
    /// identifiers: quoting with backticks is enough.
    pub fn create_database(&self, name: &str) -> anyhow::Result<()> {
        if name.contains('`') {
            bail!("database name {name:?} contains a backtick");
        }
        self.root_sql(
            "",
            &format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"),
        )?;
        Ok(())
    }

    /// Runs `sql` (any number of statements, fed on stdin so large schema files fit) in `db`
    /// with the `mariadb` client; returns the tab-separated rows without a header, trimmed.
    pub fn sql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        self.root_sql(db, sql)
    }

    fn root_sql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let client = find("mariadb")?;
        let mut cmd = Command::new(client);
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .arg("--user=root")
            .arg("--batch")
            .arg("--skip-column-names")
            .arg("--default-character-set=utf8mb4");
        if !db.is_empty() {
            cmd.arg(format!("--database={db}"));
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().context("client stdin")?;
        let text = sql.to_owned();
        // Written from another thread: a large script and a large result would otherwise
        // deadlock on full pipes.
        let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
        let out = child.wait_with_output()?;
        let _ = writer.join();
        if !out.status.success() {
            bail!(
                "mariadb ({db}): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Stops the server now (Drop does the same): SIGTERM, SIGKILL if it is still running after
    /// 15 s. An error when the server could not be stopped (it may still be running); the data
    /// directory is removed only once it has stopped.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            // SAFETY: the pid is our own child, not yet reaped, so it cannot name another process.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        let pid = child.id();
                        child
                            .kill()
                            .with_context(|| format!("SIGKILL to mariadbd {pid}"))?;
                        child
                            .wait()
                            .with_context(|| format!("waiting for mariadbd {pid}"))?;
                        break;
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            let msg = format!(
                "the test MariaDB server in {} did not stop: {e:#}",
                self.dir.display()
            );
            // A second panic while a test is already failing would abort the whole binary.
            if std::thread::panicking() {
                tracing::error!("{msg}");
            } else {
                panic!("{msg}");
            }
        }
    }
}
