//! MinIO: users, keys and grants through the admin API (v3) with the payload encryption it
//! requires; buckets through [`crate::s3ops`], quotas through the admin API.
//!
//! A user is a MinIO user whose access key is the user name. Its own secret is random and
//! never handed out: the keys given to applications are service accounts of that user, which
//! inherit its policy, so a user can hold several keys and rotate with an overlap. Its grants
//! are one canned policy `s3op-<user>` attached to it.

pub mod madmin;

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use reqwest::Method;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    Backend, BackendError, Result, SecretString,
    claimed_buckets::ClaimedBuckets,
    compat::{AccountState, CompatAccount, CompatStore},
    http::{self, encode},
    ledger::{Conditional, Ledger, Subject},
    model::{
        BackendKind, BucketDeletion, BucketInfo, BucketSpec, Capabilities, Change, Credentials, Grant, Owner,
        Permission, Quota, UserInfo, UserSpec,
    },
    policy,
    s3ops::{self, S3},
    snapshot::Snapshot,
};

const BACKEND: &str = "minio";

/// Every admin path starts here; the community server serves v3 only.
const ADMIN: &str = "/minio/admin/v3";

/// Objects counted before a bucket is reported non-empty (the count is only informative).
const COUNT_LIMIT: u64 = 1000;

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
    // Set when the server has no bulk list (before 2024): then keys are listed per user.
    no_bulk_keys: Arc<AtomicBool>,
}

/// How long one bulk key list serves other reconciles (see [`Minio`]).
const KEYS_SNAPSHOT_TTL: Duration = Duration::from_secs(5);

/// One user's entry in the reply of `list-access-keys-bulk`.
#[derive(Deserialize)]
struct UserAccessKeys {
    #[serde(rename = "serviceAccounts", default)]
    service_accounts: Option<Vec<ServiceAccountEntry>>,
}

/// A reply of the admin API, before its status is judged.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// The JSON error body of a failed admin call.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(rename = "Code", default)]
    code: String,
    #[serde(rename = "Message", default)]
    message: String,
}

impl Answer {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn error_body(&self) -> ErrorBody {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// MinIO's error code (`XMinioAdminNoSuchUser` …), empty when there is none.
    fn code(&self) -> String {
        if self.ok() { String::new() } else { self.error_body().code }
    }

    /// The body of a 2xx reply, or the classified error naming `op` and `what`.
    fn into_result(self, op: &str, what: &str) -> Result<Vec<u8>> {
        if self.ok() {
            return Ok(self.body);
        }
        let err = self.error_body();
        let detail = format!("{op} on {what}: HTTP {}: {}: {}", self.status, err.code, err.message);
        Err(http::status_error(BACKEND, self.status, what, detail))
    }
}

/// Body of `add-user` (encrypted).
#[derive(Serialize)]
struct AddUser<'a> {
    #[serde(rename = "secretKey")]
    secret_key: &'a str,
    status: &'a str,
}

/// Reply of `user-info` (plain JSON).
#[derive(Deserialize, Default)]
struct UserInfoReply {
    #[serde(rename = "policyName", default)]
    policy_name: String,
    /// `enabled` or `disabled`.
    #[serde(default)]
    status: String,
}

impl UserInfoReply {
    fn policies(&self) -> Vec<String> {
        self.policy_name.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect()
    }
}

/// Body of `add-service-account` (encrypted). Without a policy the account inherits its
/// parent's, which is what makes a key follow the user's grants.
#[derive(Serialize)]
struct AddServiceAccount<'a> {
    #[serde(rename = "targetUser")]
    target_user: &'a str,
    #[serde(rename = "accessKey", skip_serializing_if = "Option::is_none")]
    access_key: Option<&'a str>,
    #[serde(rename = "secretKey", skip_serializing_if = "Option::is_none")]
    secret_key: Option<&'a str>,
}

/// Reply of `add-service-account` (encrypted).
#[derive(Deserialize)]
struct AddServiceAccountReply {
    credentials: NewCredentials,
}

#[derive(Deserialize)]
struct NewCredentials {
    #[serde(rename = "accessKey")]
    access_key: String,
    #[serde(rename = "secretKey")]
    secret_key: String,
}

/// Body of `update-service-account` (encrypted): only the secret changes.
#[derive(Serialize)]
struct UpdateServiceAccount<'a> {
    #[serde(rename = "newSecretKey")]
    new_secret_key: &'a str,
}

/// Reply of `list-service-accounts` (encrypted).
#[derive(Deserialize, Default)]
struct ServiceAccounts {
    #[serde(default)]
    accounts: Option<Vec<ServiceAccountEntry>>,
}

/// An entry of the list: current servers send objects, old ones (before 2023) bare keys.
#[derive(Deserialize)]
#[serde(untagged)]
enum ServiceAccountEntry {
    Info {
        #[serde(rename = "accessKey")]
        access_key: String,
    },
    Key(String),
}

impl ServiceAccountEntry {
    fn into_key(self) -> String {
        match self {
            ServiceAccountEntry::Info { access_key } | ServiceAccountEntry::Key(access_key) => access_key,
        }
    }
}

/// Body of `idp/builtin/policy/attach` and `/detach` (encrypted).
#[derive(Serialize)]
struct PolicyAssociation<'a> {
    policies: Vec<&'a str>,
    user: &'a str,
}

/// Bucket quota, as `get-bucket-quota` answers and `set-bucket-quota` takes it. `quota` is the
/// field of servers before 2023; both are written, the larger is read.
#[derive(Serialize, Deserialize, Default)]
struct BucketQuota {
    #[serde(default)]
    quota: u64,
    #[serde(default)]
    size: u64,
    #[serde(rename = "quotatype", default)]
    quota_type: String,
}

impl BucketQuota {
    fn max_size(&self) -> Option<u64> {
        Some(self.size.max(self.quota)).filter(|&n| n > 0)
    }
}

/// Name of the canned policy holding `user`'s grants.
fn policy_name(user: &str) -> String {
    format!("s3op-{user}")
}

/// Name of the canned policy that makes a compatibility account the owner of `bucket`.
// An underscore, not the suggested `s3op-compat-<bucket>`: that is also `policy_name` of a user
// named `compat-<bucket>`, so an S3User could overwrite a compatibility bucket's policy. User
// and bucket names never hold an underscore (Kubernetes and S3 naming), so the two sets of
// policy names cannot meet.
fn compat_policy_name(bucket: &str) -> String {
    format!("{COMPAT_POLICY_PREFIX}{bucket}")
}

/// What every compatibility policy's name starts with.
const COMPAT_POLICY_PREFIX: &str = "s3op_compat_";

/// Reply of `idp/builtin/policy-entities` (encrypted): who each asked policy is attached to.
#[derive(Deserialize, Default)]
struct PolicyEntitiesReply {
    #[serde(rename = "policyMappings", default)]
    policy_mappings: Option<Vec<PolicyEntities>>,
}

#[derive(Deserialize)]
struct PolicyEntities {
    policy: String,
    #[serde(default)]
    users: Option<Vec<String>>,
}

impl PolicyEntitiesReply {
    /// The users `policy` is attached to directly, sorted (groups are not ours to manage).
    fn users_of(self, policy: &str) -> Vec<String> {
        let mut users: Vec<String> = self
            .policy_mappings
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.policy == policy)
            .flat_map(|m| m.users.unwrap_or_default())
            .collect();
        users.sort();
        users.dedup();
        users
    }
}

/// What MinIO refuses as a user's keys (its `auth` package and `add-user`), checked before any
/// call so the Secret's author reads why instead of an HTTP 400.
fn minio_key_problem(access_key: &str, secret_key: &str) -> Option<String> {
    if access_key.len() < 3 {
        return Some(format!("access key {access_key}: MinIO needs access keys of at least 3 characters"));
    }
    if access_key.contains(['=', ',']) {
        return Some(format!("access key {access_key}: MinIO refuses access keys containing '=' or ','"));
    }
    if secret_key.len() < 8 {
        return Some(format!(
            "the secret key of access key {access_key} is shorter than the 8 characters MinIO requires"
        ));
    }
    None
}

fn parse_json<T: DeserializeOwned>(body: &[u8], op: &str) -> Result<T> {
    http::parse_json(BACKEND, body, op)
}

impl Minio {
    /// A backend for the MinIO server described by `config`. Makes no call.
    pub fn new(config: MinioConfig) -> Result<Self> {
        let s3 = S3::connect(BACKEND, &config.endpoint, &config.region, &config.access_key, &config.secret_key);
        let http = http::client(BACKEND)?;
        let markers = Ledger::new(s3.client().clone(), BACKEND, config.marker_bucket.clone(), Conditional::Atomic);
        Ok(Self {
            s3,
            http,
            markers,
            config,
            keys: Arc::new(Snapshot::new(KEYS_SNAPSHOT_TTL)),
            no_bulk_keys: Arc::new(AtomicBool::new(false)),
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

    /// One signed admin call to `ADMIN + path_and_query`. Only transport failures are errors
    /// here; the caller judges the status.
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
        what: &str,
    ) -> Result<Answer> {
        let url = format!("{}{ADMIN}{path_and_query}", self.config.endpoint.trim_end_matches('/'));
        let headers = http::sigv4_headers(
            method.as_str(),
            &url,
            &body,
            &self.config.region,
            &self.config.access_key,
            &self.config.secret_key,
        )?;
        let mut req = self.http.request(method, &url);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        if let Some(ct) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct);
        }
        let op = path_and_query.split('?').next().unwrap_or(path_and_query);
        let resp = req.body(body).send().await.map_err(|e| http::transport_error(BACKEND, op, what, e))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| http::transport_error(BACKEND, op, what, e))?.to_vec();
        Ok(Answer { status, body })
    }

    /// An admin call whose non-2xx answers are all errors; the reply body otherwise.
    async fn admin(&self, method: Method, path_and_query: &str, body: Vec<u8>, what: &str) -> Result<Vec<u8>> {
        let op = path_and_query.split('?').next().unwrap_or(path_and_query).to_string();
        self.send(method, path_and_query, body, None, what).await?.into_result(&op, what)
    }

    /// madmin's encryption with the admin secret as password, off the executor: each call
    /// derives a key with Argon2id (64 MiB).
    async fn encrypt(&self, plain: Vec<u8>, op: &str) -> Result<Vec<u8>> {
        let password = self.config.secret_key.clone();
        let op = op.to_string();
        tokio::task::spawn_blocking(move || madmin::encrypt_data(password.expose().as_bytes(), &plain))
            .await
            .map_err(|e| BackendError::Protocol { backend: BACKEND, detail: format!("{op}: encryption task: {e}") })?
            .map_err(|e| BackendError::InvalidInput(format!("{op}: encrypting the request: {e}")))
    }

    /// The reverse of [`Minio::encrypt`], for encrypted replies.
    async fn decrypt(&self, data: Vec<u8>, op: &str) -> Result<Vec<u8>> {
        let password = self.config.secret_key.clone();
        let op = op.to_string();
        tokio::task::spawn_blocking(move || madmin::decrypt_data(password.expose().as_bytes(), &data))
            .await
            .map_err(|e| BackendError::Protocol { backend: BACKEND, detail: format!("{op}: decryption task: {e}") })?
            .map_err(|e| BackendError::Protocol { backend: BACKEND, detail: format!("{op}: reply: {e}") })
    }

    /// The user's info, or `None` when MinIO has no such user.
    async fn user_info(&self, user: &str) -> Result<Option<UserInfoReply>> {
        let what = format!("user {user}");
        let answer =
            self.send(Method::GET, &format!("/user-info?accessKey={}", encode(user)), Vec::new(), None, &what).await?;
        if answer.status == 404 || answer.code() == "XMinioAdminNoSuchUser" {
            return Ok(None);
        }
        // The name is a service account (another user's key, e.g. an S3User's) or a temporary
        // credential: taken, and never ours to turn into a user.
        if answer.code() == "XMinioIAMActionNotAllowed" {
            return Err(BackendError::NotOwned {
                what,
                detail: "an access key of another MinIO user (a service account, e.g. an S3User's key)".into(),
            });
        }
        let body = answer.into_result("user-info", &what)?;
        parse_json(&body, "user-info").map(Some)
    }

    async fn require_user(&self, user: &str) -> Result<UserInfoReply> {
        self.user_info(user).await?.ok_or_else(|| BackendError::not_found(format!("user {user}")))
    }

    /// Creates the user, or sets its secret (add-user is an upsert: check before calling).
    async fn add_user(&self, user: &str, secret: &SecretString) -> Result<()> {
        let plain = http::to_json(&AddUser { secret_key: secret.expose(), status: "enabled" })?;
        let body = self.encrypt(plain, "add-user").await?;
        self.admin(Method::PUT, &format!("/add-user?accessKey={}", encode(user)), body, &format!("user {user}"))
            .await
            .map(|_| ())
    }

    /// Access keys of the user's service accounts; none when the user does not exist.
    async fn service_accounts(&self, user: &str) -> Result<Vec<String>> {
        let what = format!("user {user}");
        let answer = self
            .send(Method::GET, &format!("/list-service-accounts?user={}", encode(user)), Vec::new(), None, &what)
            .await?;
        if answer.status == 404 || answer.code() == "XMinioAdminNoSuchUser" {
            return Ok(Vec::new());
        }
        let body = answer.into_result("list-service-accounts", &what)?;
        let plain = self.decrypt(body, "list-service-accounts").await?;
        let list: ServiceAccounts = parse_json(&plain, "list-service-accounts")?;
        let mut keys: Vec<String> =
            list.accounts.unwrap_or_default().into_iter().map(ServiceAccountEntry::into_key).collect();
        keys.sort();
        Ok(keys)
    }

    /// Every user's service accounts in one call (one decryption); `None` when the server
    /// has no bulk list.
    async fn all_service_accounts(&self) -> Result<Option<BTreeMap<String, Vec<String>>>> {
        let what = "service accounts of every user";
        let answer = self
            .send(Method::GET, "/list-access-keys-bulk?all=true&listType=svcacc-only", Vec::new(), None, what)
            .await?;
        // Servers before the bulk list answer an unknown admin path with 400 or 404.
        if answer.status == 404 || answer.status == 400 {
            return Ok(None);
        }
        let body = answer.into_result("list-access-keys-bulk", what)?;
        let plain = self.decrypt(body, "list-access-keys-bulk").await?;
        let users: BTreeMap<String, UserAccessKeys> = parse_json(&plain, "list-access-keys-bulk")?;
        Ok(Some(
            users
                .into_iter()
                .map(|(user, entry)| {
                    let mut keys: Vec<String> = entry
                        .service_accounts
                        .unwrap_or_default()
                        .into_iter()
                        .map(ServiceAccountEntry::into_key)
                        .collect();
                    keys.sort();
                    (user, keys)
                })
                .collect(),
        ))
    }

    /// The user's service accounts from the shared bulk snapshot (patched by the operator's
    /// own key changes), or listed for the user alone on servers without the bulk list.
    async fn shared_service_accounts(&self, user: &str) -> Result<Vec<String>> {
        if !self.no_bulk_keys.load(Ordering::Relaxed) {
            let all = self
                .keys
                .get(|| async {
                    self.all_service_accounts()
                        .await?
                        .ok_or(BackendError::Unsupported { backend: BACKEND, feature: "list-access-keys-bulk" })
                })
                .await;
            match all {
                Ok(all) => return Ok(all.get(user).cloned().unwrap_or_default()),
                Err(BackendError::Unsupported { .. }) => self.no_bulk_keys.store(true, Ordering::Relaxed),
                Err(e) => return Err(e),
            }
        }
        self.service_accounts(user).await
    }

    /// Records a key the operator added (`true`) or removed in the shared snapshot.
    fn key_changed(&self, user: &str, key: &str, exists: bool) {
        self.keys.patch(|all| {
            let keys = all.entry(user.to_string()).or_default();
            keys.retain(|k| k != key);
            if exists {
                keys.push(key.to_string());
                keys.sort();
            }
        });
    }

    async fn delete_service_account(&self, user: &str, access_key: &str) -> Result<()> {
        let what = format!("key {access_key} of user {user}");
        let answer = self
            .send(
                Method::DELETE,
                &format!("/delete-service-account?accessKey={}", encode(access_key)),
                Vec::new(),
                None,
                &what,
            )
            .await?;
        if answer.status != 404 {
            answer.into_result("delete-service-account", &what)?;
        }
        self.key_changed(user, access_key, false);
        Ok(())
    }

    /// The canned policy document `name`, or `None` when there is no such policy.
    async fn canned_policy(&self, name: &str) -> Result<Option<serde_json::Value>> {
        let what = format!("policy {name}");
        let answer = self
            .send(Method::GET, &format!("/info-canned-policy?name={}", encode(name)), Vec::new(), None, &what)
            .await?;
        if answer.status == 404 || answer.code() == "XMinioAdminNoSuchPolicy" {
            return Ok(None);
        }
        let body = answer.into_result("info-canned-policy", &what)?;
        parse_json(&body, "info-canned-policy").map(Some)
    }

    async fn put_canned_policy(&self, name: &str, doc: &serde_json::Value) -> Result<()> {
        self.admin(
            Method::PUT,
            &format!("/add-canned-policy?name={}", encode(name)),
            http::to_json(doc)?,
            &format!("policy {name}"),
        )
        .await
        .map(|_| ())
    }

    async fn remove_canned_policy(&self, name: &str) -> Result<()> {
        let what = format!("policy {name}");
        let answer = self
            .send(Method::DELETE, &format!("/remove-canned-policy?name={}", encode(name)), Vec::new(), None, &what)
            .await?;
        if answer.status == 404 || answer.code() == "XMinioAdminNoSuchPolicy" {
            return Ok(());
        }
        answer.into_result("remove-canned-policy", &what).map(|_| ())
    }

    /// Attaches (`attach`) or detaches policies of the user; a change already applied is
    /// success.
    async fn associate(&self, user: &str, policies: &[&str], attach: bool) -> Result<()> {
        let op = if attach { "policy/attach" } else { "policy/detach" };
        let plain = http::to_json(&PolicyAssociation { policies: policies.to_vec(), user })?;
        let body = self.encrypt(plain, op).await?;
        let what = format!("user {user}");
        let answer = self
            .send(Method::POST, &format!("/idp/builtin/{op}"), body, Some("application/octet-stream"), &what)
            .await?;
        if answer.code() == "XMinioAdminPolicyChangeAlreadyApplied" {
            return Ok(());
        }
        answer.into_result(op, &what).map(|_| ())
    }

    /// The bucket's size quota, `None` when it has none.
    async fn quota(&self, bucket: &str) -> Result<Option<u64>> {
        let what = format!("bucket {bucket}");
        let answer = self
            .send(Method::GET, &format!("/get-bucket-quota?bucket={}", encode(bucket)), Vec::new(), None, &what)
            .await?;
        if answer.code() == "XMinioAdminNoSuchQuotaConfiguration" {
            return Ok(None);
        }
        let body = answer.into_result("get-bucket-quota", &what)?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        Ok(parse_json::<BucketQuota>(&body, "get-bucket-quota")?.max_size())
    }

    /// Sets (or with `None`, clears) the bucket's hard size quota.
    async fn set_quota(&self, bucket: &str, max_size: Option<u64>) -> Result<()> {
        let size = max_size.unwrap_or(0);
        let body = http::to_json(&BucketQuota { quota: size, size, quota_type: "hard".into() })?;
        self.admin(
            Method::PUT,
            &format!("/set-bucket-quota?bucket={}", encode(bucket)),
            body,
            &format!("bucket {bucket}"),
        )
        .await
        .map(|_| ())
    }

    async fn read_marker(&self, user: &str) -> Result<Option<Owner>> {
        self.markers.holder(Subject::User, user).await
    }

    /// Claims the user (or compatibility account) name in the ledger; see [`Ledger::claim`].
    async fn claim_marker(&self, subject: Subject, name: &str, owner: &Owner) -> Result<bool> {
        // The first claim ever makes the ledger's bucket, owned by the admin account.
        self.markers.claim(subject, name, owner, || self.markers.create_bucket()).await
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

    /// The users a canned policy is attached to (none when the policy does not exist).
    // policy-entities rather than list-users: one call whose reply does not grow with the
    // number of users, and the server's own mapping, so an attachment made or removed by hand
    // is seen (and repaired) at the next resync.
    async fn policy_users(&self, policy: &str) -> Result<Vec<String>> {
        let what = format!("policy {policy}");
        let path = format!("/idp/builtin/policy-entities?policy={}", encode(policy));
        let body = self.admin(Method::GET, &path, Vec::new(), &what).await?;
        let plain = self.decrypt(body, "policy-entities").await?;
        let reply: PolicyEntitiesReply = parse_json(&plain, "policy-entities")?;
        Ok(reply.users_of(policy))
    }

    /// True when the bucket's compatibility policy exists and grants exactly ReadWrite on it.
    async fn compat_policy_current(&self, bucket: &str) -> Result<bool> {
        let wanted = vec![Grant { bucket: bucket.to_string(), permission: Permission::ReadWrite }];
        let current = self.canned_policy(&compat_policy_name(bucket)).await?;
        Ok(current.as_ref().and_then(|d| policy::grants_from_document("aws", d)) == Some(wanted))
    }

    /// The grants held by the user's canned policy; none when it has none attached. A policy
    /// edited outside the operator reads as no grants (the next `set_grants` rewrites it).
    async fn grants(&self, user: &str, info: &UserInfoReply) -> Result<Vec<Grant>> {
        let name = policy_name(user);
        if !info.policies().contains(&name) {
            return Ok(Vec::new());
        }
        Ok(self
            .canned_policy(&name)
            .await?
            .as_ref()
            .and_then(|d| policy::grants_from_document("aws", d))
            .unwrap_or_default())
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
        // A cheap admin read: proves the server answers and our credentials hold admin rights.
        self.admin(Method::GET, "/info-canned-policy?name=readonly", Vec::new(), "policy readonly").await.map(|_| ())
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
        self.buckets().delete(name, force, COUNT_LIMIT).await
    }

    async fn describe_user(&self, name: &str) -> Result<Option<UserInfo>> {
        let Some(info) = self.user_info(name).await? else { return Ok(None) };
        let owner = self.read_marker(name).await?;
        let access_key_ids = self.shared_service_accounts(name).await?;
        let grants = self.grants(name, &info).await?;
        Ok(Some(UserInfo { name: name.to_string(), owner, access_key_ids, grants }))
    }

    async fn ensure_user(&self, spec: &UserSpec, adopt: bool) -> Result<Change> {
        let name = spec.name.as_str();
        let what = format!("user {name}");
        if name == self.config.access_key {
            return Err(BackendError::NotOwned { what, detail: "the operator's own admin account".into() });
        }
        // A new name is judged by the claim itself (one read under the ledger's lock).
        if self.user_info(name).await?.is_some() {
            let marker = self.read_marker(name).await?;
            if Owner::check_claim(&what, &marker, &spec.owner, adopt)? {
                // Adoption never reaches a privileged user.
                if let Some(why) = self.user_privilege(name).await? {
                    return Err(BackendError::NotOwned { what, detail: format!("a privileged user ({why})") });
                }
                self.claim_marker(Subject::User, name, &spec.owner).await?;
                return Ok(Change::Updated);
            }
            return Ok(Change::Unchanged);
        }
        // A claim without a user (deleted behind our back) still names its holder; the claim
        // comes first, so a user without one would look foreign for ever.
        self.claim_marker(Subject::User, name, &spec.owner).await?;
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
                let plain = http::to_json(&UpdateServiceAccount { new_secret_key: c.secret_access_key.expose() })?;
                let body = self.encrypt(plain, "update-service-account").await?;
                let path = format!("/update-service-account?accessKey={}", encode(&c.access_key_id));
                self.admin(Method::POST, &path, body, &format!("key {} of user {user}", c.access_key_id)).await?;
                return Ok(c.clone());
            }
        }
        let plain = http::to_json(&AddServiceAccount {
            target_user: user,
            access_key: import.map(|c| c.access_key_id.as_str()),
            secret_key: import.map(|c| c.secret_access_key.expose()),
        })?;
        let body = self.encrypt(plain, "add-service-account").await?;
        let reply = self.admin(Method::PUT, "/add-service-account", body, &format!("user {user}")).await?;
        let plain = self.decrypt(reply, "add-service-account").await?;
        let reply: AddServiceAccountReply = parse_json(&plain, "add-service-account")?;
        self.key_changed(user, &reply.credentials.access_key, true);
        Ok(Credentials {
            access_key_id: reply.credentials.access_key,
            secret_access_key: SecretString::new(reply.credentials.secret_key),
        })
    }

    async fn delete_key(&self, user: &str, access_key_id: &str) -> Result<()> {
        // Only a key of this user is removed: another user's service account is not ours to
        // revoke through this user.
        if !self.service_accounts(user).await?.iter().any(|k| k == access_key_id) {
            return Ok(());
        }
        self.delete_service_account(user, access_key_id).await
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
        match policy::policy_document("aws", grants) {
            Some(doc) => {
                let wanted: Vec<Grant> = policy::normalise(grants)
                    .into_iter()
                    .map(|(bucket, permission)| Grant { bucket, permission })
                    .collect();
                let current = self.canned_policy(&name).await?;
                if current.as_ref().and_then(|d| policy::grants_from_document("aws", d)) != Some(wanted) {
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
        let what = format!("user {name}");
        let answer = self
            .send(Method::DELETE, &format!("/remove-user?accessKey={}", encode(name)), Vec::new(), None, &what)
            .await?;
        if !(answer.status == 404 || answer.code() == "XMinioAdminNoSuchUser") {
            answer.into_result("remove-user", &what)?;
        }
        self.markers.release(Subject::User, name).await
    }
}

/// Compatibility mode on MinIO: an account is a MinIO user whose access key and secret are
/// the Secret's; owning a bucket is having its policy `s3op_compat_<bucket>` (ReadWrite on that
/// bucket) attached. Roles and POSIX ids do not exist on MinIO and are ignored.
#[async_trait]
impl CompatStore for Minio {
    fn accepts(&self, account: &CompatAccount) -> Result<()> {
        crate::compat::not_the_operators_key(account, &self.config.access_key)?;
        match minio_key_problem(&account.access_key, account.secret_key.expose()) {
            Some(problem) => Err(BackendError::InvalidInput(problem)),
            None => Ok(()),
        }
    }

    async fn account(&self, wanted: &CompatAccount) -> Result<AccountState> {
        let user = wanted.access_key.as_str();
        let what = format!("access key {user}");
        // A service account is refused here with NotOwned: add-user would be refused too.
        let Some(info) = self.user_info(user).await? else { return Ok(AccountState::Missing) };
        if info.status != "enabled" {
            // A disabled user's secret cannot be probed; the update rewrites it anyway.
            return Ok(AccountState::Differs(vec!["status"]));
        }
        // MinIO never returns a user's secret: sign a request with the wanted one and see
        // whether the server takes it. AccessDenied comes after authentication, so the secret
        // matches (the user may simply not list buckets).
        let probe = s3ops::client(&self.config.endpoint, &self.config.region, user, &wanted.secret_key);
        match probe.list_buckets().send().await {
            Ok(_) => Ok(AccountState::Matches),
            Err(e) => match aws_sdk_s3::error::ProvideErrorMetadata::code(&e) {
                Some("AccessDenied") => Ok(AccountState::Matches),
                Some("SignatureDoesNotMatch" | "InvalidAccessKeyId") => Ok(AccountState::Differs(vec!["secret key"])),
                _ => Err(self.s3.map_error("ListBuckets", &format!("{what} (checking its secret)"), e)),
            },
        }
    }

    async fn create_account(&self, account: &CompatAccount) -> Result<()> {
        self.add_user(&account.access_key, &account.secret_key).await
    }

    async fn update_account(&self, account: &CompatAccount, _differs: &[&'static str]) -> Result<()> {
        // add-user on an existing user sets its secret and status and keeps its policies.
        self.add_user(&account.access_key, &account.secret_key).await
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        self.s3.bucket_exists(bucket).await
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.markers.refuse_own_bucket(bucket)?;
        self.s3.create_bucket(bucket, false).await
    }

    async fn bucket_owner(&self, bucket: &str) -> Result<Option<String>> {
        let users = self.policy_users(&compat_policy_name(bucket)).await?;
        // Several holders (attached by hand) is drift: reporting none makes the caller set the
        // owner, which detaches the others. A policy edited by hand grants nobody ReadWrite.
        let [user] = users.as_slice() else { return Ok(None) };
        if !self.compat_policy_current(bucket).await? {
            return Ok(None);
        }
        Ok(Some(user.clone()))
    }

    async fn change_bucket_owner(&self, bucket: &str, owner: &str, _previous: Option<&str>) -> Result<()> {
        self.markers.refuse_own_bucket(bucket)?;
        let name = compat_policy_name(bucket);
        if !self.compat_policy_current(bucket).await? {
            let grants = [Grant { bucket: bucket.to_string(), permission: Permission::ReadWrite }];
            let doc = policy::policy_document("aws", &grants)
                .ok_or_else(|| BackendError::InvalidInput(format!("policy {name}: no grant")))?;
            self.put_canned_policy(&name, &doc).await?;
        }
        // Attached beside the user's other policies: the user keeps whatever it had.
        self.associate(owner, &[&name], true).await?;
        // Everyone else holding it loses it: `previous` if it still does, and any holder
        // attached by hand. MinIO's own mapping is the truth, so no holder is missed.
        for user in self.policy_users(&name).await?.into_iter().filter(|u| u != owner) {
            self.associate(&user, &[&name], false).await?;
        }
        Ok(())
    }

    async fn privileged(&self, access_key: &str) -> Result<Option<String>> {
        self.user_privilege(access_key).await
    }

    async fn claim(&self, subject: Subject, name: &str, owner: &Owner) -> Result<bool> {
        self.markers.claim_free(subject, name, owner, || self.markers.create_bucket()).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn compat_keys_minio_refuses_are_named_before_any_call() {
        assert_eq!(minio_key_problem("GK0123456789abcdef01234567", "0123456789abcdef"), None);
        assert_eq!(minio_key_problem("abc", "12345678"), None);
        assert!(minio_key_problem("ab", "12345678").unwrap().contains("at least 3"));
        assert!(minio_key_problem("a=b", "12345678").unwrap().contains("'='"));
        assert!(minio_key_problem("a,bc", "12345678").unwrap().contains("','"));
        let short = minio_key_problem("abc", "1234567").unwrap();
        assert!(short.contains("8 characters") && !short.contains("1234567"), "{short}");
    }

    #[test]
    fn compat_policy_names_cannot_meet_user_policy_names() {
        assert_eq!(compat_policy_name("b1"), "s3op_compat_b1");
        assert_ne!(compat_policy_name("b1"), policy_name("compat-b1"));
        assert_ne!(compat_policy_name("b1"), policy_name("compat_b1"));
    }

    #[test]
    fn policy_entities_reply_parses() {
        let reply: PolicyEntitiesReply = parse_json(
            br#"{"timestamp":"2026-01-01T00:00:00Z","policyMappings":[{"policy":"s3op_compat_b","users":["U2","U1"],"groups":null},{"policy":"other","users":["X"]}]}"#,
            "t",
        )
        .unwrap();
        assert_eq!(reply.users_of("s3op_compat_b"), ["U1", "U2"]);
        let none: PolicyEntitiesReply = parse_json(br#"{"timestamp":"2026-01-01T00:00:00Z"}"#, "t").unwrap();
        assert!(none.users_of("s3op_compat_b").is_empty());
        let info: UserInfoReply = parse_json(br#"{"status":"disabled","updatedAt":"x"}"#, "t").unwrap();
        assert_eq!(info.status, "disabled");
    }

    #[test]
    fn replies_parse() {
        let info: UserInfoReply = parse_json(
            br#"{"policyName":"s3op-u, readwrite","status":"enabled","updatedAt":"2026-01-01T00:00:00Z"}"#,
            "t",
        )
        .unwrap();
        assert_eq!(info.policies(), ["s3op-u", "readwrite"]);
        let none: UserInfoReply = parse_json(br#"{"status":"enabled"}"#, "t").unwrap();
        assert!(none.policies().is_empty());

        let list: ServiceAccounts = parse_json(
            br#"{"accounts":[{"parentUser":"u","accountStatus":"on","impliedPolicy":true,"accessKey":"K1"},"K2"]}"#,
            "t",
        )
        .unwrap();
        let keys: Vec<String> = list.accounts.unwrap().into_iter().map(ServiceAccountEntry::into_key).collect();
        assert_eq!(keys, ["K1", "K2"]);
        let empty: ServiceAccounts = parse_json(br#"{"accounts":null}"#, "t").unwrap();
        assert!(empty.accounts.is_none());

        let created: AddServiceAccountReply = parse_json(
            br#"{"credentials":{"accessKey":"AK","secretKey":"SK","expiration":"1970-01-01T00:00:00Z"}}"#,
            "t",
        )
        .unwrap();
        assert_eq!((created.credentials.access_key.as_str(), created.credentials.secret_key.as_str()), ("AK", "SK"));

        let quota: BucketQuota = parse_json(br#"{"quota":0,"size":1048576,"quotatype":"hard"}"#, "t").unwrap();
        assert_eq!(quota.max_size(), Some(1 << 20));
        let old: BucketQuota = parse_json(br#"{"quota":5,"quotatype":"hard"}"#, "t").unwrap();
        assert_eq!(old.max_size(), Some(5));
        assert_eq!(parse_json::<BucketQuota>(b"{}", "t").unwrap().max_size(), None);
        assert!(parse_json::<BucketQuota>(b"<xml/>", "t").is_err());
    }

    #[test]
    fn request_bodies_have_madmin_field_names() {
        let add = http::to_json(&AddServiceAccount { target_user: "u", access_key: None, secret_key: None }).unwrap();
        assert_eq!(String::from_utf8(add).unwrap(), r#"{"targetUser":"u"}"#);
        let assoc = http::to_json(&PolicyAssociation { policies: vec!["p"], user: "u" }).unwrap();
        assert_eq!(String::from_utf8(assoc).unwrap(), r#"{"policies":["p"],"user":"u"}"#);
        let user = http::to_json(&AddUser { secret_key: "s", status: "enabled" }).unwrap();
        assert_eq!(String::from_utf8(user).unwrap(), r#"{"secretKey":"s","status":"enabled"}"#);
    }

    #[test]
    fn errors_are_classified_by_status_with_the_code_in_the_message() {
        let answer = Answer {
            status: 404,
            body: br#"{"Code":"XMinioAdminNoSuchUser","Message":"The specified user does not exist."}"#.to_vec(),
        };
        assert_eq!(answer.code(), "XMinioAdminNoSuchUser");
        let err = answer.into_result("user-info", "user u").unwrap_err();
        assert!(matches!(err, BackendError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("XMinioAdminNoSuchUser"), "{err}");
        let err = Answer { status: 503, body: b"not json".to_vec() }.into_result("x", "y").unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert_eq!(Answer { status: 200, body: Vec::new() }.code(), "");
    }
}
