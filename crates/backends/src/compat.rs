//! Compatibility mode on the store's side: what the older s3-resource-operator did for one
//! annotated Secret, as three ordered steps (the account, then the bucket, then the bucket's
//! owner), plus the claims it never had, so a Secret in one namespace cannot take over what a
//! Secret in another namespace (or an S3Bucket/S3User) holds.
//!
//! Each store says what the steps mean in its own terms by implementing [`CompatStore`];
//! [`provision`] runs them in the old operator's order, reading before every write so a
//! converged Secret costs no write at all.

use async_trait::async_trait;

use crate::{
    Backend, BackendError, Result, SecretString,
    ledger::{Subject, Verdict, judge, refuse_taken},
    model::Owner,
};

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

impl CompatAccount {
    /// An existing account with these fields, compared with this wanted one field by field:
    /// what a store that keeps every field, the secret included, answers (VersityGW).
    pub fn compare_existing(&self, secret_key: &str, role: &str, user_id: u32, group_id: u32) -> AccountState {
        let differs = [
            (secret_key != self.secret_key.expose(), "secret key"),
            (role != self.role, "role"),
            (user_id != self.user_id, "user id"),
            (group_id != self.group_id, "group id"),
        ];
        AccountState::existing(differs.into_iter().filter_map(|(differs, field)| differs.then_some(field)).collect())
    }
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

impl AccountState {
    /// An existing account of which these fields differ: `Matches` when none does.
    pub fn existing(differs: Vec<&'static str>) -> Self {
        if differs.is_empty() { AccountState::Matches } else { AccountState::Differs(differs) }
    }

    /// True when the account exists and the Secret's own secret key authenticates as it: the
    /// proof of possession that lets a Secret claim an account the operator did not create.
    pub fn proves_possession(&self) -> bool {
        match self {
            AccountState::Missing => false,
            AccountState::Matches => true,
            AccountState::Differs(fields) => !fields.iter().any(|f| *f == "secret key" || *f == "status"),
        }
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

    /// Why an existing account is privileged (a role other than `user`, a policy the operator
    /// did not write, the right to create buckets), or `None`. A privileged account is never
    /// claimed, reset or handed a bucket, whatever proof or adoption says.
    async fn privileged(&self, access_key: &str) -> Result<Option<String>>;

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

    /// Claims a name the caller has just read as free in the store's ownership ledger (see
    /// [`crate::ledger::Ledger::claim_free`]): `Ok(true)` when this call claimed it, `Ok(false)`
    /// when `owner` holds it, `NotOwned` when someone else does (also when they won a race for
    /// it a moment ago).
    async fn claim(&self, subject: Subject, name: &str, owner: &Owner) -> Result<bool>;
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

/// How an administrator lets a namespace take over what the operator did not create.
const ADOPT_HINT: &str = "an operator administrator can allow adoption for this namespace with ADOPT_NAMESPACES";

/// What may be done for a name nobody has claimed yet that already exists on the store.
/// Pure: the decision of [`provision`], unit-tested on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unclaimed<'a> {
    /// Why the existing account is privileged, if it is.
    pub privileged: Option<&'a str>,
    /// The Secret's key authenticates as the existing account.
    pub proven: bool,
    /// The operator's configuration lets this namespace adopt what it did not create.
    pub adopt: bool,
}

/// Whether a Secret may claim an existing account nobody has claimed: never a privileged one;
/// otherwise with proof of possession, or where an administrator allowed adoption.
pub fn may_take_account(access_key: &str, facts: Unclaimed<'_>) -> Result<()> {
    let what = format!("access key {access_key}");
    if let Some(why) = facts.privileged {
        return Err(BackendError::NotOwned {
            what,
            detail: format!("a privileged account ({why}) is never taken over"),
        });
    }
    if facts.proven || facts.adopt {
        return Ok(());
    }
    Err(BackendError::NotOwned {
        what,
        detail: format!(
            "the account exists on the store, was not created by this operator, and the Secret's secret key does not \
             authenticate as it; {ADOPT_HINT}"
        ),
    })
}

/// Whether a Secret may claim an existing bucket nobody has claimed: only when its account,
/// proven to be the Secret's, already owns it, or where an administrator allowed adoption.
pub fn may_take_bucket(bucket: &str, owner: Option<&str>, access_key: &str, proven: bool, adopt: bool) -> Result<()> {
    if (proven && owner == Some(access_key)) || adopt {
        return Ok(());
    }
    Err(BackendError::NotOwned {
        what: format!("bucket {bucket}"),
        detail: format!(
            "the bucket exists on the store, was not created by this operator, and is not owned by the Secret's own \
             account; {ADOPT_HINT}"
        ),
    })
}

/// Runs the three steps for one Secret (`claimant`): judge and record the claims in the
/// ledger, ensure the account, ensure the bucket, ensure the owner. Every step reads first and
/// writes only a difference. Nothing is written before both claims are the Secret's: a name
/// claimed from another namespace or by an S3Bucket/S3User, a privileged account, or an
/// account or bucket made outside the operator without proof of possession (or adoption
/// allowed by `adopt`) stops everything with `NotOwned`.
pub async fn provision(
    store: &dyn CompatStore,
    claimant: &Owner,
    account: &CompatAccount,
    bucket: &str,
    adopt: bool,
) -> Result<Outcome> {
    store.accepts(account)?;
    let access_key = account.access_key.as_str();
    let state = store.account(account).await?;
    let account_verdict = judge(store.holder(Subject::User, access_key).await?.as_ref(), claimant);
    refuse_taken(Subject::User, access_key, &account_verdict)?;
    let bucket_verdict = judge(store.holder(Subject::Bucket, bucket).await?.as_ref(), claimant);
    refuse_taken(Subject::Bucket, bucket, &bucket_verdict)?;
    let exists = store.bucket_exists(bucket).await?;

    // The account is the Secret's when its claim is, or when its own key proves it.
    let proven = account_verdict == Verdict::Ours || state.proves_possession();
    if account_verdict == Verdict::Free && state != AccountState::Missing {
        let privileged = store.privileged(access_key).await?;
        may_take_account(access_key, Unclaimed { privileged: privileged.as_deref(), proven, adopt })?;
    }
    if bucket_verdict == Verdict::Free && exists {
        may_take_bucket(bucket, store.bucket_owner(bucket).await?.as_deref(), access_key, proven, adopt)?;
    }
    let claimed_account = account_verdict == Verdict::Free && store.claim(Subject::User, access_key, claimant).await?;
    if bucket_verdict == Verdict::Free
        && let Err(e) = store.claim(Subject::Bucket, bucket, claimant).await
    {
        // Lost the bucket to a racing claimant: leave no claim behind for an account this
        // Secret will not use. (Should the release fail, the claim stays this Secret's and
        // harms nobody else.)
        if claimed_account {
            let _ = store.release_claim(Subject::User, access_key, claimant).await;
        }
        return Err(e);
    }

    let mut outcome = Outcome::default();
    match state {
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

    if !exists {
        store.create_bucket(bucket).await?;
        outcome.bucket_created = true;
    }

    let previous = store.bucket_owner(bucket).await?;
    if previous.as_deref() != Some(access_key) {
        store.change_bucket_owner(bucket, access_key, previous.as_deref()).await?;
        outcome.owner_changed = Some(previous);
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryBackend;

    fn secret(ns: &str, name: &str) -> Owner {
        Owner::secret(ns, name, format!("uid-{name}"))
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

    #[test]
    fn an_existing_account_names_each_field_that_differs_and_never_a_value() {
        let wanted = account("AK", "s1");
        assert_eq!(wanted.compare_existing("s1", "user", 0, 0), AccountState::Matches);
        assert_eq!(
            wanted.compare_existing("s2", "admin", 7, 0),
            AccountState::Differs(vec!["secret key", "role", "user id"])
        );
        assert_eq!(wanted.compare_existing("s1", "user", 0, 9), AccountState::Differs(vec!["group id"]));
        assert_eq!(AccountState::existing(Vec::new()), AccountState::Matches);
    }

    /// The compat calls the store saw, without claims.
    fn steps(store: &MemoryBackend) -> Vec<String> {
        store.compat_calls().into_iter().filter(|c| !c.starts_with("claim")).collect()
    }

    #[tokio::test]
    async fn new_user_and_bucket_in_the_old_order() {
        let store = MemoryBackend::new();
        let out =
            provision(&store, &secret("a", "s"), &account("AK1", "secret-1"), "b1", false).await.expect("provision");
        assert_eq!(
            steps(&store),
            [
                "account AK1",
                "bucket_exists b1",
                "create_account AK1",
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
        provision(&store, &secret("a", "s"), &account("AK1", "secret-1"), "b1", false).await.expect("first");
        let writes = store.writes();
        store.clear_compat_calls();
        let out = provision(&store, &secret("a", "s"), &account("AK1", "secret-1"), "b1", false).await.expect("again");
        assert!(out.unchanged(), "{out:?}");
        assert_eq!(store.writes(), writes, "a converged Secret writes nothing");
        assert_eq!(steps(&store), ["account AK1", "bucket_exists b1", "bucket_owner b1"]);
    }

    #[tokio::test]
    async fn a_bucket_made_outside_the_operator_changes_owner_only_where_adoption_is_allowed() {
        let store = MemoryBackend::new();
        store.create_compat_bucket("b1", Some("someone"));
        let refused = provision(&store, &secret("a", "s"), &account("AK1", "secret-1"), "b1", false).await;
        assert!(
            matches!(refused, Err(BackendError::NotOwned { ref detail, .. }) if detail.contains("ADOPT_NAMESPACES")),
            "{refused:?}"
        );
        assert_eq!(store.writes(), 0, "a refused claim writes nothing, not even the account's claim");
        assert_eq!(store.compat_bucket_owner("b1").as_deref(), Some("someone"));
        let out =
            provision(&store, &secret("a", "s"), &account("AK1", "secret-1"), "b1", true).await.expect("provision");
        assert_eq!(out.owner_changed, Some(Some("someone".to_string())));
        assert!(!out.bucket_created);
        assert_eq!(store.compat_bucket_owner("b1").as_deref(), Some("AK1"));
    }

    #[tokio::test]
    async fn existing_bucket_with_a_new_user_creates_the_user_before_changing_the_owner() {
        let store = MemoryBackend::new();
        store.create_compat_bucket("b1", None);
        provision(&store, &secret("a", "s"), &account("AK2", "secret-2"), "b1", true).await.expect("provision");
        assert_eq!(
            steps(&store),
            [
                "account AK2",
                "bucket_exists b1",
                "bucket_owner b1",
                "create_account AK2",
                "bucket_owner b1",
                "change_bucket_owner b1 AK2 -"
            ]
        );
    }

    #[tokio::test]
    async fn a_changed_secret_or_id_updates_the_user() {
        let store = MemoryBackend::new();
        provision(&store, &secret("a", "s"), &account("AK1", "secret-1"), "b1", false).await.expect("first");
        let out =
            provision(&store, &secret("a", "s"), &account("AK1", "secret-2"), "b1", false).await.expect("new secret");
        assert_eq!(out.user_updated, ["secret key"]);
        assert!(store.key_works("AK1", "secret-2") && !store.key_works("AK1", "secret-1"));
        let mut with_ids = account("AK1", "secret-2");
        with_ids.user_id = 1000;
        with_ids.group_id = 1000;
        let out = provision(&store, &secret("a", "s"), &with_ids, "b1", false).await.expect("new ids");
        assert_eq!(out.user_updated, ["user id", "group id"]);
    }

    #[tokio::test]
    async fn a_changed_access_key_creates_a_user_and_moves_the_bucket() {
        let store = MemoryBackend::new();
        provision(&store, &secret("a", "s"), &account("AK1", "secret-1"), "b1", false).await.expect("first");
        let out = provision(&store, &secret("a", "s"), &account("AK2", "secret-1"), "b1", false).await.expect("moved");
        assert!(out.user_created);
        assert_eq!(out.owner_changed, Some(Some("AK1".to_string())));
        assert!(store.key_works("AK1", "secret-1"), "the old user is left in place");
    }

    #[tokio::test]
    async fn another_namespace_cannot_take_over_a_claimed_bucket_or_user() {
        let store = MemoryBackend::new();
        provision(&store, &secret("a", "s"), &account("AK1", "secret-1"), "b1", false).await.expect("first");
        let writes = store.writes();
        let bucket = provision(&store, &secret("b", "evil"), &account("AK9", "x-secret"), "b1", false).await;
        assert!(
            matches!(bucket, Err(BackendError::NotOwned { ref detail, .. }) if detail.contains("a/s")),
            "{bucket:?}"
        );
        let user = provision(&store, &secret("b", "evil"), &account("AK1", "reset-it"), "b9", false).await;
        assert!(matches!(user, Err(BackendError::NotOwned { .. })), "{user:?}");
        assert_eq!(store.writes(), writes, "a refused takeover writes nothing");
        assert!(store.key_works("AK1", "secret-1"));
        // The same namespace may share: another Secret of team a names the same bucket.
        provision(&store, &secret("a", "other"), &account("AK3", "secret-3"), "b1", false)
            .await
            .expect("same namespace");
    }

    #[tokio::test]
    async fn names_managed_by_custom_resources_are_refused() {
        let store = MemoryBackend::new();
        let crd = Owner::s3bucket("a", "bucket-cr", "u");
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
        let err = provision(&store, &secret("a", "s"), &account("AK1", "secret-1"), "b1", false).await;
        assert!(
            matches!(err, Err(BackendError::NotOwned { ref detail, .. }) if detail.contains("S3Bucket")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_privileged_account_is_never_taken_whatever_the_proof_or_adoption() {
        let store = MemoryBackend::new();
        store.create_foreign_account("ADMIN1", "admin-secret", "admin");
        for (secret_key, adopt) in [("tenant-secret", false), ("tenant-secret", true), ("admin-secret", true)] {
            let err = provision(&store, &secret("a", "s"), &account("ADMIN1", secret_key), "b1", adopt).await;
            assert!(
                matches!(err, Err(BackendError::NotOwned { ref detail, .. }) if detail.contains("privileged")),
                "{err:?}"
            );
        }
        assert_eq!(store.writes(), 0);
        assert!(store.key_works("ADMIN1", "admin-secret"), "the administrator's key still works");
        assert!(!store.key_works("ADMIN1", "tenant-secret"));
    }

    #[tokio::test]
    async fn an_unclaimed_account_needs_its_own_secret_or_adoption() {
        let store = MemoryBackend::new();
        store.create_foreign_account("AK1", "theirs", "user");
        let err = provision(&store, &secret("a", "s"), &account("AK1", "mine"), "b1", false).await;
        assert!(
            matches!(err, Err(BackendError::NotOwned { ref detail, .. }) if detail.contains("authenticate")),
            "{err:?}"
        );
        assert_eq!(store.writes(), 0);
        assert!(store.key_works("AK1", "theirs"), "the account's owner keeps its key");
        // An administrator allowed adoption for the namespace: the account is reset.
        let out = provision(&store, &secret("a", "s"), &account("AK1", "mine"), "b1", true).await.expect("adopted");
        assert_eq!(out.user_updated, ["secret key"]);
        assert!(store.key_works("AK1", "mine"));
    }

    #[tokio::test]
    async fn the_older_operators_state_is_claimed_by_proof_with_no_other_write() {
        let store = MemoryBackend::new();
        store.create_foreign_account("AK1", "secret-1", "user");
        store.create_compat_bucket("b1", Some("AK1"));
        let out =
            provision(&store, &secret("a", "s"), &account("AK1", "secret-1"), "b1", false).await.expect("migrated");
        assert!(out.unchanged(), "{out:?}");
        assert_eq!(store.writes(), 2, "the two claims and nothing else");
        assert!(store.key_works("AK1", "secret-1"));
        assert_eq!(store.compat_bucket_owner("b1").as_deref(), Some("AK1"));
        // Someone else's bucket is not reached through a proven account.
        store.create_compat_bucket("b2", Some("OTHER"));
        let err = provision(&store, &secret("a", "s"), &account("AK1", "secret-1"), "b2", false).await;
        assert!(matches!(err, Err(BackendError::NotOwned { .. })), "{err:?}");
        assert_eq!(store.compat_bucket_owner("b2").as_deref(), Some("OTHER"));
    }

    #[test]
    fn unclaimed_names_are_decided_without_io() {
        let facts = |privileged, proven, adopt| Unclaimed { privileged, proven, adopt };
        assert!(may_take_account("AK", facts(None, true, false)).is_ok());
        assert!(may_take_account("AK", facts(None, false, true)).is_ok());
        assert!(may_take_account("AK", facts(None, false, false)).is_err());
        assert!(may_take_account("AK", facts(Some("role admin"), true, true)).is_err());
        assert!(may_take_bucket("b", Some("AK"), "AK", true, false).is_ok());
        assert!(may_take_bucket("b", Some("AK"), "AK", false, false).is_err(), "ownership without proof");
        assert!(may_take_bucket("b", Some("X"), "AK", true, false).is_err());
        assert!(may_take_bucket("b", None, "AK", true, false).is_err());
        assert!(may_take_bucket("b", Some("X"), "AK", false, true).is_ok());
        assert!(AccountState::Differs(vec!["user id"]).proves_possession());
        assert!(!AccountState::Differs(vec!["secret key"]).proves_possession());
        assert!(!AccountState::Missing.proves_possession());
    }
}
