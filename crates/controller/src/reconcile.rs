//! What every reconcile of a custom resource shares: the finalizer, timing and metrics, the one
//! way a state becomes status (and a Warning event), and the retry policy. Each kind says only
//! what its `apply` and `cleanup` do.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Api, ResourceExt,
    runtime::{
        controller::Action,
        finalizer::{Event as FinalizerEvent, finalizer},
    },
};
use s3op_api::{ConditionReason, FINALIZER};
use s3op_backends::BackendError;
use serde::Serialize;
use tracing::Instrument;

use crate::{
    context::{Context, Error, Result, finalizer_write},
    status::{Readiness, WithStatus, conditions_for},
    stores::{StoreKey, Unusable},
};

/// A kind reconciled with the operator's finalizer: what it converges to, and what its deletion
/// removes from the store.
pub trait Reconciled: WithStatus + Serialize + Send + Sync + 'static {
    /// Makes the store match the object, reporting the outcome in its status.
    fn apply(&self, ctx: &Context) -> impl Future<Output = Result<Action>> + Send;
    /// Removes what the object holds on the store, as its deletion policy says; an error keeps
    /// the finalizer (and the object) until a retry succeeds.
    fn cleanup(&self, ctx: &Context) -> impl Future<Output = Result<Action>> + Send;
    /// Writes the object's status for `readiness`, keeping what status already names.
    fn report(&self, ctx: &Context, readiness: &Readiness) -> impl Future<Output = Result<()>> + Send;
    /// The store the object lives on, whose share of the reconcile slots it runs in.
    fn store(&self) -> StoreKey;
}

/// What a deleted object shows while its cleanup, failed with `err`, waits for a retry; `None`
/// when there is nothing new to show. A failure a retry may clear (the store down or still
/// being connected) reads `Deleting`, quietly: the deletion is still in progress. A store's
/// refusal that needs a human shows its own reason (and stalls). A blocked deletion has already
/// said why, and a Kubernetes API failure would likely fail the status write too.
pub fn deletion_wait(err: &Error) -> Option<Readiness> {
    let waiting = |message: String| Readiness::pending(ConditionReason::Deleting, message);
    match err {
        Error::Backend(e) if e.is_retryable() => Some(waiting(format!("deletion is retried after a store error: {e}"))),
        Error::Backend(e) => Some(Readiness { warn: false, ..Readiness::of_error(e) }),
        Error::Store(m) => Some(waiting(format!("deletion waits for the store: {m}"))),
        Error::Blocked(_) | Error::Kube(_) | Error::Finalizer(_) => None,
    }
}

/// Runs `obj`'s cleanup; when it cannot finish now, says so in status before the retry (only
/// then: a deletion that succeeds at once writes no status).
async fn clean_up<K: Reconciled>(obj: &K, ctx: &Context) -> Result<Action> {
    let result = obj.cleanup(ctx).await;
    if result.is_ok() {
        let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
        ctx.metrics.forget_object(K::KIND, &key);
    }
    if let Err(err) = &result
        && let Some(readiness) = deletion_wait(err)
        && let Err(write) = obj.report(ctx, &readiness).await
    {
        // The cleanup's own error is what the retry and the metrics are about.
        tracing::debug!(kind = K::KIND, error = %write, "could not show the waiting deletion in status");
    }
    result
}

/// Why a reconcile stops before it converged: a state to show while waiting for a change (or
/// the next resync), or a store error (retried when a retry can help).
#[derive(Debug)]
pub enum Halt {
    /// Not Ready, for a reason status and events show; nothing to retry.
    Wait(Readiness),
    /// The store failed.
    Failed(BackendError),
    /// The Kubernetes API failed (or another failure a retry may fix); retried.
    Kube(Error),
    /// The store is still being connected: look again in a moment, reporting nothing.
    Pending,
}

impl From<Unusable> for Halt {
    fn from(u: Unusable) -> Self {
        match u.readiness() {
            Some(readiness) => Halt::Wait(readiness),
            None => Halt::Pending,
        }
    }
}

impl From<BackendError> for Halt {
    fn from(e: BackendError) -> Self {
        Halt::Failed(e)
    }
}

impl From<kube::Error> for Halt {
    fn from(e: kube::Error) -> Self {
        Halt::Kube(e.into())
    }
}

impl From<Error> for Halt {
    fn from(e: Error) -> Self {
        Halt::Kube(e)
    }
}

impl Halt {
    /// Reports the halt through `report`, then waits for a change, or returns the error for a
    /// retry with backoff.
    pub async fn settle<F, Fut>(self, ctx: &Context, report: F) -> Result<Action>
    where
        F: FnOnce(Readiness) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        match self {
            Halt::Wait(readiness) => {
                report(readiness).await?;
                Ok(ctx.resync())
            }
            Halt::Failed(e) => {
                report(Readiness::of_error(&e)).await?;
                if e.is_retryable() { Err(e.into()) } else { Ok(ctx.resync()) }
            }
            Halt::Kube(e) => Err(e),
            Halt::Pending => Ok(Action::requeue(STORE_PENDING_RETRY)),
        }
    }
}

/// How soon an object whose store is still being connected looks again.
const STORE_PENDING_RETRY: Duration = Duration::from_secs(1);

/// Reconciles one object of kind `K`: adds the finalizer to a live object, runs `cleanup`
/// before letting a deleted one go, and counts and times the work.
pub async fn reconcile<K: Reconciled>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let _share = match ctx.take_share(K::KIND, &obj.store(), &namespace, &name) {
        Ok(share) => share,
        Err(wait) => return Ok(wait),
    };
    let api: Api<K> = obj.api_of(ctx.client.clone());
    let finalizer_patch = finalizer_write(obj.as_ref());
    let work = async {
        ctx.stores_synced().await;
        finalizer(&api, FINALIZER, obj, |event| async {
            match event {
                FinalizerEvent::Apply(o) => o.apply(&ctx).await,
                FinalizerEvent::Cleanup(o) => clean_up(o.as_ref(), &ctx).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)))
    };
    let result = timed(K::KIND, &namespace, &name, &ctx, work).await;
    if result.is_ok() {
        ctx.succeeded(&key(K::KIND, &namespace, &name));
        if let Some(write) = finalizer_patch {
            ctx.metrics.api_write(K::KIND, write);
        }
    }
    result
}

/// Runs `work` in a span naming the object and records its duration and outcome.
pub async fn timed(
    kind: &'static str,
    namespace: &str,
    name: &str,
    ctx: &Context,
    work: impl Future<Output = Result<Action>>,
) -> Result<Action> {
    let started = Instant::now();
    let span = tracing::info_span!("reconcile", kind, %namespace, %name);
    let result = work.instrument(span).await;
    ctx.metrics.reconcile_finished(kind, if result.is_ok() { "ok" } else { "error" }, started.elapsed());
    result
}

/// The key of an object in the backoff table.
pub fn key(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind}/{namespace}/{name}")
}

/// Writes `obj`'s status for `readiness` (with a Warning event when it turns into a problem):
/// `build` makes the kind's status from the current one and the new conditions.
pub async fn report<K: WithStatus>(
    obj: &K,
    ctx: &Context,
    readiness: &Readiness,
    build: impl Fn(K::Status, Vec<Condition>) -> K::Status,
) -> Result<()> {
    let previous = obj.status_ref().map(K::conditions).unwrap_or_default();
    if readiness.warns_after(previous) {
        ctx.event(obj, true, readiness.reason.as_str(), readiness.message.clone()).await;
    }
    let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    ctx.metrics.object_readiness(K::KIND, &key, readiness.ready);
    let generation = obj.meta().generation;
    ctx.write_status(obj, |current| {
        let current = current.cloned().unwrap_or_default();
        let conditions = conditions_for(K::conditions(&current), readiness, generation);
        build(current, conditions)
    })
    .await
}

/// Retries with per-object exponential backoff; the error is counted and logged once here.
pub fn error_policy<K: WithStatus>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    if err.is_stale_cache() {
        // A reconcile ran on a cached copy older than our own finalizer patch (another trigger
        // queued it meanwhile); the watch brings the fresh copy in a moment. Not a failure.
        tracing::debug!(kind = K::KIND, %name, "finalizer patch raced a stale cache; retrying");
        return Action::requeue(Duration::from_millis(300));
    }
    retry_later(&ctx, K::KIND, &namespace, &name, err)
}

/// Counts and logs a failed reconcile and picks its backoff delay.
pub fn retry_later(ctx: &Context, kind: &'static str, namespace: &str, name: &str, err: &Error) -> Action {
    ctx.metrics.reconcile_error(kind, err.reason());
    let delay = ctx.backoff(&key(kind, namespace, name));
    tracing::warn!(kind, %namespace, %name, error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use s3op_backends::BackendError;

    use super::*;

    #[test]
    fn a_deletion_that_a_retry_may_finish_reads_deleting_and_one_needing_a_human_stalls() {
        let down = Error::Backend(BackendError::Unavailable { backend: "minio", cause: "connection refused".into() });
        let shown = deletion_wait(&down).expect("shown");
        assert_eq!(
            (shown.ready, shown.reason, shown.stalled, shown.warn),
            (false, ConditionReason::Deleting, false, false)
        );
        assert!(shown.message.contains("connection refused"), "{}", shown.message);
        let store = deletion_wait(&Error::Store("team-a/minio is not ready: down".into())).expect("shown");
        assert_eq!((store.reason, store.stalled), (ConditionReason::Deleting, false));
        assert!(store.message.contains("team-a/minio is not ready"), "{}", store.message);
        let refused = deletion_wait(&Error::Backend(BackendError::Forbidden("AccessDenied".into()))).expect("shown");
        assert_eq!((refused.reason, refused.stalled, refused.warn), (ConditionReason::Forbidden, true, false));
        assert_eq!(deletion_wait(&Error::Blocked("not empty".into())), None, "already reported as DeletionBlocked");
    }
}
