//! Garage: buckets, keys and permissions through its admin API v2 (JSON, bearer token); object
//! operations (ownership markers, emptying buckets) over S3 with the operator's own key.
//!
//! Garage has no users, only access keys with a free-form name: a user is the set of keys whose
//! name is the user's name, and a grant is a read/write permission of each of those keys on the
//! bucket. Garage has neither bucket tags nor anything but a name on keys, so ownership is
//! recorded in marker objects (see [`Garage`]).
//!
//! This file holds the backend and its markers; `admin` the admin API's wire types and calls,
//! `compat` compatibility mode.

mod admin;
mod compat;

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;

use self::admin::{Perm, Quotas, grants_of};
use crate::{
    Backend, BackendError, Result, SecretString,
    compat::CompatStore,
    http,
    ledger::{Conditional, Ledger, Subject},
    model::{
        BackendKind, BucketDeletion, BucketInfo, BucketSpec, Capabilities, Change, Credentials, Grant, Owner, UserInfo,
        UserSpec, Versioning,
    },
    recorded_grants,
    s3ops::{COUNT_LIMIT, S3},
};

const BACKEND: &str = "garage";

/// Where and as whom to reach Garage.
#[derive(Clone, Debug)]
pub struct GarageConfig {
    /// S3 endpoint (`http://host:3900`).
    pub endpoint: String,
    /// Garage's `s3_region`; S3 requests are signed for it.
    pub region: String,
    /// An S3 access key of the operator's own, used for data operations: ownership markers and
    /// emptying buckets before a forced delete. The backend gives it access to every bucket it
    /// creates or adopts.
    pub access_key: String,
    /// Its secret key.
    pub secret_key: SecretString,
    /// Admin API endpoint (`http://host:3903`).
    pub admin_endpoint: String,
    /// Admin API bearer token.
    pub admin_token: SecretString,
    /// Bucket holding the ownership markers; created on first use, with only the operator's key
    /// allowed on it.
    pub marker_bucket: String,
    /// CA certificates (PEM) the store's https certificates are checked against, besides the
    /// system's roots.
    pub ca_bundle: Option<String>,
}

/// The Garage backend.
// Ownership: the operator writes, in a bucket only its own key may use, an object
// `buckets/<name>` or `users/<name>` whose metadata holds namespace, name and uid of the claim.
// A bucket or key set without it was made outside the operator (NotOwned unless adopted).
// Buckets write the marker before creating the bucket, so a bucket never exists unmarked by our
// doing; a marker whose bucket is gone still names its claim until delete_bucket removes it.
//
// Users: a user with no key is its marker alone (ensure_user makes no key, so no secret nobody
// holds). The user marker's body also records the user's grants, so a key created later gets
// them at once (rotation keeps access) without reading the other keys' permissions.
//
// Cost: each admin call costs Garage ~15 ms of CPU (Argon2 token check) while S3 calls are
// cheap, so markers are read over S3 first and the admin API is asked only what S3 cannot say;
// the steady-state ensure_user makes no admin call, ensure_bucket one.
#[derive(Debug, Clone)]
pub struct Garage {
    s3: S3,
    http: reqwest::Client,
    markers: Ledger,
    config: GarageConfig,
}

/// A user's marker: the claim, and the grants last set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UserMarker {
    owner: Owner,
    grants: Vec<Grant>,
}

impl Garage {
    /// A backend for the Garage cluster described by `config`. Makes no call.
    pub fn new(config: GarageConfig) -> Result<Self> {
        let ca = config.ca_bundle.as_deref();
        let s3 = S3::connect(BACKEND, &config.endpoint, &config.region, &config.access_key, &config.secret_key, ca)?;
        let http = http::client(BACKEND, ca)?;
        // Garage 2.5 ignores `If-None-Match: *` (measured: four concurrent conditional writes of
        // one key all succeed).
        let markers = Ledger::new(s3.client().clone(), BACKEND, config.marker_bucket.clone(), Conditional::Ignored);
        Ok(Self { s3, http, markers, config })
    }

    /// The bucket that holds the ownership markers.
    pub fn marker_bucket(&self) -> &str {
        &self.config.marker_bucket
    }

    // ---- markers ----

    /// Runs a marker read. A refusal means our key may not use the marker bucket yet: most
    /// often it is brand new and another reconcile is between its CreateBucket and the grant
    /// (`ensure_marker_bucket` makes two calls). Make the bucket usable and read once more;
    /// reported as Forbidden, the first reconciles of a rollout waited for the resync.
    async fn read_marker<T, F, Fut>(&self, read: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match read().await {
            Err(BackendError::Forbidden(_)) => {
                self.ensure_marker_bucket().await?;
                read().await
            }
            other => other,
        }
    }

    async fn read_bucket_marker(&self, bucket: &str) -> Result<Option<Owner>> {
        self.read_marker(|| self.markers.holder(Subject::Bucket, bucket)).await
    }

    /// Claims a name in the ledger; see [`Ledger::claim`].
    async fn claim_marker(&self, subject: Subject, name: &str, owner: &Owner) -> Result<bool> {
        // No marker bucket yet, or our key is not allowed on it: fix that and retry.
        self.read_marker(|| self.markers.claim(subject, name, owner, || self.ensure_marker_bucket())).await
    }

    async fn read_user_marker(&self, user: &str) -> Result<Option<UserMarker>> {
        let marker = self.read_marker(|| self.markers.read(Subject::User, user)).await?;
        Ok(marker.and_then(|m| m.owner.map(|owner| UserMarker { owner, grants: recorded_grants::decode(&m.body) })))
    }

    /// Rewrites the grants a user's claim records; the caller holds the claim.
    async fn write_user_marker(&self, user: &str, marker: &UserMarker) -> Result<()> {
        let body = recorded_grants::encode(&marker.grants)?;
        self.markers.record(Subject::User, user, &marker.owner, body, || self.ensure_marker_bucket()).await
    }
}

#[async_trait]
impl Backend for Garage {
    fn kind(&self) -> BackendKind {
        BackendKind::Garage
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Garage answers 501 to PutBucketVersioning, PutBucketTagging and object lock.
            versioning: false,
            tags: false,
            object_lock: false,
            quota_max_size: true,
            quota_max_objects: true,
            // A key with only the read flag can list and get, not put or delete.
            read_only_grants: true,
            multiple_keys: true,
            import_credentials: true,
        }
    }

    async fn health(&self) -> Result<()> {
        if self.cluster_status().await? == "unavailable" {
            return Err(BackendError::Unavailable { backend: BACKEND, cause: "cluster health is unavailable".into() });
        }
        // Proves the S3 key too, cheaply (no Argon2 on Garage's side, no listing): a marker
        // bucket not made yet is answered 404 only to a valid key, and a 403 (bad key, or a
        // marker bucket our key lost access to) is worth reporting either way.
        self.s3.bucket_exists(&self.config.marker_bucket).await.map(|_| ())
    }

    async fn describe_bucket(&self, name: &str) -> Result<Option<BucketInfo>> {
        let Some(info) = self.find_bucket(name).await? else {
            return Ok(None);
        };
        let owner = self.read_bucket_marker(name).await?;
        Ok(Some(BucketInfo {
            name: name.to_string(),
            owner,
            versioning: None,
            tags: BTreeMap::new(),
            quota: Some(info.quotas.into()),
        }))
    }

    async fn ensure_bucket(&self, spec: &BucketSpec, adopt: bool) -> Result<Change> {
        let name = spec.name.as_str();
        let what = format!("bucket {name}");
        self.markers.refuse_own_bucket(name)?;
        let change = match self.find_bucket(name).await? {
            Some(info) => {
                let marker = self.read_bucket_marker(name).await?;
                let mut change = Change::Unchanged;
                if Owner::check_claim(&what, &marker, &spec.owner, adopt)? {
                    self.claim_marker(Subject::Bucket, name, &spec.owner).await?;
                    change = Change::Updated;
                }
                if !info.global_aliases.iter().any(|a| a == name) {
                    self.add_global_alias(&info.id, name, &what).await?;
                    change = Change::Updated;
                }
                if self.ensure_operator_access(&info, &what).await? {
                    change = Change::Updated;
                }
                if let Some(quota) = spec.quota
                    && Quotas::from(quota) != info.quotas
                {
                    self.set_quotas(&info.id, quota.into(), &what).await?;
                    change = Change::Updated;
                }
                change
            }
            None => {
                // A claim without a bucket (removed behind our back) still names its holder;
                // the claim comes first, so a bucket without one would look foreign for ever.
                let claimed = self.claim_marker(Subject::Bucket, name, &spec.owner).await?;
                let created = match self.create_with_access(name, &what).await {
                    Ok(created) => created,
                    Err(BackendError::Conflict { .. }) => {
                        // Someone else created it between our read and our create: not ours.
                        if claimed {
                            self.markers.release_own(Subject::Bucket, name, &spec.owner).await?;
                        }
                        return Err(BackendError::NotOwned { what, detail: "created outside the operator".into() });
                    }
                    Err(e) => return Err(e),
                };
                // Normally a no-op; if it fails, the next ensure finds the bucket marked and
                // gives access then.
                self.ensure_operator_access(&created, &what).await?;
                if let Some(quota) = spec.quota
                    && Quotas::from(quota) != created.quotas
                {
                    self.set_quotas(&created.id, quota.into(), &what).await?;
                }
                Change::Created
            }
        };
        if spec.object_lock {
            return Err(BackendError::Unsupported { backend: BACKEND, feature: "object lock" });
        }
        // Garage keeps no versions, which is what Suspended asks for.
        if spec.versioning == Some(Versioning::Enabled) {
            return Err(BackendError::Unsupported { backend: BACKEND, feature: "versioning" });
        }
        if !spec.tags.is_empty() {
            return Err(BackendError::Unsupported { backend: BACKEND, feature: "tags" });
        }
        Ok(change)
    }

    async fn delete_bucket(&self, name: &str, force: bool) -> Result<BucketDeletion> {
        let what = format!("bucket {name}");
        let Some(info) = self.find_bucket(name).await? else {
            // A marker left by an earlier attempt that failed after the bucket went.
            self.markers.release(Subject::Bucket, name).await?;
            return Ok(BucketDeletion::AlreadyGone);
        };
        self.ensure_operator_access(&info, &what).await?;
        if force {
            self.s3.empty_unversioned_bucket(name).await?;
        } else {
            let objects = self.s3.count_current_objects(name, COUNT_LIMIT).await?;
            if objects > 0 {
                return Ok(BucketDeletion::NotEmpty { objects });
            }
        }
        match self.delete_bucket_by_id(&info.id, &what).await {
            Ok(_) => {}
            Err(BackendError::NotFound { .. }) => {
                self.markers.release(Subject::Bucket, name).await?;
                return Ok(BucketDeletion::AlreadyGone);
            }
            // Written to meanwhile.
            Err(BackendError::Conflict { .. }) if !force => {
                let objects = self.s3.count_current_objects(name, COUNT_LIMIT).await?;
                return Ok(BucketDeletion::NotEmpty { objects: objects.max(1) });
            }
            Err(e) => return Err(e),
        }
        self.markers.release(Subject::Bucket, name).await?;
        Ok(BucketDeletion::Deleted)
    }

    async fn describe_user(&self, name: &str) -> Result<Option<UserInfo>> {
        let marker = self.read_user_marker(name).await?;
        let keys = self.user_keys(name).await?;
        if marker.is_none() && keys.is_empty() {
            return Ok(None);
        }
        let grants = if keys.is_empty() {
            marker.as_ref().map(|m| m.grants.clone()).unwrap_or_default()
        } else {
            grants_of(&keys)
        };
        let ids = keys.into_iter().map(|k| k.access_key_id).collect();
        Ok(Some(UserInfo {
            name: name.to_string(),
            owner: marker.map(|m| m.owner),
            access_key_ids: ids,
            grants,
            legacy_grants: Vec::new(),
        }))
    }

    async fn ensure_user(&self, spec: &UserSpec, adopt: bool) -> Result<Change> {
        let name = spec.name.as_str();
        let what = format!("user {name}");
        if name == self.config.access_key {
            // A user's keys are named after it, so this would not reach the operator's key; but
            // a user so named would pass for the operator's identity wherever it is shown.
            return Err(BackendError::NotOwned { what, detail: "the operator's own admin key".into() });
        }
        if let Some(marker) = self.read_user_marker(name).await? {
            Owner::check_claim(&what, &Some(marker.owner), &spec.owner, adopt)?;
            return Ok(Change::Unchanged);
        }
        // No marker: keys of that name were made outside the operator.
        let keys = self.user_keys(name).await?;
        let foreign = !keys.is_empty();
        if foreign {
            Owner::check_claim(&what, &None, &spec.owner, adopt)?;
            // Adoption never reaches a key that may create buckets.
            if keys.iter().any(|k| k.permissions.create_bucket) {
                return Err(BackendError::NotOwned { what, detail: "a privileged key (may create buckets)".into() });
            }
        }
        // An empty body records no grants yet.
        self.claim_marker(Subject::User, name, &spec.owner).await?;
        Ok(if foreign { Change::Updated } else { Change::Created })
    }

    async fn create_key(&self, user: &str, import: Option<&Credentials>) -> Result<Credentials> {
        let what = format!("user {user}");
        let grants = match self.read_user_marker(user).await? {
            Some(marker) => marker.grants,
            None => {
                let keys = self.user_keys(user).await?;
                if keys.is_empty() {
                    return Err(BackendError::not_found(what));
                }
                grants_of(&keys)
            }
        };
        let creds = match import {
            Some(c) if c.access_key_id == self.config.access_key => {
                return Err(BackendError::InvalidInput(format!(
                    "cannot import the operator's own key {} for user {user}",
                    c.access_key_id
                )));
            }
            Some(c) => self.import_key(user, c).await?,
            None => self.create_key_named(user, &what).await?,
        };
        if let Err(e) = self.apply_grants(&creds.access_key_id, &grants).await {
            // A key without the user's grants would be handed out broken: take it back.
            if import.is_none() {
                let _ = self.delete_key_by_id(&creds.access_key_id).await;
            }
            return Err(e);
        }
        Ok(creds)
    }

    async fn delete_key(&self, user: &str, access_key_id: &str) -> Result<()> {
        if access_key_id == self.config.access_key {
            return Ok(());
        }
        let key = match self.key_info(access_key_id, false).await {
            Ok(k) => k,
            Err(BackendError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        // Another user's key is not this user's to delete: for this user it is gone.
        if key.name != user {
            return Ok(());
        }
        self.delete_key_by_id(access_key_id).await
    }

    async fn set_grants(&self, user: &str, grants: &[Grant]) -> Result<Change> {
        let wanted = recorded_grants::normalize(grants);
        let marker = self.read_user_marker(user).await?;
        let keys = self.user_keys(user).await?;
        if marker.is_none() && keys.is_empty() {
            return Err(BackendError::not_found(format!("user {user}")));
        }
        let mut change = Change::Unchanged;
        if !keys.is_empty() {
            // Bucket ids: from the keys' current permissions, else one ListBuckets.
            let mut ids_by_name: BTreeMap<String, String> = keys
                .iter()
                .flat_map(|k| k.buckets.iter())
                .flat_map(|b| b.global_aliases.iter().map(|a| (a.clone(), b.id.clone())))
                .collect();
            if wanted.iter().any(|g| !ids_by_name.contains_key(&g.bucket)) {
                ids_by_name = self.bucket_ids().await?;
            }
            let mut desired: BTreeMap<&str, (Perm, &str)> = BTreeMap::new();
            for g in &wanted {
                let id = ids_by_name
                    .get(&g.bucket)
                    .ok_or_else(|| BackendError::not_found(format!("bucket {}", g.bucket)))?;
                desired.insert(id.as_str(), (Perm::of(g.permission), g.bucket.as_str()));
            }
            for key in &keys {
                let current: BTreeMap<&str, Perm> =
                    key.buckets.iter().map(|b| (b.id.as_str(), b.permissions)).collect();
                let bucket_ids: BTreeSet<&str> = current.keys().chain(desired.keys()).copied().collect();
                for bucket_id in bucket_ids {
                    let have = current.get(bucket_id).copied().unwrap_or(Perm::NONE);
                    let (want, bucket_name) = desired.get(bucket_id).copied().unwrap_or((Perm::NONE, bucket_id));
                    let what = format!("bucket {bucket_name} for user {user}");
                    let extra = have.minus(want);
                    if extra.any() {
                        self.deny(bucket_id, &key.access_key_id, extra, &what).await?;
                        change = Change::Updated;
                    }
                    let missing = want.minus(have);
                    if missing.any() {
                        self.allow(bucket_id, &key.access_key_id, missing, &what).await?;
                        change = Change::Updated;
                    }
                }
            }
        }
        if let Some(marker) = marker
            && marker.grants != wanted
        {
            self.write_user_marker(user, &UserMarker { owner: marker.owner, grants: wanted }).await?;
            change = Change::Updated;
        }
        Ok(change)
    }

    fn compat(&self) -> Result<&dyn CompatStore> {
        Ok(self)
    }

    async fn release_claim(&self, subject: Subject, name: &str, owner: &Owner) -> Result<()> {
        self.read_marker(|| self.markers.release_held(subject, name, owner)).await
    }

    async fn holder(&self, subject: Subject, name: &str) -> Result<Option<Owner>> {
        self.read_marker(|| self.markers.holder(subject, name)).await
    }

    async fn delete_user(&self, name: &str) -> Result<()> {
        // Deleting a key also removes its permissions on every bucket.
        for key in self.user_keys(name).await? {
            self.delete_key_by_id(&key.access_key_id).await?;
        }
        self.markers.release(Subject::User, name).await
    }
}
