//! Putting a finished file in its place so that it survives a crash or a power cut: never a
//! half-written file under the final name, and never a rename that a crash can undo.
//!
//! The rule, everywhere a file is placed: write it under a temporary name in the destination's
//! file system, fsync it, move it to its final name, then fsync the directories whose entries
//! changed. Without the last step a crash after the rename can bring back the old directory
//! entry, so a file reported as placed would be gone.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A step of a placement that failed, and the path it failed on.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct PlaceIoError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl PlaceIoError {
    fn at(path: &Path) -> impl FnOnce(io::Error) -> PlaceIoError + '_ {
        move |source| PlaceIoError {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The final name was taken (only [`link_into`] refuses that).
    pub fn is_exists(&self) -> bool {
        self.source.kind() == io::ErrorKind::AlreadyExists
    }
}

/// The directory `path` is an entry of (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// fsync a directory, so that the entries created or removed in it are on disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Moves the finished file `temp` to `dest`, replacing what is there: fsync `temp`, rename,
/// fsync `dest`'s directory. `temp` must be on `dest`'s file system (beside it, usually).
pub fn rename_into(temp: &Path, dest: &Path) -> Result<(), PlaceIoError> {
    File::open(temp)
        .and_then(|f| f.sync_all())
        .map_err(PlaceIoError::at(temp))?;
    std::fs::rename(temp, dest).map_err(PlaceIoError::at(dest))?;
    sync_dir(parent(dest)).map_err(PlaceIoError::at(parent(dest)))
}

/// Moves the finished file `temp` to `dest` without ever replacing anything: fsync `temp`,
/// hard-link it to `dest` (which fails with `AlreadyExists` if anything has that name, see
/// [`PlaceIoError::is_exists`]), fsync `dest`'s directory, remove `temp`, fsync its directory.
/// Returns the size placed.
pub fn link_into(temp: &Path, dest: &Path) -> Result<u64, PlaceIoError> {
    let f = File::open(temp).map_err(PlaceIoError::at(temp))?;
    f.sync_all().map_err(PlaceIoError::at(temp))?;
    let size = f.metadata().map_err(PlaceIoError::at(temp))?.len();
    drop(f);
    std::fs::hard_link(temp, dest).map_err(PlaceIoError::at(dest))?;
    sync_dir(parent(dest)).map_err(PlaceIoError::at(parent(dest)))?;
    std::fs::remove_file(temp).map_err(PlaceIoError::at(temp))?;
    sync_dir(parent(temp)).map_err(PlaceIoError::at(parent(temp)))?;
    Ok(size)
}

/// Writes `data` to `path` durably: a temporary file in the same directory (created if needed),
/// fsync, rename over `path`, fsync the directory. A reader sees the old file or the new one,
/// never a part of either.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), PlaceIoError> {
    let dir = parent(path);
    std::fs::create_dir_all(dir).map_err(PlaceIoError::at(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(PlaceIoError::at(dir))?;
    tmp.write_all(data)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(PlaceIoError::at(tmp.path()))?;
    tmp.persist(path).map_err(|e| PlaceIoError {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    sync_dir(dir).map_err(PlaceIoError::at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_into_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let (temp, dest) = (d.path().join(".x.partial"), d.path().join("x.mp4"));
        std::fs::write(&dest, b"old").unwrap();
        std::fs::write(&temp, b"new").unwrap();
        rename_into(&temp, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        assert!(!temp.exists());
    }

    #[test]
    fn link_into_never_replaces() {
        let d = tempfile::tempdir().unwrap();
        let tmp_dir = d.path().join("tmp");
        std::fs::create_dir(&tmp_dir).unwrap();
        let temp = tmp_dir.join("job.partial");
        let dest = d.path().join("x.mp4");
        std::fs::write(&temp, b"12345").unwrap();
        std::fs::write(&dest, b"someone else's").unwrap();
        let e = link_into(&temp, &dest).unwrap_err();
        assert!(e.is_exists(), "{e}");
        assert_eq!(e.path, dest);
        assert_eq!(std::fs::read(&dest).unwrap(), b"someone else's");
        assert!(temp.exists(), "a refused placement keeps its file");

        std::fs::remove_file(&dest).unwrap();
        assert_eq!(link_into(&temp, &dest).unwrap(), 5);
        assert_eq!(std::fs::read(&dest).unwrap(), b"12345");
        assert!(!temp.exists());
    }

    #[test]
    fn write_atomic_creates_the_directory_and_replaces_whole() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("cache/getRecordings.xml");
        write_atomic(&path, b"<a/>").unwrap();
        write_atomic(&path, b"<b/>").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"<b/>");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["getRecordings.xml"], "no temporary file is left");
    }

    #[test]
    fn a_missing_temp_names_the_path() {
        let d = tempfile::tempdir().unwrap();
        let temp = d.path().join("gone");
        let e = rename_into(&temp, &d.path().join("x")).unwrap_err();
        assert_eq!(e.path, temp);
        assert_eq!(e.source.kind(), io::ErrorKind::NotFound);
    }
}
