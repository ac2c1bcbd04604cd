//! Wires the operator: backend, metrics, HTTP endpoints, and one kube-runtime controller per
//! kind, all stopped together by one shutdown signal.

use std::{sync::Arc, time::Instant};

use futures::{
    FutureExt, StreamExt, TryStreamExt,
    channel::mpsc::{UnboundedReceiver, UnboundedSender},
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api, Client, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Action},
        reflector::{self, ObjectRef, Store, reflector},
        watcher::{self, watcher},
    },
};
use s3op_api::{ClusterS3Store, MANAGED_BY_LABEL, MANAGED_BY_VALUE, S3Bucket, S3Store, S3User};
use s3op_backends::Backend;
use tokio::sync::watch;

use crate::{
    breaker::Turn,
    bucket,
    compat::{self, Compat, LegacyMetrics},
    config::Config,
    context::{Context, wait_synced},
    http::{self, Readiness},
    leader,
    metered::MeteredBackend,
    metrics::Metrics,
    reconcile::{error_policy, reconcile},
    s3store::{self, SecretWatches, StoreContext},
    status::WithStatus,
    store,
    stores::{ActiveStore, StoreChange, StoreKey, Stores},
    triggers, user,
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
    let (turns, turned) = futures::channel::mpsc::unbounded::<(StoreKey, Turn)>();
    let default = match &config.store {
        Some(store_config) => {
            let raw = store::connect(store_config)
                .await
                .map_err(|e| anyhow::anyhow!("configuring the default {} store: {e}", store_config.backend))?;
            let backend: Arc<dyn Backend> = Arc::new(
                MeteredBackend::new(raw, metrics.clone(), &config.default_store_name)
                    .with_breaker(StoreKey::Default, turns.clone()),
            );
            if let Err(e) = backend.health().await {
                // Not fatal: the conditions of the objects on it report it, and reconciles retry.
                tracing::warn!(error = %e, "the default object store does not answer yet");
            }
            Some(ActiveStore::default_store(&config.default_store_name, store_config.clone(), backend))
        }
        None => None,
    };
    let stores = Arc::new(Stores::new(default, config.default_store_name.clone()));
    let serve_cluster_stores = config.cluster_stores;
    let readiness = Readiness::new();
    let mut kinds = vec![S3Store::KIND];
    if serve_cluster_stores {
        kinds.push(ClusterS3Store::KIND);
    }
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

    // A stand-by replica is ready at once, so a rolling update can bring it up while the old
    // leader still holds the Lease.
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
    // One slot more than the stores' shares add up to (see shares.rs): while one store uses
    // all of them, the spare slot lets the next object in the queue through the gate, so an
    // object of another store is seen (and gets its share) instead of waiting behind the busy
    // store's queue; an object over its store's share gives the slot back at once.
    let controller_config = controller::Config::default().concurrency(config.concurrency.saturating_add(1));

    // The users' trigger is a subscription to the buckets' store (see triggers.rs). Its buffer
    // only holds object references; a full buffer makes the bucket watch wait, never drops.
    let (bucket_store, bucket_writer) = reflector::store_shared::<S3Bucket>(1024);
    let bucket_updates =
        bucket_writer.subscribe().ok_or_else(|| anyhow::anyhow!("the S3Bucket store cannot be subscribed to"))?;
    let buckets_on_store = bucket_store.clone();
    let buckets = Controller::for_stream(
        triggers::spec_changes(scoped::<S3Bucket>(&client, &config), wc.clone(), bucket_writer),
        bucket_store.clone(),
    )
    .with_config(controller_config.clone())
    // A store that turned usable (or unusable) changes what its objects can do: now, not at
    // their next resync.
    .reconcile_on(
        stores
            .subscribe()
            .flat_map(move |change| futures::stream::iter(on_store(&buckets_on_store, &change, bucket::store_of))),
    )
    .graceful_shutdown_on(stopped());
    let own_secret_writes = Arc::new(triggers::OwnWrites::default());
    let (ctx, recreated_rx) = Context::new(
        client.clone(),
        stores.clone(),
        config.clone(),
        events,
        metrics.clone(),
        bucket_store.clone(),
        own_secret_writes.clone(),
    );
    let ctx = Arc::new(ctx);

    let mut work: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
    let (user_store, user_writer) = reflector::store::<S3User>();
    let mut compat_parts = None;
    if config.compat_mode {
        let compat = Arc::new(Compat::new(ctx.clone(), legacy));
        let (secrets, secret_store) = compat::controller(scoped::<compat::SecretMeta>(&client, &config), &compat);
        compat_parts = Some((compat, secrets, secret_store));
    }
    let mut secret_watches = SecretWatches::new(client.clone());
    let (check_namespaced, namespaced_checks) = futures::channel::mpsc::unbounded();
    let (check_cluster, cluster_checks) = futures::channel::mpsc::unbounded();
    tokio::spawn(on_breaker_turns(turned, stores.clone(), check_namespaced, check_cluster));
    let namespaced_stores =
        store_controller(scoped::<S3Store>(&client, &config), secret_watches.subscribe(), namespaced_checks, &config);
    let cluster_stores = serve_cluster_stores.then(|| {
        store_controller(
            Api::<ClusterS3Store>::all(client.clone()),
            secret_watches.subscribe(),
            cluster_checks,
            &config,
        )
    });
    let store_ctx = Arc::new(StoreContext::new(
        ctx.clone(),
        config.crd_mode.then(|| user_store.clone()),
        compat_parts.as_ref().map(|(_, _, s)| s.clone()),
        (namespaced_stores.store(), cluster_stores.as_ref().map(Controller::store)),
        secret_watches,
        turns,
    ));
    let namespaces = if serve_cluster_stores {
        let (reader, writer) = reflector::store::<PartialObjectMeta<Namespace>>();
        // A namespace whose labels change may now match a ClusterS3Store's selector, or no
        // longer: its objects look again at once. Compared before the reflector stores it.
        let (seen, stores_told) = (reader.clone(), stores.clone());
        let events = watcher(Api::<PartialObjectMeta<Namespace>>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .inspect_ok(move |event| {
                if let watcher::Event::Apply(ns) = event {
                    let before = seen.get(&ObjectRef::from_obj(ns)).map(|o| o.labels().clone());
                    if before.as_ref() != Some(ns.labels()) {
                        stores_told.namespace_changed(ns.name_any());
                    }
                }
            });
        let stream = reflector(writer, events);
        let stop = stopped();
        tokio::spawn(async move {
            tokio::select! {
                _ = stream.for_each(|_| futures::future::ready(())) => {}
                _ = stop => {}
            }
        });
        Some(reader)
    } else {
        None
    };
    stores.watch(Some(namespaced_stores.store()), cluster_stores.as_ref().map(Controller::store), namespaces);
    tokio::spawn(mark_synced(namespaced_stores.store(), readiness.clone(), S3Store::KIND));
    work.push(
        namespaced_stores
            .graceful_shutdown_on(stopped())
            .run(s3store::reconcile::<S3Store>, s3store::error_policy::<S3Store>, store_ctx.clone())
            .for_each(|r| async move { log_result(S3Store::KIND, r) })
            .boxed(),
    );
    if let Some(cluster_stores) = cluster_stores {
        tokio::spawn(mark_synced(cluster_stores.store(), readiness.clone(), ClusterS3Store::KIND));
        work.push(
            cluster_stores
                .graceful_shutdown_on(stopped())
                .run(s3store::reconcile::<ClusterS3Store>, s3store::error_policy::<ClusterS3Store>, store_ctx)
                .for_each(|r| async move { log_result(ClusterS3Store::KIND, r) })
                .boxed(),
        );
    }
    if config.crd_mode {
        let secrets_wc = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
        let users_for_bucket = user_store.clone();
        let users_of_recreated = user_store.clone();
        let users_on_store = user_store.clone();
        let users = Controller::for_stream(
            triggers::spec_changes(scoped::<S3User>(&client, &config), wc, user_writer),
            user_store.clone(),
        )
        // An object that waited for its store's share of the slots: there is room now.
        .reconcile_on(ctx.shares.woken(user::KIND).map(|(namespace, name)| ObjectRef::new(&name).within(&namespace)))
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
        .reconcile_on(
            stores
                .subscribe()
                .flat_map(move |change| futures::stream::iter(on_store(&users_on_store, &change, user::store_of))),
        )
        .graceful_shutdown_on(stopped());

        tokio::spawn(mark_synced(bucket_store.clone(), readiness.clone(), bucket::KIND));
        tokio::spawn(mark_synced(user_store.clone(), readiness.clone(), user::KIND));
        work.push(
            buckets
                .reconcile_on(
                    ctx.shares.woken(bucket::KIND).map(|(namespace, name)| ObjectRef::new(&name).within(&namespace)),
                )
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
    if let Some((compat, secrets, secret_store)) = compat_parts {
        let secrets_on_store = secret_store.clone();
        let secrets = secrets
            .reconcile_on(stores.subscribe().flat_map(move |change| {
                futures::stream::iter(on_store(&secrets_on_store, &change, |m| {
                    compat::store_of(m.metadata.annotations.as_ref())
                }))
            }))
            .reconcile_on(
                ctx.shares.woken(compat::KIND).map(|(namespace, name)| ObjectRef::new(&name).within(&namespace)),
            );
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

    tracing::info!(
        addr = %config.telemetry.metrics_addr,
        default_store = config.store.as_ref().map(|s| s.backend.to_string()).unwrap_or_else(|| "none".into()),
        "operator running"
    );
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

/// The objects in `cache` that `change` concerns.
fn on_store<K>(cache: &Store<K>, change: &StoreChange, store_of: impl Fn(&K) -> StoreKey) -> Vec<ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    cache
        .state()
        .into_iter()
        .filter(|o| change.concerns(&o.namespace().unwrap_or_default(), &store_of(o)))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// Acts on the stores' breakers: a store that went silent, or answers again, is checked at once
/// (its status shows it, and its objects follow the check); a store that answers again also
/// wakes its objects, which covers the default store, which has no store object to check.
async fn on_breaker_turns(
    mut turned: UnboundedReceiver<(StoreKey, Turn)>,
    stores: Arc<Stores>,
    check_namespaced: UnboundedSender<ObjectRef<S3Store>>,
    check_cluster: UnboundedSender<ObjectRef<ClusterS3Store>>,
) {
    while let Some((key, turn)) = turned.next().await {
        match &key {
            StoreKey::Default => {}
            StoreKey::Namespaced { namespace, name } => {
                let _ = check_namespaced.unbounded_send(ObjectRef::new(name).within(namespace));
            }
            StoreKey::Cluster(name) => {
                let _ = check_cluster.unbounded_send(ObjectRef::new(name));
            }
        }
        if turn == Turn::Closed {
            stores.notify(key);
        }
    }
}

/// The controller of one store kind over `api`, woken when a Secret it references changes (a
/// rotated admin key or CA bundle is picked up without a restart; `secrets` names each Secret
/// that changed) and when its breaker turns (`checks`). A CA bundle in a ConfigMap is read
/// again at the store's next resync (ConfigMaps are not watched: the operator may only get the
/// ones stores name).
fn store_controller<K>(
    api: Api<K>,
    secrets: UnboundedReceiver<(String, String)>,
    checks: UnboundedReceiver<ObjectRef<K>>,
    config: &Config,
) -> Controller<K>
where
    K: s3store::StoreObject + kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let controller = Controller::new(api, watcher::Config::default().any_semantic())
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .reconcile_on(checks);
    let stores = controller.store();
    controller.reconcile_on(secrets.flat_map(move |(namespace, name)| {
        let woken: Vec<ObjectRef<K>> = stores
            .state()
            .into_iter()
            .filter(|s| s.reads_secret(&namespace, &name))
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect();
        futures::stream::iter(woken)
    }))
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
