//! The s3-resource-operator binary: parse configuration, set up logging, run until SIGTERM or
//! SIGINT, then finish in-flight work and exit 0.

use std::process::ExitCode;

use clap::Parser;
use s3op_controller::{config::Cli, run, telemetry};

// mimalloc (2.x, without transparent huge pages) instead of glibc's malloc: a rollout
// allocates in bursts, and glibc kept much of what a burst freed (figures in
// docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("s3-resource-operator: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.telemetry.log_level, config.telemetry.log_format);
    match &config.store {
        Some(store) => tracing::info!(
            default_store = %config.default_store_name,
            backend = %store.backend,
            endpoint = store.s3_endpoint_url.as_deref().unwrap_or("(AWS default)"),
            region = %store.region,
            crd_mode = config.crd_mode,
            compat_mode = config.compat_mode,
            "configuration loaded"
        ),
        None => tracing::info!(
            crd_mode = config.crd_mode,
            compat_mode = config.compat_mode,
            "configuration loaded; no default store: objects must name an S3Store or ClusterS3Store"
        ),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| anyhow::anyhow!("connecting to Kubernetes (KUBECONFIG or in-cluster): {e}"))?;
        run::run(client, config, shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "s3-resource-operator stopped");
            ExitCode::FAILURE
        }
    }
}

/// Completes on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received: shutting down"),
        () = term => tracing::info!("SIGTERM received: shutting down"),
    }
}
