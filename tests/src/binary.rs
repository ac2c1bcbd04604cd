//! The operator as its own process, as a cluster runs it: configured by environment only,
//! watched over HTTP, measured from /proc, and killed or stopped like a pod. Used by the
//! reliability suite (SIGKILL at random moments) and by `cargo xtask bench` (RSS, start-up).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};

use crate::{
    process::{free_port, tail},
    stores::{Store, unique_name},
    wait::{Look, poll},
};

/// The operator binary of a cargo `profile` ("debug" or "release") in the workspace's target
/// directory; `S3OP_OPERATOR_BINARY` points at another one.
pub fn operator_binary(profile: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("S3OP_OPERATOR_BINARY") {
        return Ok(PathBuf::from(path));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    let path = target.join(profile).join("s3-resource-operator");
    if !path.exists() {
        let flag = if profile == "release" { " --release" } else { "" };
        bail!("{} missing: run `cargo build{flag} -p s3op-controller`", path.display());
    }
    Ok(path)
}

/// The environment that points the operator at `store` with its administrator credentials,
/// and a fresh marker bucket.
pub fn store_env(store: &Store) -> Vec<(String, String)> {
    let mut env = vec![
        ("BACKEND_NAME", store.kind().backend_name().to_string()),
        ("S3_ENDPOINT_URL", store.endpoint().to_string()),
        ("S3_REGION", store.region().to_string()),
        ("S3_ACCESS_KEY", store.admin_access_key().to_string()),
        ("S3_SECRET_KEY", store.admin_secret_key().to_string()),
        ("MARKER_BUCKET", unique_name("s3op-markers")),
    ];
    if let (Some(endpoint), Some(token)) = (store.garage_admin_endpoint(), store.garage_admin_token()) {
        env.push(("GARAGE_ADMIN_ENDPOINT", endpoint.to_string()));
        env.push(("GARAGE_ADMIN_TOKEN", token.to_string()));
    }
    env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// A running operator process. Dropping it kills the process.
#[derive(Debug)]
pub struct OperatorProcess {
    program: PathBuf,
    kubeconfig: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    base: String,
    child: Option<Child>,
    started: Instant,
}

impl OperatorProcess {
    /// Starts `program` with only `env` (plus KUBECONFIG and a fresh METRICS_ADDR), its stderr
    /// appended to `log`. Does not wait: see [`OperatorProcess::wait_ready`].
    pub fn spawn(program: &Path, kubeconfig: &Path, env: Vec<(String, String)>, log: &Path) -> Result<Self> {
        let mut p = OperatorProcess {
            program: program.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            env,
            log: log.to_path_buf(),
            base: String::new(),
            child: None,
            started: Instant::now(),
        };
        p.start()?;
        Ok(p)
    }

    /// Starts the process again with the same environment on a new port (after a kill).
    pub fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("the operator is already running");
        }
        let port = free_port()?;
        self.base = format!("http://127.0.0.1:{port}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = Command::new(&self.program)
            .env_clear()
            .env("KUBECONFIG", &self.kubeconfig)
            .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        self.started = Instant::now();
        self.child = Some(child);
        Ok(())
    }

    /// Waits until `/readyz` answers 200; returns the time since the process started.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        let http = reqwest::Client::new();
        let url = format!("{}/readyz", self.base);
        let ready = poll(&format!("the operator ready at {url}"), timeout, Duration::from_millis(20), || {
            let exited = self.exited();
            let probe = http.get(&url).send();
            async move {
                if let Some(status) = exited? {
                    bail!("the operator exited ({status}) while starting");
                }
                Ok(match probe.await {
                    Ok(r) if r.status().is_success() => Look::Done(()),
                    Ok(r) => Look::NotYet(r.status().to_string()),
                    Err(e) => Look::NotYet(e.to_string()),
                })
            }
        })
        .await;
        match ready {
            Ok(()) => Ok(self.started.elapsed()),
            Err(e) => bail!("{e:#}:\n{}", self.log_tail(30)),
        }
    }

    /// The exit status, once the process has exited.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => Ok(c.try_wait()?),
            None => bail!("the operator is not running"),
        }
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills it with SIGKILL, as the OOM killer or a node failure would, and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        let mut child = self.child.take().context("the operator is not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Sends SIGTERM, as the kubelet does, and waits up to `timeout` for the exit.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let mut child = self.child.take().context("the operator is not running")?;
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
        let exited = poll("an exit after SIGTERM", timeout, Duration::from_millis(20), || {
            let status = child.try_wait();
            async move { Ok(status?.map_or_else(|| Look::NotYet(String::new()), Look::Done)) }
        })
        .await;
        if exited.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        exited
    }

    /// Resident memory in MiB, from /proc.
    pub fn rss_mib(&self) -> Result<f64> {
        let pid = self.pid().context("the operator is not running")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))?;
        Ok(kib / 1024.0)
    }

    /// The value of `key` in the environment it is started with (e.g. `MARKER_BUCKET`).
    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Base URL of its HTTP server (`/metrics`, `/readyz`, `/healthz`).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.base)).await?.text().await?)
    }

    /// Path of its log (stderr, every run appended).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sum of every sample of the metric family `name` (all label sets) in a `/metrics` text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Sum of the samples of `name` whose label set contains `label` (e.g. `kind="S3User"`).
pub fn metric_sum_where(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}
