//! Ownership end to end: who may take which bucket and which account, across namespaces and
//! across the two modes (S3Bucket/S3User and annotated compatibility Secrets), on each real store
//! with the real control plane.
//!
//! Every case checks the victim's side, not only the attacker's refusal: the store's own admin
//! API (accounts with their role and secret, bucket owners or grants, policies) must be unchanged,
//! and the victim's own key must still authenticate, still read its data and still write.
//!
//! Each store runs its own operators, one per tenant namespace, sharing the store and one marker
//! bucket (the ledger of claims), as replicas scoped to namespaces would: a claim made by one must
//! be seen by the other through the store, not through a shared memory. The stores of one case run
//! concurrently, and every store's failure is reported, not only the first.
//!
//! The contract is the compatibility contract's "Safety we add" (compat-contract.md in the
//! team's shared docs) and the README's compatibility section: a refused Secret gets a Warning
//! `Conflict` and nothing changes on the store; a refused S3Bucket or S3User gets
//! `Ready=False` reason `Conflict`. The cases, one test each:
//! 1. an account an administrator made by hand with the widest role is not a Secret's to reset;
//! 2. a bucket an administrator made by hand, with data, is not a Secret's to take;
//! 3. a stale compatibility claim against a later S3Bucket for the same name: one owner either way;
//! 4. an honest migration (the Secret proves it holds the account, which owns the bucket)
//!    converges without a Warning and without changing anything;
//! 5. S3Bucket/S3User against compatibility Secrets, in both orders;
//! 6. a forged S3Bucket status (as a tenant with status rights could write it) grants nothing;
//! 7. two namespaces racing for one new bucket name, 20 names at once: exactly one wins.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use aws_sdk_s3::{error::ProvideErrorMetadata, primitives::ByteStream};
use futures::future::join_all;
use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::Condition};
use kube::{
    Api, Client,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};
use s3op_api::{
    BucketAccess, DEFAULT_COMPAT_ANNOTATION, Permission, S3Bucket, S3BucketSpec, S3User, S3UserSpec, secret_keys,
};
use s3op_tests::{
    compat::{random_access_key, random_secret},
    fixture::{client, cp, start_enforcing},
    inspect::{Snapshot, snapshot},
    operator::{Operator, store_args},
    stores::{Store, StoreKind, unique_name},
    wait::{EventSeen, HasConditions, TIMEOUT, events, wait_for_value, wait_ready_condition, wait_until},
};
use serde_json::{Value, json};

/// Resync interval of every operator here: drift and wrong decisions show within seconds.
const RESYNC: &str = "3s";

/// A few resync intervals: what a case waits before it judges that nothing more will happen.
const SETTLE: Duration = Duration::from_secs(10);

/// Names raced for in each race case, all at the same time.
const ROUNDS: usize = 20;

/// Stores that take keys chosen by a Secret (AWS refuses compatibility mode).
const COMPAT_STORES: [StoreKind; 3] = [StoreKind::Versitygw, StoreKind::Minio, StoreKind::Garage];

/// Every store, for cases made of S3Buckets and S3Users only.
const CRD_STORES: [StoreKind; 4] = [StoreKind::Versitygw, StoreKind::Minio, StoreKind::Garage, StoreKind::Moto];

/// The data a victim keeps in its bucket.
const PRECIOUS: &[u8] = b"the victim's data, which nobody else may read";

// ---------------------------------------------------------------------------------------------
// Running a case on several stores.

/// Runs `case` once per store kind, concurrently, and fails naming every store that failed (a
/// panic on one store does not hide the others' results).
async fn on_stores<F, Fut>(kinds: &[StoreKind], case: F)
where
    F: Fn(StoreKind) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let runs: Vec<_> = kinds.iter().map(|&kind| (kind, tokio::spawn(case(kind)))).collect();
    let mut failed = Vec::new();
    for (kind, run) in runs {
        if let Err(e) = run.await {
            failed.push(format!("--- {kind}: {}", panic_text(e)));
        }
    }
    assert!(failed.is_empty(), "failed on {} of {} stores:\n{}", failed.len(), kinds.len(), failed.join("\n"));
}

fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_else(|| "a panic without a message".into()),
        Err(e) => e.to_string(),
    }
}

/// One store, the client and the marker bucket its operators share.
struct Env {
    kind: StoreKind,
    store: Store,
    client: Client,
    markers: String,
}

/// A tenant namespace with its own operator (sharing the store and the marker bucket).
struct Tenant {
    ns: String,
    /// `None` only while [`Tenant::restart`] swaps it.
    op: Option<Operator>,
    client: Client,
    buckets: Api<S3Bucket>,
    users: Api<S3User>,
    secrets: Api<Secret>,
}

impl Env {
    async fn new(kind: StoreKind) -> Env {
        // Enforcing: grants are really evaluated, as on AWS.
        let store = start_enforcing(kind).await;
        Env { kind, store, client: client().await, markers: unique_name("own-markers") }
    }

    /// A fresh namespace named after `label` and an operator watching it.
    async fn tenant(&self, label: &str) -> Tenant {
        let ns = cp().namespace(&format!("own-{label}-{}", self.kind)).await.unwrap();
        let compat = if self.kind == StoreKind::Moto { "false" } else { "true" };
        let mut args = store_args(&self.store);
        args.extend(
            [
                "--watch-namespace",
                ns.as_str(),
                "--resync-interval",
                RESYNC,
                "--compat-mode",
                compat,
                "--marker-bucket",
                self.markers.as_str(),
            ]
            .map(str::to_string),
        );
        let op = Operator::start_with(self.client.clone(), args).await.unwrap();
        Tenant {
            buckets: Api::namespaced(self.client.clone(), &ns),
            users: Api::namespaced(self.client.clone(), &ns),
            secrets: Api::namespaced(self.client.clone(), &ns),
            client: self.client.clone(),
            ns,
            op: Some(op),
        }
    }

    /// Two tenants, started at the same time.
    async fn tenants(&self, a: &str, b: &str) -> (Tenant, Tenant) {
        tokio::join!(self.tenant(a), self.tenant(b))
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes objects.

fn s3bucket(name: &str, bucket_name: &str) -> S3Bucket {
    S3Bucket::new(name, S3BucketSpec { bucket_name: Some(bucket_name.into()), ..Default::default() })
}

fn s3user(name: &str, user_name: Option<&str>, read_write: &[&str]) -> S3User {
    S3User::new(
        name,
        S3UserSpec {
            user_name: user_name.map(str::to_string),
            access: read_write
                .iter()
                .map(|b| BucketAccess { bucket: (*b).to_string(), permission: Permission::ReadWrite })
                .collect(),
            ..Default::default()
        },
    )
}

fn compat_secret(name: &str, bucket: &str, access_key: &str, secret_key: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(BTreeMap::from([(DEFAULT_COMPAT_ANNOTATION.to_string(), "true".to_string())])),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([
            ("bucket-name".to_string(), bucket.to_string()),
            ("access-key".to_string(), access_key.to_string()),
            ("secret-key".to_string(), secret_key.to_string()),
        ])),
        ..Secret::default()
    }
}

/// A key pair, as an S3User's credentials Secret or a compatibility Secret holds it.
#[derive(Clone)]
struct Keys {
    access: String,
    secret: String,
}

impl Keys {
    fn fresh() -> Keys {
        Keys { access: random_access_key(), secret: random_secret() }
    }
}

/// How the operator answered a compatibility Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// A Normal `Provisioned` event and no Warning.
    Provisioned,
    /// A Warning event with this reason and note.
    Warning(String, String),
}

/// How a claim for a bucket name ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    Won,
    Refused,
    /// Neither: a compatibility Secret answered with another Warning.
    Failed,
}

impl Tenant {
    /// Stops the tenant's operator and starts a new process with the same arguments. Claims
    /// live on the store, so a restart between two steps must change no outcome.
    async fn restart(&mut self) {
        let old = self.op.take().unwrap();
        let args = old.args();
        old.stop().await.unwrap();
        self.op = Some(Operator::start_with(self.client.clone(), args).await.unwrap());
    }

    async fn create_bucket(&self, name: &str, bucket_name: &str) {
        self.buckets.create(&PostParams::default(), &s3bucket(name, bucket_name)).await.unwrap();
    }

    async fn create_user(&self, name: &str, user_name: Option<&str>, read_write: &[&str]) {
        self.users.create(&PostParams::default(), &s3user(name, user_name, read_write)).await.unwrap();
    }

    async fn create_secret(&self, name: &str, bucket: &str, keys: &Keys) {
        let secret = compat_secret(name, bucket, &keys.access, &keys.secret);
        self.secrets.create(&PostParams::default(), &secret).await.unwrap();
    }

    /// Sets the Secret's annotation to "true" or "false" (the documented opt-out).
    async fn set_enabled(&self, name: &str, enabled: bool) {
        let value = if enabled { "true" } else { "false" };
        let patch = json!({"metadata": {"annotations": {DEFAULT_COMPAT_ANNOTATION: value}}});
        self.secrets.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }

    async fn events(&self, name: &str) -> Vec<EventSeen> {
        events(&self.client, &self.ns, name).await.unwrap()
    }

    async fn warnings(&self, name: &str) -> Vec<EventSeen> {
        self.events(name).await.into_iter().filter(|e| e.type_ == "Warning").collect()
    }

    /// Waits for the first answer to the Secret: a Warning, or `Provisioned`.
    async fn answer(&self, name: &str) -> Answer {
        let what = format!("an answer to Secret {}/{name}", self.ns);
        wait_for_value(&what, TIMEOUT, || async {
            let seen = events(&self.client, &self.ns, name).await.ok()?;
            if let Some(w) = seen.iter().find(|e| e.type_ == "Warning") {
                return Some(Answer::Warning(w.reason.clone(), w.note.clone()));
            }
            seen.iter().any(|e| e.reason == "Provisioned").then_some(Answer::Provisioned)
        })
        .await
        .unwrap()
    }

    /// Waits for the Secret's answer and requires `Conflict`, a Warning; returns its note.
    async fn expect_claim_refused(&self, name: &str, never: &[&str]) -> String {
        match self.answer(name).await {
            Answer::Warning(reason, note) if reason == "Conflict" => {
                for secret in never {
                    assert!(!note.contains(secret), "the Conflict event on {name} shows a secret key");
                }
                note
            }
            other => panic!("Secret {}/{name}: expected a Conflict Warning, got {other:?}", self.ns),
        }
    }

    /// Waits for the Secret's answer and requires `Provisioned` without a Warning.
    async fn expect_provisioned(&self, name: &str) {
        let answer = self.answer(name).await;
        assert_eq!(answer, Answer::Provisioned, "Secret {}/{name}", self.ns);
    }

    /// Waits until this tenant's operator handled the Secret successfully at least once (an
    /// honest migration writes nothing, so it may announce nothing) or warned about it; then
    /// requires that it never warned, now and after a few more resyncs.
    async fn expect_quiet_convergence(&self, name: &str) {
        wait_until(&format!("Secret {}/{name} handled", self.ns), TIMEOUT, || async {
            !self.warnings(name).await.is_empty()
                || self.op.as_ref().unwrap().metric_sum("s3_operator_secrets_processed_total").await.unwrap_or(0.0)
                    >= 1.0
        })
        .await
        .unwrap();
        let warned = self.warnings(name).await;
        assert!(warned.is_empty(), "an honest migration got Warnings: {warned:?}");
        tokio::time::sleep(SETTLE).await;
        let warned = self.warnings(name).await;
        assert!(warned.is_empty(), "an honest migration got Warnings on a resync: {warned:?}");
    }

    /// Waits until the S3Bucket is Ready (`Won`) or refused with `Conflict` (`Refused`).
    async fn bucket_claim(&self, name: &str) -> Claim {
        let what = format!("S3Bucket {}/{name} Ready or Conflict", self.ns);
        let found = wait_for_value(&what, TIMEOUT, || async { claim_of(&self.buckets.get(name).await.ok()?) }).await;
        match found {
            Ok(claim) => claim,
            Err(e) => {
                panic!("{e}: last condition {:?}", self.buckets.get(name).await.ok().and_then(|b| b.ready().cloned()))
            }
        }
    }

    /// The S3Bucket's claim as it stands now, without waiting.
    async fn bucket_claim_now(&self, name: &str) -> Option<Claim> {
        claim_of(&self.buckets.get(name).await.unwrap())
    }

    /// Waits until the S3User is Ready and returns the keys in its credentials Secret.
    async fn user_keys(&self, name: &str) -> Keys {
        let user = wait_ready_condition(&self.users, name, "True", "Available")
            .await
            .unwrap_or_else(|e| panic!("S3User {}/{name}: {e}", self.ns));
        let secret_name = user.status.and_then(|s| s.secret_name).unwrap();
        self.keys_in(&secret_name).await.unwrap_or_else(|| panic!("no keys in Secret {}/{secret_name}", self.ns))
    }

    /// The keys in the S3User's credentials Secret if it has one (Ready or not).
    async fn user_keys_now(&self, name: &str) -> Option<Keys> {
        let user = self.users.get(name).await.unwrap();
        let secret_name = user.status.and_then(|s| s.secret_name).unwrap_or_else(|| format!("{name}-s3-credentials"));
        self.keys_in(&secret_name).await
    }

    async fn keys_in(&self, secret_name: &str) -> Option<Keys> {
        let secret = self.secrets.get_opt(secret_name).await.unwrap()?;
        let data = secret.data?;
        let text = |k: &str| data.get(k).map(|v| String::from_utf8(v.0.clone()).unwrap());
        Some(Keys { access: text(secret_keys::ACCESS_KEY_ID)?, secret: text(secret_keys::SECRET_ACCESS_KEY)? })
    }
}

fn claim_of(bucket: &S3Bucket) -> Option<Claim> {
    let ready = bucket.ready()?;
    match (ready.status.as_str(), ready.reason.as_str()) {
        ("True", _) => Some(Claim::Won),
        ("False", "Conflict") => Some(Claim::Refused),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The victim's own credentials.

/// True when the store takes the key pair: a signed ListBuckets is authenticated.
async fn authenticates(store: &Store, keys: &Keys) -> bool {
    match store.s3_client_with(&keys.access, &keys.secret).list_buckets().send().await {
        Ok(_) => true,
        // MinIO answers AccessDenied to an authenticated user no policy lets list buckets, and
        // InvalidAccessKeyId or SignatureDoesNotMatch to a wrong key.
        Err(e) => store.kind() == StoreKind::Minio && e.code() == Some("AccessDenied"),
    }
}

async fn put(store: &Store, keys: &Keys, bucket: &str, key: &str, body: &[u8]) -> bool {
    let s3 = store.s3_client_with(&keys.access, &keys.secret);
    s3.put_object().bucket(bucket).key(key).body(ByteStream::from(body.to_vec())).send().await.is_ok()
}

/// The object as these keys read it; None when they may not.
async fn read(store: &Store, keys: &Keys, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let s3 = store.s3_client_with(&keys.access, &keys.secret);
    let out = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
    Some(out.body.collect().await.ok()?.into_bytes().to_vec())
}

/// True when the keys may put an object in `bucket` (removed again with the same keys).
async fn can_write(store: &Store, keys: &Keys, bucket: &str) -> bool {
    let key = format!("probe-{}", unique_name("w"));
    if !put(store, keys, bucket, &key, b"probe").await {
        return false;
    }
    let _ = store.s3_client_with(&keys.access, &keys.secret).delete_object().bucket(bucket).key(&key).send().await;
    true
}

// ---------------------------------------------------------------------------------------------
// The administrator's side: the store's own admin API, not the operator's backend.

fn admin_keys(store: &Store) -> Keys {
    Keys { access: store.admin_access_key().into(), secret: store.admin_secret_key().into() }
}

/// A signed VersityGW or MinIO admin call that must succeed.
async fn admin_call(store: &Store, method: &str, path: &str, body: Vec<u8>) {
    let (status, reply) = store.signed_admin_call(method, path, body).await.unwrap();
    assert!((200..300).contains(&status), "{method} {path}: HTTP {status}: {}", String::from_utf8_lossy(&reply));
}

async fn garage(store: &Store, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    store
        .garage_admin_call(method.clone(), path, body.as_ref())
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
}

/// A MinIO admin body, encrypted with the administrator's secret (Argon2id: off the runtime).
async fn minio_sealed(store: &Store, plain: Value) -> Vec<u8> {
    let password = store.admin_secret_key().as_bytes().to_vec();
    tokio::task::spawn_blocking(move || {
        s3op_backends::minio::madmin::encrypt_data(&password, plain.to_string().as_bytes()).unwrap()
    })
    .await
    .unwrap()
}

/// An account made by hand by the administrator, as the store's own tools make it.
/// `privileged`: VersityGW role `admin`, MinIO policy `readwrite`, Garage the right to create
/// buckets; otherwise VersityGW role `user`, a MinIO user without policies, a plain Garage key.
async fn admin_account(store: &Store, keys: &Keys, privileged: bool) {
    match store.kind() {
        StoreKind::Versitygw => {
            let role = if privileged { "admin" } else { "user" };
            let body = format!(
                "<Account><Access>{}</Access><Secret>{}</Secret><Role>{role}</Role></Account>",
                keys.access, keys.secret
            );
            admin_call(store, "PATCH", "/create-user", body.into_bytes()).await;
        }
        StoreKind::Minio => {
            let body = minio_sealed(store, json!({"secretKey": keys.secret, "status": "enabled"})).await;
            admin_call(store, "PUT", &format!("/minio/admin/v3/add-user?accessKey={}", keys.access), body).await;
            if privileged {
                let path = format!(
                    "/minio/admin/v3/set-user-or-group-policy?policyName=readwrite&userOrGroup={}&isGroup=false",
                    keys.access
                );
                admin_call(store, "PUT", &path, Vec::new()).await;
            }
        }
        StoreKind::Garage => {
            let body = json!({"accessKeyId": keys.access, "secretAccessKey": keys.secret, "name": "made-by-hand"});
            garage(store, reqwest::Method::POST, "/v2/ImportKey", Some(body)).await;
            if privileged {
                let body = json!({"allow": {"createBucket": true}});
                garage(store, reqwest::Method::POST, &format!("/v2/UpdateKey?id={}", keys.access), Some(body)).await;
            }
        }
        StoreKind::Moto => panic!("no hand-made accounts on moto here"),
    }
    assert!(authenticates(store, keys).await, "the account the administrator made does not authenticate");
}

/// The Garage bucket id of a global alias.
async fn garage_bucket_id(store: &Store, bucket: &str) -> String {
    let info = garage(store, reqwest::Method::GET, &format!("/v2/GetBucketInfo?globalAlias={bucket}"), None).await;
    info["id"].as_str().unwrap().to_string()
}

async fn garage_allow(store: &Store, bucket: &str, access_key: &str, read: bool, write: bool, owner: bool) {
    let body = json!({
        "bucketId": garage_bucket_id(store, bucket).await,
        "accessKeyId": access_key,
        "permissions": {"read": read, "write": write, "owner": owner},
    });
    garage(store, reqwest::Method::POST, "/v2/AllowBucketKey", Some(body)).await;
}

/// A bucket the administrator makes by hand (Garage: a global alias through its admin API, as
/// `garage bucket create` does), holding one object.
async fn admin_bucket_with_object(store: &Store, bucket: &str, key: &str, body: &[u8]) {
    if store.kind() == StoreKind::Garage {
        garage(store, reqwest::Method::POST, "/v2/CreateBucket", Some(json!({"globalAlias": bucket}))).await;
        garage_allow(store, bucket, store.admin_access_key(), true, true, true).await;
    } else {
        store.s3_client().create_bucket().bucket(bucket).send().await.unwrap();
    }
    assert!(put(store, &admin_keys(store), bucket, key, body).await, "the administrator's object in {bucket}");
}

/// Gives the bucket to the account, as the older operator left it: VersityGW changes the owner,
/// Garage grants read, write and owner.
async fn admin_give_bucket(store: &Store, bucket: &str, access_key: &str) {
    match store.kind() {
        StoreKind::Versitygw => {
            let path = format!("/change-bucket-owner?bucket={bucket}&owner={access_key}");
            admin_call(store, "PATCH", &path, Vec::new()).await;
        }
        StoreKind::Garage => garage_allow(store, bucket, access_key, true, true, true).await,
        other => panic!("{other} buckets have no owner"),
    }
}

/// The object as the administrator reads it (Garage: after granting its own key read).
async fn admin_read(store: &Store, bucket: &str, key: &str) -> Option<Vec<u8>> {
    if store.kind() == StoreKind::Garage {
        garage_allow(store, bucket, store.admin_access_key(), true, false, false).await;
    }
    read(store, &admin_keys(store), bucket, key).await
}

/// Empties and deletes the bucket with the administrator's credentials.
async fn admin_delete_bucket(store: &Store, bucket: &str) {
    if store.kind() == StoreKind::Garage {
        garage_allow(store, bucket, store.admin_access_key(), true, true, true).await;
    }
    let s3 = store.s3_client();
    let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    for o in listed.contents() {
        s3.delete_object().bucket(bucket).key(o.key().unwrap()).send().await.unwrap();
    }
    if store.kind() == StoreKind::Garage {
        let id = garage_bucket_id(store, bucket).await;
        garage(store, reqwest::Method::POST, &format!("/v2/DeleteBucket?id={id}"), None).await;
    } else {
        s3.delete_bucket().bucket(bucket).send().await.unwrap();
    }
}

/// Everything the store's admin API says about accounts, buckets and who may use them, without
/// the operator's marker bucket and (Garage) the operator's own key: what a refused claim must
/// leave exactly as it was.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct View {
    /// VersityGW accounts (role, ids, secret) and bucket owners; MinIO users (status, policies),
    /// buckets and canned policies.
    snapshot: Snapshot,
    /// Garage: `key:<id>` (name, permissions, secret hash, buckets with permissions) and
    /// `bucket:<alias>` (keys with permissions).
    garage: BTreeMap<String, String>,
}

impl View {
    fn has_account(&self, access_key: &str) -> bool {
        self.snapshot.accounts.contains_key(access_key) || self.garage.contains_key(&format!("key:{access_key}"))
    }

    fn has_bucket(&self, bucket: &str) -> bool {
        self.snapshot.buckets.contains_key(bucket) || self.garage.contains_key(&format!("bucket:{bucket}"))
    }

    /// Who may use the bucket: VersityGW its owner, Garage its keys and their permissions, MinIO
    /// the users whose policies name it.
    fn access_to(&self, bucket: &str) -> String {
        if let Some(g) = self.garage.get(&format!("bucket:{bucket}")) {
            return g.clone();
        }
        if let Some(owner) = self.snapshot.buckets.get(bucket).filter(|o| !o.is_empty()) {
            return format!("owner {owner}");
        }
        let arn = format!("arn:aws:s3:::{bucket}");
        let names = |doc: &str| doc.contains(&format!("{arn}\"")) || doc.contains(&format!("{arn}/"));
        let users: Vec<&str> = self
            .snapshot
            .accounts
            .iter()
            .filter(|(_, a)| {
                a.policies.split(',').any(|p| self.snapshot.policies.get(p.trim()).is_some_and(|doc| names(doc)))
            })
            .map(|(k, _)| k.as_str())
            .collect();
        format!("users {users:?}")
    }

    /// Panics naming what changed between `self` (before) and `after`.
    fn assert_same(&self, after: &View, what: &str) {
        if self == after {
            return;
        }
        let diff = self.snapshot.diff(&after.snapshot);
        let keys: BTreeSet<&String> = self.garage.keys().chain(after.garage.keys()).collect();
        let garage: Vec<String> = keys
            .into_iter()
            .filter(|k| self.garage.get(*k) != after.garage.get(*k))
            .map(|k| format!("{k}: {:?} -> {:?}", self.garage.get(k), after.garage.get(k)))
            .collect();
        panic!("{what}: the store changed: {diff:?} {garage:?}");
    }
}

fn hash_of(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

async fn view(env: &Env) -> View {
    let store = &env.store;
    match env.kind {
        StoreKind::Versitygw | StoreKind::Minio => {
            let mut snapshot = snapshot(store).await.unwrap();
            snapshot.buckets.remove(&env.markers);
            View { snapshot, garage: BTreeMap::new() }
        }
        StoreKind::Garage => View { snapshot: Snapshot::default(), garage: garage_view(env).await },
        StoreKind::Moto => View::default(),
    }
}

async fn garage_view(env: &Env) -> BTreeMap<String, String> {
    let store = &env.store;
    let admin = store.admin_access_key();
    let get = reqwest::Method::GET;
    let mut out = BTreeMap::new();
    let not_markers = |b: &Value| !b["globalAliases"].as_array().is_some_and(|a| a.iter().any(|n| *n == env.markers));
    let keys = garage(store, get.clone(), "/v2/ListKeys", None).await;
    for key in keys.as_array().unwrap() {
        let id = key["id"].as_str().unwrap();
        if id == admin {
            continue;
        }
        let info = garage(store, get.clone(), &format!("/v2/GetKeyInfo?id={id}&showSecretKey=true"), None).await;
        let mut buckets: Vec<String> = info["buckets"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|b| not_markers(b))
                    .map(|b| format!("{}{}={}", b["globalAliases"], b["localAliases"], b["permissions"]))
                    .collect()
            })
            .unwrap_or_default();
        buckets.sort();
        let secret = info["secretAccessKey"].as_str().unwrap_or_default();
        let fingerprint = format!(
            "name={} permissions={} expired={} secret#{:x} buckets={buckets:?}",
            info["name"],
            info["permissions"],
            info["expired"],
            hash_of(secret)
        );
        out.insert(format!("key:{id}"), fingerprint);
    }
    let buckets = garage(store, get.clone(), "/v2/ListBuckets", None).await;
    for bucket in buckets.as_array().unwrap().iter().filter(|b| not_markers(b)) {
        let id = bucket["id"].as_str().unwrap();
        let info = garage(store, get.clone(), &format!("/v2/GetBucketInfo?id={id}"), None).await;
        let mut keys: Vec<String> = info["keys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|k| k["accessKeyId"] != admin)
                    .map(|k| format!("{}={}", k["accessKeyId"], k["permissions"]))
                    .collect()
            })
            .unwrap_or_default();
        keys.sort();
        let mut names: Vec<String> = bucket["globalAliases"]
            .as_array()
            .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if let Some(local) = bucket["localAliases"].as_array() {
            names.extend(local.iter().filter_map(|l| l["alias"].as_str().map(str::to_string)));
        }
        if names.is_empty() {
            names.push(format!("(id) {id}"));
        }
        for name in names {
            out.insert(format!("bucket:{name}"), format!("keys={keys:?}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 1. A privileged account made by hand is not a Secret's to take.

async fn privileged_account(kind: StoreKind) {
    let env = Env::new(kind).await;
    let tenant = env.tenant("tenant").await;
    let admin = Keys::fresh();
    admin_account(&env.store, &admin, true).await;
    let before = view(&env).await;

    let bucket = unique_name("own-priv");
    let wrong = Keys { access: admin.access.clone(), secret: random_secret() };
    tenant.create_secret("grab-admin", &bucket, &wrong).await;
    tenant.expect_claim_refused("grab-admin", &[wrong.secret.as_str(), admin.secret.as_str()]).await;
    tokio::time::sleep(SETTLE).await;

    view(&env).await.assert_same(&before, "a refused Secret naming an admin account");
    assert!(authenticates(&env.store, &admin).await, "the admin account's own secret no longer authenticates");
    assert!(!authenticates(&env.store, &wrong).await, "the tenant's secret authenticates as the admin account");
    assert!(!view(&env).await.has_bucket(&bucket), "the refused Secret's bucket was created");
    let provisioned: Vec<EventSeen> =
        tenant.events("grab-admin").await.into_iter().filter(|e| e.reason == "Provisioned").collect();
    assert!(provisioned.is_empty(), "the refused Secret was also provisioned: {provisioned:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_account_made_by_hand_is_not_taken_over() {
    on_stores(&COMPAT_STORES, privileged_account).await;
}

// ---------------------------------------------------------------------------------------------
// 2. A bucket made by hand, with data, is not a Secret's to take.

async fn foreign_bucket(kind: StoreKind) {
    let env = Env::new(kind).await;
    let tenant = env.tenant("tenant").await;
    let bucket = unique_name("own-data");
    admin_bucket_with_object(&env.store, &bucket, "precious.txt", PRECIOUS).await;
    let before = view(&env).await;
    if kind == StoreKind::Versitygw {
        assert_eq!(before.access_to(&bucket), format!("owner {}", env.store.admin_access_key()));
    }

    let grab = Keys::fresh();
    tenant.create_secret("grab-bucket", &bucket, &grab).await;
    tenant.expect_claim_refused("grab-bucket", &[grab.secret.as_str()]).await;
    tokio::time::sleep(SETTLE).await;

    let after = view(&env).await;
    after.assert_same(&before, "a refused Secret naming a bucket made by hand");
    assert!(!after.has_account(&grab.access), "the refused Secret's account was created");
    assert_eq!(admin_read(&env.store, &bucket, "precious.txt").await.as_deref(), Some(PRECIOUS), "the data is gone");
    assert_eq!(read(&env.store, &grab, &bucket, "precious.txt").await, None, "the tenant's key reads the data");
    assert!(!can_write(&env.store, &grab, &bucket).await, "the tenant's key writes to the bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_with_data_made_by_hand_is_not_taken_over() {
    on_stores(&COMPAT_STORES, foreign_bucket).await;
}

// ---------------------------------------------------------------------------------------------
// 3. A stale compatibility claim against a later S3Bucket: either outcome is fine, as long as
//    the bucket has one owner and nobody else reads its data.

async fn stale_claim(kind: StoreKind) {
    let env = Env::new(kind).await;
    let (mut a, mut b) = env.tenants("a", "b").await;
    let store = &env.store;
    let x = unique_name("own-stale");
    let legacy = Keys::fresh();
    b.create_secret("legacy", &x, &legacy).await;
    b.expect_provisioned("legacy").await;
    assert!(can_write(store, &legacy, &x).await, "B's key cannot write its bucket");

    // B opts its Secret out (the operator must leave it alone from now on), then an
    // administrator removes the bucket.
    b.set_enabled("legacy", false).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    admin_delete_bucket(store, &x).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!bucket_exists_s3(store, &x).await, "an opted-out Secret's bucket came back");
    // Restarted between the steps: the claims are on the store, so nothing may change.
    tokio::join!(a.restart(), b.restart());

    // A asks for the name, with a user that may write to it.
    a.create_bucket("shared", &x).await;
    a.create_user("app", None, &["shared"]).await;
    match a.bucket_claim("shared").await {
        Claim::Refused => {
            eprintln!("{kind}: stale claim: B's claim stands, A's S3Bucket is refused");
            tokio::join!(a.restart(), b.restart());
            b.set_enabled("legacy", true).await;
            if let Err(e) =
                wait_until("B's key writes its bucket again", TIMEOUT, || can_write(store, &legacy, &x)).await
            {
                panic!("{e}; events on B's Secret: {:?}", b.events("legacy").await);
            }
            tokio::time::sleep(SETTLE).await;
            let warned = b.warnings("legacy").await;
            assert!(warned.is_empty(), "B's re-enabled Secret was refused: {warned:?}");
            assert_eq!(a.bucket_claim_now("shared").await, Some(Claim::Refused), "A's S3Bucket changed its mind");
            assert!(can_write(store, &legacy, &x).await, "B's key lost its bucket");
            if let Some(keys) = a.user_keys_now("app").await {
                assert!(!can_write(store, &keys, &x).await, "A's key writes to B's bucket");
            }
        }
        Claim::Failed => unreachable!("an S3Bucket's claim is Won or Refused"),
        Claim::Won => {
            eprintln!("{kind}: stale claim: A's S3Bucket gets the name, B's Secret must now be refused");
            let keys = a.user_keys("app").await;
            assert!(put(store, &keys, &x, "a-data.txt", PRECIOUS).await, "A's key cannot write its bucket");
            let before = view(&env).await.access_to(&x);
            b.set_enabled("legacy", true).await;
            let outcome = wait_for_value("B's re-enabled Secret refused", TIMEOUT, || async {
                if let Some(w) = b.warnings("legacy").await.into_iter().next() {
                    return Some(Ok(w));
                }
                read(store, &legacy, &x, "a-data.txt").await.map(|_| Err("B's key reads A's object"))
            })
            .await
            .unwrap();
            let warning = outcome.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(warning.reason, "Conflict", "{warning:?}");
            tokio::time::sleep(SETTLE).await;
            assert_eq!(read(store, &keys, &x, "a-data.txt").await.as_deref(), Some(PRECIOUS), "A lost its object");
            assert!(can_write(store, &keys, &x).await, "A's key no longer writes its bucket");
            assert_eq!(read(store, &legacy, &x, "a-data.txt").await, None, "B's key reads A's object");
            assert!(!can_write(store, &legacy, &x).await, "B's key writes to A's bucket");
            assert_eq!(admin_read(store, &x, "a-data.txt").await.as_deref(), Some(PRECIOUS));
            let after = view(&env).await.access_to(&x);
            assert_eq!(after, before, "who may use A's bucket changed after B's Secret came back");
            assert_eq!(a.bucket_claim_now("shared").await, Some(Claim::Won), "A's S3Bucket lost its claim");
        }
    }
}

/// The bucket exists, asked with the administrator's S3 key.
async fn bucket_exists_s3(store: &Store, bucket: &str) -> bool {
    if store.kind() == StoreKind::Garage {
        let path = format!("/v2/GetBucketInfo?globalAlias={bucket}");
        return store.garage_admin_call(reqwest::Method::GET, &path, None).await.is_ok();
    }
    store.s3_client().head_bucket().bucket(bucket).send().await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_compat_claim_against_a_later_s3bucket_keeps_one_owner() {
    on_stores(&COMPAT_STORES, stale_claim).await;
}

// ---------------------------------------------------------------------------------------------
// 4. An honest migration from the older operator: proof of possession, nothing written.

async fn honest_migration(kind: StoreKind) {
    let env = Env::new(kind).await;
    let tenant = env.tenant("legacy").await;
    let store = &env.store;
    let legacy = Keys::fresh();
    admin_account(store, &legacy, false).await;
    let bucket = unique_name("own-legacy");
    // MinIO buckets have no owner, so the older operator's state there is the account alone:
    // the bucket is new. Elsewhere the account owns a bucket that holds data.
    let with_bucket = kind != StoreKind::Minio;
    if with_bucket {
        if kind == StoreKind::Garage {
            garage(store, reqwest::Method::POST, "/v2/CreateBucket", Some(json!({"globalAlias": bucket}))).await;
        } else {
            store.s3_client().create_bucket().bucket(&bucket).send().await.unwrap();
        }
        admin_give_bucket(store, &bucket, &legacy.access).await;
        assert!(put(store, &legacy, &bucket, "precious.txt", PRECIOUS).await, "the legacy key writes its bucket");
    }
    let before = view(&env).await;

    tenant.create_secret("legacy", &bucket, &legacy).await;
    tenant.expect_quiet_convergence("legacy").await;

    assert!(authenticates(store, &legacy).await, "the migrated key no longer authenticates with its secret");
    let after = view(&env).await;
    if with_bucket {
        after.assert_same(&before, "an honest migration");
        assert_eq!(read(store, &legacy, &bucket, "precious.txt").await.as_deref(), Some(PRECIOUS));
        assert_eq!(admin_read(store, &bucket, "precious.txt").await.as_deref(), Some(PRECIOUS));
        if kind == StoreKind::Versitygw {
            assert_eq!(after.access_to(&bucket), format!("owner {}", legacy.access), "the owner changed");
        }
    } else {
        assert_eq!(
            before.snapshot.accounts.get(&legacy.access).map(|a| a.role.clone()),
            after.snapshot.accounts.get(&legacy.access).map(|a| a.role.clone()),
            "the migrated account's status changed"
        );
    }
    assert!(can_write(store, &legacy, &bucket).await, "the migrated key cannot write its bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_migration_with_proof_of_possession_converges_quietly() {
    on_stores(&COMPAT_STORES, honest_migration).await;
}

// ---------------------------------------------------------------------------------------------
// 5. S3Bucket/S3User against compatibility Secrets, in both orders.

async fn crd_and_compat(kind: StoreKind) {
    let env = Env::new(kind).await;
    let (mut a, mut b) = env.tenants("a", "b").await;
    let store = &env.store;

    // (a) B's Secret first; then A's S3Bucket names its bucket and A's S3User its access key.
    let x = unique_name("own-compat-first");
    let legacy = Keys::fresh();
    b.create_secret("first", &x, &legacy).await;
    b.expect_provisioned("first").await;
    assert!(can_write(store, &legacy, &x).await, "B's key cannot write its bucket");
    let before = view(&env).await;
    a.create_bucket("taken", &x).await;
    a.create_user("same-key", Some(legacy.access.as_str()), &[]).await;
    wait_ready_condition(&a.buckets, "taken", "False", "Conflict").await.unwrap();
    wait_ready_condition(&a.users, "same-key", "False", "Conflict").await.unwrap();
    tokio::time::sleep(SETTLE).await;
    view(&env).await.assert_same(&before, "an S3Bucket and S3User naming a Secret's claims");
    assert!(authenticates(store, &legacy).await, "B's key was reset");
    assert!(can_write(store, &legacy, &x).await, "B's key lost its bucket");
    let warned = b.warnings("first").await;
    assert!(warned.is_empty(), "B's Secret was refused after A asked: {warned:?}");
    assert!(a.user_keys_now("same-key").await.is_none(), "A's refused S3User got credentials");

    // (b) A's S3Bucket and S3User first; then B's Secrets name A's bucket, user name and key.
    let y = unique_name("own-crd-first");
    a.create_bucket("owned", &y).await;
    a.create_user("writer", None, &["owned"]).await;
    let keys = a.user_keys("writer").await;
    let user_name = a.users.get("writer").await.unwrap().status.and_then(|s| s.user_name).unwrap();
    assert!(put(store, &keys, &y, "a-data.txt", PRECIOUS).await, "A's key cannot write its bucket");
    // Restarted between the steps: the claims are on the store, so nothing may change.
    tokio::join!(a.restart(), b.restart());
    let before = view(&env).await;
    let grab_bucket = Keys::fresh();
    b.create_secret("grab-bucket", &y, &grab_bucket).await;
    let grab_user = Keys { access: user_name.clone(), secret: random_secret() };
    let elsewhere = unique_name("own-elsewhere");
    b.create_secret("grab-user", &elsewhere, &grab_user).await;
    let mut refused = vec![("grab-bucket", grab_bucket.clone()), ("grab-user", grab_user.clone())];
    if keys.access != user_name {
        let grab_key = Keys { access: keys.access.clone(), secret: random_secret() };
        b.create_secret("grab-key", &unique_name("own-elsewhere"), &grab_key).await;
        refused.push(("grab-key", grab_key));
    }
    for (name, grab) in &refused {
        b.expect_claim_refused(name, &[grab.secret.as_str(), keys.secret.as_str()]).await;
    }
    tokio::time::sleep(SETTLE).await;
    let after = view(&env).await;
    after.assert_same(&before, "Secrets naming an S3Bucket's bucket and an S3User's name and key");
    assert!(!after.has_account(&grab_bucket.access), "a refused Secret's account was created");
    assert!(!after.has_bucket(&elsewhere), "a refused Secret's bucket was created");
    for (name, grab) in &refused {
        assert!(!authenticates(store, grab).await, "{name}: the refused Secret's keys authenticate");
        assert_eq!(read(store, grab, &y, "a-data.txt").await, None, "{name}: the refused Secret's keys read A's data");
    }
    assert!(authenticates(store, &keys).await, "A's key was reset");
    assert_eq!(read(store, &keys, &y, "a-data.txt").await.as_deref(), Some(PRECIOUS), "A lost its object");
    assert!(can_write(store, &keys, &y).await, "A's key no longer writes its bucket");
    wait_ready_condition(&a.users, "writer", "True", "Available").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_and_compat_claims_exclude_each_other_in_both_orders() {
    on_stores(&COMPAT_STORES, crd_and_compat).await;
}

// ---------------------------------------------------------------------------------------------
// 6. A forged S3Bucket status grants nothing.

/// Writes `evil`'s status as a tenant with status rights could: Ready at the current generation,
/// naming the victim's bucket.
async fn forge(api: &Api<S3Bucket>, name: &str, victim_bucket: &str, template: &Condition) -> bool {
    let Ok(current) = api.get(name).await else { return false };
    let generation = current.metadata.generation;
    let mut status = current.status.unwrap_or_default();
    status.bucket_name = Some(victim_bucket.to_string());
    status.observed_generation = generation;
    let mut ready = template.clone();
    ready.status = "True".into();
    ready.reason = "Available".into();
    ready.observed_generation = generation;
    status.conditions = vec![ready];
    let patch = json!({"status": status});
    let stored = api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await;
    stored.is_ok_and(|b| b.status.and_then(|s| s.bucket_name).as_deref() == Some(victim_bucket))
}

async fn forged_status(kind: StoreKind) {
    let env = Env::new(kind).await;
    let (victim, attacker) = env.tenants("victim", "attacker").await;
    let store = &env.store;

    let victim_bucket = unique_name("own-victim");
    victim.create_bucket("data", &victim_bucket).await;
    victim.create_user("app", None, &["data"]).await;
    let victim_keys = victim.user_keys("app").await;
    assert!(put(store, &victim_keys, &victim_bucket, "precious.txt", PRECIOUS).await, "the victim writes its bucket");
    let access_before = view(&env).await.access_to(&victim_bucket);

    let evil_bucket = unique_name("own-evil");
    attacker.create_bucket("evil", &evil_bucket).await;
    let evil = wait_ready_condition(&attacker.buckets, "evil", "True", "Available").await.unwrap();
    let template = evil.ready().cloned().unwrap();

    // Forge just before the S3User exists, and keep forging while the operator decides.
    assert!(forge(&attacker.buckets, "evil", &victim_bucket, &template).await, "the API server refused the forgery");
    let stop = Arc::new(AtomicBool::new(false));
    let forger = {
        let (api, victim_bucket, template) = (attacker.buckets.clone(), victim_bucket.clone(), template.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut forged = 0;
            while !stop.load(Ordering::Relaxed) && forged < 400 {
                forged += usize::from(forge(&api, "evil", &victim_bucket, &template).await);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            forged
        })
    };
    attacker.create_user("thief", None, &["evil"]).await;
    tokio::time::sleep(SETTLE).await;
    if let Some(thief) = attacker.user_keys_now("thief").await {
        assert_eq!(
            read(store, &thief, &victim_bucket, "precious.txt").await,
            None,
            "while the status was forged, the attacker's key read the victim's object"
        );
        assert!(!can_write(store, &thief, &victim_bucket).await, "the attacker's key writes the victim's bucket");
    }
    stop.store(true, Ordering::Relaxed);
    let forged = forger.await.unwrap();
    let thief_then = attacker.users.get("thief").await.unwrap().ready().cloned();
    eprintln!("{kind}: evil's status forged {forged} times; the attacker's S3User meanwhile: {thief_then:?}");

    // Forging stopped: the attacker's user gets its own bucket, and only that.
    let thief = attacker.user_keys("thief").await;
    wait_until("the attacker's key writes its own bucket", TIMEOUT, || can_write(store, &thief, &evil_bucket))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(read(store, &thief, &victim_bucket, "precious.txt").await, None, "the attacker reads the victim's data");
    assert!(!can_write(store, &thief, &victim_bucket).await, "the attacker's key writes the victim's bucket");

    // The victim's side.
    assert_eq!(
        read(store, &victim_keys, &victim_bucket, "precious.txt").await.as_deref(),
        Some(PRECIOUS),
        "the victim cannot read its own data"
    );
    assert!(can_write(store, &victim_keys, &victim_bucket).await, "the victim's key lost its bucket");
    assert_eq!(admin_read(store, &victim_bucket, "precious.txt").await.as_deref(), Some(PRECIOUS));
    assert_eq!(view(&env).await.access_to(&victim_bucket), access_before, "who may use the victim's bucket changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_s3bucket_status_grants_nothing() {
    on_stores(&CRD_STORES, forged_status).await;
}

// ---------------------------------------------------------------------------------------------
// 7. Races for one new bucket name: exactly one side wins.

/// One raced name and how each side ended.
struct Race {
    bucket: String,
    object: String,
    a: Claim,
    b: Claim,
    /// B's keys when B is a compatibility Secret.
    b_keys: Option<Keys>,
    /// What B's Secret said when it was neither provisioned nor refused.
    note: Option<String>,
}

async fn races(kind: StoreKind) {
    let env = Env::new(kind).await;
    let (a, b) = env.tenants("a", "b").await;
    let store = &env.store;
    let compat = kind != StoreKind::Moto;

    // Start every race at once: S3Bucket against S3Bucket, and S3Bucket against a Secret.
    let crd_names: Vec<String> = (0..ROUNDS).map(|_| unique_name("own-race")).collect();
    let mixed_names: Vec<(String, Keys)> =
        if compat { (0..ROUNDS).map(|_| (unique_name("own-mixed"), Keys::fresh())).collect() } else { Vec::new() };
    let (a_ref, b_ref) = (&a, &b);
    tokio::join!(
        join_all(crd_names.iter().enumerate().map(|(i, x)| async move {
            let name = format!("crd-{i}");
            tokio::join!(a_ref.create_bucket(&name, x), b_ref.create_bucket(&name, x));
        })),
        join_all(mixed_names.iter().enumerate().map(|(i, (y, keys))| async move {
            let name = format!("mixed-{i}");
            tokio::join!(a_ref.create_bucket(&name, y), b_ref.create_secret(&name, y, keys));
        })),
    );

    let (crd, mixed): (Vec<Race>, Vec<Race>) = tokio::join!(
        join_all(crd_names.iter().enumerate().map(|(i, x)| async move {
            let name = format!("crd-{i}");
            let (ca, cb) = tokio::join!(a_ref.bucket_claim(&name), b_ref.bucket_claim(&name));
            Race { bucket: x.clone(), object: name, a: ca, b: cb, b_keys: None, note: None }
        })),
        join_all(mixed_names.iter().enumerate().map(|(i, (y, keys))| async move {
            let name = format!("mixed-{i}");
            let (ca, answer) = tokio::join!(a_ref.bucket_claim(&name), b_ref.answer(&name));
            let (cb, note) = match answer {
                Answer::Provisioned => (Claim::Won, None),
                Answer::Warning(reason, _) if reason == "Conflict" => (Claim::Refused, None),
                Answer::Warning(reason, note) => (Claim::Failed, Some(format!("Warning {reason}: {note}"))),
            };
            Race { bucket: y.clone(), object: name, a: ca, b: cb, b_keys: Some(keys.clone()), note }
        })),
    );

    let mut wrong = Vec::new();
    for r in crd.iter().chain(&mixed) {
        let failed = r.a == Claim::Failed || r.b == Claim::Failed;
        if failed || (r.a == Claim::Won) == (r.b == Claim::Won) {
            wrong.push(format!(
                "{} ({}): A {:?}, B {:?} {}",
                r.object,
                r.bucket,
                r.a,
                r.b,
                r.note.as_deref().unwrap_or("")
            ));
        }
    }
    let tally = |races: &[Race]| races.iter().filter(|r| r.a == Claim::Won).count();
    eprintln!(
        "{kind}: races won by A: {} of {} S3Bucket/S3Bucket, {} of {} S3Bucket/Secret",
        tally(&crd),
        crd.len(),
        tally(&mixed),
        mixed.len()
    );
    assert!(wrong.is_empty(), "not exactly one winner per name:\n{}", wrong.join("\n"));

    // The winners' keys write; a refused Secret's keys do not.
    let a_crd: Vec<&str> = crd.iter().filter(|r| r.a == Claim::Won).map(|r| r.object.as_str()).collect();
    let b_crd: Vec<&str> = crd.iter().filter(|r| r.b == Claim::Won).map(|r| r.object.as_str()).collect();
    let a_mixed: Vec<&str> = mixed.iter().filter(|r| r.a == Claim::Won).map(|r| r.object.as_str()).collect();
    let grants = [(&a, "crd-wins", &a_crd), (&b, "crd-wins", &b_crd), (&a, "mixed-wins", &a_mixed)];
    for (tenant, user, buckets) in grants.iter().filter(|(_, _, buckets)| !buckets.is_empty()) {
        tenant.create_user(user, None, buckets).await;
    }
    let mut failures = Vec::new();
    for (tenant, user, buckets) in grants.iter().filter(|(_, _, buckets)| !buckets.is_empty()) {
        let keys = tenant.user_keys(user).await;
        for object in buckets.iter() {
            let race = crd.iter().chain(&mixed).find(|r| r.object == *object).unwrap();
            if !can_write(store, &keys, &race.bucket).await {
                failures.push(format!("{}: the winner's S3User key cannot write {}", tenant.ns, race.bucket));
            }
        }
    }
    for r in &mixed {
        let keys = r.b_keys.as_ref().unwrap();
        let writes = can_write(store, keys, &r.bucket).await;
        if writes != (r.b == Claim::Won) {
            failures.push(format!("{}: B's Secret {:?}, yet its key writes: {writes}", r.object, r.b));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Nothing changes its mind a few resyncs later.
    tokio::time::sleep(SETTLE).await;
    for r in crd.iter().chain(&mixed) {
        let a_now = a.bucket_claim_now(&r.object).await;
        assert_eq!(a_now, Some(r.a), "{}: A's S3Bucket changed from {:?}", r.object, r.a);
        if r.b_keys.is_none() {
            assert_eq!(b.bucket_claim_now(&r.object).await, Some(r.b), "{}: B's S3Bucket changed", r.object);
        } else if r.b == Claim::Won {
            let warned = b.warnings(&r.object).await;
            assert!(warned.is_empty(), "{}: B's Secret won, then got {warned:?}", r.object);
        }
    }
}

/// Here each namespace has its own operator, so the races cross processes, and only a store
/// whose conditional write is atomic (MinIO) closes them for every interleaving. VersityGW's
/// and Garage's read-back narrows the window but cannot close it (a loser's write may land over
/// the winner's record; seen once on Garage), nor can AWS's tags. In a cluster every claim goes
/// through the one leader, which serialises them per name: `conformance::claims_race` races the
/// same pairs 20 times through one backend on every store, AWS included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn races_for_one_bucket_name_have_exactly_one_winner() {
    on_stores(&[StoreKind::Minio], races).await;
}
