//! `cargo xtask peers`: installs the pinned test peers (being written).

/// Entry point of `cargo xtask peers`.
pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("cargo xtask peers is not written yet")
}
