//! Compatibility mode on the store's side: what the older s3-resource-operator did for one
//! annotated Secret, as three ordered steps (the account, then the bucket, then the bucket's
//! owner), plus the claims it never had, so a Secret in one namespace cannot take over what a
//! Secret in another namespace (or an S3Bucket/S3User) holds.
//!
//! Each store says what the steps mean in its own terms by implementing [`CompatStore`];
//! [`provision`] runs them in the old operator's order, reading before every write so a
//! converged Secret costs no write at all.

use std::fmt;

use async_trait::async_trait;

use crate::{Backend, BackendError, Result, SecretString, model::Owner};

/// The account a compatibility Secret asks for. `Debug` never shows the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompatAccount {
    /// Access key id, chosen by the Secret's author; on VersityGW also the account's name.
    pub access_key: String,
    /// Secret key, chosen by the Secret's author.
    pub secret_key: SecretString,
    /// VersityGW role (`user` unless the operator allows others); stores without roles ignore it.
    pub role: String,
    /// POSIX user id (VersityGW's posix backend); 0 when the Secret gives none.
    pub user_id: u32,
    /// POSIX group id; 0 when the Secret gives none.
    pub group_id: u32,
}

/// The account as the store has it, compared with the wanted one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountState {
    /// No account with that access key.
    Missing,
    /// It exists and every field the store keeps matches: no write is needed.
    Matches,
    /// It exists and these fields differ (names like "secret key", never values).
    Differs(Vec<&'static str>),
}

/// What a claim is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimKind {
    /// An account, by access key.
    Account,
    /// A bucket, by name.
    Bucket,
}

impl ClaimKind {
    /// Lowercase noun for messages.
    pub const fn noun(self) -> &'static str {
        match self {
            ClaimKind::Account => "access key",
            ClaimKind::Bucket => "bucket",
        }
    }
}

impl fmt::Display for ClaimKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.noun())
    }
}

/// The old operator's steps in one store's terms. Implemented by every store that can take
/// credentials chosen by someone else; see [`Backend::compat`].
#[async_trait]
pub trait CompatStore: Backend {
    /// Refuses, before any call, an account the store can never hold (e.g. a key format the
    /// store rejects), with a message saying what to use instead.
    fn accepts(&self, account: &CompatAccount) -> Result<()> {
        let _ = account;
        Ok(())
    }

    /// The account with `wanted.access_key`, compared with `wanted`.
    async fn account(&self, wanted: &CompatAccount) -> Result<AccountState>;

    /// Creates the account with the given keys (and role and ids where the store has them).
    async fn create_account(&self, account: &CompatAccount) -> Result<()>;

    /// Brings an existing account to `account`; `differs` is what [`CompatStore::account`]
    /// found different.
    async fn update_account(&self, account: &CompatAccount, differs: &[&'static str]) -> Result<()>;

    /// True when the bucket exists.
    async fn bucket_exists(&self, bucket: &str) -> Result<bool>;

    /// Creates the bucket with the operator's credentials.
    async fn create_bucket(&self, bucket: &str) -> Result<()>;

    /// The access key the bucket belongs to (VersityGW: its owner; elsewhere: the compat
    /// account holding read-write access to it), or `None`.
    async fn bucket_owner(&self, bucket: &str) -> Result<Option<String>>;

    /// Makes `owner` the bucket's owner; `previous` (if any) loses what it held through being
    /// the owner, but the account itself is left in place.
    async fn change_bucket_owner(&self, bucket: &str, owner: &str, previous: Option<&str>) -> Result<()>;

    /// Who claimed the account or bucket for compatibility mode, recorded on the store.
    async fn claim(&self, kind: ClaimKind, name: &str) -> Result<Option<Owner>>;

    /// Records the claim durably (before anything is created for it).
    async fn write_claim(&self, kind: ClaimKind, name: &str, owner: &Owner) -> Result<()>;
}

/// Refuses an account whose access key is the operator's own: a Secret naming it would reset
/// the credentials every store call is made with. Every store's [`CompatStore::accepts`] starts here.
pub fn not_the_operators_key(account: &CompatAccount, operator_key: &str) -> Result<()> {
    if account.access_key == operator_key {
        return Err(BackendError::NotOwned {
            what: format!("access key {}", account.access_key),
            detail: "the operator's own key".into(),
        });
    }
    Ok(())
}

/// What [`provision`] did, for events and the legacy metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The account was created.
    pub user_created: bool,
    /// The account existed and was updated; these fields differed.
    pub user_updated: Vec<&'static str>,
    /// The bucket was created.
    pub bucket_created: bool,
    /// The bucket's owner was changed; holds the previous owner, if there was one.
    pub owner_changed: Option<Option<String>>,
}

impl Outcome {
    /// True when nothing had to be written.
    pub fn unchanged(&self) -> bool {
        !self.user_created && self.user_updated.is_empty() && !self.bucket_created && self.owner_changed.is_none()
    }
}

/// Runs the three steps for one Secret (`claimant`): check and record the claims, ensure the
/// account, ensure the bucket, ensure the owner. Every step reads first and writes only a
/// difference. A claim held from another namespace, or a name an S3Bucket/S3User manages,
/// stops everything before the first write with `NotOwned`.
pub async fn provision(
    store: &dyn CompatStore,
    claimant: &Owner,
    account: &CompatAccount,
    bucket: &str,
) -> Result<Outcome> {
    store.accepts(account)?;
    let account_claim = check_claim(store, ClaimKind::Account, &account.access_key, claimant).await?;
    let bucket_claim = check_claim(store, ClaimKind::Bucket, bucket, claimant).await?;
    if account_claim {
        store.write_claim(ClaimKind::Account, &account.access_key, claimant).await?;
    }
    if bucket_claim {
        store.write_claim(ClaimKind::Bucket, bucket, claimant).await?;
    }

    let mut outcome = Outcome::default();
    match store.account(account).await? {
        AccountState::Missing => {
            store.create_account(account).await?;
            outcome.user_created = true;
        }
        AccountState::Differs(fields) => {
            store.update_account(account, &fields).await?;
            outcome.user_updated = fields;
        }
        AccountState::Matches => {}
    }

    if !store.bucket_exists(bucket).await? {
        store.create_bucket(bucket).await?;
        outcome.bucket_created = true;
    }

    let previous = store.bucket_owner(bucket).await?;
    if previous.as_deref() != Some(account.access_key.as_str()) {
        store.change_bucket_owner(bucket, &account.access_key, previous.as_deref()).await?;
        outcome.owner_changed = Some(previous);
    }
    Ok(outcome)
}

/// `Ok(true)` when the claim must be written (nobody holds it yet), `Ok(false)` when a Secret
/// of the claimant's namespace already holds it.
// Claims are per namespace, not per Secret: the old operator let two Secrets of one team
// share a bucket, and that keeps working; only crossing a namespace boundary is refused.
async fn check_claim(store: &dyn CompatStore, kind: ClaimKind, name: &str, claimant: &Owner) -> Result<bool> {
    let what = format!("{kind} {name}");
    match store.claim(kind, name).await? {
        Some(holder) if holder.namespace == claimant.namespace => Ok(false),
        Some(holder) => {
            Err(BackendError::NotOwned { what, detail: format!("claimed by Secret {holder} in another namespace") })
        }
        None => {
            // First claim: refuse names the CRD mode manages. Only checked until the claim is
            // written, so a converged Secret does not pay for it on every resync.
            let managed = match kind {
                ClaimKind::Account => store.describe_user(name).await?.and_then(|u| u.owner).map(|o| ("S3User", o)),
                ClaimKind::Bucket => store.describe_bucket(name).await?.and_then(|b| b.owner).map(|o| ("S3Bucket", o)),
            };
            match managed {
                Some((crd, o)) => Err(BackendError::NotOwned { what, detail: format!("managed by {crd} {o}") }),
                None => Ok(true),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryBackend;

    fn secret(ns: &str, name: &str) -> Owner {
        Owner { namespace: ns.into(), name: name.into(), uid: format!("uid-{name}") }
    }

    fn account(access: &str, secret: &str) -> CompatAccount {
        CompatAccount {
            access_key: access.into(),
            secret_key: SecretString::from(secret),
            role: "user".into(),
            user_id: 0,
            group_id: 0,
        }
    }

    /// The compat calls the store saw, without claims and CRD look-ups.
    fn steps(store: &MemoryBackend) -> Vec<String> {
        store.compat_calls().into_iter().filter(|c| !c.starts_with("claim") && !c.starts_with("write_claim")).collect()
    }

    #[tokio::test]
    async fn new_user_and_bucket_in_the_old_order() {
        let store = MemoryBackend::new();
        let out = provision(&store, &secret("a", "s"), &account("AK1", "secret-1"), "b1").await.expect("provision");
        assert_eq!(
            steps(&store),
            [
                "account AK1",
                "create_account AK1",
                "bucket_exists b1",
                "create_bucket b1",
                "bucket_owner b1",
                "change_bucket_owner b1 AK1 -"
            ]
        );
        assert!(out.user_created && out.bucket_created);
        assert_eq!(out.owner_changed, Some(None));
        assert!(store.key_works("AK1", "secret-1"));
    }

    #[tokio::test]
    async fn existing_user_and_matching_owner_make_no_writes() {
        let store = MemoryBackend::new();
        provision(&store, &secret("a", "s"), &account("AK1", "secret-1"), "b1").await.expect("first");
        let writes = store.writes();
        store.clear_compat_calls();
        let out = provision(&store, &secret("a", "s"), &account("AK1", "secret-1"), "b1").await.expect("again");
        assert!(out.unchanged(), "{out:?}");
        assert_eq!(store.writes(), writes, "a converged Secret writes nothing");
        assert_eq!(steps(&store), ["account AK1", "bucket_exists b1", "bucket_owner b1"]);
    }

    #[tokio::test]
    async fn a_different_owner_is_changed() {
        let store = MemoryBackend::new();
        store.create_compat_bucket("b1", Some("someone"));
        let out = provision(&store, &secret("a", "s"), &account("AK1", "secret-1"), "b1").await.expect("provision");
        assert_eq!(out.owner_changed, Some(Some("someone".to_string())));
        assert!(!out.bucket_created);
        assert_eq!(store.compat_bucket_owner("b1").as_deref(), Some("AK1"));
    }

    #[tokio::test]
    async fn existing_bucket_with_a_new_user_creates_the_user_before_changing_the_owner() {
        let store = MemoryBackend::new();
        store.create_compat_bucket("b1", None);
        provision(&store, &secret("a", "s"), &account("AK2", "secret-2"), "b1").await.expect("provision");
        assert_eq!(
            steps(&store),
            [
                "account AK2",
                "create_account AK2",
                "bucket_exists b1",
                "bucket_owner b1",
                "change_bucket_owner b1 AK2 -"
            ]
        );
    }

    #[tokio::test]
    async fn a_changed_secret_or_id_updates_the_user() {
        let store = MemoryBackend::new();
        provision(&store, &secret("a", "s"), &account("AK1", "secret-1"), "b1").await.expect("first");
        let out = provision(&store, &secret("a", "s"), &account("AK1", "secret-2"), "b1").await.expect("new secret");
        assert_eq!(out.user_updated, ["secret key"]);
        assert!(store.key_works("AK1", "secret-2") && !store.key_works("AK1", "secret-1"));
        let mut with_ids = account("AK1", "secret-2");
        with_ids.user_id = 1000;
        with_ids.group_id = 1000;
        let out = provision(&store, &secret("a", "s"), &with_ids, "b1").await.expect("new ids");
        assert_eq!(out.user_updated, ["user id", "group id"]);
    }

    #[tokio::test]
    async fn a_changed_access_key_creates_a_user_and_moves_the_bucket() {
        let store = MemoryBackend::new();
        provision(&store, &secret("a", "s"), &account("AK1", "secret-1"), "b1").await.expect("first");
        let out = provision(&store, &secret("a", "s"), &account("AK2", "secret-1"), "b1").await.expect("moved");
        assert!(out.user_created);
        assert_eq!(out.owner_changed, Some(Some("AK1".to_string())));
        assert!(store.key_works("AK1", "secret-1"), "the old user is left in place");
    }

    #[tokio::test]
    async fn another_namespace_cannot_take_over_a_claimed_bucket_or_user() {
        let store = MemoryBackend::new();
        provision(&store, &secret("a", "s"), &account("AK1", "secret-1"), "b1").await.expect("first");
        let writes = store.writes();
        let bucket = provision(&store, &secret("b", "evil"), &account("AK9", "x-secret"), "b1").await;
        assert!(
            matches!(bucket, Err(BackendError::NotOwned { ref detail, .. }) if detail.contains("a/s")),
            "{bucket:?}"
        );
        let user = provision(&store, &secret("b", "evil"), &account("AK1", "reset-it"), "b9").await;
        assert!(matches!(user, Err(BackendError::NotOwned { .. })), "{user:?}");
        assert_eq!(store.writes(), writes, "a refused takeover writes nothing");
        assert!(store.key_works("AK1", "secret-1"));
        // The same namespace may share: another Secret of team a names the same bucket.
        provision(&store, &secret("a", "other"), &account("AK3", "secret-3"), "b1").await.expect("same namespace");
    }

    #[tokio::test]
    async fn names_managed_by_custom_resources_are_refused() {
        let store = MemoryBackend::new();
        let crd = Owner { namespace: "a".into(), name: "bucket-cr".into(), uid: "u".into() };
        store
            .ensure_bucket(
                &crate::model::BucketSpec {
                    name: "b1".into(),
                    owner: crd,
                    versioning: None,
                    object_lock: false,
                    tags: Default::default(),
                    quota: None,
                },
                false,
            )
            .await
            .expect("bucket");
        let err = provision(&store, &secret("a", "s"), &account("AK1", "secret-1"), "b1").await;
        assert!(
            matches!(err, Err(BackendError::NotOwned { ref detail, .. }) if detail.contains("S3Bucket")),
            "{err:?}"
        );
    }
}
