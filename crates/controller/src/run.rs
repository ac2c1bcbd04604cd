//! Wires the operator: backend, metrics, HTTP endpoints, and one kube-runtime controller per
//! kind, all stopped together by one shutdown signal.

use std::{sync::Arc, time::Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    runtime::{
        Controller,
        controller::{self, Action},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use s3op_api::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, S3Bucket, S3User};
use s3op_backends::Backend;
use tokio::sync::watch;

use crate::{
    bucket,
    compat::{self, Compat, LegacyMetrics},
    config::Config,
    context::{Context, wait_synced},
    http::{self, Readiness},
    leader,
    metered::MeteredBackend,
    metrics::Metrics,
    reconcile::{error_policy, reconcile},
    store, triggers, user,
};

/// Runs the operator until `shutdown` completes, then lets in-flight reconciles finish.
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if !config.crd_mode && !config.compat_mode {
        anyhow::bail!("CRD_MODE and COMPAT_MODE are both off: nothing to run");
    }
    let started = Instant::now();
    let legacy = LegacyMetrics::new();
    let metrics = Metrics::with_registry(|r| legacy.register(r));
    let raw = store::connect(&config)
        .await
        .map_err(|e| anyhow::anyhow!("configuring the {} backend: {e}", config.store.backend))?;
    let backend: Arc<dyn Backend> = Arc::new(MeteredBackend::new(raw, metrics.clone()));
    if let Err(e) = backend.health().await {
        // Not fatal: conditions and /readyz report it, and reconciles retry.
        tracing::warn!(error = %e, "the object store does not answer yet");
    }
    let readiness = Readiness::new(backend.clone());
    let mut kinds = Vec::new();
    if config.crd_mode {
        kinds.extend([bucket::KIND, user::KIND]);
    }
    if config.compat_mode {
        kinds.push(compat::KIND);
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_on_signal = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_on_signal.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let server =
        tokio::spawn(http::serve(config.telemetry.metrics_addr, metrics.clone(), readiness.clone(), stopped()));

    // A stand-by replica is ready as soon as the store answers, so a rolling update can bring
    // it up while the old leader still holds the Lease.
    let mut leadership = match &config.leader_election {
        Some(election) => {
            readiness.expect(&[]);
            match leader::acquire(client.clone(), election, stopped()).await? {
                Some(l) => Some(l),
                None => {
                    server.await??;
                    tracing::info!("operator stopped before becoming the leader");
                    return Ok(());
                }
            }
        }
        None => None,
    };
    metrics.set_leader(true);
    readiness.expect(&kinds);

    let events = crate::events::Publisher::new(client.clone(), "s3-resource-operator", std::env::var("POD_NAME").ok());
    let config = Arc::new(config);
    let wc = watcher::Config::default().any_semantic();
    let controller_config = controller::Config::default().concurrency(config.concurrency);

    // The users' trigger is a subscription to the buckets' store (see triggers.rs). Its buffer
    // only holds object references; a full buffer makes the bucket watch wait, never drops.
    let (bucket_store, bucket_writer) = reflector::store_shared::<S3Bucket>(1024);
    let bucket_updates =
        bucket_writer.subscribe().ok_or_else(|| anyhow::anyhow!("the S3Bucket store cannot be subscribed to"))?;
    let buckets = Controller::for_stream(
        triggers::spec_changes(scoped::<S3Bucket>(&client, &config), wc.clone(), bucket_writer),
        bucket_store.clone(),
    )
    .with_config(controller_config.clone())
    .graceful_shutdown_on(stopped());
    let own_secret_writes = Arc::new(triggers::OwnWrites::default());
    let (ctx, recreated_rx) = Context::new(
        client.clone(),
        backend,
        config.clone(),
        events,
        metrics.clone(),
        bucket_store.clone(),
        own_secret_writes.clone(),
    );
    let ctx = Arc::new(ctx);

    let mut work: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
    if config.crd_mode {
        let (user_store, user_writer) = reflector::store::<S3User>();
        let secrets_wc = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
        let users_for_bucket = user_store.clone();
        let users_of_recreated = user_store.clone();
        let users = Controller::for_stream(
            triggers::spec_changes(scoped::<S3User>(&client, &config), wc, user_writer),
            user_store.clone(),
        )
        .with_config(controller_config)
        .owns_stream(triggers::secret_changes(scoped::<Secret>(&client, &config), secrets_wc, own_secret_writes))
        // A user waits for its buckets: wake it when one of them turns usable or goes.
        .watches_shared_stream(triggers::bucket_usability_changes(bucket_updates), move |b: Arc<S3Bucket>| {
            let namespace = b.namespace();
            let name = b.name_any();
            users_for_bucket
                .state()
                .into_iter()
                .filter(|u| u.namespace() == namespace && u.spec.access.iter().any(|a| a.bucket == name))
                .map(|u| ObjectRef::from_obj(u.as_ref()))
                .collect::<Vec<_>>()
        })
        // A bucket made again on the store has lost its grants there (VersityGW hands it to the
        // admin account): its users put them back now, not at their next resync.
        .reconcile_on(recreated_rx.flat_map(move |b: ObjectRef<S3Bucket>| {
            let users = users_of_recreated
                .state()
                .into_iter()
                .filter(|u| u.namespace() == b.namespace && u.spec.access.iter().any(|a| a.bucket == b.name))
                .map(|u| ObjectRef::from_obj(u.as_ref()))
                .collect::<Vec<_>>();
            futures::stream::iter(users)
        }))
        .graceful_shutdown_on(stopped());

        tokio::spawn(mark_synced(bucket_store.clone(), readiness.clone(), bucket::KIND));
        tokio::spawn(mark_synced(user_store.clone(), readiness.clone(), user::KIND));
        work.push(
            buckets
                .run(reconcile::<S3Bucket>, error_policy::<S3Bucket>, ctx.clone())
                .for_each(|r| async move { log_result(bucket::KIND, r) })
                .boxed(),
        );
        work.push(
            users
                .run(reconcile::<S3User>, error_policy::<S3User>, ctx.clone())
                .for_each(|r| async move { log_result(user::KIND, r) })
                .boxed(),
        );
    }
    if config.compat_mode {
        let compat = Arc::new(Compat::new(ctx.clone(), legacy));
        let (secrets, secret_store) = compat::controller(scoped::<compat::SecretMeta>(&client, &config), &compat);
        tokio::spawn(mark_synced(secret_store.clone(), readiness.clone(), compat::KIND));
        tokio::spawn(compat::observe_first_pass(secret_store, compat.clone(), started));
        work.push(
            secrets
                .graceful_shutdown_on(stopped())
                .run(compat::reconcile, compat::error_policy, compat)
                .for_each(|r| async move { log_result(compat::KIND, r) })
                .boxed(),
        );
    }

    tracing::info!(addr = %config.telemetry.metrics_addr, backend = %config.store.backend, "operator running");
    // Losing the Lease (renewal failed, another replica took over) stops this replica's work:
    // two leaders must never reconcile at once. The process then exits non-zero and restarts
    // as a stand-by.
    let lost = async {
        match &mut leadership {
            Some(l) => {
                l.lost().await;
                true
            }
            None => std::future::pending().await,
        }
    };
    let lost_leadership = tokio::select! {
        _ = futures::future::join_all(work) => false,
        true = lost => {
            tracing::error!("lost the leader election Lease; stopping");
            metrics.set_leader(false);
            let _ = stop_tx.send(true);
            true
        }
    };
    if let Some(l) = leadership {
        l.release().await;
    }
    server.await??;
    if lost_leadership {
        anyhow::bail!("lost the leader election Lease");
    }
    tracing::info!("operator stopped");
    Ok(())
}

/// Tells `readiness` once `store` holds its first full list.
async fn mark_synced<K>(store: Store<K>, readiness: Arc<Readiness>, kind: &'static str)
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    if wait_synced(&store).await.is_ok() {
        readiness.set_synced(kind);
    }
}

/// The API for `K` in the watched namespace, or in all namespaces.
fn scoped<K>(client: &Client, config: &Config) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match &config.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn log_result<K: kube::Resource, E: std::fmt::Display>(kind: &str, r: Result<(ObjectRef<K>, Action), E>) {
    if let Err(e) = r {
        tracing::debug!(kind, error = %e, "reconcile ended with an error");
    }
}
