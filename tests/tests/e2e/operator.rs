//! CRD mode end to end: the operator, run against the real control plane and each real store,
//! turns S3Bucket and S3User objects into buckets, users, grants and a credentials Secret an
//! app can use, repairs drift, rotates keys, honours deletion policies, refuses takeovers and
//! rides out a store outage.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::{
    fmt::Debug,
    time::{Duration, Instant},
};

use aws_sdk_s3::{
    config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation},
    primitives::ByteStream,
};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use s3op_api::{BucketAccess, DeletionPolicy, Permission, S3Bucket, S3BucketSpec, S3User, S3UserSpec, secret_keys};
use s3op_tests::{
    fixture::{self, client, cp, start, start_enforcing},
    operator::Operator,
    stores::{Store, StoreKind, unique_name},
};
use serde::de::DeserializeOwned;

const TIMEOUT: Duration = Duration::from_secs(90);

fn ready_of(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> Option<(String, String)> {
    conditions.iter().find(|c| c.type_ == "Ready").map(|c| (c.status.clone(), c.reason.clone()))
}

trait HasReady {
    fn ready(&self) -> Option<(String, String)>;
    fn message(&self) -> String;
}

impl HasReady for S3Bucket {
    fn ready(&self) -> Option<(String, String)> {
        self.status.as_ref().and_then(|s| ready_of(&s.conditions))
    }
    fn message(&self) -> String {
        format!("{:?}", self.status)
    }
}

impl HasReady for S3User {
    fn ready(&self) -> Option<(String, String)> {
        self.status.as_ref().and_then(|s| ready_of(&s.conditions))
    }
    fn message(&self) -> String {
        format!("{:?}", self.status)
    }
}

/// Waits until the object's Ready condition has `status` and `reason`; returns the object.
async fn wait_condition<K>(api: &Api<K>, name: &str, status: &str, reason: &str) -> K
where
    K: Resource + Clone + DeserializeOwned + Debug + HasReady,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let obj = api.get(name).await.unwrap();
        if obj.ready().is_some_and(|(s, r)| s == status && r == reason) {
            return obj;
        }
        assert!(Instant::now() < deadline, "{name} not Ready={status}/{reason} in {TIMEOUT:?}: {}", obj.message());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_ready<K>(api: &Api<K>, name: &str) -> K
where
    K: Resource + Clone + DeserializeOwned + Debug + HasReady,
{
    wait_condition(api, name, "True", "Available").await
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + TIMEOUT;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn bucket(name: &str, policy: DeletionPolicy) -> S3Bucket {
    S3Bucket::new(
        name,
        S3BucketSpec { bucket_name: Some(unique_name(name)), deletion_policy: policy, ..Default::default() },
    )
}

fn user(name: &str, access: &[(&str, Permission)]) -> S3User {
    S3User::new(
        name,
        S3UserSpec {
            access: access.iter().map(|(b, p)| BucketAccess { bucket: b.to_string(), permission: *p }).collect(),
            ..Default::default()
        },
    )
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    secret.data.as_ref()?.get(key).map(|v| String::from_utf8(v.0.clone()).unwrap())
}

/// An S3 client configured only from the Secret, as an app using `envFrom` would be.
fn app_client(secret: &Secret) -> aws_sdk_s3::Client {
    let access_key = text(secret, secret_keys::ACCESS_KEY_ID).expect("AWS_ACCESS_KEY_ID");
    let secret_key = text(secret, secret_keys::SECRET_ACCESS_KEY).expect("AWS_SECRET_ACCESS_KEY");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(text(secret, secret_keys::ENDPOINT_URL).expect("AWS_ENDPOINT_URL"))
        .region(Region::new(text(secret, secret_keys::REGION).expect("AWS_REGION")))
        .credentials_provider(Credentials::new(access_key, secret_key, None, None, "app"))
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> bool {
    s3.put_object().bucket(bucket).key(key).body(ByteStream::from_static(b"hello")).send().await.is_ok()
}

async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> bool {
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => out.body.collect().await.is_ok_and(|b| b.into_bytes().as_ref() == b"hello"),
        Err(_) => false,
    }
}

async fn bucket_exists(store: &Store, bucket: &str) -> bool {
    store.s3_client().head_bucket().bucket(bucket).send().await.is_ok()
}

async fn empty(store: &Store, bucket: &str) {
    let s3 = store.s3_client();
    if let Ok(v) = s3.list_object_versions().bucket(bucket).send().await {
        for o in v.versions() {
            let _ = s3
                .delete_object()
                .bucket(bucket)
                .key(o.key().unwrap())
                .set_version_id(o.version_id().map(str::to_string))
                .send()
                .await;
        }
        for m in v.delete_markers() {
            let _ = s3
                .delete_object()
                .bucket(bucket)
                .key(m.key().unwrap())
                .set_version_id(m.version_id().map(str::to_string))
                .send()
                .await;
        }
    }
    if let Ok(l) = s3.list_objects_v2().bucket(bucket).send().await {
        for o in l.contents() {
            let _ = s3.delete_object().bucket(bucket).key(o.key().unwrap()).send().await;
        }
    }
}

/// The whole CRD-mode story against one store.
async fn crd_mode(kind: StoreKind) {
    // Enforcing: grants are really evaluated, as on AWS.
    let mut store = start_enforcing(kind).await;
    let ns = cp().namespace(&format!("crd-{kind}")).await.unwrap();
    let client = client().await;
    // This namespace is trusted to adopt buckets made outside the operator; the rival's is not.
    let op = Operator::start(client.clone(), &store, &ns, "2s", &["--adopt-namespaces", &ns]).await.unwrap();
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let users: Api<S3User> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    let read_only_enforced = kind != StoreKind::Versitygw;

    // Apply a bucket pair and a user, as `kubectl apply` would; both become Ready.
    let t = Instant::now();
    let data = buckets.create(&pp, &bucket("data", DeletionPolicy::Delete)).await.unwrap();
    let logs = buckets.create(&pp, &bucket("logs", DeletionPolicy::Retain)).await.unwrap();
    let mut access = vec![("data", Permission::ReadWrite)];
    if read_only_enforced {
        access.push(("logs", Permission::ReadOnly));
    }
    users.create(&pp, &user("app", &access)).await.unwrap();
    let out = cp().kubectl(&["wait", "--for=condition=Ready", "s3user/app", "-n", &ns, "--timeout=90s"]).unwrap();
    assert!(out.status.success(), "kubectl wait: {}", String::from_utf8_lossy(&out.stderr));
    eprintln!("{kind}: apply to Ready (bucket pair + user) in {:?}", t.elapsed());
    let data_name = data.spec.bucket_name.clone().unwrap();
    let logs_name = logs.spec.bucket_name.clone().unwrap();
    let data = wait_ready(&buckets, "data").await;
    assert_eq!(data.status.as_ref().unwrap().bucket_name.as_deref(), Some(data_name.as_str()));
    assert_eq!(
        data.status.as_ref().unwrap().backend.as_deref(),
        Some(if kind == StoreKind::Moto { "aws" } else { kind.as_str() })
    );
    let app = wait_ready(&users, "app").await;
    let status = app.status.clone().unwrap();
    let secret = secrets.get(status.secret_name.as_deref().unwrap()).await.unwrap();
    assert_eq!(text(&secret, secret_keys::ACCESS_KEY_ID), status.access_key_id, "status names the Secret's key id");
    assert!(!format!("{status:?}").contains(&text(&secret, secret_keys::SECRET_ACCESS_KEY).unwrap()));
    assert_eq!(text(&secret, secret_keys::BUCKET_NAMES).unwrap().split(',').count(), access.len());
    assert!(secret.owner_references().iter().any(|r| r.uid == app.uid().unwrap() && r.controller == Some(true)));

    // The app reads and writes its bucket with nothing but the Secret.
    let s3 = app_client(&secret);
    assert!(put(&s3, &data_name, "hello.txt").await, "{kind}: PutObject with the Secret");
    assert!(get(&s3, &data_name, "hello.txt").await, "{kind}: GetObject with the Secret");
    if read_only_enforced {
        store
            .s3_client()
            .put_object()
            .bucket(&logs_name)
            .key("seed")
            .body(ByteStream::from_static(b"hello"))
            .send()
            .await
            .unwrap();
        assert!(get(&s3, &logs_name, "seed").await, "{kind}: ReadOnly reads");
        assert!(!put(&s3, &logs_name, "nope").await, "{kind}: ReadOnly must not write");
        empty(&store, &logs_name).await;
    }
    let foreign = unique_name("foreign");
    store.s3_client().create_bucket().bucket(&foreign).send().await.unwrap();
    assert!(!put(&s3, &foreign, "x").await, "{kind}: a bucket not granted is denied");
    assert!(s3.list_objects_v2().bucket(&foreign).send().await.is_err(), "{kind}: listing a bucket not granted");

    // Converged (the logs bucket too: nothing above waited for it on VersityGW, where no user
    // is granted it): two resyncs read the store but write nothing, to the store or to status.
    wait_ready(&buckets, "logs").await;
    let lines = |text: String| text.lines().filter(|l| l.contains("writes_total{")).collect::<Vec<_>>().join("\n");
    let before = lines(op.metrics().await.unwrap());
    let writes = op.metric_sum("s3op_backend_writes_total").await.unwrap();
    let status_writes = op.metric_sum("s3op_status_writes_total").await.unwrap();
    let reconciles = op.metric_sum("s3op_reconciles_total").await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = lines(op.metrics().await.unwrap());
    assert!(op.metric_sum("s3op_reconciles_total").await.unwrap() >= reconciles + 3.0, "{kind}: resyncs ran");
    assert_eq!(
        op.metric_sum("s3op_backend_writes_total").await.unwrap(),
        writes,
        "{kind}: resyncs wrote to the store: {after}\nbefore: {before}"
    );
    assert_eq!(
        op.metric_sum("s3op_status_writes_total").await.unwrap(),
        status_writes,
        "{kind}: resyncs wrote status: {after}\nbefore: {before}"
    );

    // Deleting the Secret rotates the key pair: a new one works, the old one fails.
    let old = secret.clone();
    secrets.delete(&secret.name_any(), &DeleteParams::default()).await.unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let rotated = loop {
        match secrets.get_opt(&secret.name_any()).await.unwrap() {
            Some(s) if s.uid() != old.uid() => break s,
            _ => {
                assert!(Instant::now() < deadline, "{kind}: no new Secret within {TIMEOUT:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let new_s3 = app_client(&rotated);
    wait_until("the new key works", || {
        let s3 = new_s3.clone();
        let bucket = data_name.clone();
        async move { put(&s3, &bucket, "after-rotation.txt").await }
    })
    .await;
    wait_until("status names the new key", || {
        let users = users.clone();
        let want = text(&rotated, secret_keys::ACCESS_KEY_ID);
        async move { users.get("app").await.unwrap().status.and_then(|s| s.access_key_id) == want }
    })
    .await;

    // Status is written once the old key is revoked.
    assert!(!put(&app_client(&old), &data_name, "old-key.txt").await, "{kind}: the old key must fail after rotation");

    // Grants and keys removed behind the operator's back are restored within a resync.
    let backend = op.backend().await.unwrap();
    let user_name = users.get("app").await.unwrap().status.unwrap().user_name.unwrap();
    backend.set_grants(&user_name, &[]).await.unwrap();
    assert!(!put(&new_s3, &data_name, "revoked.txt").await, "{kind}: the grant was really removed");
    wait_until("the removed grant is restored", || {
        let s3 = new_s3.clone();
        let bucket = data_name.clone();
        async move { put(&s3, &bucket, "regranted.txt").await }
    })
    .await;
    if backend.capabilities().multiple_keys {
        backend.delete_key(&user_name, text(&rotated, secret_keys::ACCESS_KEY_ID).as_deref().unwrap()).await.unwrap();
        wait_until("the deleted key is replaced in the Secret", || {
            let secrets = secrets.clone();
            let name = rotated.name_any();
            let bucket = data_name.clone();
            let gone = text(&rotated, secret_keys::ACCESS_KEY_ID);
            async move {
                let s = secrets.get(&name).await.unwrap();
                text(&s, secret_keys::ACCESS_KEY_ID) != gone && put(&app_client(&s), &bucket, "new-key.txt").await
            }
        })
        .await;
    }
    let rotated = secrets.get(&rotated.name_any()).await.unwrap();

    // An edited Secret is noticed and replaced by a working key pair.
    let mut edited = rotated.clone();
    edited.metadata.managed_fields = None;
    if let Some(d) = edited.data.as_mut() {
        d.insert(secret_keys::SECRET_ACCESS_KEY.to_string(), k8s_openapi::ByteString(b"tampered".to_vec()));
    }
    secrets.replace(&rotated.name_any(), &pp, &edited).await.unwrap();
    wait_until("the edited Secret is restored to a working key", || {
        let secrets = secrets.clone();
        let name = rotated.name_any();
        let bucket = data_name.clone();
        async move {
            let s = secrets.get(&name).await.unwrap();
            text(&s, secret_keys::SECRET_ACCESS_KEY).as_deref() != Some("tampered")
                && put(&app_client(&s), &bucket, "after-edit.txt").await
        }
    })
    .await;
    let new_s3 = app_client(&secrets.get(&rotated.name_any()).await.unwrap());

    // A Secret the S3User does not own is never overwritten: Conflict, and its data untouched.
    let squatted = Secret {
        metadata: kube::api::ObjectMeta { name: Some("taken".into()), ..Default::default() },
        string_data: Some(std::collections::BTreeMap::from([("keep".to_string(), "me".to_string())])),
        ..Default::default()
    };
    secrets.create(&pp, &squatted).await.unwrap();
    let mut squatter = user("squatter", &[("data", Permission::ReadWrite)]);
    squatter.spec.secret_name = Some("taken".into());
    users.create(&pp, &squatter).await.unwrap();
    wait_condition(&users, "squatter", "False", "Conflict").await;
    let taken = secrets.get("taken").await.unwrap();
    assert_eq!(text(&taken, "keep").as_deref(), Some("me"), "{kind}: a foreign Secret is left untouched");
    assert!(text(&taken, secret_keys::ACCESS_KEY_ID).is_none(), "{kind}: no credentials written into it");
    users.delete("squatter", &DeleteParams::default()).await.unwrap();

    // Transitions were announced as events.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    let reasons: Vec<String> =
        events.list(&Default::default()).await.unwrap().items.into_iter().filter_map(|e| e.reason).collect();
    for want in ["Created", "CredentialsRotated", "Conflict"] {
        assert!(reasons.iter().any(|r| r == want), "{kind}: no {want} event among {reasons:?}");
    }

    // A bucket deleted behind the operator's back comes back within a resync.
    empty(&store, &data_name).await;
    store.s3_client().delete_bucket().bucket(&data_name).send().await.unwrap();
    wait_until("the deleted bucket is recreated", || bucket_exists(&store, &data_name)).await;
    wait_ready(&buckets, "data").await;
    // The user's grant on it is restored too (on VersityGW the grant is the bucket's owner).
    wait_until("access to the recreated bucket", || {
        let s3 = new_s3.clone();
        let bucket = data_name.clone();
        async move { put(&s3, &bucket, "after-recreate.txt").await }
    })
    .await;

    // Another namespace asking for the same bucket name gets Conflict; the bucket stays ours.
    let rival_ns = cp().namespace(&format!("rival-{kind}")).await.unwrap();
    let rival_op = Operator::start(client.clone(), &store, &rival_ns, "2s", &[]).await.unwrap();
    let rival_api: Api<S3Bucket> = Api::namespaced(client.clone(), &rival_ns);
    let rival = S3Bucket::new(
        "grab",
        S3BucketSpec {
            bucket_name: Some(data_name.clone()),
            deletion_policy: DeletionPolicy::Delete,
            force_delete: Some(true),
            ..Default::default()
        },
    );
    rival_api.create(&pp, &rival).await.unwrap();
    wait_condition(&rival_api, "grab", "False", "Conflict").await;
    assert!(put(&new_s3, &data_name, "still-mine.txt").await, "{kind}: the owner keeps its access");
    rival_api.delete("grab", &DeleteParams::default()).await.unwrap();
    wait_until("the rival object is gone", || {
        let api = rival_api.clone();
        async move { api.get_opt("grab").await.unwrap().is_none() }
    })
    .await;
    assert!(get(&new_s3, &data_name, "still-mine.txt").await, "{kind}: the rival's forced delete touched nothing");
    let foreign_again = unique_name("foreign");
    store.s3_client().create_bucket().bucket(&foreign_again).send().await.unwrap();
    let not_trusted =
        S3Bucket::new("theirs", S3BucketSpec { bucket_name: Some(foreign_again.clone()), ..Default::default() });
    rival_api.create(&pp, &not_trusted).await.unwrap();
    wait_condition(&rival_api, "theirs", "False", "Conflict").await;
    let trusted = S3Bucket::new("adopted", S3BucketSpec { bucket_name: Some(foreign.clone()), ..Default::default() });
    buckets.create(&pp, &trusted).await.unwrap();
    wait_ready(&buckets, "adopted").await;
    rival_op.stop().await.unwrap();

    // Deleting the user deletes it on the store: its key fails.
    users.delete("app", &DeleteParams::default()).await.unwrap();
    wait_until("the user object is gone", || {
        let users = users.clone();
        async move { users.get_opt("app").await.unwrap().is_none() }
    })
    .await;
    assert!(!put(&new_s3, &data_name, "gone.txt").await, "{kind}: a deleted user's key must fail");

    // Retain keeps the bucket; Delete refuses a non-empty bucket until forceDelete is set.
    buckets.delete("logs", &DeleteParams::default()).await.unwrap();
    wait_until("logs object gone", || {
        let api = buckets.clone();
        async move { api.get_opt("logs").await.unwrap().is_none() }
    })
    .await;
    assert!(bucket_exists(&store, &logs_name).await, "{kind}: Retain keeps the bucket");
    buckets.delete("data", &DeleteParams::default()).await.unwrap();
    let blocked = wait_condition(&buckets, "data", "False", "DeletionBlocked").await;
    assert!(blocked.message().contains("forceDelete"), "{}", blocked.message());
    assert!(bucket_exists(&store, &data_name).await, "{kind}: a non-empty bucket is kept");
    let force = serde_json::json!({"spec": {"forceDelete": true}});
    buckets.patch("data", &PatchParams::default(), &Patch::Merge(&force)).await.unwrap();
    wait_until("data object gone", || {
        let api = buckets.clone();
        async move { api.get_opt("data").await.unwrap().is_none() }
    })
    .await;
    assert!(!bucket_exists(&store, &data_name).await, "{kind}: forceDelete removed the bucket");

    // An empty Delete bucket just goes.
    buckets.create(&pp, &bucket("scratch", DeletionPolicy::Delete)).await.unwrap();
    let scratch = wait_ready(&buckets, "scratch").await;
    let scratch_name = scratch.status.unwrap().bucket_name.unwrap();
    buckets.delete("scratch", &DeleteParams::default()).await.unwrap();
    wait_until("scratch bucket removed", || async { !bucket_exists(&store, &scratch_name).await }).await;

    // A stopped store: BackendUnavailable; started again: Ready, same operator.
    if kind != StoreKind::Moto {
        store.stop().await;
        buckets.create(&pp, &bucket("later", DeletionPolicy::Delete)).await.unwrap();
        wait_condition(&buckets, "later", "False", "BackendUnavailable").await;
        store.restart().await.unwrap();
        wait_ready(&buckets, "later").await;
    }
    op.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versitygw_crd_mode() {
    crd_mode(StoreKind::Versitygw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minio_crd_mode() {
    crd_mode(StoreKind::Minio).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage_crd_mode() {
    crd_mode(StoreKind::Garage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_crd_mode() {
    crd_mode(StoreKind::Moto).await;
}

/// A killed operator (no graceful shutdown) in the middle of a rollout: its successor converges
/// everything, and the store holds one user per S3User with exactly the Secret's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_rollout_converges_without_orphan_keys() {
    use s3op_backends::Backend;
    const N: usize = 12;
    let store = start(StoreKind::Minio).await;
    let ns = cp().namespace("rollout").await.unwrap();
    let client = client().await;
    let op = Operator::start(client.clone(), &store, &ns, "3s", &[]).await.unwrap();
    let args = op.args();
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let users: Api<S3User> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    for i in 0..N {
        buckets.create(&pp, &bucket(&format!("b{i}"), DeletionPolicy::Delete)).await.unwrap();
        users.create(&pp, &user(&format!("u{i}"), &[(&format!("b{i}"), Permission::ReadWrite)])).await.unwrap();
    }
    // Kill it as soon as the first user is Ready: the others are then mid-way.
    let deadline = Instant::now() + TIMEOUT;
    let ready_before = loop {
        let list = users.list(&Default::default()).await.unwrap();
        let ready = list.items.iter().filter(|u| u.ready().is_some_and(|(s, _)| s == "True")).count();
        if ready > 0 {
            break ready;
        }
        assert!(Instant::now() < deadline, "no user Ready within {TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(op); // killed: in-flight reconciles stop wherever they are
    eprintln!("rollout: {ready_before} of {N} users Ready when the operator was killed");
    let t = Instant::now();
    let op = Operator::start_with(client.clone(), args.clone()).await.unwrap();
    for i in 0..N {
        wait_ready(&users, &format!("u{i}")).await;
    }
    eprintln!("rollout: all {N} users Ready {:?} after the restart", t.elapsed());

    let marker_bucket = args.iter().skip_while(|a| *a != "--marker-bucket").nth(1).unwrap().clone();
    let minio = fixture::minio(&store, &marker_bucket);
    for i in 0..N {
        let u = users.get(&format!("u{i}")).await.unwrap();
        let status = u.status.unwrap();
        let secret = secrets.get(status.secret_name.as_deref().unwrap()).await.unwrap();
        let key = text(&secret, secret_keys::ACCESS_KEY_ID).unwrap();
        let info = minio.describe_user(status.user_name.as_deref().unwrap()).await.unwrap().unwrap();
        assert_eq!(info.access_key_ids, vec![key.clone()], "u{i}: exactly the Secret's key on the store");
        assert_eq!(status.access_key_id.as_deref(), Some(key.as_str()));
        let b = buckets.get(&u.spec.access[0].bucket).await.unwrap();
        let bucket_name = b.status.unwrap().bucket_name.unwrap();
        assert!(put(&app_client(&secret), &bucket_name, "x").await, "u{i}: the key works");
    }
    op.stop().await.unwrap();
}

/// Two replicas with leader election against one control plane and store: only the Lease
/// holder reconciles (counted from each one's metrics); when it stops it releases the Lease and
/// the stand-in converges a newly applied bucket within the lease duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_one_acts_and_the_other_takes_over() {
    use k8s_openapi::api::coordination::v1::Lease;
    const LEASE_SECS: u64 = 6;
    let store = start(StoreKind::Versitygw).await;
    let ns = cp().namespace("leader").await.unwrap();
    let client = client().await;
    let lease_secs = format!("{LEASE_SECS}s");
    let election = |id: &'static str| {
        [
            "--leader-election",
            "true",
            "--leader-election-namespace",
            ns.as_str(),
            "--leader-election-lease-duration",
            lease_secs.as_str(),
            "--pod-name",
            id,
        ]
    };
    let first = Operator::start(client.clone(), &store, &ns, "3s", &election("replica-a")).await.unwrap();
    // Same flags (and so the same marker bucket), another identity.
    let mut args = first.args();
    let at = args.iter().position(|a| a == "--pod-name").unwrap();
    args[at + 1] = "replica-b".into();
    let second = Operator::start_with(client.clone(), args).await.unwrap();

    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder =
        || async { leases.get_opt("s3-resource-operator").await.unwrap().and_then(|l| l.spec?.holder_identity) };
    assert_eq!(holder().await.as_deref(), Some("replica-a"));
    assert_eq!(first.metric_sum("s3op_leader").await.unwrap(), 1.0);
    assert_eq!(second.metric_sum("s3op_leader").await.unwrap(), 0.0, "a stand-in is ready but not leading");

    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    for i in 0..3 {
        buckets.create(&PostParams::default(), &bucket(&format!("b{i}"), DeletionPolicy::Delete)).await.unwrap();
    }
    for i in 0..3 {
        wait_ready(&buckets, &format!("b{i}")).await;
    }
    let (a_reconciles, a_writes) = (
        first.metric_sum("s3op_reconciles_total").await.unwrap(),
        first.metric_sum("s3op_backend_writes_total").await.unwrap(),
    );
    let (b_reconciles, b_writes) = (
        second.metric_sum("s3op_reconciles_total").await.unwrap(),
        second.metric_sum("s3op_backend_writes_total").await.unwrap(),
    );
    eprintln!(
        "leader: reconciles {a_reconciles}, writes {a_writes}; stand-in: reconciles {b_reconciles}, writes {b_writes}"
    );
    assert!(a_reconciles >= 3.0 && a_writes >= 3.0);
    assert_eq!((b_reconciles, b_writes), (0.0, 0.0), "the stand-in acted");

    // A graceful stop releases the Lease at once.
    first.stop().await.unwrap();
    assert_ne!(holder().await.as_deref(), Some("replica-a"), "the Lease was not released");
    let t = Instant::now();
    buckets.create(&PostParams::default(), &bucket("after", DeletionPolicy::Delete)).await.unwrap();
    wait_ready(&buckets, "after").await;
    let took = t.elapsed();
    eprintln!("stand-in converged a new bucket {took:?} after the leader stopped (lease {LEASE_SECS}s)");
    assert!(took < Duration::from_secs(LEASE_SECS + 5), "took over after {took:?}");
    assert_eq!(holder().await.as_deref(), Some("replica-b"));
    assert_eq!(second.metric_sum("s3op_leader").await.unwrap(), 1.0);
    second.stop().await.unwrap();
}

/// A bucket deleted behind the operator's back and made again gives its users their access back
/// in the same pass, not at their next resync: on VersityGW a recreated bucket belongs to the
/// admin account until the user's grant is written again. The resync is far longer than the
/// test, and the bucket is woken by a spec change, so only the bucket's wake can reach the user.
#[tokio::test]
async fn versitygw_recreated_bucket_gives_its_users_access_back_at_once() {
    let store = start(StoreKind::Versitygw).await;
    let ns = cp().namespace("recreate").await.unwrap();
    let client = client().await;
    let op = Operator::start(client.clone(), &store, &ns, "600s", &[]).await.unwrap();
    let buckets: Api<S3Bucket> = Api::namespaced(client.clone(), &ns);
    let users: Api<S3User> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    buckets.create(&pp, &bucket("data", DeletionPolicy::Retain)).await.unwrap();
    users.create(&pp, &user("app", &[("data", Permission::ReadWrite)])).await.unwrap();
    let data = wait_ready(&buckets, "data").await.status.unwrap().bucket_name.unwrap();
    let app = wait_ready(&users, "app").await.status.unwrap();
    let s3 = app_client(&secrets.get(app.secret_name.as_deref().unwrap()).await.unwrap());
    assert!(put(&s3, &data, "before.txt").await, "the user's key writes to its bucket");

    empty(&store, &data).await;
    store.s3_client().delete_bucket().bucket(&data).send().await.unwrap();
    let touch = serde_json::json!({"spec": {"tags": {"touched": "yes"}}});
    buckets.patch("data", &PatchParams::default(), &Patch::Merge(&touch)).await.unwrap();
    wait_until("the deleted bucket is recreated", || bucket_exists(&store, &data)).await;
    let started = Instant::now();
    wait_until("access to the recreated bucket", || {
        let (s3, data) = (s3.clone(), data.clone());
        async move { put(&s3, &data, "after.txt").await }
    })
    .await;
    eprintln!("access back {:?} after the bucket was recreated (resync 600 s)", started.elapsed());
    op.stop().await.unwrap();
}
