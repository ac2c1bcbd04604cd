//! Test support shared by the end-to-end suites and `cargo xtask demo`: the harness that starts
//! real peers on loopback (a Kubernetes control plane and the object stores) and stops them
//! when it is dropped or the process exits.

pub mod bench;
pub mod binary;
pub mod chart;
pub mod compat;
pub mod conformance;
pub mod control_plane;
pub mod fixture;
pub mod health;
pub mod inspect;
pub mod inventory;
pub mod operator;
pub mod peers;
pub mod process;
pub mod rollout;
pub mod stores;
pub mod wait;

use std::path::PathBuf;

/// Root of the Cargo workspace (the repository checkout).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}
