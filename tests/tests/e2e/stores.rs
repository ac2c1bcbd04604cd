//! End-to-end check of the object-store harness: each real store starts, takes signed S3
//! calls with the admin credentials, and (moto) serves IAM; a stopped store fails fast and
//! serves its old data again after a restart.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use aws_sdk_s3::{error::DisplayErrorContext, primitives::ByteStream};
use s3op_tests::{
    fixture,
    stores::{Store, StoreKind, unique_name},
};

/// A fresh store, saying how long it took to become ready.
async fn start_timed(kind: StoreKind) -> Store {
    let store = fixture::start(kind).await;
    eprintln!("{kind} ready at {} in {:?}", store.endpoint(), store.startup_time());
    store
}

/// CreateBucket, ListBuckets shows it, PutObject and GetObject return the same bytes.
async fn bucket_and_object_roundtrip(store: &Store) -> (String, Vec<u8>) {
    let kind = store.kind();
    let s3 = store.s3_client();
    let bucket = unique_name(&format!("e2e-{kind}"));
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .map_err(|e| format!("{kind} CreateBucket: {}", DisplayErrorContext(e)))
        .unwrap();

    let listed =
        s3.list_buckets().send().await.map_err(|e| format!("{kind} ListBuckets: {}", DisplayErrorContext(e))).unwrap();
    let names: Vec<&str> = listed.buckets().iter().filter_map(|b| b.name()).collect();
    assert!(names.contains(&bucket.as_str()), "{kind}: {bucket} not in ListBuckets {names:?}");

    let body = format!("hello from {kind} {bucket}\n").repeat(100).into_bytes();
    s3.put_object()
        .bucket(&bucket)
        .key("dir/hello.txt")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .map_err(|e| format!("{kind} PutObject: {}", DisplayErrorContext(e)))
        .unwrap();
    assert_eq!(get_object(store, &bucket).await, body, "{kind}: GetObject returned other bytes");
    (bucket, body)
}

async fn get_object(store: &Store, bucket: &str) -> Vec<u8> {
    let kind = store.kind();
    let got = store
        .s3_client()
        .get_object()
        .bucket(bucket)
        .key("dir/hello.txt")
        .send()
        .await
        .map_err(|e| format!("{kind} GetObject: {}", DisplayErrorContext(e)))
        .unwrap();
    got.body.collect().await.unwrap().into_bytes().to_vec()
}

#[tokio::test]
async fn versitygw_serves_signed_s3() {
    let store = start_timed(StoreKind::Versitygw).await;
    bucket_and_object_roundtrip(&store).await;
}

#[tokio::test]
async fn minio_serves_signed_s3() {
    let store = start_timed(StoreKind::Minio).await;
    bucket_and_object_roundtrip(&store).await;
}

#[tokio::test]
async fn garage_serves_signed_s3_and_admin_api() {
    let store = start_timed(StoreKind::Garage).await;
    assert_eq!(store.region(), "garage");
    let admin_key = store.admin_access_key().to_string();
    let (bucket, _) = bucket_and_object_roundtrip(&store).await;

    // Garage's S3 CreateBucket names the bucket only by a local alias of the creating key.
    let list = store.garage_admin_call(reqwest::Method::GET, "/v2/ListBuckets", None).await.unwrap();
    let item = list
        .as_array()
        .unwrap()
        .iter()
        .find(|b| {
            b["localAliases"].as_array().unwrap().iter().any(|a| a["alias"] == bucket && a["accessKeyId"] == admin_key)
        })
        .unwrap_or_else(|| panic!("{bucket} is not a local alias of the admin key: {list}"));
    assert_eq!(item["globalAliases"], serde_json::json!([]), "{item}");

    // A bucket made through the admin API and granted to the admin key serves S3 by its global alias.
    let name = unique_name("e2e-garage-admin");
    let created = store
        .garage_admin_call(reqwest::Method::POST, "/v2/CreateBucket", Some(&serde_json::json!({ "globalAlias": name })))
        .await
        .unwrap();
    let grant = serde_json::json!({
        "bucketId": created["id"],
        "accessKeyId": admin_key,
        "permissions": { "read": true, "write": true, "owner": true }
    });
    store.garage_admin_call(reqwest::Method::POST, "/v2/AllowBucketKey", Some(&grant)).await.unwrap();
    let s3 = store.s3_client();
    s3.put_object()
        .bucket(&name)
        .key("dir/hello.txt")
        .body(ByteStream::from_static(b"made by the admin API"))
        .send()
        .await
        .map_err(|e| DisplayErrorContext(e).to_string())
        .unwrap();
    assert_eq!(get_object(&store, &name).await, b"made by the admin API");
    let info = store
        .garage_admin_call(reqwest::Method::GET, &format!("/v2/GetBucketInfo?globalAlias={name}"), None)
        .await
        .unwrap();
    assert_eq!(info["objects"], 1, "{info}");
}

#[tokio::test]
async fn moto_serves_s3() {
    let store = start_timed(StoreKind::Moto).await;
    bucket_and_object_roundtrip(&store).await;
}

#[tokio::test]
async fn moto_serves_iam_users_and_keys() {
    let store = start_timed(StoreKind::Moto).await;
    let iam = store.iam_client();
    let user = unique_name("e2e-user");
    iam.create_user().user_name(&user).send().await.map_err(|e| DisplayErrorContext(e).to_string()).unwrap();
    let key = iam
        .create_access_key()
        .user_name(&user)
        .send()
        .await
        .map_err(|e| DisplayErrorContext(e).to_string())
        .unwrap()
        .access_key
        .unwrap();
    assert_eq!(key.user_name(), user);
    assert!(!key.access_key_id().is_empty() && !key.secret_access_key().is_empty());
    let users = iam.list_users().send().await.map_err(|e| DisplayErrorContext(e).to_string()).unwrap();
    assert!(users.users().iter().any(|u| u.user_name() == user), "{user} not in ListUsers");
}

#[tokio::test]
async fn moto_enforcing_checks_keys_and_policies() {
    let store = fixture::start_enforcing(StoreKind::Moto).await;
    eprintln!("moto (enforcing) ready in {:?}", store.startup_time());
    let (bucket, body) = bucket_and_object_roundtrip(&store).await;

    // A user with a key but no policy is denied; an unknown key is refused.
    let iam = store.iam_client();
    let user = unique_name("e2e-nopolicy");
    iam.create_user().user_name(&user).send().await.map_err(|e| DisplayErrorContext(e).to_string()).unwrap();
    let key = iam.create_access_key().user_name(&user).send().await.unwrap().access_key.unwrap();
    let denied = store
        .s3_client_with(key.access_key_id(), key.secret_access_key())
        .get_object()
        .bucket(&bucket)
        .key("dir/hello.txt")
        .send()
        .await;
    let err = DisplayErrorContext(denied.expect_err("a user without policy read the object")).to_string();
    assert!(err.contains("AccessDenied"), "{err}");
    let unknown = store.s3_client_with("AKIAUNKNOWN000000000", "nope").list_buckets().send().await;
    assert!(unknown.is_err(), "an unknown key listed buckets");

    // Granting the bucket lets the same key in.
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{bucket}/*") }]
    });
    iam.put_user_policy()
        .user_name(&user)
        .policy_name("read")
        .policy_document(policy.to_string())
        .send()
        .await
        .map_err(|e| DisplayErrorContext(e).to_string())
        .unwrap();
    let got = store
        .s3_client_with(key.access_key_id(), key.secret_access_key())
        .get_object()
        .bucket(&bucket)
        .key("dir/hello.txt")
        .send()
        .await
        .map_err(|e| DisplayErrorContext(e).to_string())
        .unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().to_vec(), body);
}

/// Stopped, a store fails S3 calls within seconds; restarted on the same ports and data
/// folder, it serves the object written before the stop, through the same client.
#[tokio::test]
async fn stopped_store_fails_fast_and_restart_keeps_data() {
    for kind in [StoreKind::Versitygw, StoreKind::Minio, StoreKind::Garage] {
        let mut store = start_timed(kind).await;
        let (bucket, body) = bucket_and_object_roundtrip(&store).await;
        let s3 = store.s3_client();
        // Warm the client's connection pool, so the stop also breaks a kept-alive connection.
        s3.head_bucket().bucket(&bucket).send().await.unwrap();

        let stopping = Instant::now();
        store.stop().await;
        eprintln!("{kind} stopped in {:?}", stopping.elapsed());
        let t = Instant::now();
        let failed = s3.head_bucket().bucket(&bucket).send().await;
        let took = t.elapsed();
        assert!(failed.is_err(), "{kind}: HeadBucket succeeded on a stopped store");
        assert!(took < Duration::from_secs(10), "{kind}: a call to the stopped store took {took:?}");
        eprintln!("{kind}: call to the stopped store failed in {took:?}");

        if let Err(e) = store.restart().await {
            panic!("{e:#}");
        }
        eprintln!("{kind} restarted in {:?}", store.startup_time());
        let got = s3
            .get_object()
            .bucket(&bucket)
            .key("dir/hello.txt")
            .send()
            .await
            .map_err(|e| format!("{kind} GetObject after restart: {}", DisplayErrorContext(e)))
            .unwrap();
        assert_eq!(got.body.collect().await.unwrap().into_bytes().to_vec(), body, "{kind}: data lost on restart");
    }
}
