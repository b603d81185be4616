//! The claim directory (`<default_recorder_path>/<recorder directory>/`) where Pod's
//! `recorder checkDirectory` cron picks finished outputs up, with Python-compatible names. Owns
//! the output lifecycle of design/output-lifecycle.md: temp file outside the watched tree on the
//! same filesystem, fsync, no-overwrite link into place, directory fsync. Never decides retries.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bbb_common::durable;

use crate::recording::RecordId;

/// How many numbered copies of one recording `claim --force` may place before giving up.
const MAX_COPIES: u32 = 99;

/// The Pod recorder directory a claim places files into, and its private temp directory.
#[derive(Debug, Clone)]
pub struct ClaimDir {
    /// `<default_recorder_path>/<directory>`: watched by Pod's `recorder checkDirectory` cron.
    pub dir: PathBuf,
    /// Where partial files live: outside `default_recorder_path` (the cron walks it recursively)
    /// but on the same filesystem, so the final step is an atomic link.
    pub temp_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("claim directory {} does not exist; create it (it must match the Pod recorder's directory)", .0.display())]
    MissingDir(PathBuf),
    #[error("temp directory {}: {}", .0.display(), .1)]
    TempDir(PathBuf, io::Error),
    #[error("temp directory {} and claim directory {} are on different filesystems: the final rename would not be atomic; set [pod] temp_dir", .0.display(), .1.display())]
    CrossDevice(PathBuf, PathBuf),
    #[error("temp directory {} is inside the recorder root {}, which Pod's cron walks: it would see partial files; set [pod] temp_dir outside it", .0.display(), .1.display())]
    TempInsideRoot(PathBuf, PathBuf),
    #[error("{} already exists", .0.display())]
    Exists(PathBuf),
    #[error("{}: {}", .0.display(), .1)]
    Io(PathBuf, io::Error),
}

/// Whether two paths are on one filesystem (same `st_dev`), so that a link from one to the
/// other is atomic.
pub fn same_filesystem(a: &Path, b: &Path) -> io::Result<bool> {
    Ok(same_device(&std::fs::metadata(a)?, &std::fs::metadata(b)?))
}

fn same_device(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.dev() == b.dev()
}

/// The marker of every partial file (`<recordID>.<epoch>.partial.<ext>`, plus whatever suffix the
/// recorder adds for its own temp file); the stale-file sweep only ever removes such names.
pub const PARTIAL: &str = "partial";

impl ClaimDir {
    /// Default temp dir: `<parent of default_recorder_path>/.bbb-migrate-tmp`.
    pub fn default_temp_dir(default_recorder_path: &Path) -> PathBuf {
        let root = default_recorder_path
            .canonicalize()
            .unwrap_or_else(|_| default_recorder_path.to_path_buf());
        root.parent()
            .unwrap_or(Path::new("/"))
            .join(".bbb-migrate-tmp")
    }

    /// Pre-check (Python `check_system`): the directory exists, the temp dir can be made and is on
    /// the same filesystem.
    pub fn check(&self, create_temp: bool) -> Result<(), PlaceError> {
        let meta =
            std::fs::metadata(&self.dir).map_err(|_| PlaceError::MissingDir(self.dir.clone()))?;
        if !meta.is_dir() {
            return Err(PlaceError::MissingDir(self.dir.clone()));
        }
        // The recorder root (default_recorder_path): Pod's cron looks into its directories.
        // Compared as written and, once the temp dir exists, with symlinks resolved.
        let root = self.dir.parent().unwrap_or(Path::new("/"));
        let temp_inside_root = || {
            self.temp_dir.starts_with(root)
                || matches!(
                    (self.temp_dir.canonicalize(), root.canonicalize()),
                    (Ok(t), Ok(r)) if t.starts_with(&r)
                )
        };
        let inside_err = || PlaceError::TempInsideRoot(self.temp_dir.clone(), root.to_path_buf());
        if temp_inside_root() {
            return Err(inside_err());
        }
        if create_temp {
            std::fs::create_dir_all(&self.temp_dir)
                .map_err(|e| PlaceError::TempDir(self.temp_dir.clone(), e))?;
            if temp_inside_root() {
                return Err(inside_err());
            }
        }
        if let Ok(t) = std::fs::metadata(&self.temp_dir)
            && !same_device(&t, &meta)
        {
            return Err(PlaceError::CrossDevice(
                self.temp_dir.clone(),
                self.dir.clone(),
            ));
        }
        Ok(())
    }

    /// Whether this user can create (and remove) a file in the claim directory, as the final
    /// link of every placement must: a probe file is created exclusively and removed at once.
    /// Permission bits are not read instead, because root ignores them while a read-only mount,
    /// an immutable directory or a special filesystem refuses even root.
    pub fn probe_writable(&self) -> io::Result<()> {
        let probe = self
            .dir
            .join(format!(".bbb-migrate-probe.{}", std::process::id()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)?;
        std::fs::remove_file(&probe)
    }

    /// `<temp>/<recordID>.<epoch>.partial/`: the private directory of one lease. The recorder
    /// writes its own temporary files next to its output, so they land here too and go with the
    /// directory, even when the recorder was killed and could not clean up. The epoch makes it
    /// unique per lease: a stale writer from an older epoch never touches the current attempt.
    pub fn job_dir(&self, id: &RecordId, epoch: i64) -> PathBuf {
        self.temp_dir.join(format!("{id}.{epoch}.{PARTIAL}"))
    }

    /// The output file inside the job directory; the extension stays last because `bbb-record`
    /// chooses the container from it.
    pub fn temp_path(&self, id: &RecordId, epoch: i64, ext: &str) -> PathBuf {
        self.job_dir(id, epoch).join(format!("{id}.{ext}"))
    }

    /// Moves the download of an earlier lease of this job (`old`, whose holder is known to be
    /// dead) into the job directory of lease `new`, with its sidecar files (`<file>.*`), so that
    /// it resumes where it stopped; the old directory is removed. Returns the bytes taken over.
    pub fn adopt(&self, id: &RecordId, old: i64, new: i64, ext: &str) -> io::Result<u64> {
        let from_dir = self.job_dir(id, old);
        let file = self.temp_path(id, old, ext);
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let mut taken = 0;
        if let (Ok(meta), Some(name)) = (std::fs::metadata(&file), name) {
            for entry in std::fs::read_dir(&from_dir)? {
                let entry = entry?;
                let n = entry.file_name().to_string_lossy().into_owned();
                if n == name || n.starts_with(&format!("{name}.")) {
                    std::fs::rename(entry.path(), self.job_dir(id, new).join(&n))?;
                }
            }
            taken = meta.len();
        }
        match std::fs::remove_dir_all(&from_dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(taken),
        }
    }

    /// Creates the (empty) job directory.
    pub fn prepare(&self, id: &RecordId, epoch: i64) -> Result<PathBuf, PlaceError> {
        let dir = self.job_dir(id, epoch);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| PlaceError::Io(dir.clone(), e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| PlaceError::Io(dir.clone(), e))?;
        Ok(dir)
    }

    /// Removes the job directory and everything in it.
    pub fn discard(&self, id: &RecordId, epoch: i64) {
        let dir = self.job_dir(id, epoch);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(record_id = %id, "removing {}: {e}", dir.display());
        }
    }

    /// Candidate final names, in order: the Python name, then with the recordID's first 8
    /// characters, then with the whole recordID (spec 7.2 RECOMMENDED), then numbered copies of
    /// that (`-2` ...), which only `claim --force` of an already placed recording needs.
    pub fn candidates(&self, stem: &str, id: &RecordId, ext: &str) -> Vec<PathBuf> {
        let mut names = vec![
            self.dir.join(format!("{stem}.{ext}")),
            self.dir.join(format!("{stem}-{}.{ext}", id.short())),
            self.dir.join(format!("{stem}-{id}.{ext}")),
        ];
        names.extend((2..=MAX_COPIES).map(|n| self.dir.join(format!("{stem}-{id}-{n}.{ext}"))));
        names
    }

    /// Moves a finished temp file to `dest`, never overwriting (`bbb_common::durable::link_into`:
    /// fsync, hard link that fails if anything has the name, remove the temp name, fsync both
    /// directories). Returns the size placed.
    pub fn place(&self, temp: &Path, dest: &Path) -> Result<u64, PlaceError> {
        durable::link_into(temp, dest).map_err(|e| {
            if e.is_exists() && e.path == dest {
                PlaceError::Exists(dest.to_path_buf())
            } else {
                PlaceError::Io(e.path, e.source)
            }
        })
    }

    /// The job directories (`<recordID>.<epoch>.partial`, exactly that form) in the temp dir,
    /// as (`<recordID>.<epoch>`, path).
    pub fn partials(&self) -> io::Result<Vec<(String, PathBuf)>> {
        let mut found = Vec::new();
        let rd = match std::fs::read_dir(&self.temp_dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(e),
        };
        for entry in rd {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(base) = name.strip_suffix(&format!(".{PARTIAL}")) else {
                continue;
            };
            let Some((id, epoch)) = base.rsplit_once('.') else {
                continue;
            };
            if RecordId::parse(id).is_err() || epoch.parse::<i64>().is_err() {
                continue;
            }
            found.push((base.to_owned(), entry.path()));
        }
        Ok(found)
    }

    /// Removes the job directories of `found` (from [`ClaimDir::partials`]) that no live lease
    /// owns: left by a killed run or a lost lease. `live` holds the `<recordID>.<epoch>` of the
    /// leases running now and MUST be read from the ledger after `found` was listed: a worker
    /// (on any host) creates its directory only after its claim, so a directory listed before
    /// the read belongs to a lease the read shows, and another host's fresh job is never taken
    /// for a stale one.
    pub fn remove_stale_partials(
        &self,
        found: Vec<(String, PathBuf)>,
        live: &HashSet<String>,
    ) -> io::Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for (base, path) in found {
            if live.contains(&base) {
                continue;
            }
            let r = match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
                Ok(_) => std::fs::remove_file(&path),
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => removed.push(path),
                // Its own worker finished and removed it meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> RecordId {
        RecordId::parse(s).unwrap()
    }

    #[test]
    fn place_never_overwrites_and_leaves_no_temp() {
        let root = tempfile::tempdir().unwrap();
        let cd = ClaimDir {
            dir: root.path().join("ftp/bbb-claim"),
            temp_dir: root.path().join(".bbb-migrate-tmp"),
        };
        assert!(matches!(cd.check(true), Err(PlaceError::MissingDir(_))));
        std::fs::create_dir_all(&cd.dir).unwrap();
        // A temp dir under the recorder root (where Pod's cron looks), directly or through a
        // symbolic link, is refused.
        for temp in [root.path().join("ftp/tmp"), root.path().join("link/tmp")] {
            let _ = std::os::unix::fs::symlink(root.path().join("ftp"), root.path().join("link"));
            let inside = ClaimDir {
                dir: cd.dir.clone(),
                temp_dir: temp,
            };
            assert!(
                matches!(inside.check(true), Err(PlaceError::TempInsideRoot(..))),
                "{:?}",
                inside.temp_dir
            );
        }
        std::fs::remove_dir_all(root.path().join("ftp/tmp")).unwrap();
        cd.check(true).unwrap();
        let rid = id("ffbfc4cc24428694e8b53a4e144f414052431693-1530718721124");
        let c = cd.candidates("freds-room-2018-07-04", &rid, "m4v");
        assert_eq!(c[0].file_name().unwrap(), "freds-room-2018-07-04.m4v");
        assert_eq!(
            c[1].file_name().unwrap(),
            "freds-room-2018-07-04-ffbfc4cc.m4v"
        );
        cd.prepare(&rid, 1).unwrap();
        let t = cd.temp_path(&rid, 1, "m4v");
        std::fs::write(&t, b"first").unwrap();
        assert_eq!(cd.place(&t, &c[0]).unwrap(), 5);
        assert!(!t.exists());
        cd.prepare(&rid, 2).unwrap();
        let t2 = cd.temp_path(&rid, 2, "m4v");
        std::fs::write(&t2, b"second").unwrap();
        // What a killed recorder leaves next to its output goes with the job directory.
        std::fs::create_dir(cd.job_dir(&rid, 2).join(".bbb-record-XXXX")).unwrap();
        assert!(matches!(cd.place(&t2, &c[0]), Err(PlaceError::Exists(_))));
        assert_eq!(std::fs::read(&c[0]).unwrap(), b"first");
        cd.discard(&rid, 1);
        // The sweep removes the partial of epoch 2 unless it is live.
        let live: HashSet<String> = [format!("{rid}.2")].into();
        let found = cd.partials().unwrap();
        assert!(cd.remove_stale_partials(found, &live).unwrap().is_empty());
        let removed = cd
            .remove_stale_partials(cd.partials().unwrap(), &HashSet::new())
            .unwrap();
        assert_eq!(removed, vec![cd.job_dir(&rid, 2)]);
        assert_eq!(std::fs::read_dir(&cd.temp_dir).unwrap().count(), 0);
    }

    #[test]
    fn same_filesystem_compares_the_device_of_both_paths() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("a")).unwrap();
        assert!(same_filesystem(root.path(), &root.path().join("a")).unwrap());
        // procfs is never the filesystem of a temp dir.
        assert!(!same_filesystem(root.path(), Path::new("/proc/self")).unwrap());
        assert!(same_filesystem(root.path(), &root.path().join("missing")).is_err());
    }

    #[test]
    fn a_claim_directory_is_writable_only_when_a_file_can_really_be_made_there() {
        let root = tempfile::tempdir().unwrap();
        let cd = ClaimDir {
            dir: root.path().to_path_buf(),
            temp_dir: root.path().join("tmp"),
        };
        cd.probe_writable().unwrap();
        assert!(list_names(root.path()).is_empty(), "the probe file stayed");
        // procfs refuses new files even to root, whatever the permission bits say.
        let proc_dir = ClaimDir {
            dir: PathBuf::from("/proc/self"),
            temp_dir: root.path().join("tmp"),
        };
        assert!(proc_dir.probe_writable().is_err());
    }

    fn list_names(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}
