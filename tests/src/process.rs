//! Child processes that cannot outlive the test binary.
//!
//! The shared control plane lives in a `static` (one per test binary), and Rust never drops
//! statics, so `Drop` alone cannot stop it. Each peer therefore runs under a small `bash`
//! watchdog that polls our pid and stops the peer (TERM, then KILL) as soon as we are gone,
//! even after a panic or SIGKILL. `unsafe` is forbidden here, so `PR_SET_PDEATHSIG` through
//! `pre_exec` is not an option. `Drop` still stops a peer promptly when a test owns it.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, Once},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::wait::Look;

/// Logs of the peers running now; a failing test prints their tails (see [`report_logs_on_panic`]).
static RUNNING_LOGS: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());

/// Installs, once per process, a panic hook that appends the tail of every running peer's log
/// to the panic report, so a failing test shows what the servers said.
fn report_logs_on_panic() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default(info);
            let logs = RUNNING_LOGS.lock().map(|l| l.clone()).unwrap_or_default();
            for (name, path) in logs {
                eprintln!("--- last lines of {name} ({})\n{}", path.display(), tail(&path, 15));
            }
        }));
    });
}

/// The watchdog: runs "$@" in the background, forwards TERM/INT, and stops the child once
/// the watched pid ($S3OP_WATCH_PID) is gone; a child still running $S3OP_GRACE_TENTHS tenths
/// of a second after TERM is killed.
const WATCHDOG: &str = r#"
"$@" &
child=$!
stop() { kill -TERM "$child" 2>/dev/null; for _ in $(seq 1 "$S3OP_GRACE_TENTHS"); do kill -0 "$child" 2>/dev/null || exit 0; sleep 0.1; done; kill -KILL "$child" 2>/dev/null; exit 0; }
trap stop TERM INT HUP
while kill -0 "$S3OP_WATCH_PID" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.3; done
if kill -0 "$child" 2>/dev/null; then stop; fi
wait "$child"
"#;

/// A running peer process with its log file.
#[derive(Debug)]
pub struct Process {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    log: PathBuf,
    grace: Duration,
    child: Option<Child>,
}

impl Process {
    /// Prepares (does not start) `program args…`, logging stdout and stderr to `log`.
    pub fn new(name: &str, program: impl Into<PathBuf>, args: &[String], log: impl Into<PathBuf>) -> Self {
        Self {
            name: name.to_string(),
            program: program.into(),
            args: args.to_vec(),
            envs: Vec::new(),
            cwd: None,
            log: log.into(),
            grace: Duration::from_secs(5),
            child: None,
        }
    }

    /// Adds an environment variable for the process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    /// How long the process may take to exit after TERM before it is killed (default 5 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sets the working directory.
    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// Starts the process (again, after [`Process::stop`]); the log is appended to.
    pub fn start(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening log {}", self.log.display()))?;
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(&self.program)
            .args(&self.args)
            .env("S3OP_WATCH_PID", std::process::id().to_string())
            .env("S3OP_GRACE_TENTHS", (self.grace.as_millis() / 100).max(1).to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let child = cmd.spawn().with_context(|| format!("starting {} ({})", self.name, self.program.display()))?;
        self.child = Some(child);
        report_logs_on_panic();
        if let Ok(mut logs) = RUNNING_LOGS.lock() {
            logs.push((self.name.clone(), self.log.clone()));
        }
        Ok(())
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Fails with the log's tail when the process has exited (used while waiting for readiness).
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            bail!("{} exited early ({status}); last log lines:\n{}", self.name, self.log_tail(40));
        }
        Ok(())
    }

    /// Stops the process: TERM, then KILL after the grace period (done by the watchdog), and waits.
    pub fn stop(&mut self) {
        if let Ok(mut logs) = RUNNING_LOGS.lock() {
            logs.retain(|(_, p)| p != &self.log);
        }
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).stderr(Stdio::null()).status();
            let deadline = Instant::now() + self.grace + Duration::from_secs(3);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of a file (at most its last 64 KiB are read).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Polls `check` until it returns Ok(true), failing after `timeout` with a message naming `what`
/// and the last error `check` gave. `alive` is called before each poll so a crashed peer fails
/// fast with its log.
pub async fn wait_for<F, Fut>(
    what: &str,
    timeout: Duration,
    mut alive: impl FnMut() -> Result<()>,
    mut check: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let what = format!("{what} ready");
    crate::wait::poll(&what, timeout, Duration::from_millis(200), || {
        let alive = alive();
        let ready = check();
        async move {
            alive?;
            Ok(match ready.await {
                Ok(true) => Look::Done(()),
                Ok(false) => Look::NotYet("not ready".into()),
                Err(e) => Look::NotYet(format!("{e:#}")),
            })
        }
    })
    .await
}

/// A free TCP port on 127.0.0.1 (bound, then released for the peer to take).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Removes `dir` once this process has exited (and its peers had time to stop), for files of
/// peers held in statics, which are never dropped.
pub fn remove_when_gone(dir: &Path) {
    let script = r#"while kill -0 "$1" 2>/dev/null; do sleep 0.5; done; sleep 8; rm -rf -- "$2""#;
    let _ = Command::new("bash")
        .args(["-c", script, "janitor", &std::process::id().to_string()])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
