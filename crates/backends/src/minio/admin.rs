//! MinIO's admin API (v3): its wire types, and the calls the backend makes, signed and, where
//! MinIO requires it, encrypted with [`super::madmin`].

use std::{collections::BTreeMap, sync::atomic::Ordering};

use reqwest::Method;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{BACKEND, Minio, madmin};
use crate::{
    BackendError, Result, SecretString,
    http::{self, encode},
    model::Credentials,
};

/// Every admin path starts here; the community server serves v3 only.
const ADMIN: &str = "/minio/admin/v3";

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
pub(super) struct UserInfoReply {
    #[serde(rename = "policyName", default)]
    policy_name: String,
    /// `enabled` or `disabled`.
    #[serde(default)]
    pub(super) status: String,
}

impl UserInfoReply {
    pub(super) fn policies(&self) -> Vec<String> {
        self.policy_name.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect()
    }
}

/// Body of `add-service-account` (encrypted). Without a policy the account inherits its
/// parent's, which is what makes a key follow the user's grants.
#[derive(Serialize)]
struct AddServiceAccount<'a> {
    #[serde(rename = "targetUser")]
    target_user: &'a str,
    #[serde(rename = "accessKey")]
    access_key: &'a str,
    #[serde(rename = "secretKey")]
    secret_key: &'a str,
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
    /// Every policy's users (attached directly: groups are not ours to manage), each list
    /// sorted.
    fn by_policy(self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in self.policy_mappings.unwrap_or_default() {
            out.entry(m.policy).or_default().extend(m.users.unwrap_or_default());
        }
        for users in out.values_mut() {
            users.sort();
            users.dedup();
        }
        out
    }
}

fn parse_json<T: DeserializeOwned>(body: &[u8], op: &str) -> Result<T> {
    http::parse_json(BACKEND, body, op)
}

impl Minio {
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
        let mut req = http::signed_request(
            &self.http,
            method,
            &url,
            &body,
            &self.config.region,
            &self.config.access_key,
            &self.config.secret_key,
        )?;
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

    /// madmin's encryption with the admin secret as password (PBKDF2, a few milliseconds), off
    /// the executor.
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

    /// A cheap admin read: proves the server answers and our credentials hold admin rights.
    pub(super) async fn admin_probe(&self) -> Result<()> {
        const PROBE: &str = "/info-canned-policy?name=readonly";
        let answer = self.send(Method::GET, PROBE, Vec::new(), None, "policy readonly").await?;
        // MinIO serves admin calls before its first IAM load has filled the policy cache, and
        // the built-in policies cannot be deleted: their absence means "still starting", not
        // a permanent fault (seen right after a start, while /minio/health/ready says 200).
        if answer.code() == "XMinioAdminNoSuchPolicy" {
            return Err(BackendError::Unavailable {
                backend: BACKEND,
                cause: "its IAM has not finished loading (built-in policy readonly not there yet)".into(),
            });
        }
        answer.into_result("/info-canned-policy", "policy readonly").map(|_| ())
    }

    /// The user's info, or `None` when MinIO has no such user.
    pub(super) async fn user_info(&self, user: &str) -> Result<Option<UserInfoReply>> {
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

    /// True when `key` is a service account (or a temporary credential) on the server, with
    /// the plain `user-info` call: MinIO refuses it for such a key with
    /// `XMinioIAMActionNotAllowed` and answers `XMinioAdminNoSuchUser` for a name it does not
    /// know. A regular user of that name is no key.
    pub(super) async fn key_exists(&self, key: &str) -> Result<bool> {
        let what = format!("access key {key}");
        let answer =
            self.send(Method::GET, &format!("/user-info?accessKey={}", encode(key)), Vec::new(), None, &what).await?;
        match answer.code().as_str() {
            "XMinioIAMActionNotAllowed" => Ok(true),
            "XMinioAdminNoSuchUser" => Ok(false),
            _ if answer.status == 404 => Ok(false),
            _ => answer.into_result("user-info", &what).map(|_| false),
        }
    }

    pub(super) async fn require_user(&self, user: &str) -> Result<UserInfoReply> {
        self.user_info(user).await?.ok_or_else(|| BackendError::not_found(format!("user {user}")))
    }

    /// Creates the user, or sets its secret (add-user is an upsert: check before calling).
    pub(super) async fn add_user(&self, user: &str, secret: &SecretString) -> Result<()> {
        let plain = http::to_json(&AddUser { secret_key: secret.expose(), status: "enabled" })?;
        let body = self.encrypt(plain, "add-user").await?;
        self.admin(Method::PUT, &format!("/add-user?accessKey={}", encode(user)), body, &format!("user {user}"))
            .await
            .map(|_| ())
    }

    /// Removes the user; one already gone is success.
    pub(super) async fn remove_user(&self, user: &str) -> Result<()> {
        let what = format!("user {user}");
        let answer = self
            .send(Method::DELETE, &format!("/remove-user?accessKey={}", encode(user)), Vec::new(), None, &what)
            .await?;
        if !(answer.status == 404 || answer.code() == "XMinioAdminNoSuchUser") {
            answer.into_result("remove-user", &what)?;
        }
        Ok(())
    }

    /// Access keys of the user's service accounts; none when the user does not exist.
    pub(super) async fn service_accounts(&self, user: &str) -> Result<Vec<String>> {
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
    pub(super) async fn shared_service_accounts(&self, user: &str) -> Result<Vec<String>> {
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

    /// A new service account `creds` of the user (its parent). The caller picks new keys
    /// itself, as MinIO would (20 characters of A–Z and 0–9, a 40-character secret): MinIO
    /// seals its reply with Argon2id, which costs 64 MiB and tens of milliseconds to open, for
    /// credentials we would then already know.
    pub(super) async fn add_service_account(&self, user: &str, creds: &Credentials) -> Result<()> {
        let plain = http::to_json(&AddServiceAccount {
            target_user: user,
            access_key: &creds.access_key_id,
            secret_key: creds.secret_access_key.expose(),
        })?;
        let body = self.encrypt(plain, "add-service-account").await?;
        self.admin(Method::PUT, "/add-service-account", body, &format!("user {user}")).await?;
        self.key_changed(user, &creds.access_key_id, true);
        Ok(())
    }

    /// Sets the secret of the user's existing service account `creds.access_key_id`.
    pub(super) async fn set_service_account_secret(&self, user: &str, creds: &Credentials) -> Result<()> {
        let plain = http::to_json(&UpdateServiceAccount { new_secret_key: creds.secret_access_key.expose() })?;
        let body = self.encrypt(plain, "update-service-account").await?;
        let path = format!("/update-service-account?accessKey={}", encode(&creds.access_key_id));
        self.admin(Method::POST, &path, body, &format!("key {} of user {user}", creds.access_key_id)).await.map(|_| ())
    }

    pub(super) async fn delete_service_account(&self, user: &str, access_key: &str) -> Result<()> {
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
    pub(super) async fn canned_policy(&self, name: &str) -> Result<Option<serde_json::Value>> {
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

    pub(super) async fn put_canned_policy(&self, name: &str, doc: &serde_json::Value) -> Result<()> {
        self.admin(
            Method::PUT,
            &format!("/add-canned-policy?name={}", encode(name)),
            http::to_json(doc)?,
            &format!("policy {name}"),
        )
        .await
        .map(|_| ())
    }

    pub(super) async fn remove_canned_policy(&self, name: &str) -> Result<()> {
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
    pub(super) async fn associate(&self, user: &str, policies: &[&str], attach: bool) -> Result<()> {
        let op = if attach { "policy/attach" } else { "policy/detach" };
        let plain = http::to_json(&PolicyAssociation { policies: policies.to_vec(), user })?;
        let body = self.encrypt(plain, op).await?;
        let what = format!("user {user}");
        let answer = self
            .send(Method::POST, &format!("/idp/builtin/{op}"), body, Some("application/octet-stream"), &what)
            .await?;
        if answer.code() != "XMinioAdminPolicyChangeAlreadyApplied" {
            answer.into_result(op, &what)?;
        }
        self.holders_changed(user, policies, attach);
        Ok(())
    }

    /// The bucket's size quota, `None` when it has none.
    pub(super) async fn quota(&self, bucket: &str) -> Result<Option<u64>> {
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
    pub(super) async fn set_quota(&self, bucket: &str, max_size: Option<u64>) -> Result<()> {
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

    /// The users a canned policy is attached to (none when the policy does not exist).
    // policy-entities rather than list-users: one call whose reply does not grow with the
    // number of users, and the server's own mapping, so an attachment made or removed by hand
    // is seen (and repaired) at the next resync.
    /// The users `policy` is attached to, from the shared snapshot of every mapping (patched
    /// by the operator's own attach and detach). MinIO answers who holds a policy only
    /// encrypted, with Argon2id: one list per compatibility Secret made a burst of Secrets one
    /// queue of derivations that every tenant's work waited behind. What can be stale is what
    /// someone changed behind the operator's back, for seconds (see [`crate::snapshot`]).
    pub(super) async fn shared_policy_users(&self, policy: &str) -> Result<Vec<String>> {
        let all = self
            .holders
            .get(|| async {
                let what = "every policy's users";
                let body = self.admin(Method::GET, "/idp/builtin/policy-entities", Vec::new(), what).await?;
                let plain = self.decrypt(body, "policy-entities").await?;
                let reply: PolicyEntitiesReply = parse_json(&plain, "policy-entities")?;
                Ok(reply.by_policy())
            })
            .await?;
        Ok(all.get(policy).cloned().unwrap_or_default())
    }

    /// Records an attach (`true`) or detach the operator made in the shared snapshot.
    fn holders_changed(&self, user: &str, policies: &[&str], attached: bool) {
        self.holders.patch(|all| {
            for policy in policies {
                let users = all.entry((*policy).to_string()).or_default();
                users.retain(|u| u != user);
                if attached {
                    users.push(user.to_string());
                    users.sort();
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn policy_entities_reply_parses() {
        let reply: PolicyEntitiesReply = parse_json(
            br#"{"timestamp":"2026-01-01T00:00:00Z","policyMappings":[{"policy":"s3op_compat_b","users":["U2","U1"],"groups":null},{"policy":"other","users":["X"]}]}"#,
            "t",
        )
        .unwrap();
        assert_eq!(reply.by_policy()["s3op_compat_b"], ["U1", "U2"]);
        let all: PolicyEntitiesReply = parse_json(
            br#"{"policyMappings":[{"policy":"a","users":["U2","U1","U2"]},{"policy":"b","users":null}]}"#,
            "t",
        )
        .unwrap();
        let all = all.by_policy();
        assert_eq!((all["a"].as_slice(), all["b"].len()), (["U1".to_string(), "U2".to_string()].as_slice(), 0));
        let none: PolicyEntitiesReply = parse_json(br#"{"timestamp":"2026-01-01T00:00:00Z"}"#, "t").unwrap();
        assert!(none.by_policy().is_empty());
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

        let quota: BucketQuota = parse_json(br#"{"quota":0,"size":1048576,"quotatype":"hard"}"#, "t").unwrap();
        assert_eq!(quota.max_size(), Some(1 << 20));
        let old: BucketQuota = parse_json(br#"{"quota":5,"quotatype":"hard"}"#, "t").unwrap();
        assert_eq!(old.max_size(), Some(5));
        assert_eq!(parse_json::<BucketQuota>(b"{}", "t").unwrap().max_size(), None);
        assert!(parse_json::<BucketQuota>(b"<xml/>", "t").is_err());
    }

    #[test]
    fn request_bodies_have_madmin_field_names() {
        let add = http::to_json(&AddServiceAccount { target_user: "u", access_key: "AK", secret_key: "SK" }).unwrap();
        assert_eq!(String::from_utf8(add).unwrap(), r#"{"targetUser":"u","accessKey":"AK","secretKey":"SK"}"#);
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
