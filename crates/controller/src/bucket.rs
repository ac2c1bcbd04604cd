//! The S3Bucket reconciler: validate, claim, ensure the bucket and its settings, report; on
//! deletion honour `deletionPolicy` without ever losing data nobody asked to lose.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Resource, ResourceExt,
    runtime::{controller::Action, reflector::ObjectRef},
};
use s3op_api::{
    ConditionReason, DeletionPolicy, RESERVED_TAG_PREFIX, S3Bucket, S3BucketStatus, Versioning,
    naming::default_bucket_name, quantity::quantity_bytes, validate_bucket_name,
};
use s3op_backends::{BackendError, BucketDeletion, BucketSpec, Change, Owner, Quota, ledger::Subject};

use crate::{
    context::{Context, Error, Result},
    reconcile::{self, Halt, Reconciled},
    status::{Readiness, WithStatus},
    stores::{ActiveStore, StoreKey},
};

/// Kind name, for metrics and logs.
pub const KIND: &str = "S3Bucket";

impl WithStatus for S3Bucket {
    type Status = S3BucketStatus;
    const KIND: &'static str = KIND;
    fn status_ref(&self) -> Option<&S3BucketStatus> {
        self.status.as_ref()
    }
    fn api_of(&self, client: kube::Client) -> kube::Api<Self> {
        kube::Api::namespaced(client, &self.namespace().unwrap_or_default())
    }
    fn conditions(status: &S3BucketStatus) -> &[Condition] {
        &status.conditions
    }
}

impl Reconciled for S3Bucket {
    async fn apply(&self, ctx: &Context) -> Result<Action> {
        apply(self, ctx).await
    }
    async fn cleanup(&self, ctx: &Context) -> Result<Action> {
        cleanup(self, ctx).await
    }
    async fn report(&self, ctx: &Context, readiness: &Readiness) -> Result<()> {
        report(self, ctx, None, None, readiness).await
    }
    fn store(&self) -> StoreKey {
        store_of(self)
    }
}

/// The store an S3Bucket lives on.
pub fn store_of(obj: &S3Bucket) -> StoreKey {
    StoreKey::of(obj.spec.store_ref.as_ref(), &obj.namespace().unwrap_or_default())
}

/// The claim an S3Bucket makes on the store.
pub fn owner_of(obj: &S3Bucket) -> Owner {
    Owner::s3bucket(obj.namespace().unwrap_or_default(), obj.name_any(), obj.uid().unwrap_or_default())
}

/// The bucket name an S3Bucket asks for: `spec.bucketName` or the default, checked against the
/// S3 naming rules (the API server checks them too; this is defence in depth).
pub fn bucket_name_of(obj: &S3Bucket) -> Result<String, String> {
    let namespace = obj.namespace().unwrap_or_default();
    match &obj.spec.bucket_name {
        Some(name) => {
            validate_bucket_name(name).map(|()| name.clone()).map_err(|e| format!("bucketName {name:?}: {e}"))
        }
        None => default_bucket_name(&namespace, &obj.name_any()).map_err(|e| {
            format!("no bucketName given and the default <namespace>-<name> is not valid ({e}): set spec.bucketName")
        }),
    }
}

/// What the store should hold for this S3Bucket, or why the spec cannot be honoured.
pub fn desired(obj: &S3Bucket) -> Result<BucketSpec, String> {
    let name = bucket_name_of(obj)?;
    let spec = &obj.spec;
    for key in spec.tags.keys() {
        if key.is_empty() || key.len() > 128 || key.starts_with("aws:") || key.starts_with(RESERVED_TAG_PREFIX) {
            return Err(format!("tag key {key:?} is empty, too long or reserved"));
        }
    }
    let quota = match &spec.quota {
        None => None,
        Some(q) => Some(Quota {
            max_size_bytes: q
                .max_size
                .as_ref()
                .map(|s| quantity_bytes(&s.0).map_err(|e| format!("quota.maxSize: {e}")))
                .transpose()?,
            max_objects: q
                .max_objects
                .map(|n| u64::try_from(n).ok().filter(|&n| n > 0).ok_or("quota.maxObjects must be at least 1"))
                .transpose()?,
        }),
    };
    Ok(BucketSpec {
        name,
        owner: owner_of(obj),
        versioning: spec.versioning.map(|v| match v {
            Versioning::Enabled => s3op_backends::Versioning::Enabled,
            Versioning::Suspended => s3op_backends::Versioning::Suspended,
        }),
        object_lock: spec.object_lock.unwrap_or(false),
        tags: spec.tags.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect(),
        quota,
    })
}

/// Another live S3Bucket on the same store that asked for the same bucket name first (older, or
/// as old and sorted first), if any: the newer one must not share or take the bucket.
fn earlier_claim(ctx: &Context, obj: &S3Bucket, bucket: &str) -> Option<String> {
    let mine = (obj.creation_timestamp(), obj.namespace(), obj.name_any());
    let store = store_of(obj);
    ctx.buckets
        .state()
        .iter()
        .filter(|o| o.uid() != obj.uid() && o.meta().deletion_timestamp.is_none())
        .filter(|o| bucket_name_of(o).is_ok_and(|n| n == bucket) && store_of(o) == store)
        .filter(|o| (o.creation_timestamp(), o.namespace(), o.name_any()) < mine)
        .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
        .next()
}

/// Writes status for `readiness`, naming `bucket` once one is known and the store once it can
/// be used.
async fn report(
    obj: &S3Bucket,
    ctx: &Context,
    store: Option<&ActiveStore>,
    bucket: Option<&str>,
    readiness: &Readiness,
) -> Result<()> {
    let generation = obj.metadata.generation;
    let shown = ctx.stores.shown(&store_of(obj));
    let endpoint = store.map(ActiveStore::endpoint);
    let backend = store.map(|s| s.backend.kind().as_str().to_string());
    reconcile::report(obj, ctx, readiness, |previous, conditions| S3BucketStatus {
        observed_generation: generation,
        bucket_name: bucket.map(str::to_string).or(previous.bucket_name),
        store: Some(shown.clone()),
        backend: backend.clone().or(previous.backend),
        endpoint: endpoint.clone().or(previous.endpoint),
        conditions,
    })
    .await
}

async fn apply(obj: &S3Bucket, ctx: &Context) -> Result<Action> {
    let store = match ctx.stores.usable(&store_of(obj), &obj.namespace().unwrap_or_default()) {
        Ok(store) => store,
        Err(unusable) => {
            return Halt::from(unusable).settle(ctx, |r| async move { report(obj, ctx, None, None, &r).await }).await;
        }
    };
    let store = store.as_ref();
    let spec = match desired(obj) {
        Ok(spec) => spec,
        Err(message) => {
            return Halt::Wait(Readiness::not_ready(ConditionReason::InvalidSpec, message))
                .settle(ctx, |r| async move { report(obj, ctx, Some(store), None, &r).await })
                .await;
        }
    };
    match ensure(obj, ctx, store, &spec).await {
        Ok(()) => {
            let ready = Readiness::available(format!("bucket {} is ready on {}", spec.name, store.name));
            report(obj, ctx, Some(store), Some(&spec.name), &ready).await?;
            Ok(ctx.resync())
        }
        Err(halt) => {
            // An Unsupported setting leaves the bucket made and marked: name it in status.
            let made = matches!(halt, Halt::Failed(BackendError::Unsupported { .. })).then_some(spec.name.as_str());
            halt.settle(ctx, |r| async move { report(obj, ctx, Some(store), made, &r).await }).await
        }
    }
}

/// Makes the bucket exist as `spec` says, unless an older S3Bucket asked for the name first.
async fn ensure(obj: &S3Bucket, ctx: &Context, store: &ActiveStore, spec: &BucketSpec) -> Result<(), Halt> {
    if let Some(first) = earlier_claim(ctx, obj, &spec.name) {
        let message = format!("bucket {} is already claimed by S3Bucket {first}", spec.name);
        return Err(Halt::Wait(Readiness::not_ready(ConditionReason::Conflict, message)));
    }
    let adopt = store.may_adopt(&spec.owner.namespace);
    if store.backend.ensure_bucket(spec, adopt).await? == Change::Created {
        let existed = obj.status.as_ref().is_some_and(|s| s.bucket_name.as_deref() == Some(spec.name.as_str()));
        let (reason, note) = if existed {
            // Closed only at shutdown, when nobody needs the users woken any more.
            let _ = ctx.recreated_buckets.unbounded_send(ObjectRef::from_obj(obj));
            ("Recreated", format!("bucket {} was missing on {} and has been created again", spec.name, store.name))
        } else {
            ("Created", format!("bucket {} created on {}", spec.name, store.name))
        };
        ctx.event(obj, false, reason, note).await;
    }
    Ok(())
}

/// The bucket an S3Bucket's deletion concerns: the name its spec asks for or, when that no
/// longer validates (a rule that changed between versions), the one its status recorded. Only
/// names and the owner matter here: a spec that stopped validating elsewhere (a tag, a quota)
/// must not stop a deletion. The ledger still decides whether the bucket is this object's.
fn bucket_to_clean(obj: &S3Bucket) -> Option<String> {
    bucket_name_of(obj).ok().or_else(|| obj.status.as_ref()?.bucket_name.clone())
}

async fn cleanup(obj: &S3Bucket, ctx: &Context) -> Result<Action> {
    let Some(name) = bucket_to_clean(obj) else {
        // A name that never validated never made a bucket.
        return Ok(Action::await_change());
    };
    if obj.spec.deletion_policy == DeletionPolicy::Retain {
        return Ok(Action::await_change());
    }
    let Some(store) = ctx.stores.for_cleanup(&store_of(obj))? else {
        // The store is gone (its own finalizer waits for its objects, so it never held this one).
        return Ok(Action::await_change());
    };
    let backend = &store.backend;
    let owner = owner_of(obj);
    // Only a bucket this object holds is deleted, never one we merely tried to take: the
    // ledger says so (its claim wins over tags, which a bucket's owner may edit on some stores),
    // and the tags for buckets made before the ledger recorded buckets.
    let held = backend.holder(Subject::Bucket, &name).await?;
    match backend.describe_bucket(&name).await? {
        None => {
            // Gone already (or never made): the name is free again.
            backend.release_claim(Subject::Bucket, &name, &owner).await?;
            return Ok(Action::await_change());
        }
        Some(info) if held.as_ref().or(info.owner.as_ref()).is_some_and(|o| o.same_claim(&owner)) => {}
        Some(_) => {
            let note = format!("bucket {} is not this object's to delete; it was left in place", name);
            ctx.event(obj, true, "NotDeleted", note).await;
            return Ok(Action::await_change());
        }
    }
    let force = obj.spec.force_delete.unwrap_or(false);
    match backend.delete_bucket(&name, force).await? {
        BucketDeletion::Deleted => {
            ctx.event(obj, false, "Deleted", format!("bucket {name} deleted from {}", store.name)).await;
            Ok(Action::await_change())
        }
        BucketDeletion::AlreadyGone => Ok(Action::await_change()),
        BucketDeletion::NotEmpty { objects } => {
            let message = format!(
                "bucket {} still holds {objects}{} objects, versions or delete markers; empty it or set forceDelete: true",
                name,
                if objects >= 1000 { "+" } else { "" }
            );
            let blocked = Readiness::not_ready(ConditionReason::DeletionBlocked, message.clone());
            report(obj, ctx, Some(&store), Some(&name), &blocked).await?;
            Err(Error::Blocked(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use s3op_api::{S3BucketSpec, bucket::TagValue};

    use super::*;

    fn obj(spec: S3BucketSpec) -> S3Bucket {
        let mut b = S3Bucket::new("backups", spec);
        b.metadata.namespace = Some("team-a".into());
        b.metadata.uid = Some("uid-1".into());
        b
    }

    #[test]
    fn the_spec_becomes_a_backend_request() {
        let spec = S3BucketSpec {
            versioning: Some(Versioning::Enabled),
            tags: BTreeMap::from([("team".to_string(), TagValue("payments".into()))]),
            quota: Some(s3op_api::Quota { max_size: Some(Quantity("10Gi".into())), max_objects: Some(5) }),
            ..Default::default()
        };
        let d = desired(&obj(spec)).unwrap();
        assert_eq!(d.name, "team-a-backups", "default name is <namespace>-<name>");
        assert_eq!(d.owner, Owner::s3bucket("team-a", "backups", "uid-1"));
        assert_eq!(d.versioning, Some(s3op_backends::Versioning::Enabled));
        assert_eq!(d.quota, Some(Quota { max_size_bytes: Some(10 << 30), max_objects: Some(5) }));
        assert_eq!(d.tags.get("team").map(String::as_str), Some("payments"));
    }

    #[test]
    fn invalid_specs_are_explained_not_sent() {
        let bad_name = S3BucketSpec { bucket_name: Some("Bad_Name".into()), ..Default::default() };
        assert!(desired(&obj(bad_name)).unwrap_err().contains("Bad_Name"));
        let reserved = S3BucketSpec {
            tags: BTreeMap::from([("s3-resource-operator.io/name".to_string(), TagValue("x".into()))]),
            ..Default::default()
        };
        assert!(desired(&obj(reserved)).unwrap_err().contains("reserved"));
        let quota = S3BucketSpec {
            quota: Some(s3op_api::Quota { max_size: Some(Quantity("lots".into())), max_objects: None }),
            ..Default::default()
        };
        assert!(desired(&obj(quota)).unwrap_err().contains("quota.maxSize"));
    }

    mod reconciles {
        //! Whole S3Bucket reconciles over the in-memory store and API server.
        use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
        use s3op_backends::Backend;

        use super::*;
        use crate::testing::TestContext;

        async fn made(policy: DeletionPolicy) -> TestContext {
            let mut t = TestContext::new();
            let b = obj(S3BucketSpec { deletion_policy: policy, ..Default::default() });
            t.put_bucket(&b);
            let b = t.reconcile_bucket("team-a", "backups").await;
            assert_eq!(b.status.unwrap().bucket_name.as_deref(), Some("team-a-backups"));
            assert!(t.backend.describe_bucket("team-a-backups").await.unwrap().is_some());
            t
        }

        fn delete_with_a_spec_that_no_longer_validates(t: &TestContext) {
            t.api.edit::<S3Bucket>("team-a", "backups", |b| {
                b.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
                b.spec.tags = BTreeMap::from([("s3-resource-operator.io/x".to_string(), TagValue("y".into()))]);
            });
        }

        fn status_writes(t: &TestContext) -> usize {
            t.api.writes().iter().filter(|w| w.ends_with("/status")).count()
        }

        #[tokio::test]
        async fn a_spec_that_stopped_validating_does_not_stop_a_deletion() {
            let t = made(DeletionPolicy::Delete).await;
            delete_with_a_spec_that_no_longer_validates(&t);
            t.api.clear_writes();
            t.try_reconcile::<S3Bucket>("team-a", "backups").await.unwrap();
            assert!(t.backend.describe_bucket("team-a-backups").await.unwrap().is_none());
            assert_eq!(status_writes(&t), 0, "a deletion done in one pass writes no status: {:?}", t.api.writes());
        }

        #[tokio::test]
        async fn a_deletion_waiting_for_the_store_shows_deleting_then_completes() {
            let t = made(DeletionPolicy::Delete).await;
            t.api.edit::<S3Bucket>("team-a", "backups", |b| {
                b.metadata.deletion_timestamp = Some(Time(Timestamp::now()))
            });
            t.backend.set_down(true);
            t.api.clear_writes();
            t.try_reconcile::<S3Bucket>("team-a", "backups").await.unwrap_err();
            let conditions = t.api.get::<S3Bucket>("team-a", "backups").unwrap().status.unwrap().conditions;
            let shown: Vec<_> =
                conditions.iter().map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str())).collect();
            assert_eq!(shown, [("Ready", "False", "Deleting"), ("Reconciling", "True", "Deleting")]);
            assert!(conditions[0].message.contains("unavailable"), "says what it waits for: {}", conditions[0].message);
            assert!(!t.api.writes().iter().any(|w| w.contains("/events")), "a waiting deletion raises no event");
            t.try_reconcile::<S3Bucket>("team-a", "backups").await.unwrap_err();
            assert_eq!(status_writes(&t), 1, "the same wait is written once: {:?}", t.api.writes());
            t.backend.set_down(false);
            t.try_reconcile::<S3Bucket>("team-a", "backups").await.unwrap();
            assert!(t.backend.describe_bucket("team-a-backups").await.unwrap().is_none());
        }

        #[tokio::test]
        async fn a_blocked_deletion_stalls() {
            let t = made(DeletionPolicy::Delete).await;
            t.backend.put_objects("team-a-backups", 2).unwrap();
            t.api.edit::<S3Bucket>("team-a", "backups", |b| {
                b.metadata.deletion_timestamp = Some(Time(Timestamp::now()))
            });
            t.try_reconcile::<S3Bucket>("team-a", "backups").await.unwrap_err();
            let conditions = t.api.get::<S3Bucket>("team-a", "backups").unwrap().status.unwrap().conditions;
            let shown: Vec<_> =
                conditions.iter().map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str())).collect();
            assert_eq!(shown, [("Ready", "False", "DeletionBlocked"), ("Stalled", "True", "DeletionBlocked")]);
            assert!(conditions[1].message.contains("forceDelete"));
        }

        #[tokio::test]
        async fn retain_keeps_the_bucket_and_its_data() {
            let t = made(DeletionPolicy::Retain).await;
            t.backend.put_objects("team-a-backups", 3).unwrap();
            delete_with_a_spec_that_no_longer_validates(&t);
            t.try_reconcile::<S3Bucket>("team-a", "backups").await.unwrap();
            assert!(t.backend.describe_bucket("team-a-backups").await.unwrap().is_some());
        }

        #[tokio::test]
        async fn an_invalid_spec_is_reported_and_not_retried() {
            let mut t = TestContext::new();
            t.put_bucket(&obj(S3BucketSpec { bucket_name: Some("Bad_Name".into()), ..Default::default() }));
            let b = t.reconcile_bucket("team-a", "backups").await;
            let status = b.status.unwrap();
            let ready = crate::status::ready_condition(&status.conditions).cloned().unwrap();
            assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "InvalidSpec"));
            assert!(ready.message.contains("Bad_Name"));
            let stalled = status.conditions.iter().find(|c| c.type_ == "Stalled").expect("an invalid spec stalls");
            assert_eq!((stalled.status.as_str(), stalled.reason.as_str()), ("True", "InvalidSpec"));
            assert_eq!(status.observed_generation, b.metadata.generation);
        }
    }
}
