//! Garage: buckets, keys and permissions through its admin API v2 (JSON, bearer token); object
//! operations (ownership markers, emptying buckets) over S3 with the operator's own key.
//!
//! Garage has no users, only access keys with a free-form name: a user is the set of keys whose
//! name is the user's name, and a grant is a read/write permission of each of those keys on the
//! bucket. Garage has neither bucket tags nor anything but a name on keys, so ownership is
//! recorded in marker objects (see [`Garage`]).

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    Backend, BackendError, Result, SecretString,
    compat::{AccountState, CompatAccount, CompatStore},
    http::{self, encode},
    ledger::{Conditional, Ledger, Subject},
    model::{
        BackendKind, BucketDeletion, BucketInfo, BucketSpec, Capabilities, Change, Credentials, Grant, Owner,
        Permission, Quota, UserInfo, UserSpec, Versioning,
    },
    s3ops::S3,
};

const BACKEND: &str = "garage";

/// Objects counted before a bucket is reported non-empty (the count is only informative).
const COUNT_LIMIT: u64 = 1000;

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

/// Permissions of a key on a bucket (`ApiBucketKeyPerm`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Perm {
    #[serde(default)]
    read: bool,
    #[serde(default)]
    write: bool,
    #[serde(default)]
    owner: bool,
}

impl Perm {
    const FULL: Perm = Perm { read: true, write: true, owner: true };
    const NONE: Perm = Perm { read: false, write: false, owner: false };

    fn of(permission: Permission) -> Perm {
        match permission {
            Permission::ReadWrite => Perm { read: true, write: true, owner: false },
            Permission::ReadOnly => Perm { read: true, write: false, owner: false },
        }
    }

    /// The grant these flags amount to: any write is reported as ReadWrite (never hide access).
    fn permission(self) -> Option<Permission> {
        match (self.read, self.write) {
            (_, true) => Some(Permission::ReadWrite),
            (true, false) => Some(Permission::ReadOnly),
            (false, false) => None,
        }
    }

    /// Flags set in `self` and not in `other`.
    fn minus(self, other: Perm) -> Perm {
        Perm { read: self.read && !other.read, write: self.write && !other.write, owner: self.owner && !other.owner }
    }

    fn any(self) -> bool {
        self.read || self.write || self.owner
    }

    fn covers(self, other: Perm) -> bool {
        !other.minus(self).any()
    }
}

/// `ApiBucketQuotas`: `null` is unlimited.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct Quotas {
    #[serde(default)]
    max_size: Option<u64>,
    #[serde(default)]
    max_objects: Option<u64>,
}

impl From<Quota> for Quotas {
    fn from(q: Quota) -> Self {
        Quotas { max_size: q.max_size_bytes, max_objects: q.max_objects }
    }
}

impl From<Quotas> for Quota {
    fn from(q: Quotas) -> Self {
        Quota { max_size_bytes: q.max_size, max_objects: q.max_objects }
    }
}

/// Reply of GetBucketInfo / CreateBucket (the fields used).
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct BucketDetails {
    id: String,
    #[serde(default)]
    global_aliases: Vec<String>,
    #[serde(default)]
    keys: Vec<BucketKey>,
    #[serde(default)]
    quotas: Quotas,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct BucketKey {
    access_key_id: String,
    #[serde(default)]
    permissions: Perm,
}

/// One entry of ListBuckets.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct BucketEntry {
    id: String,
    #[serde(default)]
    global_aliases: Vec<String>,
    #[serde(default)]
    local_aliases: Vec<LocalAlias>,
}

#[derive(Deserialize, Debug)]
struct LocalAlias {
    alias: String,
}

/// One entry of ListKeys.
#[derive(Deserialize, Debug)]
struct KeyEntry {
    id: String,
    #[serde(default)]
    name: String,
}

/// Reply of GetKeyInfo / CreateKey / ImportKey (the fields used).
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct KeyDetails {
    access_key_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    secret_access_key: Option<String>,
    #[serde(default)]
    expired: bool,
    #[serde(default)]
    buckets: Vec<KeyBucket>,
    #[serde(default)]
    permissions: KeyPermissions,
}

/// A key's own rights, beyond its buckets.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
struct KeyPermissions {
    #[serde(default)]
    create_bucket: bool,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct KeyBucket {
    id: String,
    #[serde(default)]
    global_aliases: Vec<String>,
    #[serde(default)]
    permissions: Perm,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PermChange<'a> {
    bucket_id: &'a str,
    access_key_id: &'a str,
    permissions: Perm,
}

/// Garage's error body.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// A grant as recorded in a user marker's body.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct StoredGrant {
    bucket: String,
    /// `rw` or `ro`.
    access: String,
}

/// A user's marker: the claim, and the grants last set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UserMarker {
    owner: Owner,
    grants: Vec<Grant>,
}

fn encode_grants(grants: &[Grant]) -> Result<Vec<u8>> {
    let stored: Vec<StoredGrant> = grants
        .iter()
        .map(|g| StoredGrant {
            bucket: g.bucket.clone(),
            access: match g.permission {
                Permission::ReadWrite => "rw".into(),
                Permission::ReadOnly => "ro".into(),
            },
        })
        .collect();
    serde_json::to_vec(&stored).map_err(|e| BackendError::InvalidInput(format!("user marker: {e}")))
}

/// Grants from a marker body; an empty body is no grants, and an unreadable one too (the next
/// set_grants writes it again).
fn decode_grants(body: &[u8]) -> Vec<Grant> {
    let stored: Vec<StoredGrant> = serde_json::from_slice(body).unwrap_or_default();
    let mut grants: Vec<Grant> = stored
        .into_iter()
        .filter_map(|g| {
            let permission = match g.access.as_str() {
                "rw" => Permission::ReadWrite,
                "ro" => Permission::ReadOnly,
                _ => return None,
            };
            Some(Grant { bucket: g.bucket, permission })
        })
        .collect();
    grants.sort();
    grants
}

/// Grants as one entry per bucket, sorted; a bucket named twice keeps its strongest permission.
fn normalize(grants: &[Grant]) -> Vec<Grant> {
    let mut by_bucket: BTreeMap<&str, Permission> = BTreeMap::new();
    for g in grants {
        let p = by_bucket.entry(g.bucket.as_str()).or_insert(g.permission);
        if g.permission == Permission::ReadWrite {
            *p = Permission::ReadWrite;
        }
    }
    by_bucket.into_iter().map(|(bucket, permission)| Grant { bucket: bucket.to_string(), permission }).collect()
}

/// The grants a set of keys hold, one per bucket (by first global alias), the strongest of
/// the keys'.
fn grants_of(keys: &[KeyDetails]) -> Vec<Grant> {
    let grants: Vec<Grant> = keys
        .iter()
        .flat_map(|k| k.buckets.iter())
        .filter_map(|b| {
            let permission = b.permissions.permission()?;
            let bucket = b.global_aliases.first().cloned().unwrap_or_else(|| b.id.clone());
            Some(Grant { bucket, permission })
        })
        .collect();
    normalize(&grants)
}

/// Why Garage cannot import these keys (what ImportKey of Garage 2.5 refuses), checked before
/// any call; `None` when it can. Never quotes the secret.
fn garage_key_problem(access_key: &str, secret_key: &str) -> Option<String> {
    let id_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if access_key.len() < 8 || !access_key.bytes().all(id_ok) {
        return Some(format!(
            "access key {access_key:?}: Garage imports only access keys of at least 8 characters from \
             A-Z, a-z, 0-9, '.', '_' and '-'; choose such a key, or use an S3User, whose keys Garage generates"
        ));
    }
    if secret_key.len() < 16 || !secret_key.bytes().all(|b| b.is_ascii_graphic()) {
        return Some(format!(
            "the secret key of access key {access_key}: Garage imports only secret keys of at least 16 printable \
             ASCII characters without spaces; choose such a secret, or use an S3User, whose keys Garage generates"
        ));
    }
    None
}

fn parse<T: DeserializeOwned>(text: &str, op: &str) -> Result<T> {
    http::parse_json(BACKEND, text.as_bytes(), op)
}

impl Garage {
    /// A backend for the Garage cluster described by `config`. Makes no call.
    pub fn new(config: GarageConfig) -> Result<Self> {
        let s3 = S3::connect(BACKEND, &config.endpoint, &config.region, &config.access_key, &config.secret_key);
        let http = http::client(BACKEND)?;
        // Garage 2.5 ignores `If-None-Match: *` (measured: four concurrent conditional writes of
        // one key all succeed).
        let markers = Ledger::new(s3.client().clone(), BACKEND, config.marker_bucket.clone(), Conditional::Ignored);
        Ok(Self { s3, http, markers, config })
    }

    /// The bucket that holds the ownership markers.
    pub fn marker_bucket(&self) -> &str {
        &self.config.marker_bucket
    }

    /// One admin API call; `body` is JSON. Returns the reply body of a 2xx answer.
    async fn admin(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        what: &str,
    ) -> Result<String> {
        let url = format!("{}{path_and_query}", self.config.admin_endpoint.trim_end_matches('/'));
        let op = path_and_query.split('?').next().unwrap_or(path_and_query).trim_start_matches("/v2/").to_string();
        let mut req = self.http.request(method, &url).bearer_auth(self.config.admin_token.expose());
        if let Some(body) = body {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        }
        let resp = req.send().await.map_err(|e| http::transport_error(BACKEND, &op, what, e))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| http::transport_error(BACKEND, &op, what, e))?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        let err: ErrorBody = serde_json::from_str(&text).unwrap_or_default();
        let detail = format!("{op} on {what}: HTTP {status}: {}: {}", err.code, err.message);
        Err(http::status_error(BACKEND, status, what, detail))
    }

    async fn get<T: DeserializeOwned>(&self, path_and_query: &str, what: &str) -> Result<T> {
        let text = self.admin(reqwest::Method::GET, path_and_query, None, what).await?;
        parse(&text, path_and_query.split('?').next().unwrap_or(path_and_query))
    }

    async fn post<B: Serialize>(&self, path_and_query: &str, body: &B, what: &str) -> Result<String> {
        self.admin(reqwest::Method::POST, path_and_query, Some(http::to_json(body)?), what).await
    }

    // ---- buckets ----

    /// The bucket known by `name`: its global alias, or else a local alias of some key (what
    /// a key with the right to create buckets gets from an S3 CreateBucket). Global first:
    /// it costs one call, and it is what the operator's buckets have.
    async fn find_bucket(&self, name: &str) -> Result<Option<BucketDetails>> {
        let what = format!("bucket {name}");
        match self.get(&format!("/v2/GetBucketInfo?globalAlias={}", encode(name)), &what).await {
            Ok(info) => return Ok(Some(info)),
            Err(BackendError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let list: Vec<BucketEntry> = self.get("/v2/ListBuckets", "buckets").await?;
        let Some(entry) = list.into_iter().find(|b| b.local_aliases.iter().any(|a| a.alias == name)) else {
            return Ok(None);
        };
        match self.get(&format!("/v2/GetBucketInfo?id={}", encode(&entry.id)), &what).await {
            Ok(info) => Ok(Some(info)),
            Err(BackendError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Global alias → bucket id, for every bucket.
    async fn bucket_ids(&self) -> Result<BTreeMap<String, String>> {
        let list: Vec<BucketEntry> = self.get("/v2/ListBuckets", "buckets").await?;
        Ok(list.into_iter().flat_map(|b| b.global_aliases.into_iter().map(move |a| (a, b.id.clone()))).collect())
    }

    async fn allow(&self, bucket_id: &str, key: &str, permissions: Perm, what: &str) -> Result<()> {
        let body = PermChange { bucket_id, access_key_id: key, permissions };
        self.post("/v2/AllowBucketKey", &body, what).await.map(|_| ())
    }

    async fn deny(&self, bucket_id: &str, key: &str, permissions: Perm, what: &str) -> Result<()> {
        let body = PermChange { bucket_id, access_key_id: key, permissions };
        self.post("/v2/DenyBucketKey", &body, what).await.map(|_| ())
    }

    /// Gives the operator's key read, write and owner on the bucket unless it has them, so it
    /// can empty it. True when a write was made.
    async fn ensure_operator_access(&self, info: &BucketDetails, what: &str) -> Result<bool> {
        let has = info
            .keys
            .iter()
            .find(|k| k.access_key_id == self.config.access_key)
            .is_some_and(|k| k.permissions.covers(Perm::FULL));
        if has {
            return Ok(false);
        }
        self.allow(&info.id, &self.config.access_key, Perm::FULL, what).await?;
        Ok(true)
    }

    async fn set_quotas(&self, id: &str, quotas: Quotas, what: &str) -> Result<()> {
        #[derive(Serialize)]
        struct Body {
            quotas: Quotas,
        }
        self.post(&format!("/v2/UpdateBucket?id={}", encode(id)), &Body { quotas }, what).await.map(|_| ())
    }

    // ---- markers ----

    /// CreateBucket with a global alias. The operator's key gets its access in the same call, as
    /// a local alias of the same name (one admin call saved), unless the key still holds that
    /// alias: Garage keeps it after the bucket is deleted with the admin API, and then refuses
    /// the call ("Local alias already exists"); the bucket is made with its global alias alone
    /// and the caller's `ensure_operator_access` grants the key.
    async fn create_with_access(&self, name: &str, what: &str) -> Result<String> {
        let body = serde_json::json!({
            "globalAlias": name,
            "localAlias": { "accessKeyId": self.config.access_key, "alias": name, "allow": Perm::FULL },
        });
        match self.post("/v2/CreateBucket", &body, what).await {
            Err(BackendError::InvalidInput(m)) if m.contains("Local alias already exists") => {
                self.post("/v2/CreateBucket", &serde_json::json!({ "globalAlias": name }), what).await
            }
            other => other,
        }
    }

    /// Creates the marker bucket if missing and lets the operator's key use it.
    async fn ensure_marker_bucket(&self) -> Result<()> {
        let name = self.config.marker_bucket.as_str();
        let what = format!("marker bucket {name}");
        let path = format!("/v2/GetBucketInfo?globalAlias={}", encode(name));
        let info: BucketDetails = match self.get(&path, &what).await {
            Ok(info) => info,
            Err(BackendError::NotFound { .. }) => {
                match self.post("/v2/CreateBucket", &serde_json::json!({ "globalAlias": name }), &what).await {
                    Ok(text) => parse(&text, "CreateBucket")?,
                    // Made meanwhile by another replica of the operator.
                    Err(BackendError::Conflict { .. }) => self.get(&path, &what).await?,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        self.ensure_operator_access(&info, &what).await.map(|_| ())
    }

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
        Ok(marker.and_then(|m| m.owner.map(|owner| UserMarker { owner, grants: decode_grants(&m.body) })))
    }

    /// Rewrites the grants a user's claim records; the caller holds the claim.
    async fn write_user_marker(&self, user: &str, marker: &UserMarker) -> Result<()> {
        let body = encode_grants(&marker.grants)?;
        self.markers.record(Subject::User, user, &marker.owner, body, || self.ensure_marker_bucket()).await
    }

    // ---- keys ----

    /// The keys named `user`, with their permissions. The operator's own key never counts,
    /// whatever its name.
    // GetKeyInfo?search matches keys whose name equals the pattern (ignoring case) or whose id
    // starts with it, and answers 400 when several match: so one call settles the common case
    // of a user with a single key, and ListKeys + one GetKeyInfo per key is the fallback.
    async fn user_keys(&self, user: &str) -> Result<Vec<KeyDetails>> {
        let what = format!("keys of user {user}");
        let mine = |k: &KeyDetails| k.name == user && k.access_key_id != self.config.access_key;
        match self.get::<KeyDetails>(&format!("/v2/GetKeyInfo?search={}", encode(user)), &what).await {
            // The only candidate: if it is not named `user`, no key is.
            Ok(k) => return Ok(if mine(&k) { vec![k] } else { Vec::new() }),
            Err(BackendError::NotFound { .. }) => return Ok(Vec::new()),
            Err(BackendError::InvalidInput(_)) => {}
            Err(e) => return Err(e),
        }
        let list: Vec<KeyEntry> = self.get("/v2/ListKeys", "keys").await?;
        let mut keys = Vec::new();
        for entry in list.iter().filter(|k| k.name == user && k.id != self.config.access_key) {
            match self.key_info(&entry.id, false).await {
                Ok(k) => keys.push(k),
                // Deleted meanwhile.
                Err(BackendError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(keys)
    }

    async fn key_info(&self, id: &str, show_secret: bool) -> Result<KeyDetails> {
        let mut path = format!("/v2/GetKeyInfo?id={}", encode(id));
        if show_secret {
            path.push_str("&showSecretKey=true");
        }
        self.get(&path, &format!("key {id}")).await
    }

    async fn delete_key_by_id(&self, id: &str) -> Result<()> {
        match self
            .admin(reqwest::Method::POST, &format!("/v2/DeleteKey?id={}", encode(id)), None, &format!("key {id}"))
            .await
        {
            Ok(_) | Err(BackendError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Gives a fresh key the user's grants; buckets that are gone are skipped.
    async fn apply_grants(&self, key: &str, grants: &[Grant]) -> Result<()> {
        if grants.is_empty() {
            return Ok(());
        }
        let ids = self.bucket_ids().await?;
        for g in grants {
            if let Some(id) = ids.get(&g.bucket) {
                self.allow(id, key, Perm::of(g.permission), &format!("bucket {}", g.bucket)).await?;
            }
        }
        Ok(())
    }

    async fn import_key(&self, user: &str, creds: &Credentials) -> Result<Credentials> {
        let id = creds.access_key_id.as_str();
        let what = format!("key {id} of user {user}");
        let body = serde_json::json!({
            "accessKeyId": id,
            "secretAccessKey": creds.secret_access_key.expose(),
            "name": user,
        });
        match self.post("/v2/ImportKey", &body, &what).await {
            Ok(_) => Ok(creds.clone()),
            Err(BackendError::Conflict { .. }) => {
                // A retried import of the same key is success; anything else keeps the id taken
                // (Garage never lets a deleted key id be imported again).
                let existing = match self.key_info(id, true).await {
                    Ok(k) => Some(k),
                    Err(BackendError::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                };
                match existing {
                    Some(k)
                        if k.name == user
                            && k.secret_access_key.as_deref() == Some(creds.secret_access_key.expose()) =>
                    {
                        Ok(creds.clone())
                    }
                    _ => Err(BackendError::Conflict {
                        what,
                        detail: "the access key id is taken, or was used by a deleted key (Garage never reuses one)"
                            .into(),
                    }),
                }
            }
            Err(e) => Err(e),
        }
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
        #[derive(Deserialize)]
        struct Health {
            status: String,
        }
        let health: Health = self.get("/v2/GetClusterHealth", "cluster").await?;
        if health.status == "unavailable" {
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
        if name == self.config.marker_bucket {
            return Err(BackendError::NotOwned { what, detail: "the operator's marker bucket".into() });
        }
        let change = match self.find_bucket(name).await? {
            Some(info) => {
                let marker = self.read_bucket_marker(name).await?;
                let mut change = Change::Unchanged;
                if Owner::check_claim(&what, &marker, &spec.owner, adopt)? {
                    self.claim_marker(Subject::Bucket, name, &spec.owner).await?;
                    change = Change::Updated;
                }
                if !info.global_aliases.iter().any(|a| a == name) {
                    // Made over S3, it has only its creator's local alias: the global one lets
                    // every granted key reach it by name.
                    let body = serde_json::json!({ "bucketId": info.id, "globalAlias": name });
                    self.post("/v2/AddBucketAlias", &body, &what).await?;
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
                    Ok(text) => parse::<BucketDetails>(&text, "CreateBucket")?,
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
        match self.admin(reqwest::Method::POST, &format!("/v2/DeleteBucket?id={}", encode(&info.id)), None, &what).await
        {
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
        Ok(Some(UserInfo { name: name.to_string(), owner: marker.map(|m| m.owner), access_key_ids: ids, grants }))
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
            None => {
                let text = self.post("/v2/CreateKey", &serde_json::json!({ "name": user }), &what).await?;
                let key: KeyDetails = parse(&text, "CreateKey")?;
                let secret = key.secret_access_key.ok_or_else(|| BackendError::Protocol {
                    backend: BACKEND,
                    detail: format!("CreateKey on {what}: no secret in the reply"),
                })?;
                Credentials { access_key_id: key.access_key_id, secret_access_key: SecretString::new(secret) }
            }
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
        let wanted = normalize(grants);
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

impl Garage {
    /// The keys (never the operator's) holding read, write and owner on the bucket, sorted.
    fn compat_owners<'a>(&self, info: &'a BucketDetails) -> Vec<&'a str> {
        let mut owners: Vec<&str> = info
            .keys
            .iter()
            .filter(|k| k.access_key_id != self.config.access_key && k.permissions.covers(Perm::FULL))
            .map(|k| k.access_key_id.as_str())
            .collect();
        owners.sort_unstable();
        owners
    }
}

/// Compatibility mode on Garage: an account is a key imported with the Secret's id and secret
/// (named after its id); owning a bucket is holding read, write and owner on it. Garage cannot
/// change a key's secret, so a changed secret is refused with what to do instead.
#[async_trait]
impl CompatStore for Garage {
    fn accepts(&self, account: &CompatAccount) -> Result<()> {
        crate::compat::not_the_operators_key(account, &self.config.access_key)?;
        match garage_key_problem(&account.access_key, account.secret_key.expose()) {
            Some(problem) => Err(BackendError::InvalidInput(problem)),
            None => Ok(()),
        }
    }

    async fn account(&self, wanted: &CompatAccount) -> Result<AccountState> {
        // The secret is read only to compare it; it is dropped with the reply.
        let key = match self.key_info(&wanted.access_key, true).await {
            Ok(k) => k,
            Err(BackendError::NotFound { .. }) => return Ok(AccountState::Missing),
            Err(e) => return Err(e),
        };
        // Compatibility keys are named after their id. A key named after a user the ledger
        // knows is that user's (an S3User's keys are named after it), never this Secret's to
        // take; one made by hand under another name is judged like any account, by proof.
        if key.name != wanted.access_key
            && !key.name.is_empty()
            && self.holder(Subject::User, &key.name).await?.is_some()
        {
            return Err(BackendError::NotOwned {
                what: format!("access key {}", wanted.access_key),
                detail: format!(
                    "a key named {:?}, not made for a compatibility Secret (e.g. an S3User's key)",
                    key.name
                ),
            });
        }
        let mut differs = Vec::new();
        if key.secret_access_key.as_deref() != Some(wanted.secret_key.expose()) {
            differs.push("secret key");
        }
        if key.expired {
            differs.push("expiration");
        }
        Ok(if differs.is_empty() { AccountState::Matches } else { AccountState::Differs(differs) })
    }

    async fn create_account(&self, account: &CompatAccount) -> Result<()> {
        let id = account.access_key.as_str();
        let what = format!("access key {id}");
        let body = serde_json::json!({
            "accessKeyId": id,
            "secretAccessKey": account.secret_key.expose(),
            "name": id,
        });
        match self.post("/v2/ImportKey", &body, &what).await {
            Ok(_) => Ok(()),
            Err(BackendError::Conflict { .. }) => match self.key_info(id, true).await {
                // Imported meanwhile by another replica for the same Secret.
                Ok(k) if k.name == id && k.secret_access_key.as_deref() == Some(account.secret_key.expose()) => Ok(()),
                Ok(_) => Err(BackendError::NotOwned { what, detail: "imported meanwhile outside the operator".into() }),
                // Not found, yet refused: the id belonged to a deleted key. Not retryable.
                Err(BackendError::NotFound { .. }) => Err(BackendError::InvalidInput(format!(
                    "{what} belonged to a key deleted from Garage, and Garage never imports a deleted key id \
                     again: put a new access key in the Secret, or use an S3User"
                ))),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    async fn update_account(&self, account: &CompatAccount, differs: &[&'static str]) -> Result<()> {
        if differs.contains(&"secret key") {
            return Err(BackendError::Unsupported {
                backend: BACKEND,
                feature: "a new secret key for an existing access key (Garage cannot change a key's secret, nor import \
                          a deleted key id again; put a new access key in the Secret, or use an S3User)",
            });
        }
        if differs.contains(&"expiration") {
            let id = account.access_key.as_str();
            let path = format!("/v2/UpdateKey?id={}", encode(id));
            self.post(&path, &serde_json::json!({ "neverExpires": true }), &format!("access key {id}")).await?;
        }
        Ok(())
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        Ok(self.find_bucket(bucket).await?.is_some())
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.markers.refuse_own_bucket(bucket)?;
        let what = format!("bucket {bucket}");
        let created = parse::<BucketDetails>(&self.create_with_access(bucket, &what).await?, "CreateBucket")?;
        self.ensure_operator_access(&created, &what).await.map(|_| ())
    }

    async fn bucket_owner(&self, bucket: &str) -> Result<Option<String>> {
        let Some(info) = self.find_bucket(bucket).await? else { return Ok(None) };
        // Several owners (granted by hand) is drift: reporting none makes the caller set the
        // owner, which takes owner rights from the others.
        Ok(match self.compat_owners(&info).as_slice() {
            [one] => Some((*one).to_string()),
            _ => None,
        })
    }

    async fn change_bucket_owner(&self, bucket: &str, owner: &str, _previous: Option<&str>) -> Result<()> {
        self.markers.refuse_own_bucket(bucket)?;
        let what = format!("bucket {bucket}");
        let info = self.find_bucket(bucket).await?.ok_or_else(|| BackendError::not_found(what.clone()))?;
        if !info.global_aliases.iter().any(|a| a == bucket) {
            // Made over S3, it has only its creator's local alias: the account reaches it by
            // the global one.
            let body = serde_json::json!({ "bucketId": info.id, "globalAlias": bucket });
            self.post("/v2/AddBucketAlias", &body, &what).await?;
        }
        let has = info.keys.iter().find(|k| k.access_key_id == owner).is_some_and(|k| k.permissions.covers(Perm::FULL));
        if !has {
            self.allow(&info.id, owner, Perm::FULL, &format!("{what} for access key {owner}")).await?;
        }
        // Every other owner loses it: `previous` (if it still is one), and any granted by hand.
        for other in self.compat_owners(&info).into_iter().filter(|k| *k != owner) {
            self.deny(&info.id, other, Perm::FULL, &format!("{what} for access key {other}")).await?;
        }
        Ok(())
    }

    async fn privileged(&self, access_key: &str) -> Result<Option<String>> {
        match self.key_info(access_key, false).await {
            Ok(k) if k.permissions.create_bucket => Ok(Some("may create buckets".into())),
            Ok(_) | Err(BackendError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn claim(&self, subject: Subject, name: &str, owner: &Owner) -> Result<bool> {
        self.claim_marker(subject, name, owner).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn compat_keys_garage_cannot_import_are_named_before_any_call() {
        let hex64 = "0123456789abcdef".repeat(4);
        assert_eq!(garage_key_problem("GK0123456789abcdef01234567", &hex64), None);
        assert_eq!(garage_key_problem("eight.c_-", "0123456789~!@#$%"), None);
        let short = garage_key_problem("seven77", &hex64).unwrap();
        assert!(short.contains("at least 8") && short.contains("S3User"), "{short}");
        assert!(garage_key_problem("eight+chr", &hex64).unwrap().contains("'.', '_' and '-'"));
        for secret in ["0123456789abcde", "0123456789 abcdef", "0123456789\tabcdef", "0123456789é0abcdef"] {
            let problem = garage_key_problem("eightchr", secret).unwrap();
            assert!(problem.contains("16 printable") && !problem.contains(secret), "{problem}");
        }
    }

    #[test]
    fn compat_owners_are_full_holders_other_than_the_operator() {
        let garage = Garage::new(GarageConfig {
            endpoint: "http://127.0.0.1:1".into(),
            region: "garage".into(),
            access_key: "GKoperator".into(),
            secret_key: SecretString::from("s"),
            admin_endpoint: "http://127.0.0.1:2".into(),
            admin_token: SecretString::from("t"),
            marker_bucket: "markers".into(),
        })
        .unwrap();
        let info: BucketDetails = parse(
            r#"{"id":"b1","globalAliases":["b"],"keys":[
                {"accessKeyId":"GKoperator","permissions":{"read":true,"write":true,"owner":true}},
                {"accessKeyId":"GKuser","permissions":{"read":true,"write":true,"owner":false}},
                {"accessKeyId":"GKcompat","permissions":{"read":true,"write":true,"owner":true}}]}"#,
            "t",
        )
        .unwrap();
        assert_eq!(garage.compat_owners(&info), ["GKcompat"]);
        assert!(garage.markers.refuse_own_bucket("markers").is_err() && garage.markers.refuse_own_bucket("b").is_ok());
        let key: KeyDetails = parse(
            r#"{"accessKeyId":"GKcompat","name":"GKcompat","expired":true,"secretAccessKey":"x","buckets":[]}"#,
            "t",
        )
        .unwrap();
        assert!(key.expired);
    }

    #[test]
    fn replies_parse() {
        let info: BucketDetails = parse(
            r#"{"id":"abc","created":"2026-01-01T00:00:00Z","globalAliases":["b"],"websiteAccess":false,
               "keys":[{"accessKeyId":"GK1","name":"u","permissions":{"read":true,"write":false,"owner":false},
               "bucketLocalAliases":[]}],"objects":0,"bytes":0,"quotas":{"maxSize":10,"maxObjects":null}}"#,
            "t",
        )
        .unwrap();
        assert_eq!(info.id, "abc");
        assert_eq!(info.global_aliases, ["b"]);
        assert_eq!(info.keys[0].permissions, Perm { read: true, write: false, owner: false });
        assert_eq!(Quota::from(info.quotas), Quota { max_size_bytes: Some(10), max_objects: None });
        let list: Vec<BucketEntry> = parse(
            r#"[{"id":"x","created":"t","globalAliases":[],"localAliases":[{"accessKeyId":"GK1","alias":"b"}]}]"#,
            "t",
        )
        .unwrap();
        assert_eq!(list[0].local_aliases[0].alias, "b");
        let keys: Vec<KeyEntry> = parse(r#"[{"id":"GK1","name":"u","expired":false}]"#, "t").unwrap();
        assert_eq!((keys[0].id.as_str(), keys[0].name.as_str()), ("GK1", "u"));
        let err = parse::<Vec<KeyEntry>>("{", "ListKeys").unwrap_err();
        assert!(matches!(err, BackendError::Protocol { .. }), "{err}");
    }

    #[test]
    fn quotas_serialize_nulls() {
        let body = serde_json::to_string(&Quotas::from(Quota { max_size_bytes: Some(5), max_objects: None })).unwrap();
        assert_eq!(body, r#"{"maxSize":5,"maxObjects":null}"#);
    }

    #[test]
    fn grants_round_trip_through_the_marker_body() {
        let grants = normalize(&[
            Grant { bucket: "b".into(), permission: Permission::ReadOnly },
            Grant { bucket: "a".into(), permission: Permission::ReadOnly },
            Grant { bucket: "b".into(), permission: Permission::ReadWrite },
        ]);
        assert_eq!(
            grants,
            vec![
                Grant { bucket: "a".into(), permission: Permission::ReadOnly },
                Grant { bucket: "b".into(), permission: Permission::ReadWrite },
            ]
        );
        assert_eq!(decode_grants(&encode_grants(&grants).unwrap()), grants);
        assert!(decode_grants(b"").is_empty());
    }

    #[test]
    fn permission_differences() {
        let rw = Perm::of(Permission::ReadWrite);
        let ro = Perm::of(Permission::ReadOnly);
        assert_eq!(rw.minus(ro), Perm { read: false, write: true, owner: false });
        assert!(!ro.minus(rw).any());
        assert!(Perm::FULL.covers(rw) && !ro.covers(rw));
        assert_eq!(Perm { read: false, write: false, owner: true }.permission(), None);
        assert_eq!(ro.permission(), Some(Permission::ReadOnly));
        let keys = vec![KeyDetails {
            access_key_id: "GK1".into(),
            name: "u".into(),
            secret_access_key: None,
            expired: false,
            permissions: KeyPermissions::default(),
            buckets: vec![
                KeyBucket { id: "1".into(), global_aliases: vec!["z".into()], permissions: ro },
                KeyBucket { id: "2".into(), global_aliases: vec!["y".into()], permissions: rw },
            ],
        }];
        assert_eq!(
            grants_of(&keys),
            vec![
                Grant { bucket: "y".into(), permission: Permission::ReadWrite },
                Grant { bucket: "z".into(), permission: Permission::ReadOnly },
            ]
        );
    }
}
