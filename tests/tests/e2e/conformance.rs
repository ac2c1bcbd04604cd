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
    stores::{MOTO_CANNOT_TELL, Store, StoreKind, moto_operator_policy, unique_name},
};
use serde_json::Value;

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

/// A sealed MinIO admin call made with `access`/`secret` (an application's key here): the
/// body encrypted with that key's secret, as MinIO expects of any caller.
async fn minio_call_as(
    store: &Store,
    access: &str,
    secret: &str,
    method: &str,
    path: &str,
    plain: &[u8],
) -> (u16, String) {
    // PBKDF2 sealing takes milliseconds: no need to leave the runtime.
    let body = s3op_backends::minio::madmin::encrypt_data(secret.as_bytes(), plain).unwrap();
    let (status, reply) = store.signed_call_as(access, secret, method, path, body).await.unwrap();
    (status, String::from_utf8_lossy(&reply).into_owned())
}

/// MinIO keys are known from the user's ledger record, checked with plain calls, so no resync
/// opens an Argon2id reply: this holds only while nobody but the operator makes keys for the
/// user. An application's key may not make keys for its user or change its own secret (the
/// victim's key keeps working); a key deleted (by itself, as MinIO allows) is seen gone, and a
/// record written before keys were recorded is upgraded from MinIO's own list.
#[tokio::test]
async fn minio_keys_are_the_operators_alone() {
    use s3op_backends::{
        Credentials, Grant, Permission,
        ledger::{Conditional, Ledger, Subject},
    };
    let store = start(StoreKind::Minio).await;
    let markers = unique_name("s3op-markers");
    let b = fixture::minio(&store, &markers);
    let (bucket, user) = (unique_name("keys-b"), unique_name("keys-u"));
    let bucket_owner = Owner::s3bucket("keys", &bucket, "uid-b");
    let spec = BucketSpec {
        name: bucket.clone(),
        owner: bucket_owner,
        versioning: None,
        object_lock: false,
        tags: Default::default(),
        quota: None,
    };
    b.ensure_bucket(&spec, false).await.unwrap();
    let owner = Owner::s3user("keys", &user, "uid-u");
    b.ensure_user(&UserSpec { name: user.clone(), owner: owner.clone() }, false).await.unwrap();
    b.set_grants(&user, &[Grant { bucket: bucket.clone(), permission: Permission::ReadWrite }]).await.unwrap();
    let app = b.create_key(&user, None).await.unwrap();
    let app_secret = app.secret_access_key.expose().to_string();
    let keys_of = |b: &s3op_backends::minio::Minio| {
        let (b, user) = (b.clone(), user.clone());
        async move { b.describe_user(&user).await.unwrap().unwrap().access_key_ids }
    };
    assert_eq!(keys_of(&b).await, std::slice::from_ref(&app.access_key_id));

    let app_writes = |creds: Credentials| {
        let (s3, bucket) =
            (store.s3_client_with(&creds.access_key_id, creds.secret_access_key.expose()), bucket.clone());
        async move { s3.put_object().bucket(bucket).key("k").body(b"v".to_vec().into()).send().await.is_ok() }
    };
    assert!(app_writes(app.clone()).await, "the application's key writes its bucket");

    // The application tries to give itself a key no rotation would revoke, for its user and
    // with no target (itself), and to change its own key's secret.
    let minted = "MINTEDBYTHEAPP000001";
    let as_app = |method: &'static str, path: String, body: String| {
        let (store, access, secret) = (&store, app.access_key_id.clone(), app_secret.clone());
        async move { minio_call_as(store, &access, &secret, method, &path, body.as_bytes()).await }
    };
    let mint = |target: String| {
        let body = format!(r#"{{{target}"accessKey":"{minted}","secretKey":"minted-secret-0123456789"}}"#);
        as_app("PUT", "/minio/admin/v3/add-service-account".into(), body)
    };
    for target in [format!(r#""targetUser":"{user}","#), String::new()] {
        let (status, reply) = mint(target).await;
        assert_eq!(status, 403, "an application made itself a key: {reply}");
    }
    let path = format!("/minio/admin/v3/update-service-account?accessKey={}", app.access_key_id);
    let (status, reply) = as_app("POST", path, r#"{"newSecretKey":"changed-by-the-app-0"}"#.into()).await;
    assert_eq!(status, 403, "an application changed its own key's secret: {reply}");
    let minted_exists = || async {
        let path = format!("/minio/admin/v3/user-info?accessKey={minted}");
        store.signed_admin_call("GET", &path, Vec::new()).await.unwrap().0 != 404
    };
    assert!(!minted_exists().await, "the minted key exists");
    assert!(app_writes(app.clone()).await, "the application's key still works");
    assert_eq!(keys_of(&b).await, std::slice::from_ref(&app.access_key_id));

    // It is the denial that stops it: under the policy of an earlier version (grants only) the
    // application could. The next set_grants writes the denial again.
    let grants = [Grant { bucket: bucket.clone(), permission: Permission::ReadWrite }];
    let older = s3op_backends::policy::policy_document("aws", &grants).unwrap();
    let path = format!("/minio/admin/v3/add-canned-policy?name=s3op-{user}");
    let (status, _) = store.signed_admin_call("PUT", &path, older.to_string().into_bytes()).await.unwrap();
    assert_eq!(status, 200);
    let (status, reply) = mint(format!(r#""targetUser":"{user}","#)).await;
    assert_eq!(status, 200, "the policy without the denial: {reply}");
    assert!(minted_exists().await);
    assert_eq!(b.set_grants(&user, &grants).await.unwrap(), s3op_backends::Change::Updated);
    let path = format!("/minio/admin/v3/delete-service-account?accessKey={minted}");
    let (status, _) = store.signed_admin_call("DELETE", &path, Vec::new()).await.unwrap();
    assert_eq!(status, 204);

    // MinIO lets a key delete itself whatever the policy: it is seen gone, and the next key is
    // recorded.
    let path = format!("/minio/admin/v3/delete-service-account?accessKey={}", app.access_key_id);
    let (status, reply) = as_app("DELETE", path, String::new()).await;
    assert_eq!(status, 204, "{reply}");
    assert!(keys_of(&b).await.is_empty(), "a deleted key is still listed");
    let second = b.create_key(&user, None).await.unwrap();
    assert_eq!(keys_of(&b).await, std::slice::from_ref(&second.access_key_id));

    // A record from an earlier version has no keys in its body: MinIO's list fills it in once.
    let ledger = Ledger::new(store.s3_client(), "minio", markers.clone(), Conditional::Atomic);
    ledger.record(Subject::User, &user, &owner, Vec::new(), || async { Ok(()) }).await.unwrap();
    assert_eq!(keys_of(&b).await, std::slice::from_ref(&second.access_key_id), "an old record hides the user's key");
    let body = ledger.read(Subject::User, &user).await.unwrap().unwrap().body;
    assert_eq!(String::from_utf8(body).unwrap(), format!(r#"{{"keys":["{}"]}}"#, second.access_key_id));

    // Rotation and deletion still go by MinIO's own list.
    b.delete_key(&user, &second.access_key_id).await.unwrap();
    assert!(keys_of(&b).await.is_empty());
    let body = ledger.read(Subject::User, &user).await.unwrap().unwrap().body;
    assert_eq!(String::from_utf8(body).unwrap(), r#"{"keys":[]}"#);
    let third = b.create_key(&user, None).await.unwrap();
    b.delete_user(&user).await.unwrap();
    assert!(b.describe_user(&user).await.unwrap().is_none());
    assert!(!app_writes(third).await, "a deleted user's key still works");
}

/// On MinIO a compatibility bucket's ledger record names the accounts holding its policy, so
/// a Secret's resync asks MinIO's plain `user-info` instead of its sealed list. A key change
/// moves the bucket and the old account loses it (the data stays); a record from an earlier
/// version, or a holder attached by hand to one, is read from MinIO's list once; and MinIO
/// refuses to remove an attached policy (what lets a missing policy mean "no holders").
#[tokio::test]
async fn minio_compat_owners_are_recorded() {
    use s3op_backends::{
        CompatAccount, SecretString,
        compat::provision,
        ledger::{Conditional, Ledger, Subject},
    };
    let store = start(StoreKind::Minio).await;
    let markers = unique_name("s3op-markers");
    let b = fixture::minio(&store, &markers);
    let bucket = unique_name("compat-b");
    let claimant = Owner::secret("legacy", "app", "uid-secret");
    let account = |n: u8| CompatAccount {
        access_key: format!("COMPATAK{n}{}", unique_name("x").replace('-', "").to_uppercase()),
        secret_key: SecretString::new(format!("compat-secret-{n}-0123456789")),
        role: "user".into(),
        user_id: 0,
        group_id: 0,
    };
    let (first, second) = (account(1), account(2));
    let ledger = Ledger::new(store.s3_client(), "minio", markers.clone(), Conditional::Atomic);
    let holders =
        || async { String::from_utf8(ledger.read(Subject::Bucket, &bucket).await.unwrap().unwrap().body).unwrap() };
    let writes = |a: &CompatAccount| {
        let s3 = store.s3_client_with(&a.access_key, a.secret_key.expose());
        let bucket = bucket.clone();
        async move { s3.put_object().bucket(bucket).key("probe").body(b"v".to_vec().into()).send().await.is_ok() }
    };

    let made = provision(&b, &claimant, &first, &bucket, false).await.unwrap();
    assert!(made.user_created && made.bucket_created, "{made:?}");
    assert_eq!(holders().await, format!(r#"{{"holders":["{}"]}}"#, first.access_key));
    assert!(writes(&first).await);
    assert!(provision(&b, &claimant, &first, &bucket, false).await.unwrap().unchanged());

    let path = format!("/minio/admin/v3/remove-canned-policy?name=s3op_compat_{bucket}");
    let (status, reply) = store.signed_admin_call("DELETE", &path, Vec::new()).await.unwrap();
    assert!(!(200..300).contains(&status), "MinIO removed an attached policy: {}", String::from_utf8_lossy(&reply));

    // The Secret's key changes: the bucket moves, the first account loses it, the data stays.
    let moved = provision(&b, &claimant, &second, &bucket, false).await.unwrap();
    assert_eq!(moved.owner_changed, Some(Some(first.access_key.clone())));
    assert_eq!(holders().await, format!(r#"{{"holders":["{}"]}}"#, second.access_key));
    assert!(!writes(&first).await, "the old account still writes the bucket");
    assert!(writes(&second).await);
    let kept = store.s3_client().get_object().bucket(&bucket).key("probe").send().await;
    assert!(kept.is_ok(), "the bucket's object is gone");

    // A record from an earlier version, with the first account attached again by hand: MinIO's
    // list is read (by a fresh backend: the list is shared for seconds), the hand-made holder
    // loses the policy and the record names the owner again.
    let path = format!(
        "/minio/admin/v3/set-user-or-group-policy?policyName=s3op_compat_{bucket}&userOrGroup={}&isGroup=false",
        first.access_key
    );
    assert_eq!(store.signed_admin_call("PUT", &path, Vec::new()).await.unwrap().0, 200);
    assert!(writes(&first).await, "the hand-made attachment");
    ledger.record(Subject::Bucket, &bucket, &claimant, Vec::new(), || async { Ok(()) }).await.unwrap();
    let fresh = fixture::minio(&store, &markers);
    let repaired = provision(&fresh, &claimant, &second, &bucket, false).await.unwrap();
    assert!(repaired.owner_changed.is_some(), "{repaired:?}");
    assert_eq!(holders().await, format!(r#"{{"holders":["{}"]}}"#, second.access_key));
    assert!(!writes(&first).await, "the hand-made holder still writes the bucket");
    assert!(writes(&second).await);
    assert!(provision(&fresh, &claimant, &second, &bucket, false).await.unwrap().unchanged());
}

/// `deploy/aws/operator-policy.json` is the operator's whole need on AWS: a backend whose key
/// has only that policy passes the conformance suite on an enforcing moto (every call checked
/// against the key's policies), and without any one of its actions the suite fails, except for
/// the actions moto cannot tell apart (`MOTO_CANNOT_TELL`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_operator_policy_is_enough_and_each_action_is_needed() {
    use futures::FutureExt;
    let store = start_enforcing(StoreKind::Moto).await;
    let policy = s3op_tests::stores::operator_policy().unwrap();
    let iam = store.iam_client();
    let backend_with = |name: String, doc: Value| {
        let (iam, store) = (iam.clone(), &store);
        async move {
            iam.create_user().user_name(&name).send().await.unwrap();
            let put = iam.put_user_policy().user_name(&name).policy_name("operator").policy_document(doc.to_string());
            put.send().await.unwrap();
            let key = iam.create_access_key().user_name(&name).send().await.unwrap().access_key.unwrap();
            s3op_backends::aws::Aws::new(s3op_backends::aws::AwsConfig {
                region: Some(store.region().to_string()),
                endpoint: Some(store.endpoint().to_string()),
                credentials: Some((key.access_key_id, s3op_backends::SecretString::new(key.secret_access_key))),
                ca_bundle: None,
            })
            .await
            .unwrap()
        }
    };
    let passes = |b: s3op_backends::aws::Aws, prefix: String| {
        let store = &store;
        async move {
            std::panic::AssertUnwindSafe(async { suite(&b, &Probe::Store(store), &prefix).await })
                .catch_unwind()
                .await
                .is_ok()
        }
    };

    let full = backend_with(unique_name("operator-all"), moto_operator_policy(None).unwrap()).await;
    assert!(passes(full, "iam-all".into()).await, "the operator's policy is not enough for the conformance suite");

    let actions: Vec<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|st| st["Action"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()))
        .filter(|a| !MOTO_CANNOT_TELL.iter().any(|(c, _)| c == a))
        .collect();
    let mut unneeded = Vec::new();
    let (backend_with, passes) = (&backend_with, &passes);
    for batch in actions.chunks(4) {
        let runs = batch.iter().enumerate().map(|(i, action)| async move {
            let b = backend_with(unique_name("operator-less"), moto_operator_policy(Some(action)).unwrap()).await;
            (action.clone(), passes(b, format!("iam-{i}")).await)
        });
        for (action, passed) in futures::future::join_all(runs).await {
            if passed {
                unneeded.push(action);
            }
        }
    }
    assert!(unneeded.is_empty(), "the suite passes without {unneeded:?}: not needed, or not exercised");
}
