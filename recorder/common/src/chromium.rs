//! Where Chromium is found on a host: one order for `bbb-record`, which starts it, and for
//! `bbb-migrate doctor`, which tells an administrator whether it is there.

use std::path::{Path, PathBuf};

/// The real binaries behind Debian's and Ubuntu's wrapper scripts, looked for first: the wrapper
/// adds flags from /etc/chromium.d that the recorder does not want.
pub const FIXED_PATHS: [&str; 2] = [
    "/usr/lib/chromium/chromium",
    "/usr/lib/chromium-browser/chromium-browser",
];

/// Then these names on `PATH`, in this order.
pub const PATH_NAMES: [&str; 4] = [
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];

/// The first of [`FIXED_PATHS`] that exists, else the first of [`PATH_NAMES`] on `PATH`.
pub fn find() -> Option<PathBuf> {
    FIXED_PATHS
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .map(Path::to_path_buf)
        .or_else(|| PATH_NAMES.iter().find_map(|n| which::which(n).ok()))
}
