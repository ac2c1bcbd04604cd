//! Backend conformance: one suite, written against `&dyn Backend`, run for the in-memory fake
//! and for each real store started by the harness. It checks the contract the controller
//! relies on: idempotent ensures, ownership markers, grants that really give and take access,
//! key rotation, safe bucket deletion and retryable outages.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime},
};

use aws_sdk_s3::{error::DisplayErrorContext, primitives::ByteStream};
use s3op_backends::{
    Backend, BackendError, BucketDeletion, BucketSpec, Change, Credentials, Grant, Owner, Permission, SecretString,
    UserSpec, Versioning,
    memory::MemoryBackend,
    versitygw::{VersityGw, VersityGwConfig},
};
use s3op_tests::stores::{Store, StoreKind, unique_name};

/// How the suite looks at a store from outside the backend: with an app's credentials, and
/// as someone who makes buckets and users behind the operator's back.
enum Probe<'a> {
    Memory(&'a MemoryBackend),
    Versitygw(&'a Store),
}

impl Probe<'_> {
    /// True when the credentials are accepted at all.
    async fn key_works(&self, creds: &Credentials) -> bool {
        match self {
            Probe::Memory(m) => m.key_works(&creds.access_key_id, creds.secret_access_key.expose()),
            Probe::Versitygw(store) => {
                let s3 = store.s3_client_with(&creds.access_key_id, creds.secret_access_key.expose());
                s3.list_buckets().send().await.is_ok()
            }
        }
    }

    /// Put, get, list and delete an object in `bucket` with `creds`; the first failure.
    async fn read_write(&self, user: &str, creds: &Credentials, bucket: &str) -> Result<(), String> {
        match self {
            Probe::Memory(m) => {
                let granted = m
                    .describe_user(user)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_some_and(|u| u.grants.iter().any(|g| g.bucket == bucket));
                if m.key_works(&creds.access_key_id, creds.secret_access_key.expose()) && granted {
                    Ok(())
                } else {
                    Err("no key or no grant".into())
                }
            }
            Probe::Versitygw(store) => {
                let s3 = store.s3_client_with(&creds.access_key_id, creds.secret_access_key.expose());
                let e = |op: &str, err: &dyn std::error::Error| format!("{op}: {}", DisplayErrorContext(err));
                s3.put_object()
                    .bucket(bucket)
                    .key("probe.txt")
                    .body(ByteStream::from_static(b"probe"))
                    .send()
                    .await
                    .map_err(|x| e("PutObject", &x))?;
                let got =
                    s3.get_object().bucket(bucket).key("probe.txt").send().await.map_err(|x| e("GetObject", &x))?;
                let body = got.body.collect().await.map_err(|x| e("body", &x))?.into_bytes();
                if body.as_ref() != b"probe" {
                    return Err("GetObject returned other bytes".into());
                }
                let listed = s3.list_objects_v2().bucket(bucket).send().await.map_err(|x| e("ListObjectsV2", &x))?;
                if !listed.contents().iter().any(|o| o.key() == Some("probe.txt")) {
                    return Err("ListObjectsV2 misses the object".into());
                }
                s3.delete_object().bucket(bucket).key("probe.txt").send().await.map_err(|x| e("DeleteObject", &x))?;
                Ok(())
            }
        }
    }

    /// True when `creds` can neither list nor write `bucket`.
    async fn denied(&self, user: &str, creds: &Credentials, bucket: &str) -> bool {
        match self {
            Probe::Memory(_) => self.read_write(user, creds, bucket).await.is_err(),
            Probe::Versitygw(store) => {
                let s3 = store.s3_client_with(&creds.access_key_id, creds.secret_access_key.expose());
                let list = s3.list_objects_v2().bucket(bucket).send().await;
                let put =
                    s3.put_object().bucket(bucket).key("intruder.txt").body(ByteStream::from_static(b"x")).send().await;
                list.is_err() && put.is_err()
            }
        }
    }

    /// Fills a versioned bucket with two versions of one key, one of another and a delete
    /// marker for it: four entries. Returns how many entries the bucket holds now.
    async fn fill(&self, bucket: &str) -> u64 {
        match self {
            Probe::Memory(m) => {
                m.put_objects(bucket, 4).unwrap();
                4
            }
            Probe::Versitygw(store) => {
                let s3 = store.s3_client();
                for (key, body) in [("a", "v1"), ("a", "v2"), ("b", "v1")] {
                    s3.put_object()
                        .bucket(bucket)
                        .key(key)
                        .body(ByteStream::from(body.as_bytes().to_vec()))
                        .send()
                        .await
                        .map_err(|e| DisplayErrorContext(e).to_string())
                        .unwrap();
                }
                s3.delete_object()
                    .bucket(bucket)
                    .key("b")
                    .send()
                    .await
                    .map_err(|e| DisplayErrorContext(e).to_string())
                    .unwrap();
                // The access probes left versions and delete markers of their own: count
                // everything as the store lists it.
                let listed = s3
                    .list_object_versions()
                    .bucket(bucket)
                    .send()
                    .await
                    .map_err(|e| DisplayErrorContext(e).to_string())
                    .unwrap();
                let n = listed.versions().len() + listed.delete_markers().len();
                assert!(n >= 4, "{n} entries listed after writing four");
                n as u64
            }
        }
    }

    async fn foreign_bucket(&self, name: &str) {
        match self {
            Probe::Memory(m) => m.create_foreign_bucket(name),
            Probe::Versitygw(store) => {
                store
                    .s3_client()
                    .create_bucket()
                    .bucket(name)
                    .send()
                    .await
                    .map_err(|e| DisplayErrorContext(e).to_string())
                    .unwrap();
            }
        }
    }

    async fn foreign_user(&self, name: &str) {
        match self {
            Probe::Memory(m) => m.create_foreign_user(name),
            Probe::Versitygw(store) => {
                let body = format!(
                    "<Account><Access>{name}</Access><Secret>foreignsecret0123456789</Secret><Role>user</Role></Account>"
                );
                let status = vgw_admin(store, "/create-user", body.into_bytes()).await;
                assert_eq!(status, 201, "creating a foreign user with the admin API");
            }
        }
    }
}

/// A signed admin call to VersityGW made directly, as an administrator outside the operator.
async fn vgw_admin(store: &Store, path: &str, body: Vec<u8>) -> u16 {
    use aws_sigv4::{
        http_request::{PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign},
        sign::v4,
    };
    let url = format!("{}{path}", store.endpoint());
    let identity = aws_sdk_s3::config::Credentials::new(
        store.admin_access_key(),
        store.admin_secret_key(),
        None,
        None,
        "conformance",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(store.region())
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new("PATCH", url.as_str(), std::iter::empty(), SignableBody::Bytes(&body)).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = reqwest::Client::new().patch(&url);
    for (k, v) in instructions.headers() {
        req = req.header(k, v);
    }
    req.body(body).send().await.unwrap().status().as_u16()
}

fn owner(name: &str) -> Owner {
    Owner { namespace: "conformance".into(), name: name.into(), uid: format!("uid-{name}") }
}

fn bucket_spec(name: &str, versioning: Option<Versioning>) -> BucketSpec {
    BucketSpec {
        name: name.into(),
        owner: owner(name),
        versioning,
        object_lock: false,
        tags: BTreeMap::from([("team".to_string(), "payments".to_string())]),
        quota: None,
    }
}

fn user_spec(name: &str) -> UserSpec {
    UserSpec { name: name.into(), owner: owner(name) }
}

fn rw(bucket: &str) -> Grant {
    Grant { bucket: bucket.into(), permission: Permission::ReadWrite }
}

/// The whole contract, in one pass over a fresh store.
async fn suite(b: &dyn Backend, probe: &Probe<'_>, prefix: &str) {
    let kind = b.kind();
    let caps = b.capabilities();
    b.health().await.unwrap();

    // Ensures are idempotent: the second one writes nothing.
    let data = unique_name(&format!("{prefix}-data"));
    let versioning = caps.versioning.then_some(Versioning::Enabled);
    let spec = bucket_spec(&data, versioning);
    assert_eq!(b.ensure_bucket(&spec, false).await.unwrap(), Change::Created, "{kind}");
    assert_eq!(b.ensure_bucket(&spec, false).await.unwrap(), Change::Unchanged, "{kind}: second ensure_bucket");
    let info = b.describe_bucket(&data).await.unwrap().unwrap();
    assert_eq!(info.owner.as_ref(), Some(&spec.owner), "{kind}: ownership marker read back");
    assert_eq!(info.versioning, versioning, "{kind}: versioning read back");
    if caps.tags {
        assert_eq!(info.tags, spec.tags, "{kind}: user tags read back without the marker");
    }
    let other = unique_name(&format!("{prefix}-other"));
    assert_eq!(b.ensure_bucket(&bucket_spec(&other, None), false).await.unwrap(), Change::Created);

    let user = unique_name(&format!("{prefix}-user"));
    assert_eq!(b.ensure_user(&user_spec(&user), false).await.unwrap(), Change::Created, "{kind}");
    assert_eq!(b.ensure_user(&user_spec(&user), false).await.unwrap(), Change::Unchanged, "{kind}: second ensure_user");
    assert_eq!(b.describe_user(&user).await.unwrap().unwrap().owner, Some(owner(&user)));

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
        b.delete_key(&user, &key1.access_key_id).await.unwrap();
        assert!(!probe.key_works(&key1).await, "{kind}: a deleted key must fail");
    }

    // ReadOnly where the store cannot enforce it is refused, never widened to ReadWrite.
    if !caps.read_only_grants {
        let ro = [Grant { bucket: other.clone(), permission: Permission::ReadOnly }];
        let err = b.set_grants(&user, &ro).await.unwrap_err();
        assert!(matches!(err, BackendError::Unsupported { .. }), "{kind}: {err}");
    }

    // Removing the grant takes access away.
    assert_eq!(b.set_grants(&user, &[]).await.unwrap(), Change::Updated, "{kind}");
    assert!(probe.denied(&user, &key2, &data).await, "{kind}: access must go with the grant");
    assert!(b.describe_user(&user).await.unwrap().unwrap().grants.is_empty());

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

    // Object lock is chosen at creation; asking for it later is a conflict, not a silent no-op.
    if caps.object_lock {
        let locked = unique_name(&format!("{prefix}-locked"));
        let spec = BucketSpec { object_lock: true, ..bucket_spec(&locked, versioning) };
        assert_eq!(b.ensure_bucket(&spec, false).await.unwrap(), Change::Created, "{kind}: object lock");
        assert_eq!(b.ensure_bucket(&spec, false).await.unwrap(), Change::Unchanged, "{kind}: object lock again");
        let plain = unique_name(&format!("{prefix}-plain"));
        b.ensure_bucket(&bucket_spec(&plain, None), false).await.unwrap();
        let err =
            b.ensure_bucket(&BucketSpec { object_lock: true, ..bucket_spec(&plain, None) }, false).await.unwrap_err();
        assert!(matches!(err, BackendError::Conflict { .. }), "{kind}: {err}");
        for name in [&locked, &plain] {
            assert_eq!(b.delete_bucket(name, false).await.unwrap(), BucketDeletion::Deleted, "{kind}");
        }
    }

    // Buckets and users made outside the operator are not ours unless adopted, and an
    // adopted one is then ours only for the adopting claim.
    let theirs = unique_name(&format!("{prefix}-theirs"));
    probe.foreign_bucket(&theirs).await;
    assert_eq!(b.describe_bucket(&theirs).await.unwrap().unwrap().owner, None);
    let err = b.ensure_bucket(&bucket_spec(&theirs, None), false).await.unwrap_err();
    assert!(matches!(err, BackendError::NotOwned { .. }), "{kind}: {err}");
    assert_eq!(b.ensure_bucket(&bucket_spec(&theirs, None), true).await.unwrap(), Change::Updated, "{kind}: adopt");
    assert_eq!(b.ensure_bucket(&bucket_spec(&theirs, None), false).await.unwrap(), Change::Unchanged);
    let rival =
        BucketSpec { owner: Owner { namespace: "rival".into(), ..owner(&theirs) }, ..bucket_spec(&theirs, None) };
    let err = b.ensure_bucket(&rival, true).await.unwrap_err();
    assert!(matches!(err, BackendError::NotOwned { .. }), "{kind}: adopt never overrides a claim: {err}");
    assert_eq!(b.delete_bucket(&theirs, false).await.unwrap(), BucketDeletion::Deleted);

    let their_user = unique_name(&format!("{prefix}-theiruser"));
    probe.foreign_user(&their_user).await;
    assert_eq!(b.describe_user(&their_user).await.unwrap().unwrap().owner, None, "{kind}");
    let err = b.ensure_user(&user_spec(&their_user), false).await.unwrap_err();
    assert!(matches!(err, BackendError::NotOwned { .. }), "{kind}: {err}");
    assert_eq!(b.ensure_user(&user_spec(&their_user), true).await.unwrap(), Change::Updated, "{kind}: adopt user");
    assert_eq!(b.ensure_user(&user_spec(&their_user), false).await.unwrap(), Change::Unchanged);
    b.delete_user(&their_user).await.unwrap();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median latencies of the hot calls, printed for the record (never asserted).
async fn latencies(b: &dyn Backend, prefix: &str) {
    const RUNS: usize = 10;
    let (mut bucket, mut user, mut key, mut grants) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let name = unique_name(&format!("{prefix}-lat"));
        let t = Instant::now();
        b.ensure_bucket(&bucket_spec(&name, None), false).await.unwrap();
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

#[tokio::test]
async fn versitygw_conforms() {
    let store = start(StoreKind::Versitygw).await;
    let b = versitygw(&store);
    suite(&b, &Probe::Versitygw(&store), "vgw").await;
    latencies(&b, "vgw").await;
}

#[tokio::test]
async fn versitygw_outage_is_retryable_and_fast() {
    let mut store = start(StoreKind::Versitygw).await;
    let b = versitygw(&store);
    b.health().await.unwrap();
    store.stop().await;
    let t = Instant::now();
    let err = b.ensure_bucket(&bucket_spec(&unique_name("vgw-down"), None), false).await.unwrap_err();
    let s3_elapsed = t.elapsed();
    assert!(matches!(err, BackendError::Unavailable { .. }) && err.is_retryable(), "{err}");
    let t = Instant::now();
    let err = b.health().await.unwrap_err();
    let admin_elapsed = t.elapsed();
    assert!(matches!(err, BackendError::Unavailable { .. }) && err.is_retryable(), "{err}");
    eprintln!("versitygw down: S3 call failed in {s3_elapsed:?}, admin call in {admin_elapsed:?}");
    assert!(s3_elapsed < Duration::from_secs(30) && admin_elapsed < Duration::from_secs(30));
    store.restart().await.unwrap();
    b.health().await.unwrap();
}
