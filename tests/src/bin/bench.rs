//! The driver of `cargo xtask bench`: see `s3op_tests::bench` for what it measures.

use clap::Parser;
use s3op_tests::bench::{Options, main as bench};

fn main() -> std::process::ExitCode {
    let opts = Options::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(bench(opts)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
