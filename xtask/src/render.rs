//! `cargo xtask render [--check]`: `deploy/operator.yaml` is the Helm chart rendered by the
//! pinned helm (with an existing credentials Secret), never edited by hand.

use std::fs;

use anyhow::{Context, bail};
use s3op_tests::chart::{OPERATOR_MANIFEST, operator_manifest, operator_manifest_path};

/// Writes `deploy/operator.yaml`, or with `--check` fails when it is stale.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let check = match args {
        [] => false,
        [a] if a == "--check" => true,
        _ => bail!("usage: cargo xtask render [--check]"),
    };
    // Installs the pinned helm on a fresh machine; a present install is only smoke-checked.
    crate::peers::run(&["--only".to_string(), "helm".to_string()])?;
    let expected = operator_manifest()?;
    let path = operator_manifest_path();
    let current = fs::read_to_string(&path).ok();
    if current.as_deref() == Some(expected.as_str()) {
        println!("{OPERATOR_MANIFEST} is up to date");
        return Ok(());
    }
    if check {
        let first_difference = match &current {
            None => "the file is missing".to_string(),
            Some(current) => {
                let (mut have, mut want) = (current.lines(), expected.lines());
                let mut n = 1;
                loop {
                    match (have.next(), want.next()) {
                        (Some(a), Some(b)) if a == b => n += 1,
                        (a, b) => {
                            break format!("line {n}: has {:?}, should be {:?}", a.unwrap_or(""), b.unwrap_or(""));
                        }
                    }
                }
            }
        };
        bail!("{OPERATOR_MANIFEST} is stale ({first_difference}); run `cargo xtask render` and commit the result");
    }
    fs::write(&path, expected).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {OPERATOR_MANIFEST}");
    Ok(())
}
