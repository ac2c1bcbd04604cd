//! `cargo xtask ci`: the README's test command. Runs every check, installing what it needs,
//! and prints one line per step with its time, so a CI log shows where time went.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::bail;

use crate::workspace_root;

enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

struct Step {
    name: &'static str,
    outcome: Outcome,
    took: Duration,
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

fn run_cmd(mut cmd: Command) -> Outcome {
    println!("$ {cmd:?}");
    match cmd.status() {
        Ok(s) if s.success() => Outcome::Passed,
        Ok(s) => Outcome::Failed(format!("exited with {s}")),
        Err(e) => Outcome::Failed(format!("could not start: {e}")),
    }
}

/// Makes sure a rustup component (rustfmt, clippy) is present; installs it if it can.
/// Returns why it is unavailable when it is not.
fn ensure_component(probe: &[&str], component: &str) -> Result<(), String> {
    let works = |args: &[&str]| cargo().args(args).output().is_ok_and(|o| o.status.success());
    if works(probe) {
        return Ok(());
    }
    println!("{component} is missing; trying `rustup component add {component}`");
    let added = Command::new("rustup").args(["component", "add", component]).status().is_ok_and(|s| s.success());
    if added && works(probe) {
        Ok(())
    } else {
        Err(format!("{component} is not installed and `rustup component add {component}` failed"))
    }
}

fn step(steps: &mut Vec<Step>, name: &'static str, f: impl FnOnce() -> Outcome) {
    println!("\n=== ci: {name}");
    let start = Instant::now();
    let outcome = f();
    let took = start.elapsed();
    match &outcome {
        Outcome::Passed => println!("=== ci: {name}: passed in {:.1}s", took.as_secs_f64()),
        Outcome::Failed(why) => println!("=== ci: {name}: FAILED ({why}) after {:.1}s", took.as_secs_f64()),
        Outcome::Skipped(why) => println!("=== ci: {name}: SKIPPED: {why}"),
    }
    steps.push(Step { name, outcome, took });
}

/// Entry point of `cargo xtask ci`.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    if !args.is_empty() {
        bail!("usage: cargo xtask ci");
    }
    let total = Instant::now();
    let mut steps = Vec::new();

    step(&mut steps, "rustfmt", || match ensure_component(&["fmt", "--version"], "rustfmt") {
        Ok(()) => run_cmd({
            let mut c = cargo();
            c.args(["fmt", "--all", "--check"]);
            c
        }),
        Err(why) => Outcome::Skipped(why),
    });
    step(&mut steps, "clippy", || match ensure_component(&["clippy", "--version"], "clippy") {
        Ok(()) => run_cmd({
            let mut c = cargo();
            c.args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]);
            c
        }),
        Err(why) => Outcome::Skipped(why),
    });
    step(&mut steps, "crdgen --check", || match crate::crdgen::run(&["--check".to_string()]) {
        Ok(()) => Outcome::Passed,
        Err(e) => Outcome::Failed(format!("{e:#}")),
    });
    step(&mut steps, "tests", || {
        let mut c = cargo();
        c.args(["test", "--workspace", "--locked"]);
        run_cmd(c)
    });

    println!("\n=== ci summary ({:.1}s in all)", total.elapsed().as_secs_f64());
    let mut failed = Vec::new();
    for s in &steps {
        let (word, detail) = match &s.outcome {
            Outcome::Passed => ("passed", String::new()),
            Outcome::Failed(w) => {
                failed.push(s.name);
                ("FAILED", format!(" ({w})"))
            }
            Outcome::Skipped(w) => ("SKIPPED", format!(" ({w})")),
        };
        println!("  {:<16} {word:<8} {:>7.1}s{detail}", s.name, s.took.as_secs_f64());
    }
    if !failed.is_empty() {
        bail!("failed steps: {}", failed.join(", "));
    }
    Ok(())
}
