//! `cargo xtask ci`'s `rust-version` step: the workspace's `rust-version` is at least what every
//! dependency declares, so a toolchain it accepts can build them. No older toolchain can be
//! installed here (only package registries are reachable), so this is reasoning over `cargo
//! metadata`; clippy's `incompatible_msrv` lint, which reads the same `rust-version`, checks our
//! own code's use of the standard library.

use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::workspace_root;

/// A version as three numbers (`1.94` is `1.94.0`).
fn parse(v: &str) -> Option<(u64, u64, u64)> {
    let mut parts = v.split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().unwrap_or(Some(0))?;
    let patch = parts.next().unwrap_or(Some(0))?;
    Some((major, minor, patch))
}

/// The highest `rust-version` among `packages` outside the workspace, with the package naming
/// it; `None` when none declares one.
fn highest_dependency_msrv(metadata: &Value) -> Option<((u64, u64, u64), String)> {
    let members: Vec<&str> = metadata["workspace_members"].as_array()?.iter().filter_map(Value::as_str).collect();
    metadata["packages"]
        .as_array()?
        .iter()
        .filter(|p| !members.contains(&p["id"].as_str().unwrap_or("")))
        .filter_map(|p| {
            let v = parse(p["rust_version"].as_str()?)?;
            Some((v, format!("{} {}", p["name"].as_str()?, p["version"].as_str()?)))
        })
        .max()
}

/// Fails when the workspace's `rust-version` is below a dependency's.
pub fn check() -> anyhow::Result<String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace_root())
        .args(["metadata", "--format-version", "1", "--locked"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let metadata: Value = serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    let ours = metadata["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "s3op-controller"))
        .and_then(|p| p["rust_version"].as_str())
        .context("s3op-controller declares no rust-version")?
        .to_string();
    let ours_v = parse(&ours).with_context(|| format!("rust-version {ours}"))?;
    match highest_dependency_msrv(&metadata) {
        Some((theirs, who)) if theirs > ours_v => {
            bail!("rust-version is {ours}, but {who} needs {}.{}.{}", theirs.0, theirs.1, theirs.2)
        }
        Some((theirs, who)) => Ok(format!(
            "rust-version {ours}; the highest a dependency asks is {}.{}.{} ({who})",
            theirs.0, theirs.1, theirs.2
        )),
        None => Ok(format!("rust-version {ours}; no dependency declares one")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn the_highest_dependency_version_wins_and_members_do_not_count() {
        let metadata = json!({
            "workspace_members": ["ours"],
            "packages": [
                {"id": "ours", "name": "s3op", "version": "2.0.0", "rust_version": "1.99"},
                {"id": "a", "name": "a", "version": "1.0.0", "rust_version": "1.94.1"},
                {"id": "b", "name": "b", "version": "1.0.0", "rust_version": "1.94"},
                {"id": "c", "name": "c", "version": "1.0.0", "rust_version": null},
            ]
        });
        assert_eq!(highest_dependency_msrv(&metadata), Some(((1, 94, 1), "a 1.0.0".to_string())));
        assert_eq!(parse("1.94"), Some((1, 94, 0)));
        assert_eq!(parse("x"), None);
    }
}
