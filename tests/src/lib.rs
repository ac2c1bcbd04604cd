//! Test support shared by the end-to-end suites: locating the repository, and (with the
//! test-peer issue) the harness that starts real peers on loopback.

use std::path::PathBuf;

/// Root of the Cargo workspace (the repository checkout).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}
