//! Lease owners: the name a worker writes into the ledger, and finding the jobs whose owner is a
//! dead process of this machine so that a rerun right after a crash (`kill -9`, OOM killer, power
//! cut of a VM) takes them over at once instead of waiting for their leases to run out.
//!
//! An owner reads `host:pid:place-nonce[:suffix]`. `host` is what `status` shows. `place` is the
//! first 8 hex digits of SHA-1(boot id + PID namespace): two containers may share a host name and
//! PIDs, and a rebooted machine reuses PIDs, but neither shares a place. Only an owner with our
//! host name *and* our place, whose PID is not a running `bbb-migrate`, is declared dead; anything
//! else is left to lease expiry, which is always correct, only slower.

use sha1::{Digest, Sha1};

use crate::ledger::{JobStore, LedgerResult};

/// This process's identity as a lease owner.
#[derive(Debug, Clone)]
pub struct OwnerName {
    host: String,
    place: String,
    nonce: String,
    /// Our `/proc/self/comm`: a PID running anything else is not one of ours.
    program: String,
}

impl OwnerName {
    /// `host` has been checked to contain no `:`.
    pub fn new(host: &str) -> Self {
        OwnerName {
            host: host.to_owned(),
            place: this_place(),
            nonce: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
            program: std::fs::read_to_string("/proc/self/comm").unwrap_or_default(),
        }
    }

    /// `host:pid:place-nonce`, to which each worker task adds `:<role>`.
    pub fn base(&self) -> String {
        format!(
            "{}:{}:{}-{}",
            self.host,
            std::process::id(),
            self.place,
            self.nonce
        )
    }

    /// The owner string of one worker task of this process (`role`: its number, `import`, ...).
    pub fn worker(&self, role: &str) -> String {
        format!("{}:{role}", self.base())
    }

    /// Whether `owner` names a process of this machine (same host name, boot and PID namespace)
    /// that is no longer running `bbb-migrate`.
    pub fn is_dead_local(&self, owner: &str) -> bool {
        let mut parts = owner.splitn(4, ':');
        let (Some(host), Some(pid), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        let Some((place, _nonce)) = id.split_once('-') else {
            return false;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            return false;
        };
        if host != self.host || place != self.place || pid == std::process::id() {
            return false;
        }
        !runs_program(pid, &self.program)
    }
}

/// Takes back, for an immediate takeover, the running jobs whose owner is a dead process of this
/// machine. Returns their record ids with the epochs of the dead leases.
pub async fn expire_dead_local_leases<S: JobStore>(
    store: &S,
    me: &OwnerName,
) -> LedgerResult<Vec<(String, i64)>> {
    let mut expired = Vec::new();
    for job in store.running().await? {
        let Some(owner) = job.owner.as_deref() else {
            continue;
        };
        if job.expired || !me.is_dead_local(owner) {
            continue;
        }
        if store
            .expire_lease(&job.recording_id, &job.target, owner, job.epoch)
            .await?
        {
            tracing::info!(
                record_id = %job.recording_id,
                "the process that held this job ({owner}) is gone: taking it over now"
            );
            expired.push((job.recording_id, job.epoch));
        }
    }
    Ok(expired)
}

/// Boot id and PID namespace, hashed: equal for two processes exactly when their PIDs mean the
/// same processes.
fn this_place() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let pid_ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if boot.is_empty() || pid_ns.is_empty() {
        // Without /proc we cannot tell; a random place never matches, so nothing is declared dead.
        return uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    }
    let digest = Sha1::digest(format!("{}\n{pid_ns}", boot.trim()));
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `pid` is a live (not zombie) process whose `comm` is `program`.
fn runs_program(pid: u32, program: &str) -> bool {
    let Ok(theirs) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
        return false;
    };
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        && let Some(state) = stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next())
        && (state == 'Z' || state == 'X')
    {
        return false;
    }
    !program.is_empty() && theirs == program
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_of_this_machine_are_recognised() {
        let me = OwnerName::new("enc1");
        let mine = me.worker("0");
        assert!(mine.starts_with(&format!("enc1:{}:", std::process::id())));
        // Ourselves: alive.
        assert!(!me.is_dead_local(&mine));
        // A PID that runs something else (PID 1 is never this test binary) or nothing: dead.
        let other = mine.replacen(&format!(":{}:", std::process::id()), ":1:", 1);
        assert!(me.is_dead_local(&other));
        let gone = mine.replacen(&format!(":{}:", std::process::id()), ":4194305:", 1);
        assert!(me.is_dead_local(&gone));
        // Another host name, another machine or namespace, or an unknown form: never declared
        // dead.
        assert!(!me.is_dead_local(&gone.replacen("enc1:", "enc2:", 1)));
        let elsewhere = OwnerName::new("enc1").worker("0");
        let (head, tail) = gone.split_at(gone.find('-').unwrap());
        let foreign = format!("{}{}{tail}", &head[..head.len() - 8], "00000000");
        assert_ne!(foreign, gone);
        assert!(!me.is_dead_local(&foreign));
        assert!(!me.is_dead_local(&elsewhere));
        assert!(!me.is_dead_local("enc1:4194305:abc:0"));
        assert!(!me.is_dead_local("w1"));
    }

    #[test]
    fn a_live_process_of_the_same_program_is_alive() {
        // `sleep` stands for another bbb-migrate of this machine.
        let me = OwnerName {
            program: "sleep\n".into(),
            ..OwnerName::new("enc1")
        };
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let theirs = me.worker("0").replacen(
            &format!(":{}:", std::process::id()),
            &format!(":{}:", child.id()),
            1,
        );
        // spawn() returns once the child's exec has begun, a moment before the kernel gives it
        // its new name.
        let comm = format!("/proc/{}/comm", child.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_to_string(&comm).ok().as_deref() != Some("sleep\n")
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let alive = !me.is_dead_local(&theirs);
        let seen = std::fs::read_to_string(format!("/proc/{}/stat", child.id()));
        child.kill().unwrap();
        // A zombie until reaped: already dead.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let zombie = me.is_dead_local(&theirs);
        child.wait().unwrap();
        let reaped = me.is_dead_local(&theirs);
        assert!(alive, "a running copy of this program is alive: {seen:?}");
        assert!(zombie, "a killed one is dead before it is reaped");
        assert!(reaped, "and after");
    }
}
