//! Compatibility mode (`s3op_tests::compat`) on each real store that takes credentials chosen
//! by a Secret's author, and the in-memory fake; AWS refuses it, saying what to use instead.

#![allow(clippy::unwrap_used)]

use s3op_backends::{
    Backend, BackendError, Owner,
    compat::{CompatStore, provision},
    memory::MemoryBackend,
};
use s3op_tests::{
    compat::{account, compat_suite, marker_bucket_is_refused, random_access_key, random_secret},
    conformance::Probe,
    fixture::{self, start},
    stores::{Store, StoreKind, unique_name},
};

#[tokio::test]
async fn memory_compat() {
    let m = MemoryBackend::new();
    compat_suite(&m, &Probe::Memory(&m), "mem").await;
}

/// The compatibility contract on a store, and its marker bucket refused to every Secret.
async fn compat_on(b: &dyn CompatStore, store: &Store, marker_bucket: &str, prefix: &str) {
    compat_suite(b, &Probe::Store(store), prefix).await;
    marker_bucket_is_refused(b, marker_bucket, prefix).await;
}

#[tokio::test]
async fn versitygw_compat() {
    let store = start(StoreKind::Versitygw).await;
    let b = fixture::versitygw(&store, &unique_name("s3op-markers"));
    compat_on(&b, &store, b.marker_bucket(), "vgw").await;
}

#[tokio::test]
async fn minio_compat() {
    let store = start(StoreKind::Minio).await;
    let b = fixture::minio(&store, &unique_name("s3op-markers"));
    compat_on(&b, &store, b.marker_bucket(), "minio").await;
}

#[tokio::test]
async fn garage_compat() {
    let store = start(StoreKind::Garage).await;
    let b = fixture::garage(&store, &unique_name("s3op-markers"));
    compat_on(&b, &store, b.marker_bucket(), "garage").await;

    // A key deleted behind the operator's back can never be imported again: said plainly,
    // and not retried for ever.
    let app = Owner::secret(unique_name("garage-team"), "app", "uid-app");
    let (ak, sk) = (random_access_key(), random_secret());
    let bucket = unique_name("garage-deleted-key");
    provision(&b, &app, &account(&ak, &sk), &bucket, false).await.unwrap();
    store.garage_admin_call(reqwest::Method::POST, &format!("/v2/DeleteKey?id={ak}"), None).await.unwrap();
    let err = provision(&b, &app, &account(&ak, &sk), &bucket, false).await.unwrap_err();
    assert!(matches!(err, BackendError::InvalidInput(ref m) if m.contains("deleted") && m.contains("S3User")), "{err}");
    assert!(!err.is_retryable() && !err.to_string().contains(&sk), "{err}");
}

#[tokio::test]
async fn aws_refuses_compat_naming_s3user() {
    let store = start(StoreKind::Moto).await;
    let b = fixture::aws(&store).await;
    match b.compat() {
        Err(e @ BackendError::Unsupported { .. }) => assert!(e.to_string().contains("S3User"), "{e}"),
        Err(e) => panic!("AWS refuses with another error: {e}"),
        Ok(_) => panic!("AWS claims it can take keys chosen by a Secret"),
    }
}
