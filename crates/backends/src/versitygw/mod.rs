//! Versity S3 Gateway: users are gateway accounts (role `user`, access key = user name) made
//! through its admin API on the S3 endpoint; buckets go through [`crate::claimed_buckets`] and
//! stay owned by the admin account; grants are statements of the buckets' policies (`grants`).
//! Compatibility mode keeps the older operator's model instead: the Secret's account owns its
//! bucket.
//!
//! This file holds the backend; `admin` the admin API's wire types and calls (with the shared
//! snapshots of its lists), `grants` the bucket policies, `compat` compatibility mode.

mod admin;
mod compat;
mod grants;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;

use self::admin::NewAccount;
use crate::{
    Backend, BackendError, Result, SecretString,
    claimed_buckets::ClaimedBuckets,
    claimed_users,
    compat::CompatStore,
    http,
    ledger::{ClaimLocks, Conditional, Ledger, Subject},
    model::{
        BackendKind, BucketDeletion, BucketInfo, BucketSpec, Capabilities, Change, Credentials, Grant, Owner, UserInfo,
        UserSpec,
    },
    s3ops::S3,
    snapshot::Snapshot,
};

const BACKEND: &str = "versitygw";

/// Where and as whom to reach the gateway.
#[derive(Clone, Debug)]
pub struct VersityGwConfig {
    /// S3 endpoint, which also serves the admin API (`http://host:7070`).
    pub endpoint: String,
    /// The gateway's `--region`; requests are signed for it.
    pub region: String,
    /// Access key of an account with role `admin` (the root account works).
    pub access_key: String,
    /// Its secret key.
    pub secret_key: SecretString,
    /// Bucket holding one marker object per user and bucket the operator created (see the
    /// comment on [`VersityGw`]); created on first use, owned by the admin account.
    pub marker_bucket: String,
    /// CA certificates (PEM) the store's https certificates are checked against, besides the
    /// system's roots.
    pub ca_bundle: Option<String>,
}

/// The VersityGW backend.
// Ownership of users: gateway accounts carry no tags or free-form fields, and a naming
// convention would let anyone with admin rights forge a claim by picking a name. So the
// operator writes, before it creates an account, an object `users/<name>` in a dedicated
// bucket owned by the admin account, whose metadata holds namespace, name and uid. Only admins
// can write there. An account without that object was made outside the operator and is
// `NotOwned` unless adopted; an account removed behind our back is simply created again.
// Buckets carry their marker as tags; a `buckets/<name>` object written before a bucket is
// created lets a creation cut before its tags be recognised (see claimed_buckets).
#[derive(Debug, Clone)]
pub struct VersityGw {
    s3: S3,
    http: reqwest::Client,
    markers: Ledger,
    config: VersityGwConfig,
    // The gateway answers "does this account exist" and "who owns this bucket" only with a
    // list of everything: shared snapshots keep a resync of N objects at a few lists, not N.
    account_names: Arc<Snapshot<BTreeSet<String>>>,
    owners: Arc<Snapshot<BTreeMap<String, String>>>,
    // Serialise the read-change-write of one bucket's policy (see `grants`).
    policy_locks: ClaimLocks,
}

/// How long one `/list-users` or `/list-buckets` answer serves other reconciles. Long enough
/// to cover a burst of reconciles, short enough that a change made behind the operator's back
/// is seen at once by anyone looking a moment later.
const SNAPSHOT_TTL: Duration = Duration::from_secs(5);

impl VersityGw {
    /// A backend for the gateway described by `config`. Makes no call.
    pub fn new(config: VersityGwConfig) -> Result<Self> {
        let ca = config.ca_bundle.as_deref();
        let s3 = S3::connect(BACKEND, &config.endpoint, &config.region, &config.access_key, &config.secret_key, ca)?;
        let http = http::client(BACKEND, ca)?;
        let markers = Ledger::new(s3.client().clone(), BACKEND, config.marker_bucket.clone(), Conditional::Sequential);
        Ok(Self {
            s3,
            http,
            markers,
            config,
            account_names: Arc::new(Snapshot::new(SNAPSHOT_TTL)),
            owners: Arc::new(Snapshot::new(SNAPSHOT_TTL)),
            policy_locks: ClaimLocks::default(),
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

    /// Why an existing account is privileged: any role but `user`.
    async fn account_privilege(&self, name: &str) -> Result<Option<String>> {
        Ok(self.accounts().await?.into_iter().find(|a| a.access == name).and_then(|a| {
            (a.role != "user").then(|| format!("role {}", if a.role.is_empty() { "unset" } else { a.role.as_str() }))
        }))
    }
}

#[async_trait]
impl Backend for VersityGw {
    fn kind(&self) -> BackendKind {
        BackendKind::Versitygw
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Only when the gateway runs with --versioning-dir; otherwise PutBucketVersioning
            // fails and is reported for that setting alone.
            versioning: true,
            tags: true,
            object_lock: true,
            quota_max_size: false,
            quota_max_objects: false,
            // Bucket policies carry either permission.
            read_only_grants: true,
            multiple_keys: false,
            // Only with the access key equal to the user name (the gateway's account id).
            import_credentials: true,
        }
    }

    async fn health(&self) -> Result<()> {
        // An admin call: proves the gateway answers and our account has the admin role.
        self.list_accounts().await.map(|_| ())
    }

    async fn describe_bucket(&self, name: &str) -> Result<Option<BucketInfo>> {
        self.buckets().describe(name).await
    }

    async fn ensure_bucket(&self, spec: &BucketSpec, adopt: bool) -> Result<Change> {
        let change = self.buckets().ensure(spec, adopt).await?;
        if change == Change::Created {
            // Made with the admin credentials: the admin account owns it until a grant.
            self.owner_changed(&spec.name, Some(&self.config.access_key));
        }
        if spec.quota.is_some() {
            return Err(BackendError::Unsupported { backend: BACKEND, feature: "quota" });
        }
        Ok(change)
    }

    async fn delete_bucket(&self, name: &str, force: bool) -> Result<BucketDeletion> {
        let deletion = self.buckets().delete(name, force).await?;
        if deletion == BucketDeletion::Deleted {
            self.owner_changed(name, None);
        }
        Ok(deletion)
    }

    async fn describe_user(&self, name: &str) -> Result<Option<UserInfo>> {
        if !self.account_exists(name).await? {
            return Ok(None);
        }
        // One read of the record: the claim, and the buckets whose policies to look in.
        let (owner, recorded) = match self.markers.read(Subject::User, name).await? {
            Some(record) => (record.owner, crate::recorded_grants::decode(&record.body)),
            None => (None, Vec::new()),
        };
        let grants = self.policy_grants(name, recorded).await?;
        let legacy_grants = match &owner {
            Some(owner) => {
                let moved: BTreeSet<&str> = grants.iter().map(|g| g.bucket.as_str()).collect();
                self.owned_buckets(name, owner).await?.into_iter().filter(|b| !moved.contains(b.as_str())).collect()
            }
            None => Vec::new(),
        };
        // The account's one key is the user name itself.
        Ok(Some(UserInfo {
            name: name.to_string(),
            owner,
            access_key_ids: vec![name.to_string()],
            grants,
            legacy_grants,
        }))
    }

    async fn ensure_user(&self, spec: &UserSpec, adopt: bool) -> Result<Change> {
        let name = spec.name.as_str();
        let what = format!("user {name}");
        if name == self.config.access_key {
            return Err(BackendError::NotOwned { what, detail: "the operator's own admin account".into() });
        }
        // A new name is judged by the claim itself (one read under the ledger's lock).
        if self.account_exists(name).await? {
            return claimed_users::judge_existing(&self.markers, spec, adopt, "account", || {
                self.account_privilege(name)
            })
            .await;
        }
        // A claim without an account (deleted behind our back) still names its holder; the
        // claim comes first, so an account without one would look foreign for ever.
        let claimed = claimed_users::claim(&self.markers, Subject::User, name, &spec.owner).await?;
        // The account needs a secret; this one is kept nowhere, so the user has no usable
        // key until create_key sets one.
        let secret = http::generate_secret(BACKEND)?;
        let account = NewAccount { access: name, secret: secret.expose(), role: "user", user_id: None, group_id: None };
        match self.create_user(&account).await {
            Ok(()) => Ok(Change::Created),
            Err(BackendError::Conflict { .. }) => {
                // Someone else created it between our list and create: not ours.
                if claimed {
                    self.markers.release_own(Subject::User, name, &spec.owner).await?;
                }
                Err(BackendError::NotOwned { what, detail: "created outside the operator".into() })
            }
            Err(e) => Err(e),
        }
    }

    async fn create_key(&self, user: &str, import: Option<&Credentials>) -> Result<Credentials> {
        let secret = match import {
            Some(c) if c.access_key_id != user => {
                return Err(BackendError::InvalidInput(format!(
                    "VersityGW access keys are user names: cannot import key {} for user {user}",
                    c.access_key_id
                )));
            }
            Some(c) => c.secret_access_key.clone(),
            None => http::generate_secret(BACKEND)?,
        };
        self.set_secret(user, secret.expose()).await?;
        Ok(Credentials { access_key_id: user.to_string(), secret_access_key: secret })
    }

    async fn delete_key(&self, user: &str, access_key_id: &str) -> Result<()> {
        if access_key_id != user {
            return Ok(());
        }
        // The account's single key cannot be removed: replace its secret by one nobody knows.
        let secret = http::generate_secret(BACKEND)?;
        match self.set_secret(user, secret.expose()).await {
            Ok(()) | Err(BackendError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn set_grants(&self, user: &str, grants: &[Grant]) -> Result<Change> {
        if !self.account_exists(user).await? {
            return Err(BackendError::not_found(format!("user {user}")));
        }
        self.converge_grants(user, grants).await
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
        // First out of the policies: a statement outliving the account would grant a later
        // account of the same name.
        self.drop_grants(name).await?;
        // Buckets keep their owner's name after the account goes: hand them back first, so a
        // later account of the same name does not inherit them.
        // Listed now, not from the snapshot: a bucket missed here would stay with the name.
        for (bucket, owner) in self.list_bucket_owners().await? {
            if owner == name {
                self.hand_back(&bucket).await?;
            }
        }
        self.remove_user(name).await?;
        self.markers.release(Subject::User, name).await
    }
}
