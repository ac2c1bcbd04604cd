//! MinIO: users, keys and grants through the admin API (v3) with the payload encryption it
//! requires; buckets through [`crate::claimed_buckets`], quotas through the admin API.
//!
//! A user is a MinIO user whose access key is the user name. Its own secret is random and
//! never handed out: the keys given to applications are service accounts of that user, which
//! inherit its policy, so a user can hold several keys and rotate with an overlap. Its grants
//! are one canned policy `s3op-<user>` attached to it.
//!
//! This file holds the backend; `admin` the admin API's wire types and calls, `madmin` its
//! payload encryption, `compat` compatibility mode.

mod admin;
mod compat;
mod keys;
pub mod madmin;
mod record;

use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use async_trait::async_trait;

use self::{admin::UserInfoReply, compat::COMPAT_POLICY_PREFIX};
use crate::{
    Backend, BackendError, Result, SecretString,
    claimed_buckets::ClaimedBuckets,
    claimed_users,
    compat::CompatStore,
    http,
    ledger::{ClaimLocks, Conditional, Ledger, Subject},
    model::{
        BackendKind, BucketDeletion, BucketInfo, BucketSpec, Capabilities, Change, Credentials, Grant, Owner, Quota,
        UserInfo, UserSpec,
    },
    policy,
    s3ops::S3,
    snapshot::Snapshot,
};

const BACKEND: &str = "minio";

/// Where and as whom to reach MinIO.
#[derive(Clone, Debug)]
pub struct MinioConfig {
    /// S3 endpoint, which also serves the admin API (`http://host:9000`).
    pub endpoint: String,
    /// The server's region; requests are signed for it.
    pub region: String,
    /// Access key of an administrator (the root user, or a user with admin and S3 rights).
    pub access_key: String,
    /// Its secret key; also the password of the admin API's payload encryption.
    pub secret_key: SecretString,
    /// Bucket holding one marker object per user and bucket the operator created (see
    /// [`Minio`]); created on first use, readable and writable by administrators only.
    pub marker_bucket: String,
    /// CA certificates (PEM) the store's https certificates are checked against, besides the
    /// system's roots.
    pub ca_bundle: Option<String>,
}

/// The MinIO backend.
// Ownership of users: MinIO users carry no tags, and a naming convention could be forged by
// anyone allowed to create users. So, as for VersityGW, the operator writes, before it creates
// a user, an object `users/<name>` in an admin-only bucket whose metadata holds namespace, name
// and uid. A user without that object was made outside the operator and is `NotOwned` unless
// adopted. Buckets carry their marker as tags; a `buckets/<name>` object written before a
// bucket is created lets a creation cut before its tags be recognised (see claimed_buckets).
#[derive(Debug, Clone)]
pub struct Minio {
    s3: S3,
    http: reqwest::Client,
    markers: Ledger,
    config: MinioConfig,
    // Every key list MinIO sends is madmin-encrypted, and each decryption is an Argon2id
    // derivation (64 MiB, tens of ms of CPU). One bulk list of every user's keys, shared by the
    // reconciles of a burst, replaces one list per user.
    keys: Arc<Snapshot<BTreeMap<String, Vec<String>>>>,
    // Who holds each policy, from one list of every mapping: a compatibility Secret's resync
    // asks who holds its bucket's policy, and a list per Secret made a burst of Secrets one
    // Argon2id queue that every tenant's work waited behind.
    holders: Arc<Snapshot<BTreeMap<String, Vec<String>>>>,
    // Set when the server has no bulk list (before 2024): then keys are listed per user.
    no_bulk_keys: Arc<AtomicBool>,
    // Serialise each read-change-write of a user's record of keys (see `keys`).
    record_locks: ClaimLocks,
}

/// How long one bulk key list (or list of policy holders) serves other reconciles (see
/// [`Minio`]).
const KEYS_SNAPSHOT_TTL: Duration = Duration::from_secs(5);

/// Name of the canned policy holding `user`'s grants.
fn policy_name(user: &str) -> String {
    format!("s3op-{user}")
}

/// The admin actions on service accounts a user's own keys are denied. MinIO lets a user (and
/// each of its service accounts) make, change and delete service accounts of that user
/// unless a policy denies it; a key made that way would outlive every rotation the operator
/// makes, and the operator knows a user's keys from its own record (see `keys`). A key may
/// still delete itself whatever the policy says (measured); the next resync sees it gone.
const KEY_ACTIONS: [&str; 3] =
    ["admin:CreateServiceAccount", "admin:UpdateServiceAccount", "admin:RemoveServiceAccount"];

/// The statement denying [`KEY_ACTIONS`]; admin statements name no resource.
fn deny_key_actions() -> serde_json::Value {
    serde_json::json!({"Effect": "Deny", "Action": KEY_ACTIONS})
}

/// The canned policy of a user granted `grants`: the grants, and no say over its own keys.
/// `None` when there is nothing to grant.
fn user_policy_document(grants: &[Grant]) -> Option<serde_json::Value> {
    let mut doc = policy::policy_document("aws", grants)?;
    doc.get_mut("Statement")?.as_array_mut()?.push(deny_key_actions());
    Some(doc)
}

/// The grants of a user policy [`user_policy_document`] wrote; `None` for any other document,
/// one without the denial (written by an older version) included.
fn grants_from_user_policy(doc: &serde_json::Value) -> Option<Vec<Grant>> {
    let statements = doc.get("Statement")?.as_array()?;
    let is_denial = |st: &serde_json::Value| {
        st.get("Effect").and_then(|e| e.as_str()) == Some("Deny")
            && st.as_object().is_some_and(|o| o.keys().all(|k| matches!(k.as_str(), "Effect" | "Action")))
            && st.get("Action").and_then(|a| a.as_array()).is_some_and(|a| {
                let mut got: Vec<&str> = a.iter().filter_map(|x| x.as_str()).collect();
                got.sort_unstable();
                let mut want = KEY_ACTIONS.to_vec();
                want.sort_unstable();
                got == want && a.len() == KEY_ACTIONS.len()
            })
    };
    let (denials, grants): (Vec<&serde_json::Value>, Vec<&serde_json::Value>) =
        statements.iter().partition(|st| is_denial(st));
    if denials.len() != 1 {
        return None;
    }
    let mut rest = doc.clone();
    *rest.get_mut("Statement")? = serde_json::Value::Array(grants.into_iter().cloned().collect());
    policy::grants_from_document("aws", &rest)
}

impl Minio {
    /// A backend for the MinIO server described by `config`. Makes no call.
    pub fn new(config: MinioConfig) -> Result<Self> {
        let ca = config.ca_bundle.as_deref();
        let s3 = S3::connect(BACKEND, &config.endpoint, &config.region, &config.access_key, &config.secret_key, ca)?;
        let http = http::client(BACKEND, ca)?;
        let markers = Ledger::new(s3.client().clone(), BACKEND, config.marker_bucket.clone(), Conditional::Atomic);
        Ok(Self {
            s3,
            http,
            markers,
            config,
            keys: Arc::new(Snapshot::new(KEYS_SNAPSHOT_TTL)),
            holders: Arc::new(Snapshot::new(KEYS_SNAPSHOT_TTL)),
            no_bulk_keys: Arc::new(AtomicBool::new(false)),
            record_locks: ClaimLocks::default(),
        })
    }

    /// The bucket that holds the users' ownership markers.
    pub fn marker_bucket(&self) -> &str {
        &self.config.marker_bucket
    }

    /// Buckets carry their claim as tags, recorded in the ledger too.
    fn buckets(&self) -> ClaimedBuckets<'_> {
        ClaimedBuckets { s3: &self.s3, versioning: &self.s3, claims: Some(&self.markers) }
    }

    /// Why an existing user is privileged: it holds a policy the operator did not write.
    async fn user_privilege(&self, user: &str) -> Result<Option<String>> {
        let Some(info) = self.user_info(user).await? else { return Ok(None) };
        let ours = policy_name(user);
        Ok(info
            .policies()
            .into_iter()
            .find(|p| *p != ours && !p.starts_with(COMPAT_POLICY_PREFIX))
            .map(|p| format!("holds policy {p}, not written by this operator")))
    }

    /// The grants held by the user's canned policy; none when it has none attached. A policy
    /// edited outside the operator reads as no grants (the next `set_grants` rewrites it).
    async fn grants(&self, user: &str, info: &UserInfoReply) -> Result<Vec<Grant>> {
        let name = policy_name(user);
        if !info.policies().contains(&name) {
            return Ok(Vec::new());
        }
        Ok(self.canned_policy(&name).await?.as_ref().and_then(grants_from_user_policy).unwrap_or_default())
    }

    /// Converges the bucket's size quota to `wanted` (`None` leaves it alone). A limit on the
    /// number of objects is the caller's `Unsupported`, reported after everything else.
    async fn converge_quota(&self, bucket: &str, wanted: Option<Quota>) -> Result<Change> {
        let Some(wanted) = wanted else { return Ok(Change::Unchanged) };
        if self.quota(bucket).await? == wanted.max_size_bytes {
            return Ok(Change::Unchanged);
        }
        self.set_quota(bucket, wanted.max_size_bytes).await?;
        Ok(Change::Updated)
    }
}

#[async_trait]
impl Backend for Minio {
    fn kind(&self) -> BackendKind {
        BackendKind::Minio
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            versioning: true,
            tags: true,
            object_lock: true,
            // A hard quota on size; MinIO has no limit on the number of objects.
            quota_max_size: true,
            quota_max_objects: false,
            read_only_grants: true,
            // Keys are service accounts of the user: any number, with caller-chosen ones.
            multiple_keys: true,
            import_credentials: true,
        }
    }

    async fn health(&self) -> Result<()> {
        self.admin_probe().await
    }

    async fn describe_bucket(&self, name: &str) -> Result<Option<BucketInfo>> {
        let Some(info) = self.buckets().describe(name).await? else { return Ok(None) };
        let quota = Quota { max_size_bytes: self.quota(name).await?, max_objects: None };
        Ok(Some(BucketInfo { quota: Some(quota), ..info }))
    }

    async fn ensure_bucket(&self, spec: &BucketSpec, adopt: bool) -> Result<Change> {
        let change = self.buckets().ensure(spec, adopt).await?;
        let change = change.and(self.converge_quota(&spec.name, spec.quota).await?);
        if spec.quota.is_some_and(|q| q.max_objects.is_some()) {
            return Err(BackendError::Unsupported { backend: BACKEND, feature: "quota on the number of objects" });
        }
        Ok(change)
    }

    async fn delete_bucket(&self, name: &str, force: bool) -> Result<BucketDeletion> {
        self.buckets().delete(name, force).await
    }

    async fn describe_user(&self, name: &str) -> Result<Option<UserInfo>> {
        let Some(info) = self.user_info(name).await? else { return Ok(None) };
        let keys = self.user_keys(name).await?;
        let grants = self.grants(name, &info).await?;
        Ok(Some(UserInfo {
            name: name.to_string(),
            owner: keys.owner,
            access_key_ids: keys.keys,
            grants,
            legacy_grants: Vec::new(),
        }))
    }

    async fn ensure_user(&self, spec: &UserSpec, adopt: bool) -> Result<Change> {
        let name = spec.name.as_str();
        let what = format!("user {name}");
        if name == self.config.access_key {
            return Err(BackendError::NotOwned { what, detail: "the operator's own admin account".into() });
        }
        // A new name is judged by the claim itself (one read under the ledger's lock).
        if self.user_info(name).await?.is_some() {
            return claimed_users::judge_existing(&self.markers, spec, adopt, "user", || self.user_privilege(name))
                .await;
        }
        // A claim without a user (deleted behind our back) still names its holder; the claim
        // comes first, so a user without one would look foreign for ever.
        if claimed_users::claim(&self.markers, Subject::User, name, &spec.owner).await? {
            // A new record names the user's keys from the start: none yet.
            self.write_key_record(name, &spec.owner, &[]).await?;
        }
        // The user's own secret is kept nowhere: applications get service accounts.
        let secret = http::generate_secret(BACKEND)?;
        self.add_user(name, &secret).await?;
        Ok(Change::Created)
    }

    async fn create_key(&self, user: &str, import: Option<&Credentials>) -> Result<Credentials> {
        self.require_user(user).await?;
        if let Some(c) = import {
            if c.access_key_id == user {
                return Err(BackendError::InvalidInput(format!(
                    "cannot import key {} for user {user}: it is the user's own access key, keys are service accounts",
                    c.access_key_id
                )));
            }
            // Importing the same key again sets its secret instead of failing on a duplicate.
            if self.service_accounts(user).await?.contains(&c.access_key_id) {
                self.set_service_account_secret(user, c).await?;
                return Ok(c.clone());
            }
        }
        let creds = match import {
            Some(c) => c.clone(),
            None => Credentials {
                access_key_id: http::generate_access_key(BACKEND)?,
                secret_access_key: http::generate_secret(BACKEND)?,
            },
        };
        self.record_new_key(user, &creds.access_key_id).await?;
        self.add_service_account(user, &creds).await?;
        Ok(creds)
    }

    async fn delete_key(&self, user: &str, access_key_id: &str) -> Result<()> {
        // Only a key of this user is removed: another user's service account is not ours to
        // revoke through this user.
        if !self.service_accounts(user).await?.iter().any(|k| k == access_key_id) {
            return Ok(());
        }
        self.delete_service_account(user, access_key_id).await?;
        self.record_key_gone(user, access_key_id).await
    }

    async fn set_grants(&self, user: &str, grants: &[Grant]) -> Result<Change> {
        let info = self.require_user(user).await?;
        let name = policy_name(user);
        let attached = info.policies();
        let mut change = Change::Unchanged;
        // Any other policy (an adopted user's, or one attached by hand) would grant more than
        // asked: the user's grants are exactly ours.
        let others: Vec<&str> = attached.iter().map(String::as_str).filter(|p| *p != name).collect();
        if !others.is_empty() {
            self.associate(user, &others, false).await?;
            change = Change::Updated;
        }
        match user_policy_document(grants) {
            Some(doc) => {
                let wanted: Vec<Grant> = policy::normalise(grants)
                    .into_iter()
                    .map(|(bucket, permission)| Grant { bucket, permission })
                    .collect();
                let current = self.canned_policy(&name).await?;
                if current.as_ref().and_then(grants_from_user_policy) != Some(wanted) {
                    self.put_canned_policy(&name, &doc).await?;
                    change = Change::Updated;
                }
                if !attached.contains(&name) {
                    self.associate(user, &[&name], true).await?;
                    change = Change::Updated;
                }
            }
            None => {
                if attached.contains(&name) {
                    self.associate(user, &[&name], false).await?;
                    change = Change::Updated;
                }
                if self.canned_policy(&name).await?.is_some() {
                    self.remove_canned_policy(&name).await?;
                    change = Change::Updated;
                }
            }
        }
        Ok(change)
    }

    fn compat(&self) -> Result<&dyn CompatStore> {
        Ok(self)
    }

    async fn release_claim(&self, subject: Subject, name: &str, owner: &Owner) -> Result<()> {
        self.markers.release_held(subject, name, owner).await
    }

    async fn holder(&self, subject: Subject, name: &str) -> Result<Option<Owner>> {
        self.markers.holder(subject, name).await
    }

    async fn delete_user(&self, name: &str) -> Result<()> {
        for key in self.service_accounts(name).await? {
            self.delete_service_account(name, &key).await?;
        }
        let policy = policy_name(name);
        if let Some(info) = self.user_info(name).await?
            && info.policies().contains(&policy)
        {
            self.associate(name, &[&policy], false).await?;
        }
        self.remove_canned_policy(&policy).await?;
        self.remove_user(name).await?;
        self.markers.release(Subject::User, name).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::Permission;

    #[test]
    fn a_user_policy_grants_and_denies_the_users_own_say_over_its_keys() {
        let grants = vec![
            Grant { bucket: "a".into(), permission: Permission::ReadOnly },
            Grant { bucket: "b".into(), permission: Permission::ReadWrite },
        ];
        let doc = user_policy_document(&grants).unwrap();
        let statements = doc["Statement"].as_array().unwrap();
        assert_eq!(statements.last().unwrap(), &deny_key_actions());
        assert_eq!(grants_from_user_policy(&doc), Some(grants.clone()));
        assert!(user_policy_document(&[]).is_none());

        // A document of an older version (no denial) is rewritten, as is one with the denial
        // widened, narrowed or given twice.
        let older = policy::policy_document("aws", &grants).unwrap();
        assert_eq!(grants_from_user_policy(&older), None);
        let edit = |f: &dyn Fn(&mut Vec<serde_json::Value>)| {
            let mut d = doc.clone();
            f(d["Statement"].as_array_mut().unwrap());
            grants_from_user_policy(&d)
        };
        assert_eq!(edit(&|s| s.push(deny_key_actions())), None);
        assert_eq!(
            edit(&|s| s.last_mut().unwrap()["Action"] = serde_json::json!(["admin:CreateServiceAccount"])),
            None
        );
        assert_eq!(edit(&|s| s.last_mut().unwrap()["Effect"] = serde_json::json!("Allow")), None);
        assert_eq!(edit(&|s| s.last_mut().unwrap()["Resource"] = serde_json::json!(["arn:aws:s3:::*"])), None);
        // Reordered, it is still ours.
        let mut actions = KEY_ACTIONS.to_vec();
        actions.reverse();
        assert_eq!(edit(&|s| s.rotate_right(1)), Some(grants.clone()));
        assert_eq!(edit(&|s| s.last_mut().unwrap()["Action"] = serde_json::json!(actions)), Some(grants.clone()));
    }
}
