//! Leader election with a coordination.k8s.io Lease, so a Deployment can run several replicas:
//! one reconciles, the others stand by and take over once its Lease runs out (or at once when
//! it stops cleanly and releases it).

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::{sync::watch, task::JoinHandle};

use crate::config::LeaderElection;

/// How long a stopping leader waits for the Lease release before giving up.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// The Lease, held.
#[derive(Debug)]
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

/// Waits until this replica holds the Lease, or until `stop` completes (then `None`).
pub async fn acquire(
    client: Client,
    config: &LeaderElection,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<Option<Leadership>> {
    let secs = config.lease_duration.as_secs();
    // The holder renews a third of the duration before expiry, which also bounds the clock
    // skew between nodes it tolerates.
    let manager = LeaseManagerBuilder::new(client, &config.lease_name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(secs)
        .with_grace((secs / 3).max(1))
        .build()
        .await
        .map_err(|e| anyhow::anyhow!("leader election Lease {}/{}: {e}", config.namespace, config.lease_name))?;
    let (mut state, task) = manager.watch().await;
    tracing::info!(lease = %config.lease_name, namespace = %config.namespace, identity = %config.identity, "waiting to become the leader");
    let won = tokio::select! {
        won = state.wait_for(|leader| *leader) => Some(won.is_ok()),
        () = stop => None,
    };
    match won {
        Some(true) => {}
        Some(false) => anyhow::bail!("the leader election task ended before winning the Lease"),
        None => {
            release(state, task).await;
            return Ok(None);
        }
    }
    tracing::info!(identity = %config.identity, "leader: starting the controllers");
    Ok(Some(Leadership { state, task }))
}

impl Leadership {
    /// Completes when the Lease is lost (renewal failed and another replica took it).
    pub async fn lost(&mut self) {
        let _ = self.state.wait_for(|leader| !*leader).await;
    }

    /// Gives the Lease up so a stand-in takes over at once.
    pub async fn release(self) {
        release(self.state, self.task).await;
    }
}

async fn release(
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
) {
    // Closing the channel makes the manager's task release the Lease and return.
    drop(state);
    match tokio::time::timeout(RELEASE_TIMEOUT, task).await {
        Ok(Ok(Ok(_))) => tracing::info!("leader election Lease released"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "could not release the leader election Lease"),
        Ok(Err(e)) => tracing::warn!(error = %e, "the leader election task failed"),
        Err(_) => tracing::warn!("releasing the leader election Lease timed out; it expires on its own"),
    }
}
