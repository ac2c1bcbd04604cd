//! The operator's Prometheus metrics, exposed as OpenMetrics text on `/metrics`.
//!
//! Every label value is a `&'static str` (a kind, a reason, a backend kind, an operation
//! name) so the number of series stays bounded whatever the cluster holds: object names and
//! error messages never become labels.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

/// Histogram buckets in seconds: a cached no-op reconcile takes about a millisecond, a
/// backend that is timing out takes tens of seconds, and everything in between must be
/// distinguishable.
const DURATION_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The constructor a histogram family uses for a new label set. A plain function rather
/// than a closure so the family's type can be named in the struct.
pub(crate) fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// `write` label of a status subresource write.
pub const API_WRITE_STATUS: &str = "status";
/// `write` label of a server-side apply of an S3User's credentials Secret.
pub const API_WRITE_SECRET: &str = "secret";
/// `write` label of the patch adding the operator's finalizer.
pub const API_WRITE_FINALIZER_ADD: &str = "finalizer_add";
/// `write` label of the patch removing the operator's finalizer.
pub const API_WRITE_FINALIZER_REMOVE: &str = "finalizer_remove";

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindOutcomeLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindReasonLabels {
    kind: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindWriteLabels {
    kind: &'static str,
    write: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendOperationLabels {
    store: Arc<str>,
    backend: &'static str,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendRequestLabels {
    store: Arc<str>,
    backend: &'static str,
    operation: &'static str,
    outcome: &'static str,
}

/// All metrics of the operator, on one registry. Shared as `Arc<Metrics>`; every recording
/// method takes `&self`.
pub struct Metrics {
    registry: Registry,
    leader: Gauge,
    stores_ready: Family<StoreLabels, Gauge>,
    reconciles: Family<KindOutcomeLabels, Counter>,
    reconcile_duration: HistogramFamily<KindLabels>,
    reconcile_errors: Family<KindReasonLabels, Counter>,
    status_writes: Family<KindLabels, Counter>,
    api_writes: Family<KindWriteLabels, Counter>,
    events: Family<KindReasonLabels, Counter>,
    backend_requests: HistogramFamily<BackendRequestLabels>,
    backend_writes: Family<BackendOperationLabels, Counter>,
    backend_withheld: Family<StoreLabels, Counter>,
    reconciles_deferred: Family<KindLabels, Counter>,
    objects_not_ready: Family<KindLabels, Gauge>,
    // Which objects are not Ready, by kind ("namespace/name"): the gauge is their number.
    not_ready: Mutex<BTreeMap<&'static str, BTreeSet<String>>>,
    // Families cannot be summed without knowing every label set, so the totals the tests
    // assert on are kept beside them.
    status_writes_sum: AtomicU64,
    api_writes_sum: AtomicU64,
    backend_writes_sum: AtomicU64,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The registry's debug output is every series; the totals are enough to recognise it.
        f.debug_struct("Metrics")
            .field("status_writes", &self.status_writes())
            .field("api_writes", &self.api_writes())
            .field("backend_writes", &self.backend_writes())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// The operator's metrics on a fresh registry.
    pub fn new() -> Arc<Metrics> {
        Self::with_registry(|_| {})
    }

    /// The operator's metrics, then `extra` registers more metrics on the same registry
    /// before it is frozen behind the `Arc`. This is the hook for the compatibility mode's
    /// metrics with fixed legacy names and no labels (`s3_operator_secrets_processed_total`
    /// …): they are registered here and recorded through handles `extra` keeps (prometheus
    /// metrics are cheap clones sharing one value).
    pub fn with_registry(extra: impl FnOnce(&mut Registry)) -> Arc<Metrics> {
        let mut registry = Registry::default();

        let reconciles = Family::<KindOutcomeLabels, Counter>::default();
        // Counters get `_total` and units their suffix from the encoder: the names here are
        // the bare stems of the names documented in the module's callers.
        registry.register("s3op_reconciles", "Reconciles finished, by kind and outcome", reconciles.clone());
        let reconcile_duration = HistogramFamily::<KindLabels>::new_with_constructor(duration_histogram as fn() -> _);
        registry.register_with_unit(
            "s3op_reconcile_duration",
            "Time one reconcile took, by kind",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::<KindReasonLabels, Counter>::default();
        registry.register(
            "s3op_reconcile_errors",
            "Reconciles that failed, by kind and condition reason",
            reconcile_errors.clone(),
        );
        let status_writes = Family::<KindLabels, Counter>::default();
        registry.register("s3op_status_writes", "Status subresource writes, by kind", status_writes.clone());
        let api_writes = Family::<KindWriteLabels, Counter>::default();
        registry.register(
            "s3op_api_writes",
            "Writes to the Kubernetes API (status, credentials Secret, finalizer), by the kind of object reconciled and what was written; events are counted in s3op_events",
            api_writes.clone(),
        );
        let events = Family::<KindReasonLabels, Counter>::default();
        registry.register("s3op_events", "Kubernetes events published, by kind and reason", events.clone());
        let backend_requests =
            HistogramFamily::<BackendRequestLabels>::new_with_constructor(duration_histogram as fn() -> _);
        registry.register_with_unit(
            "s3op_backend_request_duration",
            "Time one backend call took, by store, backend, operation and outcome",
            Unit::Seconds,
            backend_requests.clone(),
        );
        let backend_writes = Family::<BackendOperationLabels, Counter>::default();
        registry.register(
            "s3op_backend_writes",
            "Backend calls that changed something on the store, by store, backend and operation",
            backend_writes.clone(),
        );

        let objects_not_ready = Family::<KindLabels, Gauge>::default();
        registry.register(
            "s3op_objects_not_ready",
            "S3Buckets and S3Users whose last reconcile in this replica left them not Ready, by kind",
            objects_not_ready.clone(),
        );

        let leader = Gauge::default();
        registry.register(
            "s3op_leader",
            "1 while this replica reconciles (it holds the leader Lease, or leader election is off), else 0",
            leader.clone(),
        );

        let stores_ready = Family::<StoreLabels, Gauge>::default();
        registry.register(
            "s3op_store_ready",
            "1 while an S3Store or ClusterS3Store answers its health check with its credentials, else 0; by store",
            stores_ready.clone(),
        );

        let backend_withheld = Family::<StoreLabels, Counter>::default();
        registry.register(
            "s3op_backend_calls_withheld",
            "Backend calls not made because their store gave no answer to recent calls (its breaker is open), by store",
            backend_withheld.clone(),
        );

        let reconciles_deferred = Family::<KindLabels, Counter>::default();
        registry.register(
            "s3op_reconciles_deferred",
            "Reconciles put off because their store had used its share of the kind's reconcile slots while other stores had work, by kind",
            reconciles_deferred.clone(),
        );

        extra(&mut registry);

        Arc::new(Metrics {
            leader,
            stores_ready,
            registry,
            reconciles,
            reconcile_duration,
            reconcile_errors,
            status_writes,
            api_writes,
            events,
            backend_requests,
            backend_writes,
            backend_withheld,
            reconciles_deferred,
            objects_not_ready,
            not_ready: Mutex::new(BTreeMap::new()),
            status_writes_sum: AtomicU64::new(0),
            api_writes_sum: AtomicU64::new(0),
            backend_writes_sum: AtomicU64::new(0),
        })
    }

    /// Records whether the store shown as `store` is ready.
    pub fn set_store_ready(&self, store: &str, ready: bool) {
        self.stores_ready.get_or_create(&StoreLabels { store: store.into() }).set(i64::from(ready));
    }

    /// Forgets a deleted store.
    pub fn forget_store(&self, store: &str) {
        let labels = StoreLabels { store: store.into() };
        self.stores_ready.remove(&labels);
        self.backend_withheld.remove(&labels);
    }

    /// Counts a reconcile of `kind` put off until its store has room in its share of the slots.
    pub fn reconcile_deferred(&self, kind: &'static str) {
        self.reconciles_deferred.get_or_create(&KindLabels { kind }).inc();
    }

    /// Counts a backend call of the store shown as `store` that was not made: the store gave
    /// no answer to recent calls.
    pub fn backend_call_withheld(&self, store: &str) {
        self.backend_withheld.get_or_create(&StoreLabels { store: store.into() }).inc();
    }

    /// Records whether the `kind` object `key` ("namespace/name") is Ready after its reconcile.
    pub fn object_readiness(&self, kind: &'static str, key: &str, ready: bool) {
        // The set guards no invariant a panicking holder could break.
        let mut all = self.not_ready.lock().unwrap_or_else(PoisonError::into_inner);
        let set = all.entry(kind).or_default();
        if ready {
            set.remove(key);
        } else {
            set.insert(key.to_string());
        }
        self.objects_not_ready.get_or_create(&KindLabels { kind }).set(set.len() as i64);
    }

    /// Forgets an object that is gone.
    pub fn forget_object(&self, kind: &'static str, key: &str) {
        self.object_readiness(kind, key, true);
    }

    /// Records whether this replica is the one reconciling.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Records a finished reconcile of `kind` ("ok", "error", … as `outcome`) and its duration.
    pub fn reconcile_finished(&self, kind: &'static str, outcome: &'static str, elapsed: Duration) {
        self.reconciles.get_or_create(&KindOutcomeLabels { kind, outcome }).inc();
        self.reconcile_duration.get_or_create(&KindLabels { kind }).observe(elapsed.as_secs_f64());
    }

    /// Records a failed reconcile of `kind` with its condition `reason`.
    pub fn reconcile_error(&self, kind: &'static str, reason: &'static str) {
        self.reconcile_errors.get_or_create(&KindReasonLabels { kind, reason }).inc();
    }

    /// Records one write of a `kind` object's status (also counted as an API write).
    pub fn status_write(&self, kind: &'static str) {
        self.status_writes.get_or_create(&KindLabels { kind }).inc();
        self.status_writes_sum.fetch_add(1, Ordering::Relaxed);
        self.api_write(kind, API_WRITE_STATUS);
    }

    /// Records one write to the Kubernetes API made while reconciling a `kind` object:
    /// [`API_WRITE_STATUS`], [`API_WRITE_SECRET`], [`API_WRITE_FINALIZER_ADD`] or
    /// [`API_WRITE_FINALIZER_REMOVE`]. Events are not API writes here: see `event_published`.
    pub fn api_write(&self, kind: &'static str, write: &'static str) {
        self.api_writes.get_or_create(&KindWriteLabels { kind, write }).inc();
        self.api_writes_sum.fetch_add(1, Ordering::Relaxed);
    }

    /// API writes so far, all kinds and writes together.
    pub fn api_writes(&self) -> u64 {
        self.api_writes_sum.load(Ordering::Relaxed)
    }

    /// Status writes so far, all kinds together.
    pub fn status_writes(&self) -> u64 {
        self.status_writes_sum.load(Ordering::Relaxed)
    }

    /// Records a Kubernetes event published about a `kind` object with `reason`.
    pub fn event_published(&self, kind: &'static str, reason: &'static str) {
        self.events.get_or_create(&KindReasonLabels { kind, reason }).inc();
    }

    /// Records one backend call: which store, which `Backend` method, "ok" or the error
    /// category, and how long it took.
    pub fn backend_request(
        &self,
        store: &Arc<str>,
        backend: &'static str,
        operation: &'static str,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        self.backend_requests
            .get_or_create(&BackendRequestLabels { store: store.clone(), backend, operation, outcome })
            .observe(elapsed.as_secs_f64());
    }

    /// Records a backend call that changed something on the store.
    pub fn backend_write(&self, store: &Arc<str>, backend: &'static str, operation: &'static str) {
        self.backend_writes.get_or_create(&BackendOperationLabels { store: store.clone(), backend, operation }).inc();
        self.backend_writes_sum.fetch_add(1, Ordering::Relaxed);
    }

    /// Backend writes so far, all backends and operations together.
    pub fn backend_writes(&self) -> u64 {
        self.backend_writes_sum.load(Ordering::Relaxed)
    }

    /// Every metric as OpenMetrics text, ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error could only come from a label encoder
        // refusing a value, and a partial scrape is more useful than none.
        if let Err(err) = encode(&mut out, &self.registry) {
            tracing::warn!(error = %err, "encoding metrics failed, serving a partial scrape");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_labels_and_sums() {
        let m = Metrics::new();
        m.reconcile_finished("S3Bucket", "ok", Duration::from_millis(3));
        m.reconcile_error("S3Bucket", "BackendUnavailable");
        m.status_write("S3Bucket");
        m.status_write("S3User");
        m.event_published("S3User", "KeyRotated");
        let store: Arc<str> = "default".into();
        m.backend_request(&store, "memory", "ensure_bucket", "ok", Duration::from_millis(1));
        m.backend_write(&store, "memory", "ensure_bucket");
        m.api_write("S3User", API_WRITE_SECRET);
        m.api_write("S3Bucket", API_WRITE_FINALIZER_ADD);
        assert_eq!(m.status_writes(), 2);
        assert_eq!(m.api_writes(), 4, "status writes are API writes too");
        assert_eq!(m.backend_writes(), 1);
        m.object_readiness("S3User", "a/one", false);
        m.object_readiness("S3User", "a/two", false);
        m.object_readiness("S3User", "a/one", false);
        m.object_readiness("S3User", "a/two", true);
        m.object_readiness("S3Bucket", "a/b", false);
        m.forget_object("S3Bucket", "a/b");

        let text = m.encode();
        for line in [
            "s3op_reconciles_total{kind=\"S3Bucket\",outcome=\"ok\"} 1",
            "s3op_reconcile_duration_seconds_count{kind=\"S3Bucket\"} 1",
            "s3op_reconcile_duration_seconds_bucket{le=\"0.005\",kind=\"S3Bucket\"} 1",
            "s3op_reconcile_errors_total{kind=\"S3Bucket\",reason=\"BackendUnavailable\"} 1",
            "s3op_objects_not_ready{kind=\"S3User\"} 1",
            "s3op_objects_not_ready{kind=\"S3Bucket\"} 0",
            "s3op_status_writes_total{kind=\"S3User\"} 1",
            "s3op_api_writes_total{kind=\"S3User\",write=\"status\"} 1",
            "s3op_api_writes_total{kind=\"S3User\",write=\"secret\"} 1",
            "s3op_api_writes_total{kind=\"S3Bucket\",write=\"finalizer_add\"} 1",
            "s3op_events_total{kind=\"S3User\",reason=\"KeyRotated\"} 1",
            "s3op_backend_request_duration_seconds_count{store=\"default\",backend=\"memory\",operation=\"ensure_bucket\",outcome=\"ok\"} 1",
            "s3op_backend_writes_total{store=\"default\",backend=\"memory\",operation=\"ensure_bucket\"} 1",
            "# UNIT s3op_reconcile_duration_seconds seconds",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn extra_metrics_share_the_registry() {
        let legacy = Counter::<u64>::default();
        let m = Metrics::with_registry(|r| r.register("s3_operator_secrets_processed", "Legacy", legacy.clone()));
        legacy.inc();
        assert!(m.encode().lines().any(|l| l == "s3_operator_secrets_processed_total 1"));
    }
}
