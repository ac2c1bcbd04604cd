//! Reading a store back through its own admin API, independently of the backend under test,
//! to prove what the operator created or changed and, as much, what it did not: every account
//! with its role and ids, every bucket's owner, every marker object.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use s3op_backends::{SecretString, http::sigv4_headers, minio::madmin};
use serde::Deserialize;

use crate::stores::{Store, StoreKind};

/// One account as the store lists it. Its secret is kept only to compare snapshots, never
/// printed (`Debug` hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// Role (VersityGW) or status (MinIO).
    pub role: String,
    /// POSIX user id (VersityGW; 0 elsewhere).
    pub user_id: u32,
    /// POSIX group id (VersityGW; 0 elsewhere).
    pub group_id: u32,
    /// Attached policies (MinIO; empty elsewhere).
    pub policies: String,
    secret: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("role", &self.role)
            .field("user_id", &self.user_id)
            .field("group_id", &self.group_id)
            .field("policies", &self.policies)
            .finish_non_exhaustive()
    }
}

impl Account {
    /// True when the store holds exactly `secret` for this account (VersityGW only: MinIO
    /// never returns secrets).
    pub fn secret_is(&self, secret: &str) -> bool {
        self.secret == secret
    }
}

/// Everything the admin API says about the store's identities and buckets.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Accounts (VersityGW) or users (MinIO) by access key.
    pub accounts: BTreeMap<String, Account>,
    /// Buckets by name, with the owner's access key (VersityGW) or "" where buckets have none.
    pub buckets: BTreeMap<String, String>,
    /// Policies with their document: MinIO's canned policies by name, VersityGW's bucket
    /// policies as `bucket <name>`.
    pub policies: BTreeMap<String, String>,
}

impl Snapshot {
    /// What `after` holds that this snapshot did not, and what it changed or removed.
    pub fn diff(&self, after: &Snapshot) -> SnapshotDiff {
        fn delta<V: PartialEq + Clone>(
            a: &BTreeMap<String, V>,
            b: &BTreeMap<String, V>,
        ) -> (Vec<String>, Vec<String>, Vec<String>) {
            let added = b.keys().filter(|k| !a.contains_key(*k)).cloned().collect();
            let removed = a.keys().filter(|k| !b.contains_key(*k)).cloned().collect();
            let changed =
                a.iter().filter(|(k, v)| b.get(*k).is_some_and(|w| w != *v)).map(|(k, _)| k.clone()).collect();
            (added, changed, removed)
        }
        let (accounts_added, accounts_changed, accounts_removed) = delta(&self.accounts, &after.accounts);
        let (buckets_added, buckets_changed, buckets_removed) = delta(&self.buckets, &after.buckets);
        let (policies_added, policies_changed, policies_removed) = delta(&self.policies, &after.policies);
        SnapshotDiff {
            accounts_added,
            accounts_changed,
            accounts_removed,
            buckets_added,
            buckets_changed,
            buckets_removed,
            policies_added,
            policies_changed,
            policies_removed,
        }
    }
}

/// The difference between two snapshots, by name.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SnapshotDiff {
    /// New accounts.
    pub accounts_added: Vec<String>,
    /// Accounts whose role, ids, policies or secret changed.
    pub accounts_changed: Vec<String>,
    /// Accounts that went.
    pub accounts_removed: Vec<String>,
    /// New buckets.
    pub buckets_added: Vec<String>,
    /// Buckets whose owner changed.
    pub buckets_changed: Vec<String>,
    /// Buckets that went.
    pub buckets_removed: Vec<String>,
    /// New canned policies.
    pub policies_added: Vec<String>,
    /// Canned policies whose document changed.
    pub policies_changed: Vec<String>,
    /// Canned policies that went.
    pub policies_removed: Vec<String>,
}

/// Reads the store's accounts, bucket owners and policies through its admin API.
pub async fn snapshot(store: &Store) -> Result<Snapshot> {
    match store.kind() {
        StoreKind::Versitygw => versitygw_snapshot(store).await,
        StoreKind::Minio => minio_snapshot(store).await,
        other => bail!("no admin snapshot for {other}"),
    }
}

/// Every object key in `bucket` (the operator's markers, say), read with the admin key.
pub async fn object_keys(store: &Store, bucket: &str) -> Result<Vec<String>> {
    let s3 = store.s3_client();
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = s3.list_objects_v2().bucket(bucket).set_continuation_token(token).send().await;
        let page = match page {
            Ok(p) => p,
            Err(e) if aws_sdk_s3::error::ProvideErrorMetadata::code(&e) == Some("NoSuchBucket") => return Ok(keys),
            Err(e) => return Err(e).with_context(|| format!("listing {bucket}")),
        };
        keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_string)));
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => return Ok(keys),
        }
    }
}

/// One admin call signed with the store's administrator key; the reply's status and body.
async fn signed(store: &Store, method: &str, url: &str) -> Result<(u16, Vec<u8>)> {
    let secret = SecretString::new(store.admin_secret_key());
    let headers = sigv4_headers(method, url, &[], store.region(), store.admin_access_key(), &secret)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut req = reqwest::Client::new().request(method.parse()?, url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.with_context(|| format!("{method} {url}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.bytes().await?.to_vec()))
}

async fn ok_body(store: &Store, method: &str, url: &str) -> Result<Vec<u8>> {
    let (status, body) = signed(store, method, url).await?;
    if !(200..300).contains(&status) {
        bail!("{method} {url}: HTTP {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(body)
}

#[derive(Deserialize, Default)]
pub(crate) struct VgwUsers {
    #[serde(rename = "Accounts", default)]
    pub(crate) accounts: Vec<VgwAccount>,
}

#[derive(Deserialize)]
pub(crate) struct VgwAccount {
    #[serde(rename = "Access")]
    pub(crate) access: String,
    #[serde(rename = "Secret", default)]
    pub(crate) secret: String,
    #[serde(rename = "Role", default)]
    pub(crate) role: String,
    #[serde(rename = "UserID", default)]
    pub(crate) user_id: u32,
    #[serde(rename = "GroupID", default)]
    pub(crate) group_id: u32,
}

#[derive(Deserialize, Default)]
pub(crate) struct VgwBuckets {
    #[serde(rename = "Buckets", default)]
    pub(crate) buckets: Vec<VgwBucket>,
}

#[derive(Deserialize)]
pub(crate) struct VgwBucket {
    #[serde(rename = "Name")]
    pub(crate) name: String,
    #[serde(rename = "Owner", default)]
    pub(crate) owner: String,
}

fn xml<T: for<'de> Deserialize<'de> + Default>(body: &[u8], what: &str) -> Result<T> {
    let text = std::str::from_utf8(body).with_context(|| format!("{what}: not UTF-8"))?;
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    quick_xml::de::from_str(text).with_context(|| format!("{what}: not the expected XML"))
}

async fn versitygw_snapshot(store: &Store) -> Result<Snapshot> {
    let base = store.endpoint().trim_end_matches('/');
    let users: VgwUsers = xml(&ok_body(store, "PATCH", &format!("{base}/list-users")).await?, "list-users")?;
    let buckets: VgwBuckets = xml(&ok_body(store, "PATCH", &format!("{base}/list-buckets")).await?, "list-buckets")?;
    // Grants are bucket policies: a takeover through one must show as a change.
    let mut policies = BTreeMap::new();
    for b in &buckets.buckets {
        if let Ok(out) = store.s3_client().get_bucket_policy().bucket(&b.name).send().await
            && let Some(doc) = out.policy()
        {
            let doc = serde_json::from_str(doc).map_or_else(|_| doc.to_string(), |v| canonical(v).to_string());
            policies.insert(format!("bucket {}", b.name), doc);
        }
    }
    Ok(Snapshot {
        accounts: users
            .accounts
            .into_iter()
            .map(|a| {
                let account = Account {
                    role: a.role,
                    user_id: a.user_id,
                    group_id: a.group_id,
                    policies: String::new(),
                    secret: a.secret,
                };
                (a.access, account)
            })
            .collect(),
        buckets: buckets.buckets.into_iter().map(|b| (b.name, b.owner)).collect(),
        policies,
    })
}

/// A policy document with every list sorted: MinIO builds its own policies' action lists from
/// Go maps, so their order changes from one reply to the next while nothing changed.
fn canonical(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Array(items) => {
            let mut items: Vec<serde_json::Value> = items.into_iter().map(canonical).collect();
            items.sort_by_cached_key(serde_json::Value::to_string);
            serde_json::Value::Array(items)
        }
        serde_json::Value::Object(map) => {
            serde_json::Value::Object(map.into_iter().map(|(k, v)| (k, canonical(v))).collect())
        }
        other => other,
    }
}

#[derive(Deserialize)]
struct MinioUser {
    #[serde(rename = "policyName", default)]
    policy_name: String,
    #[serde(default)]
    status: String,
}

async fn minio_snapshot(store: &Store) -> Result<Snapshot> {
    let admin = format!("{}/minio/admin/v3", store.endpoint().trim_end_matches('/'));
    let sealed = ok_body(store, "GET", &format!("{admin}/list-users")).await?;
    let password = store.admin_secret_key().to_string();
    let plain = tokio::task::spawn_blocking(move || madmin::decrypt_data(password.as_bytes(), &sealed))
        .await?
        .map_err(|e| anyhow::anyhow!("list-users reply: {e}"))?;
    let users: BTreeMap<String, MinioUser> = serde_json::from_slice(&plain).context("list-users: not JSON")?;
    let policies: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&ok_body(store, "GET", &format!("{admin}/list-canned-policies")).await?)
            .context("list-canned-policies: not JSON")?;
    let buckets = store.s3_client().list_buckets().send().await.context("ListBuckets")?;
    Ok(Snapshot {
        accounts: users
            .into_iter()
            .map(|(k, u)| {
                let account =
                    Account { role: u.status, user_id: 0, group_id: 0, policies: u.policy_name, secret: String::new() };
                (k, account)
            })
            .collect(),
        buckets: buckets.buckets().iter().filter_map(|b| b.name().map(|n| (n.to_string(), String::new()))).collect(),
        policies: policies.into_iter().map(|(k, v)| (k, canonical(v).to_string())).collect(),
    })
}
