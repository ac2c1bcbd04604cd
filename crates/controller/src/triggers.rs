//! What wakes a reconcile. Every write the operator makes (status, finalizer, Secret) comes
//! back through the watches, and waking an object for each of them multiplied a rollout's
//! reconciles (docs/benchmarks.md). Only the changes a reconcile acts on wake it, and the
//! periodic resync catches anything else.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Resource, ResourceExt,
    runtime::{
        Predicate, WatchStreamExt, predicates,
        reflector::{self, ObjectRef, store::Writer},
        watcher,
    },
};
use s3op_api::S3Bucket;
use serde::de::DeserializeOwned;

use crate::status::ready_condition;

/// Objects of `api`, kept in `writer`'s store, yielded when their spec (generation, which
/// deletion also bumps) or finalizers change. Status writes change neither. Finalizers are
/// watched because kube's finalizer helper ends the reconcile that adds ours and waits for the
/// watch to bring the object back.
pub fn spec_changes<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let events = watcher(api, config).default_backoff().modify(slim);
    reflector::reflector(writer, events)
        .applied_objects()
        .predicate_filter(predicates::generation.combine(predicates::finalizers), Default::default())
}

/// Drops what no reconcile reads before an object enters the store: managed fields (one entry
/// per writer, the operator's status writes included) and kubectl's last-applied annotation (a
/// second copy of the whole object). Together they are most of a stored object's size.
fn slim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
        // An emptied map still holds its node.
        if a.is_empty() {
            meta.annotations = None;
        }
    }
}

/// kubectl's client-side apply record.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Resource versions of the credentials Secrets the operator has just written itself. The
/// watch event of such a write wakes nobody: it woke the S3User once more for every new user,
/// which cost three IAM requests on AWS for nothing.
#[derive(Debug, Default)]
pub struct OwnWrites(Mutex<HashMap<(String, String), String>>);

impl OwnWrites {
    /// Remembers that Secret `namespace/name` is at `resource_version` by our own write.
    pub fn record(&self, namespace: &str, name: &str, resource_version: Option<String>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_string(), name.to_string());
        match resource_version {
            Some(rv) => map.insert(key, rv),
            None => map.remove(&key),
        };
    }

    /// True, once, when `secret` is exactly what our last write of it made.
    fn is_own(&self, secret: &Secret) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = (secret.namespace().unwrap_or_default(), secret.name_any());
        let own = map.get(&key).is_some_and(|rv| secret.metadata.resource_version.as_ref() == Some(rv));
        if own {
            map.remove(&key);
        }
        own
    }

    /// Forgets a deleted Secret: a write whose watch event never came (a later write overtook
    /// it) would otherwise stay remembered for ever.
    fn forget(&self, secret: &Secret) {
        let key = (secret.namespace().unwrap_or_default(), secret.name_any());
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    }
}

/// Credentials Secrets worth waking their S3User for: deleted, or changed by anyone but the
/// operator (edited, tampered with, or seen again on a relist).
pub fn secret_changes(
    api: Api<Secret>,
    config: watcher::Config,
    own: Arc<OwnWrites>,
) -> impl Stream<Item = Result<Secret, watcher::Error>> + Send + 'static {
    watcher(api, config).default_backoff().try_filter_map(move |event| {
        let wake = match event {
            watcher::Event::Apply(s) | watcher::Event::InitApply(s) if !own.is_own(&s) => Some(s),
            watcher::Event::Delete(s) => {
                own.forget(&s);
                Some(s)
            }
            _ => None,
        };
        futures::future::ready(Ok(wake))
    })
}

/// What an S3User needs to know of a bucket it is granted: whether the bucket was reconciled
/// at all (a user waits quietly for a new bucket but warns about a failed one), whether it is
/// Ready, and the store's name.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Usability {
    reconciled: bool,
    ready: bool,
    name: Option<String>,
}

fn usability(bucket: &S3Bucket) -> Usability {
    let status = bucket.status.as_ref();
    // Only a Ready condition for the current spec counts (users require it), so an edited
    // bucket wakes its users once more when its status catches up.
    let ready = status
        .and_then(|s| ready_condition(&s.conditions))
        .filter(|c| c.observed_generation == bucket.metadata.generation);
    Usability {
        reconciled: ready.is_some(),
        ready: ready.is_some_and(|c| c.status == "True"),
        name: status.and_then(|s| s.bucket_name.clone()),
    }
}

/// The S3Buckets of `updates` whose usability for a user changed, or that are being deleted.
/// A bucket's other writes (its finalizer, a new status message) would wake its users for
/// nothing.
///
/// `updates` must come from the store the user reconciler reads (a subscription to it), so a
/// user woken by a bucket turning Ready also reads it as Ready; a second watch could lag.
pub fn bucket_usability_changes(
    updates: impl Stream<Item = Arc<S3Bucket>> + Send + 'static,
) -> impl Stream<Item = Arc<S3Bucket>> + Send + 'static {
    let mut seen: HashMap<ObjectRef<S3Bucket>, Usability> = HashMap::new();
    updates.filter(move |bucket| {
        let key = ObjectRef::from_obj(bucket.as_ref());
        let changed = if bucket.metadata.deletion_timestamp.is_some() {
            // Forgetting it keeps the map bounded; a deleted bucket's few last updates pass.
            seen.remove(&key);
            true
        } else {
            let now = usability(bucket);
            seen.insert(key, now.clone()) != Some(now)
        };
        futures::future::ready(changed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{Readiness, conditions_for};
    use s3op_api::{S3BucketSpec, S3BucketStatus};

    fn bucket(name: &str, ready: Option<bool>) -> Arc<S3Bucket> {
        let mut b = S3Bucket::new(name, S3BucketSpec::default());
        b.metadata.namespace = Some("ns".into());
        b.metadata.generation = Some(1);
        b.status = ready.map(|r| {
            let readiness = if r {
                Readiness::available("ok")
            } else {
                Readiness::not_ready(s3op_api::ConditionReason::BackendUnavailable, "down")
            };
            S3BucketStatus {
                bucket_name: Some(name.to_string()),
                conditions: conditions_for(&[], &readiness, Some(1)),
                ..S3BucketStatus::default()
            }
        });
        Arc::new(b)
    }

    #[test]
    fn own_secret_writes_are_recognised_once() {
        let own = OwnWrites::default();
        let mut s = Secret::default();
        s.metadata.namespace = Some("ns".into());
        s.metadata.name = Some("creds".into());
        s.metadata.resource_version = Some("7".into());
        assert!(!own.is_own(&s), "nothing written yet");
        own.record("ns", "creds", Some("7".into()));
        assert!(own.is_own(&s), "our write");
        assert!(!own.is_own(&s), "only once");
        own.record("ns", "creds", Some("7".into()));
        s.metadata.resource_version = Some("8".into());
        assert!(!own.is_own(&s), "someone else's later write");
        assert_eq!(own.0.lock().unwrap().len(), 1, "our overtaken write is still remembered");
        own.forget(&s);
        assert!(own.0.lock().unwrap().is_empty(), "a deleted Secret is forgotten");
    }

    #[tokio::test]
    async fn only_usability_changes_pass() {
        let mut deleting = (*bucket("a", Some(true))).clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
        let mut edited = (*bucket("a", Some(true))).clone();
        edited.metadata.generation = Some(2);
        let edited = Arc::new(edited);
        let bucket2 = |name: &str| {
            let mut b = (*bucket(name, Some(true))).clone();
            b.metadata.generation = Some(2);
            if let Some(s) = b.status.as_mut() {
                s.conditions = conditions_for(&[], &Readiness::available("ok"), Some(2));
            }
            Arc::new(b)
        };
        let updates = vec![
            bucket("a", None),        // new: passes
            bucket("a", None),        // finalizer added: same usability
            bucket("b", None),        // another bucket: passes
            bucket("a", Some(true)),  // Ready: passes
            bucket("a", Some(true)),  // new message only
            bucket("a", Some(false)), // not Ready any more: passes
            bucket("a", Some(true)),  // Ready again: passes
            edited.clone(),           // spec edited, status not caught up: passes
            edited,                   // the same
            bucket2("a"),             // Ready for the edited spec: passes
            Arc::new(deleting.clone()),
            Arc::new(deleting),
            bucket("c", None),
            bucket("c", Some(false)), // refused before it was ever Ready: passes
        ];
        let passed: Vec<(String, bool, bool)> = bucket_usability_changes(futures::stream::iter(updates))
            .map(|b| {
                let u = usability(&b);
                (b.metadata.name.clone().unwrap_or_default(), u.reconciled, u.ready)
            })
            .collect()
            .await;
        let a = |reconciled, ready| ("a".to_string(), reconciled, ready);
        let c = |reconciled, ready| ("c".to_string(), reconciled, ready);
        assert_eq!(
            passed,
            vec![
                a(false, false),
                ("b".to_string(), false, false),
                a(true, true),
                a(true, false),
                a(true, true),
                a(false, false),
                a(true, true),
                a(true, true),
                a(true, true),
                c(false, false),
                c(true, false)
            ]
        );
    }
}
