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

/// Totals over every `test result:` line of a `cargo test` run.
#[derive(Default)]
struct TestCounts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl TestCounts {
    /// Adds the figures of a line like `test result: ok. 13 passed; 0 failed; 1 ignored; …`.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else { return };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else { continue };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// Runs `cargo test`, echoing its output while counting results.
fn run_tests(mut cmd: Command, counts: &mut TestCounts) -> Outcome {
    use std::io::{BufRead, BufReader};
    println!("$ {cmd:?}");
    let mut child = match cmd.stdout(std::process::Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("could not start: {e}")),
    };
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            counts.add_line(&line);
        }
    }
    match child.wait() {
        Ok(s) if s.success() => Outcome::Passed,
        Ok(s) => Outcome::Failed(format!("exited with {s}")),
        Err(e) => Outcome::Failed(format!("could not wait: {e}")),
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

/// After the suites, no peer process may remain: every peer binary lives in the peers cache,
/// so any process whose command line names that folder is one the harness failed to stop.
fn leftover_peers() -> Outcome {
    let cache = crate::peers::cache_dir();
    let needle = cache.display().to_string();
    // The harness's watchdogs stop peers within a few seconds of a test binary's exit.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = match Command::new("pgrep").args(["-af", &needle]).output() {
            Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
            Err(e) => return Outcome::Skipped(format!("pgrep unavailable: {e}")),
        };
        let me = std::process::id().to_string();
        let left: Vec<&str> =
            found.lines().filter(|l| !l.starts_with(&format!("{me} ")) && !l.contains("pgrep")).collect();
        if left.is_empty() {
            return Outcome::Passed;
        }
        if Instant::now() > deadline {
            return Outcome::Failed(format!("peer processes still running:\n{}", left.join("\n")));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
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
    step(&mut steps, "rust-version", || match crate::msrv::check() {
        Ok(summary) => {
            println!("{summary}");
            Outcome::Passed
        }
        Err(e) => Outcome::Failed(format!("{e:#}")),
    });
    step(&mut steps, "crdgen --check", || match crate::crdgen::run(&["--check".to_string()]) {
        Ok(()) => Outcome::Passed,
        Err(e) => Outcome::Failed(format!("{e:#}")),
    });
    step(&mut steps, "render --check", || match crate::render::run(&["--check".to_string()]) {
        Ok(()) => Outcome::Passed,
        Err(e) => Outcome::Failed(format!("{e:#}")),
    });
    step(&mut steps, "peers", || match crate::peers::run(&[]) {
        Ok(()) => Outcome::Passed,
        Err(e) => Outcome::Failed(format!("{e:#}")),
    });
    let mut counts = TestCounts::default();
    step(&mut steps, "tests", || {
        let mut c = cargo();
        c.args(["test", "--workspace", "--locked"]);
        run_tests(c, &mut counts)
    });
    step(&mut steps, "no peer left", leftover_peers);

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
    // The last line is the plain total a CI reader looks for (the last `cargo test` line is
    // usually an empty doc-test run, which says nothing about the suite).
    let verdict = if failed.is_empty() { Ok(()) } else { Err(anyhow::anyhow!("failed steps: {}", failed.join(", "))) };
    if let Err(e) = &verdict {
        println!("{e}");
    }
    println!("ci: {} passed, {} failed, {} skipped", counts.passed, counts.failed, counts.ignored);
    verdict
}

#[cfg(test)]
mod tests {
    use super::TestCounts;

    #[test]
    fn counts_cargo_test_result_lines() {
        let mut c = TestCounts::default();
        c.add_line("test result: ok. 13 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 4.50s");
        c.add_line("test result: FAILED. 1 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s");
        c.add_line("running 13 tests");
        assert_eq!((c.passed, c.failed, c.ignored), (14, 3, 2));
    }
}
