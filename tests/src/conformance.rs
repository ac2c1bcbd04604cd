//! Backend conformance: one suite, written against `&dyn Backend`, run for the in-memory fake
//! and for each real store started by the harness (see `tests/tests/e2e/conformance.rs`). It checks
//! the contract the controller relies on: idempotent ensures, ownership markers, grants that
//! really give and take access, key rotation, safe bucket deletion, settings read back or
//! reported `Unsupported`, and retryable outages.
//!
//! Test code: a failed expectation panics with the backend's name and what went wrong.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use aws_sdk_s3::{
    error::{DisplayErrorContext, ProvideErrorMetadata},
    primitives::ByteStream,
};
use s3op_backends::{
    Backend, BackendError, BucketDeletion, BucketSpec, Capabilities, Change, Credentials, Grant, Owner, Permission,
    Quota, UserSpec, Versioning, ledger::Subject, memory::MemoryBackend,
};

use crate::stores::{Store, StoreKind, unique_name};

/// How the suite looks at a store from outside the backend: with an app's credentials, and
/// as an administrator who makes buckets and users behind the operator's back.
#[derive(Debug)]
pub enum Probe<'a> {
    /// The in-memory fake, inspected directly.
    Memory(&'a MemoryBackend),
    /// A real store, reached over S3 (and its admin API for foreign users).
    Store(&'a Store),
}

fn sdk_err(op: &str, err: &dyn std::error::Error) -> String {
    format!("{op}: {}", DisplayErrorContext(err))
}

impl Probe<'_> {
    fn s3(&self, creds: &Credentials) -> Option<aws_sdk_s3::Client> {
        match self {
            Probe::Memory(_) => None,
            Probe::Store(store) => Some(store.s3_client_with(&creds.access_key_id, creds.secret_access_key.expose())),
        }
    }

    /// True when the credentials are accepted at all.
    pub async fn key_works(&self, creds: &Credentials) -> bool {
        match (self, self.s3(creds)) {
            (Probe::Memory(m), _) => m.key_works(&creds.access_key_id, creds.secret_access_key.expose()),
            (Probe::Store(store), Some(s3)) => match s3.list_buckets().send().await {
                Ok(_) => true,
                // Stores that authenticate a key before they evaluate its policies answer
                // AccessDenied to an accepted key that may not list every bucket: MinIO when
                // the user may list no bucket at all, an enforcing moto (like AWS) because
                // s3:ListAllMyBuckets is never granted to a tenant. An unknown or deleted key
                // or a wrong secret gives InvalidAccessKeyId / SignatureDoesNotMatch there.
                Err(e) if store.kind() == StoreKind::Minio || store.moto_enforcing() => {
                    e.code() == Some("AccessDenied")
                }
                Err(_) => false,
            },
            (Probe::Store(_), None) => unreachable!("a store probe always has a client"),
        }
    }

    async fn memory_grant(m: &MemoryBackend, user: &str, creds: &Credentials, bucket: &str) -> Option<Permission> {
        if !m.key_works(&creds.access_key_id, creds.secret_access_key.expose()) {
            return None;
        }
        let user = m.describe_user(user).await.ok()??;
        user.grants.iter().find(|g| g.bucket == bucket).map(|g| g.permission)
    }

    /// Put, get, list and delete an object in `bucket` with `creds`; the first failure.
    pub async fn read_write(&self, user: &str, creds: &Credentials, bucket: &str) -> Result<(), String> {
        let s3 = match self {
            Probe::Memory(m) => {
                return match Self::memory_grant(m, user, creds, bucket).await {
                    Some(Permission::ReadWrite) => Ok(()),
                    other => Err(format!("no key or no ReadWrite grant: {other:?}")),
                };
            }
            Probe::Store(_) => self.s3(creds).unwrap(),
        };
        s3.put_object()
            .bucket(bucket)
            .key("probe.txt")
            .body(ByteStream::from_static(b"probe"))
            .send()
            .await
            .map_err(|x| sdk_err("PutObject", &x))?;
        let got = s3.get_object().bucket(bucket).key("probe.txt").send().await.map_err(|x| sdk_err("GetObject", &x))?;
        let body = got.body.collect().await.map_err(|x| sdk_err("body", &x))?.into_bytes();
        if body.as_ref() != b"probe" {
            return Err("GetObject returned other bytes".into());
        }
        let listed = s3.list_objects_v2().bucket(bucket).send().await.map_err(|x| sdk_err("ListObjectsV2", &x))?;
        if !listed.contents().iter().any(|o| o.key() == Some("probe.txt")) {
            return Err("ListObjectsV2 misses the object".into());
        }
        s3.delete_object().bucket(bucket).key("probe.txt").send().await.map_err(|x| sdk_err("DeleteObject", &x))?;
        Ok(())
    }

    /// With `creds`: listing and reading an object an administrator put in `bucket` work, and
    /// writing is refused. The administrator removes the object afterwards.
    pub async fn read_only(&self, user: &str, creds: &Credentials, bucket: &str) -> Result<(), String> {
        let (store, s3) = match self {
            Probe::Memory(m) => {
                return match Self::memory_grant(m, user, creds, bucket).await {
                    Some(Permission::ReadOnly) => Ok(()),
                    other => Err(format!("no key or no ReadOnly grant: {other:?}")),
                };
            }
            Probe::Store(store) => (store, self.s3(creds).unwrap()),
        };
        let admin = store.s3_client();
        admin
            .put_object()
            .bucket(bucket)
            .key("seed.txt")
            .body(ByteStream::from_static(b"seed"))
            .send()
            .await
            .map_err(|x| sdk_err("administrator's PutObject", &x))?;
        let result = async {
            let listed = s3.list_objects_v2().bucket(bucket).send().await.map_err(|x| sdk_err("ListObjectsV2", &x))?;
            if !listed.contents().iter().any(|o| o.key() == Some("seed.txt")) {
                return Err("ListObjectsV2 misses the object".to_string());
            }
            let got =
                s3.get_object().bucket(bucket).key("seed.txt").send().await.map_err(|x| sdk_err("GetObject", &x))?;
            let body = got.body.collect().await.map_err(|x| sdk_err("body", &x))?.into_bytes();
            if body.as_ref() != b"seed" {
                return Err("GetObject returned other bytes".into());
            }
            let put =
                s3.put_object().bucket(bucket).key("written.txt").body(ByteStream::from_static(b"x")).send().await;
            if put.is_ok() {
                return Err("a ReadOnly grant allowed PutObject".into());
            }
            let delete = s3.delete_object().bucket(bucket).key("seed.txt").send().await;
            if delete.is_ok() && admin.head_object().bucket(bucket).key("seed.txt").send().await.is_err() {
                return Err("a ReadOnly grant allowed DeleteObject".into());
            }
            Ok(())
        }
        .await;
        for key in ["seed.txt", "written.txt"] {
            let _ = admin.delete_object().bucket(bucket).key(key).send().await;
        }
        result
    }

    /// True when `creds` can neither list nor write `bucket`.
    pub async fn denied(&self, user: &str, creds: &Credentials, bucket: &str) -> bool {
        match self {
            Probe::Memory(m) => Self::memory_grant(m, user, creds, bucket).await.is_none(),
            Probe::Store(_) => {
                let s3 = self.s3(creds).unwrap();
                let list = s3.list_objects_v2().bucket(bucket).send().await;
                let put =
                    s3.put_object().bucket(bucket).key("intruder.txt").body(ByteStream::from_static(b"x")).send().await;
                list.is_err() && put.is_err()
            }
        }
    }

    /// With `creds`: changing `bucket`'s policy and deleting the bucket are refused, and the
    /// bucket is still there with the policy it had. A grant gives data access, never the
    /// bucket itself.
    pub async fn cannot_administer(&self, creds: &Credentials, bucket: &str) -> Result<(), String> {
        let (store, s3) = match self {
            // The fake has no bucket administration to refuse.
            Probe::Memory(_) => return Ok(()),
            Probe::Store(store) => (store, self.s3(creds).unwrap()),
        };
        let admin = store.s3_client();
        let policy_before = admin.get_bucket_policy().bucket(bucket).send().await.ok().and_then(|p| p.policy);
        let public = crate::stores::public_read_policy(bucket);
        if s3.put_bucket_policy().bucket(bucket).policy(public).send().await.is_ok() {
            return Err("a grant allowed PutBucketPolicy".into());
        }
        if s3.delete_bucket_policy().bucket(bucket).send().await.is_ok() && policy_before.is_some() {
            let after = admin.get_bucket_policy().bucket(bucket).send().await.ok().and_then(|p| p.policy);
            if after.is_none() {
                return Err("a grant allowed DeleteBucketPolicy".into());
            }
        }
        if s3.delete_bucket().bucket(bucket).send().await.is_ok() {
            return Err("a grant allowed DeleteBucket".into());
        }
        admin.head_bucket().bucket(bucket).send().await.map_err(|x| sdk_err("the bucket after the attempts", &x))?;
        let policy_after = admin.get_bucket_policy().bucket(bucket).send().await.ok().and_then(|p| p.policy);
        if policy_after != policy_before {
            return Err(format!("the bucket policy changed: {policy_before:?} -> {policy_after:?}"));
        }
        Ok(())
    }

    /// Fills a bucket with two versions of one key, one of another and a delete marker for
    /// it (on a versioned bucket: four entries). Returns how many entries the bucket holds.
    pub async fn fill(&self, bucket: &str) -> u64 {
        let store = match self {
            Probe::Memory(m) => {
                m.put_objects(bucket, 4).unwrap();
                return 4;
            }
            Probe::Store(store) => store,
        };
        let s3 = store.s3_client();
        for (key, body) in [("a", "v1"), ("a", "v2"), ("b", "v1")] {
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(body.as_bytes().to_vec()))
                .send()
                .await
                .map_err(|e| sdk_err("PutObject", &e))
                .unwrap();
        }
        s3.delete_object().bucket(bucket).key("b").send().await.map_err(|e| sdk_err("DeleteObject", &e)).unwrap();
        // The access probes left versions and delete markers of their own: count everything
        // as the store lists it. A store without versioning lists its objects instead.
        match s3.list_object_versions().bucket(bucket).send().await {
            Ok(listed) => {
                let n = listed.versions().len() + listed.delete_markers().len();
                if n > 0 {
                    return n as u64;
                }
            }
            // Garage has no versions and does not implement the call.
            Err(e) if e.code() == Some("NotImplemented") => {}
            Err(e) => panic!("{}", sdk_err("ListObjectVersions", &e)),
        }
        let listed =
            s3.list_objects_v2().bucket(bucket).send().await.map_err(|e| sdk_err("ListObjectsV2", &e)).unwrap();
        listed.contents().len() as u64
    }

    /// A bucket made by an administrator, without the operator.
    pub async fn foreign_bucket(&self, name: &str) {
        match self {
            Probe::Memory(m) => m.create_foreign_bucket(name),
            Probe::Store(store) => {
                store
                    .s3_client()
                    .create_bucket()
                    .bucket(name)
                    .send()
                    .await
                    .map_err(|e| sdk_err("CreateBucket", &e))
                    .unwrap();
            }
        }
    }

    /// A user made by an administrator, without the operator, with the store's own tools.
    pub async fn foreign_user(&self, name: &str) {
        let store = match self {
            Probe::Memory(m) => return m.create_foreign_user(name),
            Probe::Store(store) => store,
        };
        match store.kind() {
            StoreKind::Versitygw => {
                let body = format!(
                    "<Account><Access>{name}</Access><Secret>foreignsecret0123456789</Secret><Role>user</Role></Account>"
                );
                let status = signed_admin_call(store, "PATCH", "/create-user", body.into_bytes()).await;
                assert_eq!(status, 201, "creating a foreign user with VersityGW's admin API");
            }
            StoreKind::Minio => {
                let plain = serde_json::json!({"secretKey": "foreignsecret0123456789", "status": "enabled"});
                let body = s3op_backends::minio::madmin::encrypt_data(
                    store.admin_secret_key().as_bytes(),
                    plain.to_string().as_bytes(),
                )
                .unwrap();
                let path = format!("/minio/admin/v3/add-user?accessKey={}", s3op_backends::http::encode(name));
                let status = signed_admin_call(store, "PUT", &path, body).await;
                assert_eq!(status, 200, "creating a foreign user with MinIO's admin API");
            }
            StoreKind::Garage => {
                // A Garage "user" is the set of keys with that name (see the Garage backend).
                let body = serde_json::json!({"name": name});
                store.garage_admin_call(reqwest::Method::POST, "/v2/CreateKey", Some(&body)).await.unwrap();
            }
            StoreKind::Moto => {
                store
                    .iam_client()
                    .create_user()
                    .user_name(name)
                    .send()
                    .await
                    .map_err(|e| sdk_err("CreateUser", &e))
                    .unwrap();
            }
        }
    }
}

impl Probe<'_> {
    /// A privileged user made by an administrator with the store's own tools: VersityGW role
    /// `admin`, a MinIO user holding the built-in `readwrite` policy, a Garage key that may
    /// create buckets, an IAM user with an inline policy of its own. `None` for the fake.
    pub async fn privileged_user(&self, name: &str) -> Option<()> {
        let Probe::Store(store) = self else { return None };
        match store.kind() {
            StoreKind::Versitygw => {
                let body = format!(
                    "<Account><Access>{name}</Access><Secret>bosssecret0123456789</Secret><Role>admin</Role></Account>"
                );
                assert_eq!(signed_admin_call(store, "PATCH", "/create-user", body.into_bytes()).await, 201);
            }
            StoreKind::Minio => {
                self.foreign_user(name).await;
                let path = format!(
                    "/minio/admin/v3/set-user-or-group-policy?policyName=readwrite&userOrGroup={}&isGroup=false",
                    s3op_backends::http::encode(name)
                );
                let status = signed_admin_call(store, "PUT", &path, Vec::new()).await;
                assert_eq!(status, 200, "attaching readwrite with MinIO's admin API");
            }
            StoreKind::Garage => {
                let body = serde_json::json!({"name": name});
                let key = store.garage_admin_call(reqwest::Method::POST, "/v2/CreateKey", Some(&body)).await.unwrap();
                let id = key["accessKeyId"].as_str().unwrap().to_string();
                let allow = serde_json::json!({"allow": {"createBucket": true}});
                let path = format!("/v2/UpdateKey?id={id}");
                store.garage_admin_call(reqwest::Method::POST, &path, Some(&allow)).await.unwrap();
            }
            StoreKind::Moto => {
                self.foreign_user(name).await;
                let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
                store
                    .iam_client()
                    .put_user_policy()
                    .user_name(name)
                    .policy_name("admin")
                    .policy_document(doc)
                    .send()
                    .await
                    .map_err(|e| sdk_err("PutUserPolicy", &e))
                    .unwrap();
            }
        }
        Some(())
    }
}

/// A SigV4-signed admin call made directly, as an administrator outside the operator.
async fn signed_admin_call(store: &Store, method: &str, path: &str, body: Vec<u8>) -> u16 {
    let url = format!("{}{path}", store.endpoint());
    let secret = s3op_backends::SecretString::new(store.admin_secret_key());
    let headers =
        s3op_backends::http::sigv4_headers(method, &url, &body, store.region(), store.admin_access_key(), &secret)
            .unwrap();
    let mut req = reqwest::Client::new().request(method.parse().unwrap(), &url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.body(body).send().await.unwrap().status().as_u16()
}

fn owner(name: &str) -> Owner {
    Owner::s3bucket("conformance", name, format!("uid-{name}"))
}

/// A bucket spec with user tags where the store supports them.
fn bucket_spec(name: &str, caps: &Capabilities, versioning: Option<Versioning>) -> BucketSpec {
    let tags = if caps.tags { BTreeMap::from([("team".to_string(), "payments".to_string())]) } else { BTreeMap::new() };
    BucketSpec { name: name.into(), owner: owner(name), versioning, object_lock: false, tags, quota: None }
}

fn user_spec(name: &str) -> UserSpec {
    UserSpec { name: name.into(), owner: Owner::s3user("conformance", name, format!("uid-{name}")) }
}

fn rw(bucket: &str) -> Grant {
    Grant { bucket: bucket.into(), permission: Permission::ReadWrite }
}

fn ro(bucket: &str) -> Grant {
    Grant { bucket: bucket.into(), permission: Permission::ReadOnly }
}

fn is_unsupported(r: &Result<Change, BackendError>) -> bool {
    matches!(r, Err(BackendError::Unsupported { .. }))
}

/// The whole contract, in one pass over a fresh store. `prefix` keeps names apart.
pub async fn suite(b: &dyn Backend, probe: &Probe<'_>, prefix: &str) {
    let kind = b.kind();
    let caps = b.capabilities();
    b.health().await.unwrap();

    // Ensures are idempotent: the second one writes nothing.
    let data = unique_name(&format!("{prefix}-data"));
    let versioning = caps.versioning.then_some(Versioning::Enabled);
    let spec = bucket_spec(&data, &caps, versioning);
    assert_eq!(b.ensure_bucket(&spec, false).await.unwrap(), Change::Created, "{kind}");
    assert_eq!(b.ensure_bucket(&spec, false).await.unwrap(), Change::Unchanged, "{kind}: second ensure_bucket");
    let info = b.describe_bucket(&data).await.unwrap().unwrap();
    assert_eq!(info.owner.as_ref(), Some(&spec.owner), "{kind}: ownership marker read back");
    assert_eq!(info.versioning, versioning, "{kind}: versioning read back");
    if caps.tags {
        assert_eq!(info.tags, spec.tags, "{kind}: user tags read back without the marker");
    }
    let other = unique_name(&format!("{prefix}-other"));
    assert_eq!(b.ensure_bucket(&bucket_spec(&other, &caps, None), false).await.unwrap(), Change::Created);

    let user = unique_name(&format!("{prefix}-user"));
    assert_eq!(b.ensure_user(&user_spec(&user), false).await.unwrap(), Change::Created, "{kind}");
    assert_eq!(b.ensure_user(&user_spec(&user), false).await.unwrap(), Change::Unchanged, "{kind}: second ensure_user");
    assert_eq!(b.describe_user(&user).await.unwrap().unwrap().owner, Some(user_spec(&user).owner));

    // A ReadWrite grant gives access to that bucket and no other.
    let key1 = b.create_key(&user, None).await.unwrap();
    assert!(!format!("{key1:?}").contains(key1.secret_access_key.expose()), "Debug shows no secret");
    assert_eq!(b.set_grants(&user, &[rw(&data)]).await.unwrap(), Change::Updated, "{kind}");
    assert_eq!(b.set_grants(&user, &[rw(&data)]).await.unwrap(), Change::Unchanged, "{kind}: same grants again");
    assert_eq!(b.describe_user(&user).await.unwrap().unwrap().grants, vec![rw(&data)]);
    probe.read_write(&user, &key1, &data).await.unwrap_or_else(|e| panic!("{kind}: granted user: {e}"));
    assert!(probe.denied(&user, &key1, &other).await, "{kind}: a bucket not granted must be denied");

    // A new key works; where a user has a single key, the old secret stops working at once.
    let key2 = b.create_key(&user, None).await.unwrap();
    probe.read_write(&user, &key2, &data).await.unwrap_or_else(|e| panic!("{kind}: new key: {e}"));
    if !caps.multiple_keys {
        assert!(!probe.key_works(&key1).await, "{kind}: the replaced secret must fail");
    } else {
        assert!(probe.key_works(&key1).await, "{kind}: both keys work during rotation");
        let keys = b.describe_user(&user).await.unwrap().unwrap().access_key_ids;
        assert!(keys.contains(&key1.access_key_id) && keys.contains(&key2.access_key_id), "{kind}: {keys:?}");
        b.delete_key(&user, &key1.access_key_id).await.unwrap();
        b.delete_key(&user, &key1.access_key_id).await.unwrap();
        assert!(!probe.key_works(&key1).await, "{kind}: a deleted key must fail");
        assert_eq!(b.describe_user(&user).await.unwrap().unwrap().access_key_ids, vec![key2.access_key_id.clone()]);
    }

    // ReadOnly reads and does not write where the store enforces it; elsewhere it is
    // refused, never widened to ReadWrite.
    if caps.read_only_grants {
        let both = [rw(&data), ro(&other)];
        assert_eq!(b.set_grants(&user, &both).await.unwrap(), Change::Updated, "{kind}: add a ReadOnly grant");
        assert_eq!(b.describe_user(&user).await.unwrap().unwrap().grants, both.to_vec(), "{kind}");
        probe.read_only(&user, &key2, &other).await.unwrap_or_else(|e| panic!("{kind}: ReadOnly: {e}"));
        probe.read_write(&user, &key2, &data).await.unwrap_or_else(|e| panic!("{kind}: ReadWrite beside it: {e}"));
    } else {
        let err = b.set_grants(&user, &[rw(&data), ro(&other)]).await.unwrap_err();
        assert!(matches!(err, BackendError::Unsupported { .. }), "{kind}: {err}");
    }

    // Removing the grants takes access away.
    assert_eq!(b.set_grants(&user, &[]).await.unwrap(), Change::Updated, "{kind}");
    assert!(probe.denied(&user, &key2, &data).await, "{kind}: access must go with the grant");
    assert!(probe.denied(&user, &key2, &other).await || !caps.read_only_grants, "{kind}: ReadOnly access must go");
    assert!(b.describe_user(&user).await.unwrap().unwrap().grants.is_empty());
    assert_eq!(b.set_grants(&user, &[]).await.unwrap(), Change::Unchanged, "{kind}: no grants again");

    // Deleting the user makes its key fail; deleting again is success.
    assert!(probe.key_works(&key2).await, "{kind}: the current key works before the user goes");
    b.delete_user(&user).await.unwrap();
    assert!(!probe.key_works(&key2).await, "{kind}: a deleted user's key must fail");
    assert_eq!(b.describe_user(&user).await.unwrap(), None);
    b.delete_user(&user).await.unwrap();

    // An empty bucket deletes; a non-empty one only with force.
    assert_eq!(b.delete_bucket(&other, false).await.unwrap(), BucketDeletion::Deleted, "{kind}");
    assert_eq!(b.delete_bucket(&other, false).await.unwrap(), BucketDeletion::AlreadyGone, "{kind}");
    let entries = probe.fill(&data).await;
    assert_eq!(
        b.delete_bucket(&data, false).await.unwrap(),
        BucketDeletion::NotEmpty { objects: entries },
        "{kind}: versions and delete markers count"
    );
    assert!(b.describe_bucket(&data).await.unwrap().is_some(), "{kind}: a refused delete keeps the bucket");
    assert_eq!(b.delete_bucket(&data, true).await.unwrap(), BucketDeletion::Deleted, "{kind}: forced delete");
    assert_eq!(b.describe_bucket(&data).await.unwrap(), None);

    settings(b, &caps, prefix).await;
    foreign(b, probe, &caps, prefix).await;
    shared_bucket(b, probe, &caps, prefix).await;
}

/// Many apps, one bucket: two ReadWrite users and one ReadOnly user on one bucket each work
/// with their own key, none may change the bucket's policy or delete it, and revoking one
/// user's grant takes only that user's access.
async fn shared_bucket(b: &dyn Backend, probe: &Probe<'_>, caps: &Capabilities, prefix: &str) {
    let kind = b.kind();
    let shared = unique_name(&format!("{prefix}-shared"));
    b.ensure_bucket(&bucket_spec(&shared, caps, None), false).await.unwrap();
    let wanted = [Permission::ReadWrite, Permission::ReadWrite, Permission::ReadOnly];
    let wanted = if caps.read_only_grants { &wanted[..] } else { &wanted[..2] };
    let mut users = Vec::new();
    for (i, permission) in wanted.iter().enumerate() {
        let user = unique_name(&format!("{prefix}-app{i}"));
        b.ensure_user(&user_spec(&user), false).await.unwrap();
        let key = b.create_key(&user, None).await.unwrap();
        let grant = Grant { bucket: shared.clone(), permission: *permission };
        assert_eq!(b.set_grants(&user, std::slice::from_ref(&grant)).await.unwrap(), Change::Updated, "{kind}");
        users.push((user, key, grant));
    }
    for (user, key, grant) in &users {
        assert_eq!(b.set_grants(user, std::slice::from_ref(grant)).await.unwrap(), Change::Unchanged, "{kind}");
        assert_eq!(b.describe_user(user).await.unwrap().unwrap().grants, vec![grant.clone()], "{kind}: {user}");
        let works = match grant.permission {
            Permission::ReadWrite => probe.read_write(user, key, &shared).await,
            Permission::ReadOnly => probe.read_only(user, key, &shared).await,
        };
        works.unwrap_or_else(|e| panic!("{kind}: {user} ({:?}) on a shared bucket: {e}", grant.permission));
        probe.cannot_administer(key, &shared).await.unwrap_or_else(|e| panic!("{kind}: {user}: {e}"));
    }

    // Revoking the first writer leaves the others as they were.
    let (gone, gone_key, _) = &users[0];
    assert_eq!(b.set_grants(gone, &[]).await.unwrap(), Change::Updated, "{kind}");
    assert!(probe.denied(gone, gone_key, &shared).await, "{kind}: a revoked user keeps access to a shared bucket");
    for (user, key, grant) in &users[1..] {
        let works = match grant.permission {
            Permission::ReadWrite => probe.read_write(user, key, &shared).await,
            Permission::ReadOnly => probe.read_only(user, key, &shared).await,
        };
        works.unwrap_or_else(|e| panic!("{kind}: {user} after another user's grant went: {e}"));
    }
    for (user, _, _) in &users {
        b.delete_user(user).await.unwrap();
    }
    assert_eq!(b.delete_bucket(&shared, true).await.unwrap(), BucketDeletion::Deleted, "{kind}");
}

/// VersityGW only: a grant is a bucket policy, and a bucket's first policy takes away what its
/// owner had through the ACL. A bucket an account outside the operator owns is refused (that
/// account keeps its access and its data); one an earlier version gave an S3User by ownership
/// keeps that user's access beside the new grant.
pub async fn grants_never_cut_an_owner_off(b: &dyn Backend, store: &Store, prefix: &str) {
    let caps = b.capabilities();
    let admin_call = |path: String| async move {
        let (status, reply) = store.signed_admin_call("PATCH", &path, Vec::new()).await.unwrap();
        assert!((200..300).contains(&status), "{path}: {status} {}", String::from_utf8_lossy(&reply));
    };
    let probe = Probe::Store(store);
    let user = unique_name(&format!("{prefix}-grantee"));
    b.ensure_user(&user_spec(&user), false).await.unwrap();
    b.create_key(&user, None).await.unwrap();

    // An account made by hand owns a bucket with its data; the bucket is adopted, then granted.
    let outsider = unique_name(&format!("{prefix}-outsider"));
    probe.foreign_user(&outsider).await;
    let outsider_key = Credentials {
        access_key_id: outsider.clone(),
        secret_access_key: s3op_backends::SecretString::new("foreignsecret0123456789"),
    };
    let theirs = unique_name(&format!("{prefix}-theirs"));
    probe.foreign_bucket(&theirs).await;
    admin_call(format!("/change-bucket-owner?bucket={theirs}&owner={outsider}")).await;
    probe.read_write(&outsider, &outsider_key, &theirs).await.unwrap();
    b.ensure_bucket(&bucket_spec(&theirs, &caps, None), true).await.unwrap();
    let err = b.set_grants(&user, &[rw(&theirs)]).await.unwrap_err();
    assert!(matches!(err, BackendError::NotOwned { .. }) && !err.is_retryable(), "{err}");
    probe.read_write(&outsider, &outsider_key, &theirs).await.unwrap_or_else(|e| panic!("the owner lost access: {e}"));
    let policy = store.s3_client().get_bucket_policy().bucket(&theirs).send().await;
    assert!(policy.is_err(), "a policy was written on a bucket of an account outside the operator");

    // An S3User an earlier version made the owner keeps its access when another user is granted.
    let legacy = unique_name(&format!("{prefix}-legacy"));
    b.ensure_user(&user_spec(&legacy), false).await.unwrap();
    let legacy_key = b.create_key(&legacy, None).await.unwrap();
    let shared = unique_name(&format!("{prefix}-legacyshared"));
    b.ensure_bucket(&bucket_spec(&shared, &caps, None), false).await.unwrap();
    admin_call(format!("/change-bucket-owner?bucket={shared}&owner={legacy}")).await;
    probe.read_write(&legacy, &legacy_key, &shared).await.unwrap();
    assert_eq!(b.set_grants(&user, &[ro(&shared)]).await.unwrap(), Change::Updated);
    probe.read_write(&legacy, &legacy_key, &shared).await.unwrap_or_else(|e| panic!("the legacy owner: {e}"));

    for u in [&user, &legacy] {
        b.delete_user(u).await.unwrap();
    }
    assert!(probe.key_works(&outsider_key).await, "the outsider's key stopped working");
    b.delete_bucket(&shared, true).await.unwrap();
}

/// Object lock, quotas, and what the store cannot do: read back where supported, reported
/// `Unsupported` (with the bucket itself still created and marked) where not.
async fn settings(b: &dyn Backend, caps: &Capabilities, prefix: &str) {
    let kind = b.kind();
    let versioning = caps.versioning.then_some(Versioning::Enabled);

    // Object lock is chosen at creation; asking for it later is a conflict, not a silent no-op.
    if caps.object_lock {
        let locked = unique_name(&format!("{prefix}-locked"));
        let spec = BucketSpec { object_lock: true, ..bucket_spec(&locked, caps, versioning) };
        assert_eq!(b.ensure_bucket(&spec, false).await.unwrap(), Change::Created, "{kind}: object lock");
        assert_eq!(b.ensure_bucket(&spec, false).await.unwrap(), Change::Unchanged, "{kind}: object lock again");
        let plain = unique_name(&format!("{prefix}-plain"));
        b.ensure_bucket(&bucket_spec(&plain, caps, None), false).await.unwrap();
        let err = b
            .ensure_bucket(&BucketSpec { object_lock: true, ..bucket_spec(&plain, caps, None) }, false)
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::Conflict { .. }), "{kind}: {err}");
        for name in [&locked, &plain] {
            assert_eq!(b.delete_bucket(name, false).await.unwrap(), BucketDeletion::Deleted, "{kind}");
        }
    }

    // Quotas are written and read back, and changed in place.
    let quota = |size: u64, objects: u64| Quota {
        max_size_bytes: caps.quota_max_size.then_some(size),
        max_objects: caps.quota_max_objects.then_some(objects),
    };
    if caps.quota_max_size || caps.quota_max_objects {
        let name = unique_name(&format!("{prefix}-quota"));
        let first = quota(10 << 20, 100);
        let spec = BucketSpec { quota: Some(first), ..bucket_spec(&name, caps, None) };
        assert_eq!(b.ensure_bucket(&spec, false).await.unwrap(), Change::Created, "{kind}: quota");
        assert_eq!(b.describe_bucket(&name).await.unwrap().unwrap().quota, Some(first), "{kind}: quota read back");
        assert_eq!(b.ensure_bucket(&spec, false).await.unwrap(), Change::Unchanged, "{kind}: same quota again");
        let second = quota(20 << 20, 200);
        let spec = BucketSpec { quota: Some(second), ..spec };
        assert_eq!(b.ensure_bucket(&spec, false).await.unwrap(), Change::Updated, "{kind}: quota changed");
        assert_eq!(b.describe_bucket(&name).await.unwrap().unwrap().quota, Some(second), "{kind}: new quota");
        assert_eq!(b.delete_bucket(&name, false).await.unwrap(), BucketDeletion::Deleted, "{kind}");
    }

    // Each setting the store cannot do fails alone: the bucket is still made and marked ours.
    let unsupported: [(bool, &str, BucketSpec); 3] = [
        (
            caps.versioning,
            "versioning",
            BucketSpec { versioning: Some(Versioning::Enabled), ..bucket_spec("", caps, None) },
        ),
        (
            caps.tags,
            "tags",
            BucketSpec { tags: BTreeMap::from([("k".to_string(), "v".to_string())]), ..bucket_spec("", caps, None) },
        ),
        (
            caps.quota_max_size,
            "quota",
            BucketSpec {
                quota: Some(Quota { max_size_bytes: Some(1 << 30), max_objects: None }),
                ..bucket_spec("", caps, None)
            },
        ),
    ];
    for (supported, what, template) in unsupported {
        if supported {
            continue;
        }
        let name = unique_name(&format!("{prefix}-no{what}"));
        let spec = BucketSpec { name: name.clone(), owner: owner(&name), ..template };
        let first = b.ensure_bucket(&spec, false).await;
        assert!(is_unsupported(&first), "{kind}: {what} must be Unsupported: {first:?}");
        let info = b.describe_bucket(&name).await.unwrap();
        assert_eq!(info.and_then(|i| i.owner), Some(owner(&name)), "{kind}: bucket made and marked despite {what}");
        assert!(is_unsupported(&b.ensure_bucket(&spec, false).await), "{kind}: {what} still Unsupported");
        assert_eq!(b.delete_bucket(&name, false).await.unwrap(), BucketDeletion::Deleted, "{kind}");
    }
}

/// Buckets and users made outside the operator are not ours unless adopted, and an adopted
/// one is then ours only for the adopting claim.
async fn foreign(b: &dyn Backend, probe: &Probe<'_>, caps: &Capabilities, prefix: &str) {
    let kind = b.kind();
    let theirs = unique_name(&format!("{prefix}-theirs"));
    probe.foreign_bucket(&theirs).await;
    assert_eq!(b.describe_bucket(&theirs).await.unwrap().unwrap().owner, None, "{kind}");
    let err = b.ensure_bucket(&bucket_spec(&theirs, caps, None), false).await.unwrap_err();
    assert!(matches!(err, BackendError::NotOwned { .. }), "{kind}: {err}");
    let spec = bucket_spec(&theirs, caps, None);
    assert_eq!(b.ensure_bucket(&spec, true).await.unwrap(), Change::Updated, "{kind}: adopt");
    assert_eq!(b.ensure_bucket(&spec, false).await.unwrap(), Change::Unchanged, "{kind}");
    let rival = BucketSpec { owner: Owner { namespace: "rival".into(), ..owner(&theirs) }, ..spec };
    let err = b.ensure_bucket(&rival, true).await.unwrap_err();
    assert!(matches!(err, BackendError::NotOwned { .. }), "{kind}: adopt never overrides a claim: {err}");
    assert_eq!(b.delete_bucket(&theirs, false).await.unwrap(), BucketDeletion::Deleted, "{kind}");

    let their_user = unique_name(&format!("{prefix}-theiruser"));
    probe.foreign_user(&their_user).await;
    assert_eq!(b.describe_user(&their_user).await.unwrap().unwrap().owner, None, "{kind}");
    let err = b.ensure_user(&user_spec(&their_user), false).await.unwrap_err();
    assert!(matches!(err, BackendError::NotOwned { .. }), "{kind}: {err}");
    assert_eq!(b.ensure_user(&user_spec(&their_user), true).await.unwrap(), Change::Updated, "{kind}: adopt user");
    assert_eq!(b.ensure_user(&user_spec(&their_user), false).await.unwrap(), Change::Unchanged, "{kind}");
    let rival = UserSpec {
        owner: Owner { namespace: "rival".into(), ..user_spec(&their_user).owner },
        ..user_spec(&their_user)
    };
    let err = b.ensure_user(&rival, true).await.unwrap_err();
    assert!(matches!(err, BackendError::NotOwned { .. }), "{kind}: adopt never overrides a user's claim: {err}");
    b.delete_user(&their_user).await.unwrap();

    // A privileged identity is never adopted, whatever the configuration says.
    let boss = unique_name(&format!("{prefix}-boss"));
    if probe.privileged_user(&boss).await.is_some() {
        let err = b.ensure_user(&user_spec(&boss), true).await.unwrap_err();
        assert!(
            matches!(err, BackendError::NotOwned { ref detail, .. } if detail.contains("privileged")),
            "{kind}: a privileged user adopted: {err}"
        );
        assert_eq!(b.describe_user(&boss).await.unwrap().and_then(|u| u.owner), None, "{kind}: no claim on it");
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median latencies of the hot calls, printed for the record (never asserted).
pub async fn latencies(b: &dyn Backend, prefix: &str) {
    const RUNS: usize = 10;
    let caps = b.capabilities();
    let (mut bucket, mut user, mut key, mut grants) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let name = unique_name(&format!("{prefix}-lat"));
        let t = Instant::now();
        b.ensure_bucket(&bucket_spec(&name, &caps, None), false).await.unwrap();
        bucket.push(t.elapsed());
        let t = Instant::now();
        b.ensure_user(&user_spec(&name), false).await.unwrap();
        user.push(t.elapsed());
        let t = Instant::now();
        b.create_key(&name, None).await.unwrap();
        key.push(t.elapsed());
        let t = Instant::now();
        b.set_grants(&name, &[rw(&name)]).await.unwrap();
        grants.push(t.elapsed());
        b.delete_user(&name).await.unwrap();
        b.delete_bucket(&name, true).await.unwrap();
    }
    eprintln!(
        "{} medians over {RUNS} runs: ensure_bucket {:?}, ensure_user {:?}, create_key {:?}, set_grants {:?}",
        b.kind(),
        median(bucket),
        median(user),
        median(key),
        median(grants)
    );
}

/// With the store stopped, calls fail promptly with a retryable `Unreachable` (no answer at all,
/// which the controller's breaker acts on; an answered 5xx is `Unavailable`); once it is back,
/// the same backend value works again.
pub async fn outage_is_retryable_and_fast(store: &mut Store, b: &dyn Backend) {
    let kind = b.kind();
    b.health().await.unwrap();
    store.stop().await;
    let caps = b.capabilities();
    let t = Instant::now();
    let err = b.ensure_bucket(&bucket_spec(&unique_name("down"), &caps, None), false).await.unwrap_err();
    let bucket_elapsed = t.elapsed();
    assert!(matches!(err, BackendError::Unreachable { .. }) && err.is_retryable(), "{kind}: {err}");
    let t = Instant::now();
    let err = b.ensure_user(&user_spec(&unique_name("down")), false).await.unwrap_err();
    let user_elapsed = t.elapsed();
    assert!(matches!(err, BackendError::Unreachable { .. }) && err.is_retryable(), "{kind}: {err}");
    let err = b.health().await.unwrap_err();
    assert!(matches!(err, BackendError::Unreachable { .. }) && err.is_retryable(), "{kind}: {err}");
    eprintln!("{kind} down: ensure_bucket failed in {bucket_elapsed:?}, ensure_user in {user_elapsed:?}");
    assert!(bucket_elapsed < Duration::from_secs(30) && user_elapsed < Duration::from_secs(30), "{kind}: too slow");
    store.restart().await.unwrap();
    b.health().await.unwrap();
}

/// One claimant's attempt in [`claims_race`]: a Secret claims through compatibility mode, an
/// S3Bucket or S3User through `ensure_*`.
async fn race_claim(b: &dyn Backend, subject: Subject, name: &str, owner: Owner) -> Result<(), BackendError> {
    if owner.kind == s3op_backends::ClaimantKind::Secret {
        return b.compat()?.claim(subject, name, &owner).await.map(|_| ());
    }
    match subject {
        Subject::Bucket => {
            let spec = BucketSpec {
                name: name.to_string(),
                owner,
                versioning: None,
                object_lock: false,
                tags: Default::default(),
                quota: None,
            };
            b.ensure_bucket(&spec, false).await.map(|_| ())
        }
        Subject::User => b.ensure_user(&UserSpec { name: name.to_string(), owner }, false).await.map(|_| ()),
    }
}

/// Two namespaces racing for one new name, `rounds` times at once, through every pair of
/// paths that claim: S3Bucket vs S3Bucket and S3Bucket vs compatibility Secret for buckets,
/// S3User vs S3User and S3User vs Secret for users (Secrets where the store has compatibility
/// mode). Each race ends with exactly one holder, the one whose call succeeded, and a bucket
/// made by the CRD path is tagged for the holder.
pub async fn claims_race(b: &dyn Backend, prefix: &str, rounds: usize) {
    let kind = b.kind();
    let compat = b.compat().is_ok();
    let round = |i: usize| async move {
        let name = unique_name(&format!("{prefix}-race{i}"));
        let user = format!("{name}-u");
        let a_bucket = Owner::s3bucket("race-a", format!("b{i}"), format!("uid-a{i}"));
        let a_user = Owner::s3user("race-a", format!("u{i}"), format!("uid-a{i}"));
        let (b_bucket, b_user) = if compat && i % 2 == 1 {
            (Owner::secret("race-b", "s", "uid-s"), Owner::secret("race-b", "s", "uid-s"))
        } else {
            (
                Owner::s3bucket("race-b", format!("b{i}"), format!("uid-b{i}")),
                Owner::s3user("race-b", format!("u{i}"), format!("uid-b{i}")),
            )
        };
        let (ra, rb) = tokio::join!(
            race_claim(b, Subject::Bucket, &name, a_bucket.clone()),
            race_claim(b, Subject::Bucket, &name, b_bucket.clone())
        );
        let (ua, ub) = tokio::join!(
            race_claim(b, Subject::User, &user, a_user.clone()),
            race_claim(b, Subject::User, &user, b_user.clone())
        );
        [(Subject::Bucket, name, ra, a_bucket, rb, b_bucket), (Subject::User, user, ua, a_user, ub, b_user)]
    };
    for races in futures::future::join_all((0..rounds).map(round)).await {
        for (subject, name, ra, a, rb, bo) in races {
            let winner = match (&ra, &rb) {
                (Ok(()), Err(BackendError::NotOwned { .. })) => a,
                (Err(BackendError::NotOwned { .. }), Ok(())) => bo,
                other => panic!("{kind}: {name}: exactly one claimant must win: {other:?}"),
            };
            let holder = b.holder(subject, &name).await.unwrap();
            assert!(
                holder.as_ref().is_some_and(|h| h.same_claim(&winner)),
                "{kind}: {name}: held by {holder:?}, won by {winner}"
            );
            if subject == Subject::Bucket
                && let Some(info) = b.describe_bucket(&name).await.unwrap()
            {
                assert!(
                    info.owner.is_none_or(|o| o.same_claim(&winner)),
                    "{kind}: {name}: the bucket is tagged for another claimant than {winner}"
                );
            }
        }
    }
}

/// Adoption, allowed or not, never reaches what the operator itself stands on: its marker
/// bucket (whoever held it could forge every claim) and its own admin identity.
pub async fn adoption_never_reaches_the_operator(b: &dyn Backend, marker_bucket: &str, operator_key: &str) {
    let kind = b.kind();
    b.health().await.unwrap();
    let spec = BucketSpec {
        name: marker_bucket.to_string(),
        owner: owner("grab-markers"),
        versioning: None,
        object_lock: false,
        tags: Default::default(),
        quota: None,
    };
    let err = b.ensure_bucket(&spec, true).await.unwrap_err();
    assert!(matches!(err, BackendError::NotOwned { .. }), "{kind}: the marker bucket adopted: {err}");
    let err = b.ensure_user(&user_spec(operator_key), true).await.unwrap_err();
    assert!(matches!(err, BackendError::NotOwned { .. }), "{kind}: the operator's own key adopted: {err}");
    if let Ok(compat) = b.compat() {
        let err = compat.claim(Subject::Bucket, marker_bucket, &Owner::secret("grab", "s", "u")).await.unwrap_err();
        assert!(matches!(err, BackendError::NotOwned { .. }), "{kind}: the marker bucket claimed: {err}");
    }
}
