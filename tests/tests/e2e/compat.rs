//! Compatibility mode end to end: annotated Secrets, as the older s3-resource-operator took
//! them, handled by the operator against the real control plane and each real store.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::{collections::BTreeMap, time::Duration};

use aws_sdk_s3::primitives::ByteStream;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use s3op_api::DEFAULT_COMPAT_ANNOTATION;
use s3op_backends::compat::{AccountState, CompatStore};
use s3op_tests::{
    compat::{account_with_ids, random_access_key, random_hex, random_secret},
    fixture::{client, cp, start},
    operator::{Operator, store_args},
    stores::{Store, StoreKind, s3_config, unique_name},
    wait::{self, EventSeen, TIMEOUT, wait_until},
};

/// An operator in compatibility mode for `store`, watching `namespace`, with its markers in
/// `markers` (shared by operators that must see each other's claims).
async fn operator(store: &Store, namespace: &str, markers: &str) -> Operator {
    let mut args = store_args(store);
    args.extend(
        [
            "--watch-namespace",
            namespace,
            "--resync-interval",
            "3s",
            "--compat-mode",
            "true",
            "--marker-bucket",
            markers,
        ]
        .map(str::to_string),
    );
    Operator::start_with(client().await, args).await.unwrap()
}

fn annotated(name: &str, fields: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(BTreeMap::from([(DEFAULT_COMPAT_ANNOTATION.to_string(), "true".to_string())])),
            ..ObjectMeta::default()
        },
        string_data: Some(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        ..Secret::default()
    }
}

async fn apply(ns: &str, secret: &Secret) {
    let api: Api<Secret> = Api::namespaced(client().await, ns);
    let name = secret.metadata.name.clone().unwrap();
    let mut s = secret.clone();
    s.metadata.managed_fields = None;
    let body = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": name, "annotations": s.metadata.annotations },
        "stringData": s.string_data,
    });
    api.patch(&name, &PatchParams::apply("compat-test").force(), &Patch::Apply(&body)).await.unwrap();
}

/// Events about the Secret `name`.
async fn events(ns: &str, name: &str) -> Vec<EventSeen> {
    wait::events(&client().await, ns, name).await.unwrap()
}

/// Waits for an event with `reason` on the Secret; returns its note.
async fn wait_note(ns: &str, name: &str, reason: &str) -> String {
    wait::wait_event(&client().await, ns, name, reason).await.unwrap().note
}

/// An S3 client signing with the Secret's own credentials.
fn app(store: &Store, access: &str, secret: &str) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(s3_config(store.endpoint(), store.region(), access, secret).build())
}

/// True when the credentials can write and read back an object in `bucket`.
async fn works(store: &Store, access: &str, secret: &str, bucket: &str) -> bool {
    let s3 = app(store, access, secret);
    let key = format!("probe-{}", random_hex(6));
    if s3.put_object().bucket(bucket).key(&key).body(ByteStream::from_static(b"hello")).send().await.is_err() {
        return false;
    }
    match s3.get_object().bucket(bucket).key(&key).send().await {
        Ok(out) => out.body.collect().await.is_ok_and(|b| b.into_bytes().as_ref() == b"hello"),
        Err(_) => false,
    }
}

async fn metric(op: &Operator, name: &str) -> f64 {
    op.metric_sum(name).await.unwrap()
}

/// The create and update flow of the older operator on one store.
async fn create_and_update(kind: StoreKind) {
    let store = start(kind).await;
    let ns = cp().namespace(&format!("compat-{kind}")).await.unwrap();
    let op = operator(&store, &ns, &unique_name("s3op-markers")).await;
    let backend = op.backend().await.unwrap();
    let store_view: &dyn CompatStore = backend.compat().unwrap();
    let bucket = unique_name("compat");
    let (ak1, sk1) = (random_access_key(), random_secret());
    // POSIX ids exist on VersityGW only; elsewhere they are accepted and ignored.
    let ids = if kind == StoreKind::Versitygw { 1000 } else { 0 };
    let ids_text = ids.to_string();
    // A trailing slash in the endpoint still matches (URLs are compared normalised).
    let endpoint = format!("{}/", store.endpoint());
    let mut fields = vec![
        ("bucket-name", bucket.as_str()),
        ("access-key", ak1.as_str()),
        ("secret-key", sk1.as_str()),
        ("endpoint-url", endpoint.as_str()),
        ("role", "user"),
    ];
    if ids != 0 {
        fields.extend([("user-id", ids_text.as_str()), ("group-id", ids_text.as_str())]);
    }
    apply(&ns, &annotated("app", &fields)).await;
    let note = wait_note(&ns, "app", "Provisioned").await;
    assert!(note.contains(&ak1) && note.contains(&bucket), "{note}");
    assert!(!note.contains(&sk1), "an event shows the secret: {note}");

    // Read back through the store's admin API: the account with its keys, role and ids, the
    // bucket, and the account as the bucket's owner.
    assert_eq!(store_view.account(&account_with_ids(&ak1, &sk1, ids)).await.unwrap(), AccountState::Matches);
    assert!(store_view.bucket_exists(&bucket).await.unwrap());
    assert_eq!(op.bucket_owner_now(&bucket).await.unwrap().as_deref(), Some(ak1.as_str()));
    assert!(works(&store, &ak1, &sk1, &bucket).await, "the Secret's own credentials put and get an object");
    for name in [
        "s3_operator_secrets_processed_total",
        "s3_operator_users_created_total",
        "s3_operator_buckets_created_total",
        "s3_operator_bucket_owners_changed_total",
    ] {
        assert!(metric(&op, name).await >= 1.0, "{name} did not move");
    }

    // A resync of a converged Secret writes nothing.
    let writes = metric(&op, "s3op_backend_writes_total").await;
    let processed = metric(&op, "s3_operator_secrets_processed_total").await;
    wait_until("two more resyncs", TIMEOUT, || async {
        metric(&op, "s3_operator_secrets_processed_total").await >= processed + 2.0
    })
    .await
    .unwrap();
    assert_eq!(metric(&op, "s3op_backend_writes_total").await, writes, "a resync without changes wrote to the store");

    // A changed secret key updates the user: the old secret stops working, the new one works.
    let sk2 = random_secret();
    let mut changed = fields.clone();
    changed[2] = ("secret-key", sk2.as_str());
    apply(&ns, &annotated("app", &changed)).await;
    if kind == StoreKind::Garage {
        // Garage keys are immutable and a deleted key id can never come back.
        let note = wait_note(&ns, "app", "Unsupported").await;
        assert!(note.contains("S3User") || note.contains("access key"), "{note}");
        assert!(works(&store, &ak1, &sk1, &bucket).await, "a refused change leaves the account as it was");
        changed[2] = ("secret-key", sk1.as_str());
    } else {
        wait_until("the new secret works", TIMEOUT, || works(&store, &ak1, &sk2, &bucket)).await.unwrap();
        assert!(!works(&store, &ak1, &sk1, &bucket).await, "the old secret still works");
        // The counter moves once the whole flow for the change has finished.
        wait_until("users_updated counted", TIMEOUT, || async {
            metric(&op, "s3_operator_users_updated_total").await >= 1.0
        })
        .await
        .unwrap();
    }
    let current_secret = changed[2].1.to_string();

    // A changed access key creates a new user and moves the bucket to it; the old user stays.
    let ak2 = random_access_key();
    changed[1] = ("access-key", ak2.as_str());
    apply(&ns, &annotated("app", &changed)).await;
    wait_until("the new access key works", TIMEOUT, || works(&store, &ak2, &current_secret, &bucket)).await.unwrap();
    let note = wait_note(&ns, "app", "AccessKeyChanged").await;
    assert!(note.contains(&ak1) && note.contains(&ak2), "{note}");
    assert_eq!(op.bucket_owner_now(&bucket).await.unwrap().as_deref(), Some(ak2.as_str()));
    assert_ne!(store_view.account(&account_with_ids(&ak1, &current_secret, ids)).await.unwrap(), AccountState::Missing);

    // Deleting the Secret deletes nothing.
    let secrets: Api<Secret> = Api::namespaced(client().await, &ns);
    secrets.delete("app", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(store_view.bucket_exists(&bucket).await.unwrap(), "the bucket went with the Secret");
    assert_ne!(store_view.account(&account_with_ids(&ak2, &current_secret, ids)).await.unwrap(), AccountState::Missing);
    assert!(works(&store, &ak2, &current_secret, &bucket).await);
    assert_eq!(metric(&op, "s3_operator_users_deleted_total").await, 0.0);
    op.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versitygw_create_and_update() {
    create_and_update(StoreKind::Versitygw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minio_create_and_update() {
    create_and_update(StoreKind::Minio).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage_create_and_update() {
    create_and_update(StoreKind::Garage).await;
}

/// Refusals on VersityGW: endpoint mismatch, missing field, a takeover from another namespace
/// (seen by a second operator instance sharing the store and its claims), and `role: admin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versitygw_refusals_name_the_problem_and_change_nothing() {
    let store = start(StoreKind::Versitygw).await;
    let ns_a = cp().namespace("compat-team-a").await.unwrap();
    let ns_b = cp().namespace("compat-team-b").await.unwrap();
    let markers = unique_name("s3op-markers");
    let op_a = operator(&store, &ns_a, &markers).await;
    let op_b = operator(&store, &ns_b, &markers).await;
    let backend = op_a.backend().await.unwrap();
    let view = backend.compat().unwrap();

    // Team a's honest Secret.
    let bucket = unique_name("owned");
    let (ak, sk) = (random_access_key(), random_secret());
    apply(&ns_a, &annotated("app", &[("bucket-name", &bucket), ("access-key", &ak), ("secret-key", &sk)])).await;
    wait_note(&ns_a, "app", "Provisioned").await;
    assert!(works(&store, &ak, &sk, &bucket).await);

    // Team b names team a's bucket, then team a's access key with a new secret.
    let (ak_b, sk_b) = (random_access_key(), random_secret());
    apply(&ns_b, &annotated("grab-bucket", &[("bucket-name", &bucket), ("access-key", &ak_b), ("secret-key", &sk_b)]))
        .await;
    let note = wait_note(&ns_b, "grab-bucket", "Conflict").await;
    assert!(note.contains(&bucket) && note.contains(&ns_a), "{note}");
    let evil = random_secret();
    let other_bucket = unique_name("other");
    apply(
        &ns_b,
        &annotated("grab-user", &[("bucket-name", &other_bucket), ("access-key", &ak), ("secret-key", &evil)]),
    )
    .await;
    let note = wait_note(&ns_b, "grab-user", "Conflict").await;
    assert!(note.contains(&ak), "{note}");
    assert_eq!(view.bucket_owner(&bucket).await.unwrap().as_deref(), Some(ak.as_str()), "the bucket was re-pointed");
    assert_eq!(view.account(&account_with_ids(&ak_b, &sk_b, 0)).await.unwrap(), AccountState::Missing);
    assert!(works(&store, &ak, &sk, &bucket).await, "team a's user was reset");
    assert!(!view.bucket_exists(&other_bucket).await.unwrap(), "a refused Secret created a bucket");

    // role: admin is refused unless allowed.
    let (ak_admin, sk_admin) = (random_access_key(), random_secret());
    let admin_bucket = unique_name("admin");
    apply(
        &ns_a,
        &annotated(
            "wants-admin",
            &[("bucket-name", &admin_bucket), ("access-key", &ak_admin), ("secret-key", &sk_admin), ("role", "admin")],
        ),
    )
    .await;
    let note = wait_note(&ns_a, "wants-admin", "RoleRefused").await;
    assert!(note.contains("admin") && note.contains("COMPAT_ALLOWED_ROLES"), "{note}");
    assert_eq!(view.account(&account_with_ids(&ak_admin, &sk_admin, 0)).await.unwrap(), AccountState::Missing);

    // A Secret for another endpoint is skipped with a Normal event.
    let skipped_bucket = unique_name("elsewhere");
    apply(
        &ns_a,
        &annotated(
            "elsewhere",
            &[
                ("bucket-name", &skipped_bucket),
                ("access-key", &random_access_key()),
                ("secret-key", &random_secret()),
                ("endpoint-url", "http://some-other-store:7070"),
            ],
        ),
    )
    .await;
    let note = wait_note(&ns_a, "elsewhere", "EndpointMismatch").await;
    assert!(note.contains("some-other-store"), "{note}");
    let all = events(&ns_a, "elsewhere").await;
    assert!(all.iter().all(|e| e.type_ == "Normal"), "{all:?}");
    assert!(!view.bucket_exists(&skipped_bucket).await.unwrap());

    // A missing field gives a Warning naming it, never a value.
    let hidden = random_secret();
    apply(&ns_a, &annotated("incomplete", &[("bucket-name", &unique_name("inc")), ("SECRET_KEY", &hidden)])).await;
    let note = wait_note(&ns_a, "incomplete", "InvalidSecret").await;
    assert!(note.contains("access-key"), "{note}");
    assert!(!note.contains(&hidden), "{note}");
    let warnings = events(&ns_a, "incomplete").await;
    assert!(warnings.iter().any(|e| e.type_ == "Warning" && e.reason == "InvalidSecret"), "{warnings:?}");

    assert!(metric(&op_b, "s3_operator_errors_total").await >= 2.0);
    assert!(metric(&op_a, "s3_operator_errors_total").await >= 2.0);

    // An unannotated Secret and one opted out with "false" are left alone.
    let secrets: Api<Secret> = Api::namespaced(client().await, &ns_a);
    let mut opted_out =
        annotated("opted-out", &[("bucket-name", "x-opted-out"), ("access-key", "A"), ("secret-key", "S")]);
    opted_out.metadata.annotations =
        Some(BTreeMap::from([(DEFAULT_COMPAT_ANNOTATION.to_string(), "false".to_string())]));
    secrets.create(&PostParams::default(), &opted_out).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(events(&ns_a, "opted-out").await.is_empty());

    op_a.stop().await.unwrap();
    op_b.stop().await.unwrap();
}

/// AWS generates its own keys: the Secret gets a Warning pointing at S3User, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_refuses_with_a_reason() {
    let store = start(StoreKind::Moto).await;
    let ns = cp().namespace("compat-aws").await.unwrap();
    let op = operator(&store, &ns, &unique_name("s3op-markers")).await;
    let bucket = unique_name("aws");
    let original = annotated(
        "app",
        &[("bucket-name", &bucket), ("access-key", &random_access_key()), ("secret-key", &random_secret())],
    );
    apply(&ns, &original).await;
    let note = wait_note(&ns, "app", "Unsupported").await;
    assert!(note.contains("S3User"), "{note}");
    let writes = metric(&op, "s3op_backend_writes_total").await;
    assert_eq!(writes, 0.0, "nothing may be written on the store");
    assert!(store.s3_client().head_bucket().bucket(&bucket).send().await.is_err());
    let secrets: Api<Secret> = Api::namespaced(client().await, &ns);
    let after = secrets.get("app").await.unwrap();
    assert_eq!(after.data.as_ref().map(BTreeMap::len), Some(3), "the user's Secret was written to");
    op.stop().await.unwrap();
}
