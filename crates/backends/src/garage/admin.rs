//! Garage's admin API v2 (JSON, bearer token): its wire types, and the calls the backend makes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{BACKEND, Garage};
use crate::{
    BackendError, Result, SecretString,
    http::{self, encode},
    model::{Credentials, Grant, Permission, Quota},
};

/// Permissions of a key on a bucket (`ApiBucketKeyPerm`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Perm {
    #[serde(default)]
    read: bool,
    #[serde(default)]
    write: bool,
    #[serde(default)]
    owner: bool,
}

impl Perm {
    pub(super) const FULL: Perm = Perm { read: true, write: true, owner: true };
    pub(super) const NONE: Perm = Perm { read: false, write: false, owner: false };

    pub(super) fn of(permission: Permission) -> Perm {
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
    pub(super) fn minus(self, other: Perm) -> Perm {
        Perm { read: self.read && !other.read, write: self.write && !other.write, owner: self.owner && !other.owner }
    }

    pub(super) fn any(self) -> bool {
        self.read || self.write || self.owner
    }

    pub(super) fn covers(self, other: Perm) -> bool {
        !other.minus(self).any()
    }
}

/// `ApiBucketQuotas`: `null` is unlimited.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(super) struct Quotas {
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
pub(super) struct BucketDetails {
    pub(super) id: String,
    #[serde(default)]
    pub(super) global_aliases: Vec<String>,
    #[serde(default)]
    pub(super) keys: Vec<BucketKey>,
    #[serde(default)]
    pub(super) quotas: Quotas,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(super) struct BucketKey {
    pub(super) access_key_id: String,
    #[serde(default)]
    pub(super) permissions: Perm,
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
pub(super) struct KeyDetails {
    pub(super) access_key_id: String,
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) secret_access_key: Option<String>,
    #[serde(default)]
    pub(super) expired: bool,
    #[serde(default)]
    pub(super) buckets: Vec<KeyBucket>,
    #[serde(default)]
    pub(super) permissions: KeyPermissions,
}

/// A key's own rights, beyond its buckets.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct KeyPermissions {
    #[serde(default)]
    pub(super) create_bucket: bool,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(super) struct KeyBucket {
    pub(super) id: String,
    #[serde(default)]
    pub(super) global_aliases: Vec<String>,
    #[serde(default)]
    pub(super) permissions: Perm,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PermChange<'a> {
    bucket_id: &'a str,
    access_key_id: &'a str,
    permissions: Perm,
}

/// What became of an ImportKey (see [`Garage::import`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Import {
    /// The key is there with the asked name and secret.
    Done,
    /// Another key holds the id (another name or secret).
    Taken,
    /// The id was refused, yet no key holds it: it belonged to a deleted key, and Garage never
    /// imports a deleted key id again.
    Deleted,
}

/// Garage's error body.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The grants a set of keys hold, one per bucket (by first global alias), the strongest of
/// the keys'.
pub(super) fn grants_of(keys: &[KeyDetails]) -> Vec<Grant> {
    let grants: Vec<Grant> = keys
        .iter()
        .flat_map(|k| k.buckets.iter())
        .filter_map(|b| {
            let permission = b.permissions.permission()?;
            let bucket = b.global_aliases.first().cloned().unwrap_or_else(|| b.id.clone());
            Some(Grant { bucket, permission })
        })
        .collect();
    crate::recorded_grants::normalize(&grants)
}

pub(super) fn parse<T: DeserializeOwned>(text: &str, op: &str) -> Result<T> {
    http::parse_json(BACKEND, text.as_bytes(), op)
}

impl Garage {
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

    /// The cluster's health status (`healthy`, `degraded` or `unavailable`).
    pub(super) async fn cluster_status(&self) -> Result<String> {
        #[derive(Deserialize)]
        struct Health {
            status: String,
        }
        let health: Health = self.get("/v2/GetClusterHealth", "cluster").await?;
        Ok(health.status)
    }

    // ---- buckets ----

    /// The bucket known by `name`: its global alias, or else a local alias of some key (what
    /// a key with the right to create buckets gets from an S3 CreateBucket). Global first:
    /// it costs one call, and it is what the operator's buckets have.
    pub(super) async fn find_bucket(&self, name: &str) -> Result<Option<BucketDetails>> {
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
    pub(super) async fn bucket_ids(&self) -> Result<BTreeMap<String, String>> {
        let list: Vec<BucketEntry> = self.get("/v2/ListBuckets", "buckets").await?;
        Ok(list.into_iter().flat_map(|b| b.global_aliases.into_iter().map(move |a| (a, b.id.clone()))).collect())
    }

    pub(super) async fn allow(&self, bucket_id: &str, key: &str, permissions: Perm, what: &str) -> Result<()> {
        let body = PermChange { bucket_id, access_key_id: key, permissions };
        self.post("/v2/AllowBucketKey", &body, what).await.map(|_| ())
    }

    pub(super) async fn deny(&self, bucket_id: &str, key: &str, permissions: Perm, what: &str) -> Result<()> {
        let body = PermChange { bucket_id, access_key_id: key, permissions };
        self.post("/v2/DenyBucketKey", &body, what).await.map(|_| ())
    }

    /// Gives the operator's key read, write and owner on the bucket unless it has them, so it
    /// can empty it. True when a write was made.
    pub(super) async fn ensure_operator_access(&self, info: &BucketDetails, what: &str) -> Result<bool> {
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

    pub(super) async fn set_quotas(&self, id: &str, quotas: Quotas, what: &str) -> Result<()> {
        #[derive(Serialize)]
        struct Body {
            quotas: Quotas,
        }
        self.post(&format!("/v2/UpdateBucket?id={}", encode(id)), &Body { quotas }, what).await.map(|_| ())
    }

    /// CreateBucket with a global alias. The operator's key gets its access in the same call, as
    /// a local alias of the same name (one admin call saved), unless the key still holds that
    /// alias: Garage keeps it after the bucket is deleted with the admin API, and then refuses
    /// the call ("Local alias already exists"); the bucket is made with its global alias alone
    /// and the caller's `ensure_operator_access` grants the key.
    pub(super) async fn create_with_access(&self, name: &str, what: &str) -> Result<BucketDetails> {
        let body = serde_json::json!({
            "globalAlias": name,
            "localAlias": { "accessKeyId": self.config.access_key, "alias": name, "allow": Perm::FULL },
        });
        let text = match self.post("/v2/CreateBucket", &body, what).await {
            Err(BackendError::InvalidInput(m)) if m.contains("Local alias already exists") => {
                self.post("/v2/CreateBucket", &serde_json::json!({ "globalAlias": name }), what).await
            }
            other => other,
        }?;
        parse(&text, "CreateBucket")
    }

    /// Gives the bucket `name` as its global alias. A bucket made over S3 has only its
    /// creator's local alias; the global one lets every granted key reach it by name.
    pub(super) async fn add_global_alias(&self, id: &str, name: &str, what: &str) -> Result<()> {
        let body = serde_json::json!({ "bucketId": id, "globalAlias": name });
        self.post("/v2/AddBucketAlias", &body, what).await.map(|_| ())
    }

    /// DeleteBucket by id; Garage refuses (Conflict) a bucket that holds objects.
    pub(super) async fn delete_bucket_by_id(&self, id: &str, what: &str) -> Result<()> {
        self.admin(reqwest::Method::POST, &format!("/v2/DeleteBucket?id={}", encode(id)), None, what).await.map(|_| ())
    }

    /// Creates the marker bucket if missing and lets the operator's key use it.
    pub(super) async fn ensure_marker_bucket(&self) -> Result<()> {
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

    // ---- keys ----

    /// The keys named `user`, with their permissions. The operator's own key never counts,
    /// whatever its name.
    // GetKeyInfo?search matches keys whose name equals the pattern (ignoring case) or whose id
    // starts with it, and answers 400 when several match: so one call settles the common case
    // of a user with a single key, and ListKeys + one GetKeyInfo per key is the fallback.
    pub(super) async fn user_keys(&self, user: &str) -> Result<Vec<KeyDetails>> {
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

    pub(super) async fn key_info(&self, id: &str, show_secret: bool) -> Result<KeyDetails> {
        let mut path = format!("/v2/GetKeyInfo?id={}", encode(id));
        if show_secret {
            path.push_str("&showSecretKey=true");
        }
        self.get(&path, &format!("key {id}")).await
    }

    pub(super) async fn delete_key_by_id(&self, id: &str) -> Result<()> {
        match self
            .admin(reqwest::Method::POST, &format!("/v2/DeleteKey?id={}", encode(id)), None, &format!("key {id}"))
            .await
        {
            Ok(_) | Err(BackendError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Gives a fresh key the user's grants; buckets that are gone are skipped.
    pub(super) async fn apply_grants(&self, key: &str, grants: &[Grant]) -> Result<()> {
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

    pub(super) async fn import_key(&self, user: &str, creds: &Credentials) -> Result<Credentials> {
        let id = creds.access_key_id.as_str();
        let what = format!("key {id} of user {user}");
        match self.import(id, &creds.secret_access_key, user, &what).await? {
            Import::Done => Ok(creds.clone()),
            Import::Taken | Import::Deleted => Err(BackendError::Conflict {
                what,
                detail: "the access key id is taken, or was used by a deleted key (Garage never reuses one)".into(),
            }),
        }
    }

    /// ImportKey of `id` with `secret`, named `name`. A refusal is judged by the key that holds
    /// the id: one with this name and secret is a retried import (or another replica's, for
    /// the same Secret), so success.
    pub(super) async fn import(&self, id: &str, secret: &SecretString, name: &str, what: &str) -> Result<Import> {
        let body = serde_json::json!({ "accessKeyId": id, "secretAccessKey": secret.expose(), "name": name });
        match self.post("/v2/ImportKey", &body, what).await {
            Ok(_) => Ok(Import::Done),
            Err(BackendError::Conflict { .. }) => match self.key_info(id, true).await {
                Ok(k) if k.name == name && k.secret_access_key.as_deref() == Some(secret.expose()) => Ok(Import::Done),
                Ok(_) => Ok(Import::Taken),
                Err(BackendError::NotFound { .. }) => Ok(Import::Deleted),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// CreateKey named `name`: a new key with a secret Garage generates.
    pub(super) async fn create_key_named(&self, name: &str, what: &str) -> Result<Credentials> {
        let text = self.post("/v2/CreateKey", &serde_json::json!({ "name": name }), what).await?;
        let key: KeyDetails = parse(&text, "CreateKey")?;
        let secret = key.secret_access_key.ok_or_else(|| BackendError::Protocol {
            backend: BACKEND,
            detail: format!("CreateKey on {what}: no secret in the reply"),
        })?;
        Ok(Credentials { access_key_id: key.access_key_id, secret_access_key: SecretString::new(secret) })
    }

    /// Lets the key never expire (UpdateKey).
    pub(super) async fn never_expire(&self, id: &str) -> Result<()> {
        let path = format!("/v2/UpdateKey?id={}", encode(id));
        self.post(&path, &serde_json::json!({ "neverExpires": true }), &format!("access key {id}")).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
