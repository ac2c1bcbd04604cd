//! Compatibility mode on a real store: one suite, written against `&dyn CompatStore` and run
//! through [`s3op_backends::compat::provision`] as the controller does, for each store that
//! takes credentials chosen by a Secret's author (see `tests/tests/e2e/compat_stores.rs`). It
//! checks what the Secret's owner sees with its own keys, not only what the backend reports.
//!
//! Test code: a failed expectation panics with the store's name and what went wrong.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use aws_sdk_s3::primitives::ByteStream;
use s3op_backends::{
    BackendError, BackendKind, BucketSpec, Change, CompatAccount, CompatStore, Credentials, Owner, SecretString,
    UserSpec,
    compat::{AccountState, provision},
    ledger::Subject,
};

pub use crate::stores::random_hex;
use crate::{conformance::Probe, stores::unique_name};

/// An access key every store imports: Garage's own form, `GK` and 24 hex digits.
pub fn random_access_key() -> String {
    format!("GK{}", random_hex(24))
}

/// A secret key every store imports: 64 hex digits, as Garage generates them.
pub fn random_secret() -> String {
    random_hex(64)
}

/// The account a Secret with these keys asks for (role `user`, no POSIX ids).
pub fn account(access_key: &str, secret_key: &str) -> CompatAccount {
    account_with_ids(access_key, secret_key, 0)
}

/// The account a Secret with these keys and `ids` as its user and group id asks for (role
/// `user`; ids exist on VersityGW only).
pub fn account_with_ids(access_key: &str, secret_key: &str, ids: u32) -> CompatAccount {
    CompatAccount {
        access_key: access_key.to_string(),
        secret_key: SecretString::new(secret_key),
        role: "user".into(),
        user_id: ids,
        group_id: ids,
    }
}

fn secret_owner(namespace: &str, name: &str) -> Owner {
    Owner::secret(namespace, name, format!("uid-{namespace}-{name}"))
}

fn creds(access_key: &str, secret_key: &str) -> Credentials {
    Credentials { access_key_id: access_key.to_string(), secret_access_key: SecretString::new(secret_key) }
}

/// True when the store accepts the keys at all.
async fn keys_work(probe: &Probe<'_>, access_key: &str, secret_key: &str) -> bool {
    match probe {
        Probe::Memory(m) => m.key_works(access_key, secret_key),
        Probe::Store(_) => probe.key_works(&creds(access_key, secret_key)).await,
    }
}

/// Put, get, list and delete an object in `bucket` with the keys; the first failure.
async fn read_write(probe: &Probe<'_>, access_key: &str, secret_key: &str, bucket: &str) -> Result<(), String> {
    match probe {
        Probe::Memory(m) => {
            let owner = m.compat_bucket_owner(bucket);
            if m.key_works(access_key, secret_key) && owner.as_deref() == Some(access_key) {
                Ok(())
            } else {
                Err(format!("key rejected or the bucket belongs to {owner:?}"))
            }
        }
        Probe::Store(_) => probe.read_write("", &creds(access_key, secret_key), bucket).await,
    }
}

/// True when the keys may put an object in `bucket` (the object is removed again).
async fn can_write(probe: &Probe<'_>, access_key: &str, secret_key: &str, bucket: &str) -> bool {
    match probe {
        Probe::Memory(_) => read_write(probe, access_key, secret_key, bucket).await.is_ok(),
        Probe::Store(store) => {
            let s3 = store.s3_client_with(access_key, secret_key);
            let put =
                s3.put_object().bucket(bucket).key("old-key.txt").body(ByteStream::from_static(b"x")).send().await;
            let _ = store.s3_client().delete_object().bucket(bucket).key("old-key.txt").send().await;
            put.is_ok()
        }
    }
}

fn is_not_owned(r: &Result<impl std::fmt::Debug, BackendError>, detail_has: &str) -> bool {
    matches!(r, Err(BackendError::NotOwned { detail, .. }) if detail.contains(detail_has))
}

/// The whole compatibility contract on one store, through `provision`. `prefix` keeps names
/// apart; every name and key is fresh.
pub async fn compat_suite(store: &dyn CompatStore, probe: &Probe<'_>, prefix: &str) {
    let garage = store.kind() == BackendKind::Garage;
    let team_a = unique_name(&format!("{prefix}-team-a"));
    let team_b = unique_name(&format!("{prefix}-team-b"));
    let app = secret_owner(&team_a, "app-credentials");
    let bucket = unique_name(&format!("{prefix}-compat"));
    let ak1 = random_access_key();
    let sk1 = random_secret();

    // A new account and bucket: the Secret's own keys can use the bucket.
    let out = provision(store, &app, &account(&ak1, &sk1), &bucket, false).await.unwrap();
    assert!(out.user_created && out.bucket_created, "{prefix}: first provision: {out:?}");
    // VersityGW's buckets always have an owner: the admin account that created it.
    let admin = match probe {
        Probe::Store(s) => Some(s.admin_access_key().to_string()),
        Probe::Memory(_) => None,
    };
    assert!(
        out.owner_changed == Some(None) || (out.owner_changed == Some(admin) && store.kind() == BackendKind::Versitygw),
        "{prefix}: a new bucket gets its first owner: {out:?}"
    );
    read_write(probe, &ak1, &sk1, &bucket).await.unwrap_or_else(|e| panic!("{prefix}: the Secret's keys: {e}"));

    // Converged: nothing to write.
    let out = provision(store, &app, &account(&ak1, &sk1), &bucket, false).await.unwrap();
    assert!(out.unchanged(), "{prefix}: second provision: {out:?}");

    // A changed secret key.
    let sk2 = random_secret();
    let changed = provision(store, &app, &account(&ak1, &sk2), &bucket, false).await;
    let current = if garage {
        // Garage cannot change a key's secret: refused, saying what to do instead.
        match &changed {
            Err(BackendError::Unsupported { feature, .. }) => {
                assert!(feature.contains("new access key") && feature.contains("S3User"), "{prefix}: {feature}");
            }
            other => panic!("{prefix}: a changed secret on Garage: {other:?}"),
        }
        assert!(keys_work(probe, &ak1, &sk1).await, "{prefix}: the refused change left the old secret working");
        sk1.clone()
    } else {
        let out = changed.unwrap_or_else(|e| panic!("{prefix}: changed secret: {e}"));
        assert_eq!(out.user_updated, ["secret key"], "{prefix}: {out:?}");
        assert_eq!(out.owner_changed, None, "{prefix}: {out:?}");
        assert!(!keys_work(probe, &ak1, &sk1).await, "{prefix}: the old secret still works");
        read_write(probe, &ak1, &sk2, &bucket).await.unwrap_or_else(|e| panic!("{prefix}: the new secret: {e}"));
        let out = provision(store, &app, &account(&ak1, &sk2), &bucket, false).await.unwrap();
        assert!(out.unchanged(), "{prefix}: after the secret change: {out:?}");
        sk2.clone()
    };

    // A changed access key: a new account, and the bucket moves to it.
    let ak2 = random_access_key();
    let sk3 = random_secret();
    let out = provision(store, &app, &account(&ak2, &sk3), &bucket, false).await.unwrap();
    assert!(out.user_created && !out.bucket_created, "{prefix}: new access key: {out:?}");
    assert_eq!(out.owner_changed, Some(Some(ak1.clone())), "{prefix}: the bucket moves from the old key");
    read_write(probe, &ak2, &sk3, &bucket).await.unwrap_or_else(|e| panic!("{prefix}: the new keys: {e}"));
    assert!(!can_write(probe, &ak1, &current, &bucket).await, "{prefix}: the old keys can still write");
    assert!(keys_work(probe, &ak1, &current).await, "{prefix}: the old account is left in place");
    assert_eq!(store.account(&account(&ak1, &current)).await.unwrap(), AccountState::Matches, "{prefix}");
    let out = provision(store, &app, &account(&ak2, &sk3), &bucket, false).await.unwrap();
    assert!(out.unchanged(), "{prefix}: after the move: {out:?}");

    // Drift: the bucket handed back to the old account behind the operator's back is repaired.
    store.change_bucket_owner(&bucket, &ak1, Some(&ak2)).await.unwrap();
    assert_eq!(store.bucket_owner(&bucket).await.unwrap(), Some(ak1.clone()), "{prefix}: drift made");
    let out = provision(store, &app, &account(&ak2, &sk3), &bucket, false).await.unwrap();
    assert_eq!(out.owner_changed, Some(Some(ak1.clone())), "{prefix}: drift repaired: {out:?}");
    read_write(probe, &ak2, &sk3, &bucket).await.unwrap_or_else(|e| panic!("{prefix}: after the repair: {e}"));
    assert!(!can_write(probe, &ak1, &current, &bucket).await, "{prefix}: the old keys can write after the repair");

    // Another namespace names the same bucket, or the same access key: refused, nothing changes.
    let intruder = secret_owner(&team_b, "intruder");
    let ak3 = random_access_key();
    let taken = provision(store, &intruder, &account(&ak3, &random_secret()), &bucket, false).await;
    assert!(is_not_owned(&taken, &team_a), "{prefix}: another namespace's bucket: {taken:?}");
    let elsewhere = unique_name(&format!("{prefix}-elsewhere"));
    let reset = provision(store, &intruder, &account(&ak2, &random_secret()), &elsewhere, false).await;
    assert!(is_not_owned(&reset, &team_a), "{prefix}: another namespace's access key: {reset:?}");
    assert_eq!(store.account(&account(&ak3, "unused-secret-0123")).await.unwrap(), AccountState::Missing, "{prefix}");
    assert!(!store.bucket_exists(&elsewhere).await.unwrap(), "{prefix}: a refused Secret made a bucket");
    assert_eq!(store.holder(Subject::User, &ak3).await.unwrap(), None, "{prefix}: a refused Secret left a claim");
    assert_eq!(store.holder(Subject::Bucket, &elsewhere).await.unwrap(), None, "{prefix}");
    assert_eq!(store.bucket_owner(&bucket).await.unwrap(), Some(ak2.clone()), "{prefix}: the owner moved");
    read_write(probe, &ak2, &sk3, &bucket).await.unwrap_or_else(|e| panic!("{prefix}: after the refusals: {e}"));

    // Names an S3Bucket or an S3User manages are refused before anything is written.
    let managed = unique_name(&format!("{prefix}-managed"));
    let spec = BucketSpec {
        name: managed.clone(),
        owner: Owner::s3bucket(&team_a, "bucket-resource", "uid-bucket-resource"),
        versioning: None,
        object_lock: false,
        tags: Default::default(),
        quota: None,
    };
    assert_eq!(store.ensure_bucket(&spec, false).await.unwrap(), Change::Created, "{prefix}");
    let ak4 = random_access_key();
    let refused = provision(store, &app, &account(&ak4, &random_secret()), &managed, false).await;
    assert!(is_not_owned(&refused, "S3Bucket"), "{prefix}: a bucket an S3Bucket manages: {refused:?}");
    assert_eq!(store.account(&account(&ak4, "unused-secret-0123")).await.unwrap(), AccountState::Missing, "{prefix}");
    assert_eq!(
        store.holder(Subject::Bucket, &managed).await.unwrap(),
        Some(spec.owner.clone()),
        "{prefix}: still the S3Bucket's"
    );

    let user = random_access_key();
    let user_spec =
        UserSpec { name: user.clone(), owner: Owner::s3user(&team_a, "user-resource", "uid-user-resource") };
    assert_eq!(store.ensure_user(&user_spec, false).await.unwrap(), Change::Created, "{prefix}");
    let other_bucket = unique_name(&format!("{prefix}-other"));
    let refused = provision(store, &app, &account(&user, &random_secret()), &other_bucket, false).await;
    assert!(is_not_owned(&refused, "S3User"), "{prefix}: an access key an S3User manages: {refused:?}");
    assert!(!store.bucket_exists(&other_bucket).await.unwrap(), "{prefix}");

    // A key issued to an S3User (its id differs from the user's name on MinIO and Garage) is
    // not a compatibility Secret's to take, even with its secret. The fake keeps no such link.
    if let Probe::Store(_) = probe {
        let key = store.create_key(&user, None).await.unwrap();
        let taken =
            provision(store, &app, &account(&key.access_key_id, key.secret_access_key.expose()), &other_bucket, false)
                .await;
        assert!(matches!(taken, Err(BackendError::NotOwned { .. })), "{prefix}: an S3User's key: {taken:?}");
        assert!(!store.bucket_exists(&other_bucket).await.unwrap(), "{prefix}");
    }
}

/// The operator's marker bucket can never be a compatibility Secret's bucket: its owner could
/// forge every claim.
pub async fn marker_bucket_is_refused(store: &dyn CompatStore, marker_bucket: &str, prefix: &str) {
    let app = secret_owner(&unique_name(&format!("{prefix}-team")), "app");
    let ak = random_access_key();
    let refused = provision(store, &app, &account(&ak, &random_secret()), marker_bucket, false).await;
    assert!(is_not_owned(&refused, "marker bucket"), "{prefix}: the marker bucket: {refused:?}");
    assert_eq!(store.account(&account(&ak, "unused-secret-0123")).await.unwrap(), AccountState::Missing, "{prefix}");
}
