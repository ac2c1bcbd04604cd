//! `cargo xtask bench`: installs the peers a run needs, builds the release operator and the
//! bench driver in one cargo invocation, and runs the driver (`tests/src/bin/bench.rs`), which
//! writes `<target>/bench/bench.md` and `bench.json` and prints the tables.

use std::process::Command;

use anyhow::{Context, Result, bail};
use s3op_tests::bench::{Options, target_dir};

use crate::workspace_root;

/// Entry point of `cargo xtask bench [--quick] [--large] [--stores …] [--n …]`.
pub fn run(args: &[String]) -> Result<()> {
    let Some(opts) = Options::from_args(args)? else {
        return Ok(());
    };
    crate::peers::run(&["--only".to_string(), opts.peers()?.join(",")])?;

    println!("building the release operator and the bench driver…");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "--package",
            "s3op-controller",
            "--bin",
            "s3-resource-operator",
            "--package",
            "s3op-tests",
            "--bin",
            "bench",
        ])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building the operator and the bench driver failed");
    }
    let driver = target_dir().join("release").join("bench");
    let status = Command::new(&driver).args(args).status().with_context(|| format!("running {}", driver.display()))?;
    if !status.success() {
        bail!("the bench driver failed ({status})");
    }
    Ok(())
}
