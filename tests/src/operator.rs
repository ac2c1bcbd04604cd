//! The operator under test, run in this process on the test's runtime against the harness's
//! control plane and one store, scoped to one namespace so suites can share a control plane.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::Parser;
use kube::Client;
use s3op_controller::config::Cli;
use tokio::{sync::oneshot, task::JoinHandle};

use crate::{
    process::free_port,
    stores::{Store, unique_name},
    wait::Look,
};

/// A running operator. Dropping it aborts it; [`Operator::stop`] shuts it down gracefully.
#[derive(Debug)]
pub struct Operator {
    task: Option<JoinHandle<Result<()>>>,
    stop: Option<oneshot::Sender<()>>,
    metrics_url: String,
    args: Vec<String>,
}

/// The operator's flags for `store`: its backend, endpoint and administrator credentials.
pub fn store_args(store: &Store) -> Vec<String> {
    let mut args = vec![
        "--backend".to_string(),
        store.kind().backend_name().to_string(),
        "--s3-endpoint-url".to_string(),
        store.endpoint().to_string(),
        "--s3-region".to_string(),
        store.region().to_string(),
        "--s3-access-key".to_string(),
        store.operator_access_key().to_string(),
        "--s3-secret-key".to_string(),
        store.operator_secret_key().to_string(),
    ];
    if let (Some(endpoint), Some(token)) = (store.garage_admin_endpoint(), store.garage_admin_token()) {
        args.extend(["--garage-admin-endpoint".to_string(), endpoint.to_string()]);
        args.extend(["--garage-admin-token".to_string(), token.to_string()]);
    }
    args
}

impl Operator {
    /// Starts an operator for `store` watching `namespace`, resyncing every `resync` (e.g.
    /// "3s"), with `extra` flags after the defaults.
    pub async fn start(
        client: Client,
        store: &Store,
        namespace: &str,
        resync: &str,
        extra: &[&str],
    ) -> Result<Operator> {
        let mut args = store_args(store);
        args.extend(
            [
                "--watch-namespace",
                namespace,
                "--resync-interval",
                resync,
                "--compat-mode",
                "false",
                "--marker-bucket",
                &unique_name("s3op-markers"),
            ]
            .map(str::to_string),
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_with(client, args).await
    }

    /// Starts an operator with exactly these flags (plus a fresh metrics port).
    pub async fn start_with(client: Client, mut args: Vec<String>) -> Result<Operator> {
        // The operator's logs, shown with a failed test's output; RUST_LOG picks the level.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("s3op_controller=info,kube_runtime=warn"));
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        let port = free_port()?;
        let metrics_url = format!("http://127.0.0.1:{port}");
        let mut argv = vec!["s3-resource-operator".to_string()];
        argv.extend(args.iter().cloned());
        argv.extend(["--metrics-addr".to_string(), format!("127.0.0.1:{port}")]);
        let config = Cli::try_parse_from(&argv)
            .map_err(|e| anyhow!("operator flags: {e}"))?
            .into_config()
            .map_err(|e| anyhow!("operator configuration: {e}"))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(s3op_controller::run::run(client, config, async move {
            let _ = stopped.await;
        }));
        let op = Operator { task: Some(task), stop: Some(stop), metrics_url, args: std::mem::take(&mut args) };
        op.wait_ready().await?;
        Ok(op)
    }

    /// The flags it was started with (without the metrics address), to start a twin.
    pub fn args(&self) -> Vec<String> {
        self.args.clone()
    }

    /// The bucket where it keeps its ownership markers (`--marker-bucket`).
    pub fn marker_bucket(&self) -> Option<&str> {
        self.args.iter().skip_while(|a| *a != "--marker-bucket").nth(1).map(String::as_str)
    }

    /// True while the operator task runs: it has neither returned nor panicked (a test that
    /// says "without a restart" checks this).
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    async fn wait_ready(&self) -> Result<()> {
        let http = reqwest::Client::new();
        let url = format!("{}/readyz", self.metrics_url);
        crate::wait::poll(
            &format!("operator ready at {url}"),
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                let finished = self.task.as_ref().is_some_and(JoinHandle::is_finished);
                let probe = http.get(&url).send();
                async move {
                    if finished {
                        return Err(anyhow!("the operator exited while starting"));
                    }
                    Ok(match probe.await {
                        Ok(r) if r.status().is_success() => Look::Done(()),
                        Ok(r) => Look::NotYet(r.text().await.unwrap_or_default()),
                        Err(e) => Look::NotYet(e.to_string()),
                    })
                }
            },
        )
        .await
    }

    /// Asks for a graceful shutdown and waits for the operator to return.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().context("operator already stopped")?;
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .context("operator did not stop within 30s")?
            .context("operator task panicked")?
    }

    /// A backend configured exactly as the operator's, to change the store behind its back.
    pub async fn backend(&self) -> Result<std::sync::Arc<dyn s3op_backends::Backend>> {
        let mut argv = vec!["s3-resource-operator".to_string()];
        argv.extend(self.args.iter().cloned());
        let config = Cli::try_parse_from(&argv)
            .map_err(|e| anyhow!("operator flags: {e}"))?
            .into_config()
            .map_err(|e| anyhow!("operator configuration: {e}"))?;
        let store = config.store.ok_or_else(|| anyhow!("the flags configure no default store"))?;
        s3op_controller::store::connect(&store).await.map_err(|e| anyhow!("{e}"))
    }

    /// The account a compatibility bucket belongs to, read by a backend of its own: the
    /// operator's backends (and one kept by a test) answer from a list of policy holders up
    /// to seconds old on MinIO.
    pub async fn bucket_owner_now(&self, bucket: &str) -> Result<Option<String>> {
        let backend = self.backend().await?;
        backend.compat().map_err(|e| anyhow!("{e}"))?.bucket_owner(bucket).await.map_err(|e| anyhow!("{e}"))
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> Result<String> {
        let r = reqwest::get(format!("{}/metrics", self.metrics_url)).await?;
        Ok(r.text().await?)
    }

    /// Sum of every sample of the metric family `name` (all label sets).
    pub async fn metric_sum(&self, name: &str) -> Result<f64> {
        Ok(crate::binary::metric_sum(&self.metrics().await?, name))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
