//! The backend conformance suite (`s3op_tests::conformance`) run for the in-memory fake and
//! for each real store on loopback.

#![allow(clippy::unwrap_used)]

use s3op_backends::{
    Backend, SecretString,
    aws::{Aws, AwsConfig},
    garage::{Garage, GarageConfig},
    memory::MemoryBackend,
    minio::{Minio, MinioConfig},
    versitygw::{VersityGw, VersityGwConfig},
};
use s3op_tests::{
    conformance::{Probe, latencies, outage_is_retryable_and_fast, suite},
    stores::{Store, StoreKind, unique_name},
};

async fn start(kind: StoreKind) -> Store {
    Store::start(kind).await.unwrap_or_else(|e| panic!("{e:#}"))
}

#[tokio::test]
async fn memory_conforms() {
    let m = MemoryBackend::new();
    suite(&m, &Probe::Memory(&m), "mem").await;
    m.set_down(true);
    let err = m.health().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

fn versitygw(store: &Store) -> VersityGw {
    VersityGw::new(VersityGwConfig {
        endpoint: store.endpoint().to_string(),
        region: store.region().to_string(),
        access_key: store.admin_access_key().to_string(),
        secret_key: SecretString::new(store.admin_secret_key()),
        marker_bucket: unique_name("s3op-markers"),
    })
    .unwrap()
}

#[tokio::test]
async fn versitygw_conforms() {
    let store = start(StoreKind::Versitygw).await;
    let b = versitygw(&store);
    suite(&b, &Probe::Store(&store), "vgw").await;
    latencies(&b, "vgw").await;
}

#[tokio::test]
async fn versitygw_outage_is_retryable_and_fast() {
    let mut store = start(StoreKind::Versitygw).await;
    let b = versitygw(&store);
    outage_is_retryable_and_fast(&mut store, &b).await;
}

fn minio(store: &Store) -> Minio {
    Minio::new(MinioConfig {
        endpoint: store.endpoint().to_string(),
        region: store.region().to_string(),
        access_key: store.admin_access_key().to_string(),
        secret_key: SecretString::new(store.admin_secret_key()),
        marker_bucket: unique_name("s3op-markers"),
    })
    .unwrap()
}

#[tokio::test]
async fn minio_conforms() {
    let store = start(StoreKind::Minio).await;
    let b = minio(&store);
    suite(&b, &Probe::Store(&store), "minio").await;
    latencies(&b, "minio").await;
}

#[tokio::test]
async fn minio_outage_is_retryable_and_fast() {
    let mut store = start(StoreKind::Minio).await;
    let b = minio(&store);
    outage_is_retryable_and_fast(&mut store, &b).await;
}

fn garage(store: &Store) -> Garage {
    Garage::new(GarageConfig {
        endpoint: store.endpoint().to_string(),
        region: store.region().to_string(),
        access_key: store.admin_access_key().to_string(),
        secret_key: SecretString::new(store.admin_secret_key()),
        admin_endpoint: store.garage_admin_endpoint().unwrap().to_string(),
        admin_token: SecretString::new(store.garage_admin_token().unwrap()),
        marker_bucket: unique_name("s3op-markers"),
    })
    .unwrap()
}

#[tokio::test]
async fn garage_conforms() {
    let store = start(StoreKind::Garage).await;
    let b = garage(&store);
    suite(&b, &Probe::Store(&store), "garage").await;
    latencies(&b, "garage").await;
}

#[tokio::test]
async fn garage_outage_is_retryable_and_fast() {
    let mut store = start(StoreKind::Garage).await;
    let b = garage(&store);
    outage_is_retryable_and_fast(&mut store, &b).await;
}

async fn aws(store: &Store) -> Aws {
    Aws::new(AwsConfig {
        region: Some(store.region().to_string()),
        endpoint: Some(store.endpoint().to_string()),
        credentials: Some((store.admin_access_key().to_string(), SecretString::new(store.admin_secret_key()))),
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn aws_conforms() {
    // Enforcing: every call after the harness's bootstrap is signed by a key moto knows and
    // checked against that user's IAM policies, so grants are really evaluated.
    let store = Store::start_moto_enforcing().await.unwrap_or_else(|e| panic!("{e:#}"));
    let b = aws(&store).await;
    suite(&b, &Probe::Store(&store), "aws").await;
    latencies(&b, "aws").await;
}

#[tokio::test]
async fn aws_outage_is_retryable_and_fast() {
    // Not enforcing: a restarted enforcing moto would have a new administrator key.
    let mut store = start(StoreKind::Moto).await;
    let b = aws(&store).await;
    outage_is_retryable_and_fast(&mut store, &b).await;
}
