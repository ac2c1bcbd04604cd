//! A [`Backend`] wrapper that records every call's duration and outcome, and every write to
//! the store, so the reconcilers stay free of metrics code and no backend can forget them. It
//! also holds the store's [`Breaker`]: every call passes here, so here is where a silent store
//! stops being asked.

use std::{future::Future, sync::Arc, time::Instant};

use futures::channel::mpsc::UnboundedSender;

use async_trait::async_trait;
use s3op_backends::{
    Backend, BackendKind, BucketDeletion, BucketInfo, BucketSpec, Capabilities, Change, CompatAccount, CompatStore,
    Credentials, Grant, Owner, Result, UserInfo, UserSpec, compat::AccountState, ledger::Subject,
};

use crate::{
    breaker::{self, Admission, Breaker, Turn},
    metrics::Metrics,
    stores::StoreKey,
};

/// Wraps a backend and records `s3op_backend_request_duration_seconds` for every call and
/// `s3op_backend_writes_total` for every call that changed the store; with a breaker, withholds
/// calls from a store that gave no answer (`s3op_backend_calls_withheld_total`).
#[derive(Debug, Clone)]
pub struct MeteredBackend {
    inner: Arc<dyn Backend>,
    metrics: Arc<Metrics>,
    store: Arc<str>,
    guard: Option<Guard>,
}

/// A store's breaker, and where its turns are told (the store's key with each turn).
#[derive(Debug, Clone)]
struct Guard {
    breaker: Arc<Breaker>,
    key: StoreKey,
    turns: UnboundedSender<(StoreKey, Turn)>,
}

impl MeteredBackend {
    /// Meters `inner`, the backend of the store named `store`, into `metrics`.
    pub fn new(inner: Arc<dyn Backend>, metrics: Arc<Metrics>, store: &str) -> Self {
        Self { inner, metrics, store: store.into(), guard: None }
    }

    /// The same, with a breaker for the store `key`: its turns (silent, answering again) are sent
    /// to `turns`.
    pub fn with_breaker(self, key: StoreKey, turns: UnboundedSender<(StoreKey, Turn)>) -> Self {
        Self { guard: Some(Guard { breaker: Arc::new(Breaker::default()), key, turns }), ..self }
    }

    /// Runs one call, timing it and labelling it with `operation` and its outcome; `wrote`
    /// decides from a successful result whether the store was changed. A store that gave no
    /// answer lately is not called (see [`Breaker`]).
    async fn call<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T>>,
        wrote: impl FnOnce(&T) -> bool,
    ) -> Result<T> {
        let admitted = self.guard.as_ref().map_or(Admission::Call, |g| g.breaker.admit());
        if admitted == Admission::Withhold {
            self.metrics.backend_call_withheld(&self.store);
            return Err(breaker::withheld(self.inner.kind().as_str()));
        }
        self.measured(operation, admitted, fut, wrote).await
    }

    /// Runs one admitted call: times it, counts it, and tells the breaker what it got back.
    async fn measured<T>(
        &self,
        operation: &'static str,
        admitted: Admission,
        fut: impl Future<Output = Result<T>>,
        wrote: impl FnOnce(&T) -> bool,
    ) -> Result<T> {
        let backend = self.inner.kind().as_str();
        let start = Instant::now();
        let result = fut.await;
        if let Some(g) = &self.guard {
            let turn = g.breaker.record(admitted, &result);
            if turn != Turn::None {
                tracing::info!(store = %self.store, ?turn, "the store's breaker turned");
                let _ = g.turns.unbounded_send((g.key.clone(), turn));
            }
        }
        let outcome = match &result {
            Ok(_) => "ok",
            Err(err) => err.category().as_str(),
        };
        self.metrics.backend_request(&self.store, backend, operation, outcome, start.elapsed());
        if let Ok(value) = &result
            && wrote(value)
        {
            self.metrics.backend_write(&self.store, backend, operation);
        }
        result
    }
}

#[async_trait]
impl Backend for MeteredBackend {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn health(&self) -> Result<()> {
        // The health check is the store reconciler's own probe: it always asks, so a store
        // object shows the store's real answer, and an answer closes the breaker.
        self.measured("health", Admission::Call, self.inner.health(), |_| false).await
    }

    async fn describe_bucket(&self, name: &str) -> Result<Option<BucketInfo>> {
        self.call("describe_bucket", self.inner.describe_bucket(name), |_| false).await
    }

    async fn ensure_bucket(&self, spec: &BucketSpec, adopt: bool) -> Result<Change> {
        self.call("ensure_bucket", self.inner.ensure_bucket(spec, adopt), |c| c.wrote()).await
    }

    async fn delete_bucket(&self, name: &str, force: bool) -> Result<BucketDeletion> {
        self.call("delete_bucket", self.inner.delete_bucket(name, force), |d| *d == BucketDeletion::Deleted).await
    }

    async fn describe_user(&self, name: &str) -> Result<Option<UserInfo>> {
        self.call("describe_user", self.inner.describe_user(name), |_| false).await
    }

    async fn ensure_user(&self, spec: &UserSpec, adopt: bool) -> Result<Change> {
        self.call("ensure_user", self.inner.ensure_user(spec, adopt), |c| c.wrote()).await
    }

    async fn create_key(&self, user: &str, import: Option<&Credentials>) -> Result<Credentials> {
        self.call("create_key", self.inner.create_key(user, import), |_| true).await
    }

    async fn delete_key(&self, user: &str, access_key_id: &str) -> Result<()> {
        // A key already gone is also success and is counted: the trait does not say which
        // it was, and over-counting a rare revoke is harmless.
        self.call("delete_key", self.inner.delete_key(user, access_key_id), |_| true).await
    }

    async fn set_grants(&self, user: &str, grants: &[Grant]) -> Result<Change> {
        self.call("set_grants", self.inner.set_grants(user, grants), |c| c.wrote()).await
    }

    async fn delete_user(&self, name: &str) -> Result<()> {
        self.call("delete_user", self.inner.delete_user(name), |_| true).await
    }

    fn compat(&self) -> Result<&dyn CompatStore> {
        self.inner.compat().map(|_| self as &dyn CompatStore)
    }

    async fn release_claim(&self, subject: Subject, name: &str, owner: &Owner) -> Result<()> {
        self.call("release_claim", self.inner.release_claim(subject, name, owner), |_| true).await
    }

    async fn holder(&self, subject: Subject, name: &str) -> Result<Option<Owner>> {
        self.call("holder", self.inner.holder(subject, name), |_| false).await
    }
}

/// Compatibility calls are metered like the others, under `compat_*` operation names.
#[async_trait]
impl CompatStore for MeteredBackend {
    fn accepts(&self, account: &CompatAccount) -> Result<()> {
        self.inner.compat()?.accepts(account)
    }

    async fn account(&self, wanted: &CompatAccount) -> Result<AccountState> {
        self.call("compat_account", self.inner.compat()?.account(wanted), |_| false).await
    }

    async fn create_account(&self, account: &CompatAccount) -> Result<()> {
        self.call("compat_create_account", self.inner.compat()?.create_account(account), |_| true).await
    }

    async fn update_account(&self, account: &CompatAccount, differs: &[&'static str]) -> Result<()> {
        self.call("compat_update_account", self.inner.compat()?.update_account(account, differs), |_| true).await
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        self.call("compat_bucket_exists", self.inner.compat()?.bucket_exists(bucket), |_| false).await
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.call("compat_create_bucket", self.inner.compat()?.create_bucket(bucket), |_| true).await
    }

    async fn bucket_owner(&self, bucket: &str) -> Result<Option<String>> {
        self.call("compat_bucket_owner", self.inner.compat()?.bucket_owner(bucket), |_| false).await
    }

    async fn change_bucket_owner(&self, bucket: &str, owner: &str, previous: Option<&str>) -> Result<()> {
        let inner = self.inner.compat()?;
        self.call("compat_change_bucket_owner", inner.change_bucket_owner(bucket, owner, previous), |_| true).await
    }

    async fn privileged(&self, access_key: &str) -> Result<Option<String>> {
        self.call("compat_privileged", self.inner.compat()?.privileged(access_key), |_| false).await
    }

    async fn claim(&self, subject: Subject, name: &str, owner: &Owner) -> Result<bool> {
        self.call("compat_claim", self.inner.compat()?.claim(subject, name, owner), |claimed| *claimed).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use s3op_backends::{BackendError, Owner, memory::MemoryBackend};

    use super::*;

    fn spec() -> BucketSpec {
        BucketSpec {
            name: "b1".into(),
            owner: Owner::s3bucket("ns", "b1", "u1"),
            versioning: None,
            object_lock: false,
            tags: BTreeMap::new(),
            quota: None,
        }
    }

    #[tokio::test]
    async fn counts_writes_only_when_the_store_changed() {
        let metrics = Metrics::new();
        let memory = Arc::new(MemoryBackend::new());
        let backend = MeteredBackend::new(memory.clone(), metrics.clone(), "default");

        assert_eq!(backend.ensure_bucket(&spec(), false).await, Ok(Change::Created));
        assert_eq!(metrics.backend_writes(), 1);
        assert_eq!(backend.ensure_bucket(&spec(), false).await, Ok(Change::Unchanged));
        assert_eq!(metrics.backend_writes(), 1, "an unchanged ensure_bucket is no write");

        let user = UserSpec { name: "u1".into(), owner: spec().owner };
        assert_eq!(backend.ensure_user(&user, false).await, Ok(Change::Created));
        assert_eq!(metrics.backend_writes(), 2);
        backend.create_key("u1", None).await.expect("create_key");
        assert_eq!(metrics.backend_writes(), 3, "create_key always writes");
        assert_eq!(metrics.backend_writes(), memory.writes(), "metered writes match the store's");

        memory.set_down(true);
        assert!(backend.describe_bucket("b1").await.is_err());
        memory.set_down(false);
        assert_eq!(backend.delete_bucket("missing", false).await, Ok(BucketDeletion::AlreadyGone));
        assert_eq!(metrics.backend_writes(), 3, "nothing deleted, nothing written");

        let text = metrics.encode();
        for line in [
            "s3op_backend_writes_total{store=\"default\",backend=\"memory\",operation=\"ensure_bucket\"} 1",
            "s3op_backend_writes_total{store=\"default\",backend=\"memory\",operation=\"create_key\"} 1",
            "s3op_backend_request_duration_seconds_count{store=\"default\",backend=\"memory\",operation=\"ensure_bucket\",outcome=\"ok\"} 2",
            "s3op_backend_request_duration_seconds_count{store=\"default\",backend=\"memory\",operation=\"describe_bucket\",outcome=\"BackendUnavailable\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
    }

    #[tokio::test]
    async fn a_silent_store_is_not_asked_until_it_answers_its_health_check() {
        use futures::StreamExt;
        let metrics = Metrics::new();
        let memory = Arc::new(MemoryBackend::new());
        let (turns, mut turned) = futures::channel::mpsc::unbounded();
        let key = StoreKey::Cluster("minio".into());
        let backend = MeteredBackend::new(memory.clone(), metrics.clone(), "ClusterS3Store/minio")
            .with_breaker(key.clone(), turns);
        memory.set_down(true);
        let silent = backend.describe_bucket("b1").await.unwrap_err();
        assert!(matches!(silent, BackendError::Unreachable { .. }), "{silent}");
        assert_eq!(turned.next().await, Some((key.clone(), Turn::Opened)));
        memory.set_down(false);
        let withheld = backend.ensure_bucket(&spec(), false).await.unwrap_err();
        assert_eq!(withheld, breaker::withheld("memory"), "not asked although it is back");
        assert_eq!(memory.writes(), 0);
        backend.health().await.expect("the health check always asks");
        assert_eq!(turned.next().await, Some((key, Turn::Closed)));
        assert_eq!(backend.ensure_bucket(&spec(), false).await, Ok(Change::Created));
        let text = metrics.encode();
        for line in [
            "s3op_backend_calls_withheld_total{store=\"ClusterS3Store/minio\"} 1",
            "s3op_backend_request_duration_seconds_count{store=\"ClusterS3Store/minio\",backend=\"memory\",operation=\"ensure_bucket\",outcome=\"ok\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
    }
}
