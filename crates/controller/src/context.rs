//! What every reconcile shares: the Kubernetes client, the stores, the configuration, the
//! event publisher, metrics, per-object backoff, and the error type reconciles return.

use std::{
    collections::HashMap,
    fmt::Debug,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{controller::Action, finalizer, reflector::Store},
};
use s3op_api::{FIELD_MANAGER, FINALIZER, S3Bucket};
use s3op_backends::BackendError;
use thiserror::Error;

use crate::{
    config::Config,
    metrics::{API_WRITE_FINALIZER_ADD, API_WRITE_FINALIZER_REMOVE, Metrics},
    status::WithStatus,
    stores::{StoreKey, Stores, Unusable},
};

/// Why a reconcile must be tried again. Permanent problems are not errors: they are written to
/// status and the reconcile waits for a change (or the next resync).
#[derive(Debug, Error)]
pub enum Error {
    /// The Kubernetes API failed (conflicts, timeouts, API server restarts).
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The object store failed in a way a retry may fix.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Adding or removing the finalizer, or cleanup, failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    /// Deletion waits for the user (a non-empty bucket without forceDelete).
    #[error("deletion blocked: {0}")]
    Blocked(String),
    /// The object's store cannot be used now (not connected yet, or not answering).
    #[error("store: {0}")]
    Store(String),
}

impl From<Unusable> for Error {
    fn from(u: Unusable) -> Self {
        Error::Store(match u {
            Unusable::NotFound(m) | Unusable::NotAllowed(m) | Unusable::NotReady(m) => m,
            Unusable::Pending => "the store is still being connected".into(),
        })
    }
}

impl Error {
    /// True when a finalizer patch failed its JSON-patch precondition (HTTP 422 on add, 409 or
    /// 422 on remove): the reconcile saw a cached object older than the server's.
    pub fn is_stale_cache(&self) -> bool {
        match self {
            Error::Finalizer(inner) => matches!(
                inner.as_ref(),
                finalizer::Error::AddFinalizer(kube::Error::Api(s))
                    | finalizer::Error::RemoveFinalizer(kube::Error::Api(s)) if s.code == 422 || s.code == 409
            ),
            _ => false,
        }
    }

    /// The bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApi",
            Error::Backend(e) => e.category().as_str(),
            Error::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.reason(),
                _ => "Finalizer",
            },
            Error::Blocked(_) => "DeletionBlocked",
            Error::Store(_) => "StoreNotReady",
        }
    }
}

/// Result of one reconcile.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shared state of the reconcilers.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// The object stores, each with its (metered) backend.
    pub stores: Arc<Stores>,
    /// Operator configuration.
    pub config: Arc<Config>,
    /// Publishes Kubernetes events.
    pub events: Arc<crate::events::Publisher>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// S3Buckets as the bucket controller sees them: users resolve their grants here.
    pub buckets: Store<S3Bucket>,
    /// Credentials Secrets just written by the operator, whose watch events wake nobody.
    pub own_secret_writes: Arc<crate::triggers::OwnWrites>,
    /// Each store's share of the reconcile slots of each kind.
    pub shares: Arc<crate::shares::Shares>,
    /// S3Buckets whose bucket was created again on the store (removed behind the operator's
    /// back): their users are reconciled at once, so their grants come back in the same pass.
    pub recreated_buckets: futures::channel::mpsc::UnboundedSender<kube::runtime::reflector::ObjectRef<S3Bucket>>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("stores", &self.stores).finish_non_exhaustive()
    }
}

/// First retry delay after an error.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// The longest an object waits in its store's line for a share before it tries again by itself.
const SHARE_WAIT_LIMIT: Duration = Duration::from_secs(30);

impl Context {
    /// A context; `buckets` is the bucket controller's store. Also returns the receiving end
    /// of [`Context::recreated_buckets`].
    pub fn new(
        client: Client,
        stores: Arc<Stores>,
        config: Arc<Config>,
        events: Arc<crate::events::Publisher>,
        metrics: Arc<Metrics>,
        buckets: Store<S3Bucket>,
        own_secret_writes: Arc<crate::triggers::OwnWrites>,
    ) -> (Self, futures::channel::mpsc::UnboundedReceiver<kube::runtime::reflector::ObjectRef<S3Bucket>>) {
        let (recreated_buckets, recreated) = futures::channel::mpsc::unbounded();
        let shares = Arc::new(crate::shares::Shares::new(usize::from(config.concurrency)));
        let ctx = Self {
            client,
            stores,
            config,
            events,
            metrics,
            buckets,
            own_secret_writes,
            shares,
            recreated_buckets,
            failures: Mutex::new(HashMap::new()),
        };
        (ctx, recreated)
    }

    /// When to look again at a converged object: the resync interval, jittered by ±10% so
    /// objects created together do not hit the store together for ever.
    pub fn resync(&self) -> Action {
        Action::requeue(jitter(self.config.resync_interval, 0.1))
    }

    /// The delay before retrying `key` after one more failure: exponential from 1 s, capped at
    /// 5 minutes, with ±20% jitter.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let exp = BACKOFF_BASE.saturating_mul(1u32 << (*n - 1).min(12));
        jitter(exp.min(BACKOFF_CAP), 0.2)
    }

    /// A share of `store`'s reconcile slots for the `kind` object `namespace/name`, or, when its
    /// store has used its share while other stores have work, the action that leaves the
    /// object waiting in its store's line (see `shares.rs`).
    pub fn take_share(
        &self,
        kind: &'static str,
        store: &StoreKey,
        namespace: &str,
        name: &str,
    ) -> std::result::Result<crate::shares::Share, Action> {
        self.shares.enter(kind, store, (namespace.to_string(), name.to_string())).ok_or_else(|| {
            self.metrics.reconcile_deferred(kind);
            // It is woken when there is room; the requeue only covers a wake that never came.
            Action::requeue(SHARE_WAIT_LIMIT)
        })
    }

    /// Forgets the failures of `key` after a success.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// Waits until the caches store lookups read hold their first full list, so that a store
    /// which exists never reads as missing after a restart (which would flip converged objects
    /// to `StoreNotFound`, or let a deletion go without its cleanup). Only a dropped cache, at
    /// shutdown, ends the wait early.
    pub async fn stores_synced(&self) {
        let crate::stores::Watched { namespaced, cluster, namespaces } = self.stores.caches();
        if let Some(c) = namespaced {
            let _ = wait_synced(&c).await;
        }
        if let Some(c) = cluster {
            let _ = wait_synced(&c).await;
        }
        if let Some(c) = namespaces {
            let _ = wait_synced(&c).await;
        }
    }

    /// Publishes an event about `obj`; a failure to publish is logged, never fatal.
    pub async fn event<K: WithStatus>(&self, obj: &K, warning: bool, reason: &'static str, note: String) {
        self.event_on(&obj.object_ref(&()), K::KIND, warning, reason, note).await;
    }

    /// Publishes an event about the object `reference` points at, counted under `kind`.
    pub async fn event_on(
        &self,
        reference: &ObjectReference,
        kind: &'static str,
        warning: bool,
        reason: &'static str,
        note: String,
    ) {
        match self.events.publish(reference, warning, reason, note).await {
            Ok(()) => self.metrics.event_published(kind, reason),
            Err(e) => tracing::warn!(error = %e, reason, "could not publish an event"),
        }
    }

    /// Writes the status `build` makes from the current one, with server-side apply under the
    /// operator's field manager, unless it equals the current one. The reconcile's copy may be
    /// older than the server's (another trigger queued it before our last write arrived), so a
    /// difference is checked once more against a fresh read before writing: a reconcile that
    /// changes nothing writes nothing. The read is kept even for a new object's first status:
    /// skipping it trades a cheap read for repeated writes from stale copies.
    pub async fn write_status<K>(&self, obj: &K, build: impl Fn(Option<&K::Status>) -> K::Status) -> Result<()>
    where
        K: WithStatus,
    {
        let status = build(obj.status_ref());
        if obj.status_ref() == Some(&status) {
            return Ok(());
        }
        let api: Api<K> = obj.api_of(self.client.clone());
        let fresh = api.get_status(&obj.name_any()).await?;
        let status = build(fresh.status_ref());
        if fresh.status_ref() == Some(&status) {
            return Ok(());
        }
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        api.patch_status(&obj.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
        self.metrics.status_write(K::KIND);
        Ok(())
    }
}

/// The finalizer patch kube's `finalizer` helper makes for `obj` when the reconcile succeeds:
/// it adds the finalizer to a live object lacking it, and removes it from a deleted object once
/// cleanup succeeded. Read before the call, counted after it (the helper does not say).
pub fn finalizer_write<K: Resource>(obj: &K) -> Option<&'static str> {
    let has = obj.finalizers().iter().any(|f| f == FINALIZER);
    match (has, obj.meta().deletion_timestamp.is_some()) {
        (false, false) => Some(API_WRITE_FINALIZER_ADD),
        (true, true) => Some(API_WRITE_FINALIZER_REMOVE),
        _ => None,
    }
}

/// Waits until `store` holds its first full list; an error means its writer was dropped.
pub async fn wait_synced<K>(store: &Store<K>) -> Result<(), kube::runtime::reflector::store::WriterDropped>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    // kube-runtime's readiness signal wakes only the last of several waiters (the controller
    // waits on it too), so ask again now and then instead of waiting once.
    loop {
        if let Ok(result) = tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await {
            return result;
        }
    }
}

/// `d` scaled by a random factor in [1 - spread, 1 + spread].
fn jitter(d: Duration, spread: f64) -> Duration {
    d.mul_f64(1.0 - spread + 2.0 * spread * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finalizer_writes_are_foreseen() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let mut b = S3Bucket::new("b", s3op_api::S3BucketSpec::default());
        assert_eq!(finalizer_write(&b), Some(API_WRITE_FINALIZER_ADD), "a new object gets the finalizer");
        b.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
        assert_eq!(finalizer_write(&b), None, "a converged object writes no finalizer");
        b.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(finalizer_write(&b), Some(API_WRITE_FINALIZER_REMOVE), "cleanup removes it");
        b.metadata.finalizers = Some(vec!["someone-else".to_string()]);
        assert_eq!(finalizer_write(&b), None, "another finalizer is not ours to remove");
    }

    #[test]
    fn jitter_stays_in_its_band() {
        for _ in 0..1000 {
            let d = jitter(Duration::from_secs(100), 0.1);
            assert!(d >= Duration::from_secs(90) && d <= Duration::from_secs(110), "{d:?}");
        }
    }
}
