//! Developer commands: `cargo xtask <command>`. Run `cargo xtask help` for the list.

mod bench;
mod ci;
mod crdgen;
mod demo;
mod msrv;
mod peers;
mod render;

use std::path::PathBuf;

const HELP: &str = "\
cargo xtask <command>

commands:
  crdgen [--check]   write the CRD YAML (charts/…/templates/crds/*.yaml, deploy/crds.yaml); --check fails if stale
  render [--check]   write deploy/operator.yaml (the Helm chart rendered by the pinned helm); --check fails if stale
  ci                 the full test command: fmt, clippy, crdgen --check, render --check, tests
  peers [--list]     install the pinned test peers (kube-apiserver, etcd, stores, moto) into the cache
  bench [--quick] [--large] [--stores S,…] [--n N,…]
                     figures: rollout time against a no-Kubernetes floor, steady state, memory,
                     start-up, compatibility mode; writes target/bench/bench.{md,json} (--help: all options)
  demo               run the operator on a local control plane and VersityGW, with deploy/examples applied
  help               this text";

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => ("help", &[][..]),
    };
    let result = match cmd {
        "crdgen" => crdgen::run(rest),
        "render" => render::run(rest),
        "ci" => ci::run(rest),
        "peers" => peers::run(rest),
        "demo" => demo::run(rest),
        "bench" => bench::run(rest),
        "help" | "--help" | "-h" => {
            println!("{HELP}");
            Ok(())
        }
        other => Err(anyhow::anyhow!("unknown command {other:?}\n\n{HELP}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {cmd}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Root of the workspace (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}
