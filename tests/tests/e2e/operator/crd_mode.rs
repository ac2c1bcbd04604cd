//! CRD mode, case by case, on every store: `operator::crd_mode::<store>::<case>`. Each case has
//! a namespace, an operator and objects of its own ([`Crd`]), so it depends on no other case's
//! state; the cases of one store share that store (`fixture::shared_store`), except the one that
//! stops it.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::ByteString;
use kube::{
    Client, ResourceExt,
    api::{DeleteParams, ObjectMeta},
};
use s3op_tests::{
    fixture::start_enforcing,
    wait::{wait_event, wait_for_value, wait_gone},
};

use super::*;

/// One case's world: a fresh namespace on the shared control plane and an operator watching
/// it, resyncing every 2 s, for a store of `kind`.
struct Crd {
    kind: StoreKind,
    store: Arc<Store>,
    client: Client,
    ns: String,
    op: Operator,
    buckets: Api<S3Bucket>,
    users: Api<S3User>,
    secrets: Api<Secret>,
}

/// What [`Crd::apply_app`] applied, once the user is Ready.
struct App {
    /// Bucket name of the S3Bucket `data` (deletionPolicy Delete).
    data: String,
    /// Bucket name of the S3Bucket `logs` (deletionPolicy Retain).
    logs: String,
    /// The grants the S3User `app` asked for.
    access: Vec<(&'static str, Permission)>,
    /// The S3Bucket `data`, Ready.
    data_bucket: S3Bucket,
    /// The S3User `app`, Ready.
    user: S3User,
    /// Its credentials Secret.
    secret: Secret,
}

impl Crd {
    /// A case on the store of `kind` that every case of that kind shares.
    async fn start(kind: StoreKind) -> Crd {
        Self::on(kind, fixture::shared_store(kind).await).await
    }

    async fn on(kind: StoreKind, store: Arc<Store>) -> Crd {
        let ns = cp().namespace(&format!("crd-{kind}")).await.unwrap();
        let client = client().await;
        // This namespace is trusted to adopt buckets made outside the operator; a rival's is not.
        let op = Operator::start(client.clone(), &store, &ns, "2s", &["--adopt-namespaces", &ns]).await.unwrap();
        Crd {
            kind,
            buckets: Api::namespaced(client.clone(), &ns),
            users: Api::namespaced(client.clone(), &ns),
            secrets: Api::namespaced(client.clone(), &ns),
            store,
            client,
            ns,
            op,
        }
    }

    /// Applies the S3Buckets `data` (Delete) and `logs` (Retain); returns their bucket names.
    async fn create_buckets(&self) -> (String, String) {
        let pp = PostParams::default();
        let data = self.buckets.create(&pp, &bucket("data", DeletionPolicy::Delete)).await.unwrap();
        let logs = self.buckets.create(&pp, &bucket("logs", DeletionPolicy::Retain)).await.unwrap();
        (data.spec.bucket_name.unwrap(), logs.spec.bucket_name.unwrap())
    }

    /// Applies the bucket pair and waits until both are Ready; returns their bucket names.
    async fn apply_buckets(&self) -> (String, String) {
        let names = self.create_buckets().await;
        wait_ready(&self.buckets, "data").await;
        wait_ready(&self.buckets, "logs").await;
        names
    }

    /// Applies the bucket pair and the S3User `app` (ReadWrite on `data`, ReadOnly on `logs`
    /// where that exists), as `kubectl apply` would, and waits as `kubectl wait` does until
    /// the user is Ready.
    async fn apply_app(&self) -> App {
        let t = Instant::now();
        let (data, logs) = self.create_buckets().await;
        let access = vec![("data", Permission::ReadWrite), ("logs", Permission::ReadOnly)];
        self.users.create(&PostParams::default(), &user("app", &access)).await.unwrap();
        let ns = self.ns.as_str();
        let out = cp().kubectl(&["wait", "--for=condition=Ready", "s3user/app", "-n", ns, "--timeout=90s"]).unwrap();
        assert!(out.status.success(), "kubectl wait: {}", String::from_utf8_lossy(&out.stderr));
        eprintln!("{}: apply to Ready (bucket pair + user) in {:?}", self.kind, t.elapsed());
        let data_bucket = wait_ready(&self.buckets, "data").await;
        let user = wait_ready(&self.users, "app").await;
        let secret_name = user.status.as_ref().and_then(|s| s.secret_name.clone()).unwrap();
        let secret = self.secrets.get(&secret_name).await.unwrap();
        App { data, logs, access, data_bucket, user, secret }
    }

    /// Stops the operator gracefully, as the end of every case.
    async fn finish(self) {
        self.op.stop().await.unwrap();
    }
}

async fn applied_objects_become_ready_with_a_complete_secret(kind: StoreKind) {
    let crd = Crd::start(kind).await;
    let app = crd.apply_app().await;
    let data = app.data_bucket.status.as_ref().unwrap();
    assert_eq!(data.bucket_name.as_deref(), Some(app.data.as_str()));
    assert_eq!(data.backend.as_deref(), Some(kind.backend_name()));
    let status = app.user.status.clone().unwrap();
    let secret = &app.secret;
    assert_eq!(text(secret, secret_keys::ACCESS_KEY_ID), status.access_key_id, "status names the Secret's key id");
    assert!(!format!("{status:?}").contains(&text(secret, secret_keys::SECRET_ACCESS_KEY).unwrap()));
    assert_eq!(text(secret, secret_keys::BUCKET_NAMES).unwrap().split(',').count(), app.access.len());
    assert!(secret.owner_references().iter().any(|r| r.uid == app.user.uid().unwrap() && r.controller == Some(true)));
    // The transition is announced as an event.
    wait_event(&crd.client, &crd.ns, "data", "Created").await.unwrap();
    crd.finish().await;
}

async fn the_secret_reads_and_writes_only_what_is_granted(kind: StoreKind) {
    let crd = Crd::start(kind).await;
    let app = crd.apply_app().await;
    let s3 = app_client(&app.secret);
    assert!(put(&s3, &app.data, "hello.txt").await, "{kind}: PutObject with the Secret");
    assert!(get(&s3, &app.data, "hello.txt").await, "{kind}: GetObject with the Secret");
    let seed = ByteStream::from_static(b"hello");
    crd.store.s3_client().put_object().bucket(&app.logs).key("seed").body(seed).send().await.unwrap();
    assert!(get(&s3, &app.logs, "seed").await, "{kind}: ReadOnly reads");
    assert!(!put(&s3, &app.logs, "nope").await, "{kind}: ReadOnly must not write");
    empty(&crd.store, &app.logs).await;
    let foreign = unique_name("foreign");
    crd.store.s3_client().create_bucket().bucket(&foreign).send().await.unwrap();
    assert!(!put(&s3, &foreign, "x").await, "{kind}: a bucket not granted is denied");
    assert!(s3.list_objects_v2().bucket(&foreign).send().await.is_err(), "{kind}: listing a bucket not granted");
    crd.finish().await;
}

async fn converged_resyncs_write_nothing(kind: StoreKind) {
    let crd = Crd::start(kind).await;
    crd.apply_app().await;
    wait_ready(&crd.buckets, "logs").await;
    // The window starts a resync after Ready, as it did when this case ran after others.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let op = &crd.op;
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
    crd.finish().await;
}

async fn deleting_the_secret_rotates_the_key_pair(kind: StoreKind) {
    let crd = Crd::start(kind).await;
    let app = crd.apply_app().await;
    let old = app.secret;
    let name = old.name_any();
    crd.secrets.delete(&name, &DeleteParams::default()).await.unwrap();
    let rotated = wait_for_value(&format!("{kind}: a new Secret"), TIMEOUT, || async {
        crd.secrets.get_opt(&name).await.unwrap().filter(|s| s.uid() != old.uid())
    })
    .await
    .unwrap();
    let new_s3 = app_client(&rotated);
    wait_until("the new key works", TIMEOUT, || put(&new_s3, &app.data, "after-rotation.txt")).await.unwrap();
    let want = text(&rotated, secret_keys::ACCESS_KEY_ID);
    wait_until("status names the new key", TIMEOUT, || async {
        crd.users.get("app").await.unwrap().status.and_then(|s| s.access_key_id) == want
    })
    .await
    .unwrap();
    // Status is written once the old key is revoked.
    assert!(!put(&app_client(&old), &app.data, "old-key.txt").await, "{kind}: the old key must fail after rotation");
    wait_event(&crd.client, &crd.ns, "app", "CredentialsRotated").await.unwrap();
    crd.finish().await;
}

async fn removed_grants_deleted_keys_and_edited_secrets_are_repaired(kind: StoreKind) {
    let crd = Crd::start(kind).await;
    let app = crd.apply_app().await;
    let (data, name) = (app.data.as_str(), app.secret.name_any());
    let s3 = app_client(&app.secret);

    // Grants and keys removed behind the operator's back are restored within a resync.
    let backend = crd.op.backend().await.unwrap();
    let user_name = crd.users.get("app").await.unwrap().status.unwrap().user_name.unwrap();
    backend.set_grants(&user_name, &[]).await.unwrap();
    assert!(!put(&s3, data, "revoked.txt").await, "{kind}: the grant was really removed");
    wait_until("the removed grant is restored", TIMEOUT, || put(&s3, data, "regranted.txt")).await.unwrap();
    if backend.capabilities().multiple_keys {
        let gone = text(&app.secret, secret_keys::ACCESS_KEY_ID);
        backend.delete_key(&user_name, gone.as_deref().unwrap()).await.unwrap();
        wait_until("the deleted key is replaced in the Secret", TIMEOUT, || async {
            let s = crd.secrets.get(&name).await.unwrap();
            text(&s, secret_keys::ACCESS_KEY_ID) != gone && put(&app_client(&s), data, "new-key.txt").await
        })
        .await
        .unwrap();
    }

    // An edited Secret is noticed and replaced by a working key pair.
    let mut edited = crd.secrets.get(&name).await.unwrap();
    edited.metadata.managed_fields = None;
    if let Some(d) = edited.data.as_mut() {
        d.insert(secret_keys::SECRET_ACCESS_KEY.to_string(), ByteString(b"tampered".to_vec()));
    }
    crd.secrets.replace(&name, &PostParams::default(), &edited).await.unwrap();
    wait_until("the edited Secret is restored to a working key", TIMEOUT, || async {
        let s = crd.secrets.get(&name).await.unwrap();
        text(&s, secret_keys::SECRET_ACCESS_KEY).as_deref() != Some("tampered")
            && put(&app_client(&s), data, "after-edit.txt").await
    })
    .await
    .unwrap();
    crd.finish().await;
}

async fn a_secret_it_does_not_own_is_never_overwritten(kind: StoreKind) {
    let crd = Crd::start(kind).await;
    crd.apply_buckets().await;
    let pp = PostParams::default();
    let squatted = Secret {
        metadata: ObjectMeta { name: Some("taken".into()), ..Default::default() },
        string_data: Some(BTreeMap::from([("keep".to_string(), "me".to_string())])),
        ..Default::default()
    };
    crd.secrets.create(&pp, &squatted).await.unwrap();
    let mut squatter = user("squatter", &[("data", Permission::ReadWrite)]);
    squatter.spec.secret_name = Some("taken".into());
    crd.users.create(&pp, &squatter).await.unwrap();
    wait_condition(&crd.users, "squatter", "False", "Conflict").await;
    let taken = crd.secrets.get("taken").await.unwrap();
    assert_eq!(text(&taken, "keep").as_deref(), Some("me"), "{kind}: a foreign Secret is left untouched");
    assert!(text(&taken, secret_keys::ACCESS_KEY_ID).is_none(), "{kind}: no credentials written into it");
    // The refusal is announced as an event.
    wait_event(&crd.client, &crd.ns, "squatter", "Conflict").await.unwrap();
    crd.users.delete("squatter", &DeleteParams::default()).await.unwrap();
    crd.finish().await;
}

async fn a_bucket_deleted_behind_its_back_comes_back_with_access(kind: StoreKind) {
    let crd = Crd::start(kind).await;
    let app = crd.apply_app().await;
    let s3 = app_client(&app.secret);
    let store = &crd.store;
    empty(store, &app.data).await;
    store.s3_client().delete_bucket().bucket(&app.data).send().await.unwrap();
    wait_until("the deleted bucket is recreated", TIMEOUT, || bucket_exists(store, &app.data)).await.unwrap();
    wait_ready(&crd.buckets, "data").await;
    // The user's grant on it is restored too (on VersityGW the grant is the bucket's owner).
    wait_until("access to the recreated bucket", TIMEOUT, || put(&s3, &app.data, "after-recreate.txt")).await.unwrap();
    crd.finish().await;
}

async fn another_namespace_cannot_take_the_bucket_and_adoption_needs_trust(kind: StoreKind) {
    let crd = Crd::start(kind).await;
    let app = crd.apply_app().await;
    let s3 = app_client(&app.secret);
    let (store, pp) = (&crd.store, PostParams::default());

    // Another namespace asking for the same bucket name gets Conflict; the bucket stays ours.
    let rival_ns = cp().namespace(&format!("rival-{kind}")).await.unwrap();
    let rival_op = Operator::start(crd.client.clone(), store, &rival_ns, "2s", &[]).await.unwrap();
    let rival_api: Api<S3Bucket> = Api::namespaced(crd.client.clone(), &rival_ns);
    let rival = S3Bucket::new(
        "grab",
        S3BucketSpec {
            bucket_name: Some(app.data.clone()),
            deletion_policy: DeletionPolicy::Delete,
            force_delete: Some(true),
            ..Default::default()
        },
    );
    rival_api.create(&pp, &rival).await.unwrap();
    wait_condition(&rival_api, "grab", "False", "Conflict").await;
    assert!(put(&s3, &app.data, "still-mine.txt").await, "{kind}: the owner keeps its access");
    rival_api.delete("grab", &DeleteParams::default()).await.unwrap();
    wait_gone(&rival_api, "grab").await.unwrap();
    assert!(get(&s3, &app.data, "still-mine.txt").await, "{kind}: the rival's forced delete touched nothing");

    // A bucket made outside the operator is adopted only by a namespace trusted to.
    let foreign_again = unique_name("foreign");
    store.s3_client().create_bucket().bucket(&foreign_again).send().await.unwrap();
    let not_trusted =
        S3Bucket::new("theirs", S3BucketSpec { bucket_name: Some(foreign_again.clone()), ..Default::default() });
    rival_api.create(&pp, &not_trusted).await.unwrap();
    wait_condition(&rival_api, "theirs", "False", "Conflict").await;
    let foreign = unique_name("foreign");
    store.s3_client().create_bucket().bucket(&foreign).send().await.unwrap();
    let trusted = S3Bucket::new("adopted", S3BucketSpec { bucket_name: Some(foreign.clone()), ..Default::default() });
    crd.buckets.create(&pp, &trusted).await.unwrap();
    wait_ready(&crd.buckets, "adopted").await;
    rival_op.stop().await.unwrap();
    crd.finish().await;
}

async fn deleting_the_user_revokes_its_key(kind: StoreKind) {
    let crd = Crd::start(kind).await;
    let app = crd.apply_app().await;
    let s3 = app_client(&app.secret);
    assert!(put(&s3, &app.data, "before.txt").await, "{kind}: the user's key writes before the deletion");
    crd.users.delete("app", &DeleteParams::default()).await.unwrap();
    wait_gone(&crd.users, "app").await.unwrap();
    assert!(!put(&s3, &app.data, "gone.txt").await, "{kind}: a deleted user's key must fail");
    crd.finish().await;
}

async fn deletion_policies_retain_block_and_force(kind: StoreKind) {
    let crd = Crd::start(kind).await;
    let (data, logs) = crd.apply_buckets().await;
    let (store, buckets) = (&crd.store, &crd.buckets);
    let object = ByteStream::from_static(b"hello");
    store.s3_client().put_object().bucket(&data).key("hello.txt").body(object).send().await.unwrap();

    // Retain keeps the bucket; Delete refuses a non-empty bucket until forceDelete is set.
    buckets.delete("logs", &DeleteParams::default()).await.unwrap();
    wait_gone(buckets, "logs").await.unwrap();
    assert!(bucket_exists(store, &logs).await, "{kind}: Retain keeps the bucket");
    buckets.delete("data", &DeleteParams::default()).await.unwrap();
    let blocked = wait_condition(buckets, "data", "False", "DeletionBlocked").await;
    assert!(blocked.status_text().contains("forceDelete"), "{}", blocked.status_text());
    assert!(bucket_exists(store, &data).await, "{kind}: a non-empty bucket is kept");
    let force = serde_json::json!({"spec": {"forceDelete": true}});
    buckets.patch("data", &PatchParams::default(), &Patch::Merge(&force)).await.unwrap();
    wait_gone(buckets, "data").await.unwrap();
    assert!(!bucket_exists(store, &data).await, "{kind}: forceDelete removed the bucket");

    // An empty Delete bucket just goes.
    buckets.create(&PostParams::default(), &bucket("scratch", DeletionPolicy::Delete)).await.unwrap();
    let scratch = wait_ready(buckets, "scratch").await;
    let scratch_name = scratch.status.unwrap().bucket_name.unwrap();
    buckets.delete("scratch", &DeleteParams::default()).await.unwrap();
    wait_until("scratch bucket removed", TIMEOUT, || async { !bucket_exists(store, &scratch_name).await })
        .await
        .unwrap();
    crd.finish().await;
}

/// A store of its own: the others' cases must not see it stop.
async fn a_stopped_store_reports_backend_unavailable_then_recovers(kind: StoreKind) {
    let mut crd = Crd::on(kind, Arc::new(start_enforcing(kind).await)).await;
    let store = Arc::get_mut(&mut crd.store).expect("a store of this case's own");
    store.stop().await;
    crd.buckets.create(&PostParams::default(), &bucket("later", DeletionPolicy::Delete)).await.unwrap();
    wait_condition(&crd.buckets, "later", "False", "BackendUnavailable").await;
    Arc::get_mut(&mut crd.store).expect("a store of this case's own").restart().await.unwrap();
    wait_ready(&crd.buckets, "later").await;
    crd.finish().await;
}

/// The cases above as tests of one store, in a module named after it.
macro_rules! cases {
    ($store:ident: $kind:expr => $($case:ident),+ $(,)?) => {
        mod $store {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($kind).await;
                }
            )+
        }
    };
}

/// Every case that leaves the store running, on one store, plus `extra` cases.
macro_rules! every_case {
    ($store:ident: $kind:expr $(, $extra:ident)* $(,)?) => {
        cases!($store: $kind =>
            applied_objects_become_ready_with_a_complete_secret,
            the_secret_reads_and_writes_only_what_is_granted,
            converged_resyncs_write_nothing,
            deleting_the_secret_rotates_the_key_pair,
            removed_grants_deleted_keys_and_edited_secrets_are_repaired,
            a_secret_it_does_not_own_is_never_overwritten,
            a_bucket_deleted_behind_its_back_comes_back_with_access,
            another_namespace_cannot_take_the_bucket_and_adoption_needs_trust,
            deleting_the_user_revokes_its_key,
            deletion_policies_retain_block_and_force,
            $($extra,)*
        );
    };
}

every_case!(versitygw: StoreKind::Versitygw, a_stopped_store_reports_backend_unavailable_then_recovers);
every_case!(minio: StoreKind::Minio, a_stopped_store_reports_backend_unavailable_then_recovers);
every_case!(garage: StoreKind::Garage, a_stopped_store_reports_backend_unavailable_then_recovers);
// moto, standing in for AWS, has no outage case: an enforcing moto restarted has a new
// administrator key, which the operator would not know.
every_case!(aws: StoreKind::Moto);
