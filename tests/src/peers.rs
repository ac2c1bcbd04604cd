//! Where the test peers' binaries are: `cargo xtask peers` writes `<cache>/manifest.json`.

use std::{collections::BTreeMap, path::PathBuf, sync::OnceLock};

use anyhow::{Context, Result, anyhow};

/// The cache folder, by the same rule as `cargo xtask peers`: `$S3OP_PEERS_DIR`, else
/// `$XDG_CACHE_HOME/s3-resource-operator/peers`, else `$HOME/.cache/s3-resource-operator/peers`.
/// Always absolute, so a relative `S3OP_PEERS_DIR` means the same from any working directory.
pub fn cache_dir() -> PathBuf {
    let non_empty = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty());
    let dir = if let Some(dir) = non_empty("S3OP_PEERS_DIR") {
        PathBuf::from(dir)
    } else if let Some(xdg) = non_empty("XDG_CACHE_HOME") {
        PathBuf::from(xdg).join("s3-resource-operator/peers")
    } else {
        let home = non_empty("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
        home.join(".cache/s3-resource-operator/peers")
    };
    if dir.is_absolute() { dir } else { std::env::current_dir().map_or(dir.clone(), |cwd| cwd.join(&dir)) }
}

fn manifest() -> Result<&'static BTreeMap<String, PathBuf>> {
    static MANIFEST: OnceLock<std::result::Result<BTreeMap<String, PathBuf>, String>> = OnceLock::new();
    MANIFEST
        .get_or_init(|| {
            let path = cache_dir().join("manifest.json");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("{}: {e}; run `cargo xtask peers` first", path.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
        })
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

/// Absolute path of a peer binary (e.g. "kube-apiserver", "versitygw", "moto_server").
pub fn binary(name: &str) -> Result<PathBuf> {
    let path = manifest()?
        .get(name)
        .cloned()
        .with_context(|| format!("{name} is not in the peers manifest; run `cargo xtask peers`"))?;
    anyhow::ensure!(path.exists(), "{} is missing; run `cargo xtask peers`", path.display());
    Ok(path)
}
