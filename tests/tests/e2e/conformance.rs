//! The backend conformance suite (`s3op_tests::conformance`) run for the in-memory fake and
//! for each real store on loopback.

#![allow(clippy::unwrap_used)]

use s3op_backends::{Backend, BucketSpec, Owner, UserSpec, memory::MemoryBackend};
use s3op_tests::{
    conformance::{
        Probe, adoption_never_reaches_the_operator, claims_race, grants_never_cut_an_owner_off, latencies,
        outage_is_retryable_and_fast, suite,
    },
    fixture::{self, start, start_enforcing},
    stores::{Store, StoreKind, unique_name},
};

#[tokio::test]
async fn memory_conforms() {
    let m = MemoryBackend::new();
    suite(&m, &Probe::Memory(&m), "mem").await;
    claims_race(&m, "mem", 20).await;
    m.set_down(true);
    let err = m.health().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

/// Conformance of a store that keeps markers in a bucket: the suite, latencies, 20 claim races,
/// and adoption that never reaches the operator's own bucket or key.
async fn conforms(b: &dyn Backend, store: &Store, marker_bucket: &str, prefix: &str) {
    suite(b, &Probe::Store(store), prefix).await;
    latencies(b, prefix).await;
    claims_race(b, prefix, 20).await;
    adoption_never_reaches_the_operator(b, marker_bucket, store.admin_access_key()).await;
}

#[tokio::test]
async fn versitygw_conforms() {
    let store = start(StoreKind::Versitygw).await;
    let b = fixture::versitygw(&store, &unique_name("s3op-markers"));
    conforms(&b, &store, b.marker_bucket(), "vgw").await;
}

#[tokio::test]
async fn versitygw_grants_never_cut_an_owner_off() {
    let store = start(StoreKind::Versitygw).await;
    let b = fixture::versitygw(&store, &unique_name("s3op-markers"));
    grants_never_cut_an_owner_off(&b, &store, "vgw").await;
}

#[tokio::test]
async fn versitygw_outage_is_retryable_and_fast() {
    let mut store = start(StoreKind::Versitygw).await;
    let b = fixture::versitygw(&store, &unique_name("s3op-markers"));
    outage_is_retryable_and_fast(&mut store, &b).await;
}

#[tokio::test]
async fn minio_conforms() {
    let store = start(StoreKind::Minio).await;
    let b = fixture::minio(&store, &unique_name("s3op-markers"));
    conforms(&b, &store, b.marker_bucket(), "minio").await;
}

#[tokio::test]
async fn minio_outage_is_retryable_and_fast() {
    let mut store = start(StoreKind::Minio).await;
    let b = fixture::minio(&store, &unique_name("s3op-markers"));
    outage_is_retryable_and_fast(&mut store, &b).await;
}

#[tokio::test]
async fn garage_conforms() {
    let store = start(StoreKind::Garage).await;
    let b = fixture::garage(&store, &unique_name("s3op-markers"));
    conforms(&b, &store, b.marker_bucket(), "garage").await;
}

/// A fresh store's first calls race to create the marker bucket. Garage grants our key on it
/// in a second call, and a marker read in between used to be refused for good (Forbidden),
/// which left the first objects of a rollout waiting for the resync (48 racers hit it in about
/// one run of three before the fix).
#[tokio::test]
async fn garage_first_calls_racing_for_the_marker_bucket_all_succeed() {
    let store = start(StoreKind::Garage).await;
    let b = fixture::garage(&store, &unique_name("s3op-markers"));
    let results = futures::future::join_all((0..48).map(|i| {
        let b = &b;
        async move {
            let name = unique_name(&format!("race{i}"));
            let owner = Owner::s3bucket("conformance", name.clone(), format!("uid-{name}"));
            if i % 2 == 0 {
                b.ensure_user(&UserSpec { name: name.clone(), owner }, false).await?;
                b.describe_user(&name).await.map(|u| u.is_some())
            } else {
                let spec = BucketSpec {
                    name: name.clone(),
                    owner,
                    versioning: None,
                    object_lock: false,
                    tags: Default::default(),
                    quota: None,
                };
                b.ensure_bucket(&spec, false).await?;
                b.describe_bucket(&name).await.map(|d| d.is_some())
            }
        }
    }))
    .await;
    for r in results {
        assert!(r.unwrap_or_else(|e| panic!("{e}")), "what was just ensured is described");
    }
}

#[tokio::test]
async fn garage_outage_is_retryable_and_fast() {
    let mut store = start(StoreKind::Garage).await;
    let b = fixture::garage(&store, &unique_name("s3op-markers"));
    outage_is_retryable_and_fast(&mut store, &b).await;
}

#[tokio::test]
async fn aws_conforms() {
    // Enforcing: every call after the harness's bootstrap is signed by a key moto knows and
    // checked against that user's IAM policies, so grants are really evaluated.
    let store = start_enforcing(StoreKind::Moto).await;
    let b = fixture::aws(&store).await;
    suite(&b, &Probe::Store(&store), "aws").await;
    latencies(&b, "aws").await;
    claims_race(&b, "aws", 20).await;
}

#[tokio::test]
async fn aws_outage_is_retryable_and_fast() {
    // Not enforcing: a restarted enforcing moto would have a new administrator key.
    let mut store = start(StoreKind::Moto).await;
    let b = fixture::aws(&store).await;
    outage_is_retryable_and_fast(&mut store, &b).await;
}
