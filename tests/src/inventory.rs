//! What a store really holds, listed with its own admin API, and the audit that compares it to
//! what the S3Buckets and S3Users of a namespace say: one store user per S3User holding exactly
//! the key in its Secret, that key working for a real S3 call, and nothing else on the store (no
//! orphaned user, key, policy, bucket or ownership marker). The reliability suite runs it after
//! faults (a store outage, an API-server restart, a killed operator).

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_s3::{
    config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation},
    primitives::ByteStream,
};
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use s3op_api::{Permission, S3Bucket, S3User, secret_keys};
use serde::Deserialize;

use crate::{
    inspect::{VgwBuckets, VgwUsers},
    rollout::list_all,
    stores::{Store, StoreKind},
};

/// MinIO's own canned policies, present on every server.
const MINIO_BUILTIN_POLICIES: [&str; 5] = ["consoleAdmin", "diagnostics", "readonly", "readwrite", "writeonly"];

/// Where MinIO serves its admin API.
const MINIO_ADMIN: &str = "/minio/admin/v3";

/// Everything on a store that the operator could have made, as the store's admin API lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Every user (VersityGW account, MinIO user, Garage key name, IAM user) but the store's
    /// administrator, with the ids of its access keys, sorted.
    pub users: BTreeMap<String, Vec<String>>,
    /// Keys the administrator holds besides its own (MinIO service accounts of the root user,
    /// Garage keys without a name); none expected.
    pub admin_keys: Vec<String>,
    /// Every bucket, the marker bucket included.
    pub buckets: BTreeSet<String>,
    /// MinIO canned policies other than the built-in ones; empty on other stores.
    pub policies: BTreeSet<String>,
    /// Object keys in the marker bucket (`users/<name>`, `buckets/<name>`, …).
    pub markers: BTreeSet<String>,
}

/// Reply of MinIO's `list-users` (decrypted): access key → details we do not need.
type MinioUsers = BTreeMap<String, serde_json::Value>;

#[derive(Deserialize)]
struct MinioServiceAccounts {
    #[serde(default)]
    accounts: Option<Vec<MinioServiceAccount>>,
}

#[derive(Deserialize)]
struct MinioServiceAccount {
    #[serde(rename = "accessKey")]
    access_key: String,
}

#[derive(Deserialize)]
struct GarageKey {
    id: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GarageBucket {
    id: String,
    #[serde(default)]
    global_aliases: Vec<String>,
}

impl Store {
    /// Lists users, keys, buckets, policies and the objects of `marker_bucket` (none when it
    /// does not exist) with the store's own admin API and the administrator's S3 key.
    pub async fn inventory(&self, marker_bucket: &str) -> Result<Inventory> {
        let mut inv = match self.kind() {
            StoreKind::Versitygw => self.versitygw_inventory().await?,
            StoreKind::Minio => self.minio_inventory().await?,
            StoreKind::Garage => self.garage_inventory().await?,
            StoreKind::Moto => self.moto_inventory().await?,
        };
        inv.markers = self.object_keys(marker_bucket).await?;
        Ok(inv)
    }

    /// A signed admin call that must answer 2xx; its reply body.
    async fn admin_ok(&self, method: &str, path: &str) -> Result<Vec<u8>> {
        let (status, body) = self.signed_admin_call(method, path, Vec::new()).await?;
        if !(200..300).contains(&status) {
            bail!("{} {method} {path}: HTTP {status}: {}", self.kind(), String::from_utf8_lossy(&body));
        }
        Ok(body)
    }

    /// A MinIO admin reply encrypted with the administrator's secret, decrypted and parsed.
    async fn minio_encrypted<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let body = self.admin_ok("GET", &format!("{MINIO_ADMIN}{path}")).await?;
        let password = self.admin_secret_key().as_bytes().to_vec();
        // Argon2id with 64 MiB: off the runtime's worker threads.
        let plain = tokio::task::spawn_blocking(move || s3op_backends::minio::madmin::decrypt_data(&password, &body))
            .await?
            .map_err(|e| anyhow!("decrypting the reply to {path}: {e}"))?;
        serde_json::from_slice(&plain).with_context(|| format!("parsing the reply to {path}"))
    }

    async fn minio_inventory(&self) -> Result<Inventory> {
        let mut inv = Inventory::default();
        let users: MinioUsers = self.minio_encrypted("/list-users").await?;
        for user in users.keys() {
            let path = format!("/list-service-accounts?user={}", s3op_backends::http::encode(user));
            let list: MinioServiceAccounts = self.minio_encrypted(&path).await?;
            let mut keys: Vec<String> = list.accounts.unwrap_or_default().into_iter().map(|a| a.access_key).collect();
            keys.sort();
            inv.users.insert(user.clone(), keys);
        }
        // Without a user, the caller's own service accounts.
        let admin: MinioServiceAccounts = self.minio_encrypted("/list-service-accounts").await?;
        inv.admin_keys = admin.accounts.unwrap_or_default().into_iter().map(|a| a.access_key).collect();
        inv.admin_keys.sort();
        let body = self.admin_ok("GET", &format!("{MINIO_ADMIN}/list-canned-policies")).await?;
        let policies: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(&body).context("parsing list-canned-policies")?;
        inv.policies =
            policies.into_keys().filter(|p| !MINIO_BUILTIN_POLICIES.contains(&p.as_str())).collect::<BTreeSet<_>>();
        inv.buckets = self.s3_bucket_names().await?;
        Ok(inv)
    }

    async fn versitygw_inventory(&self) -> Result<Inventory> {
        let mut inv = Inventory::default();
        let text = String::from_utf8(self.admin_ok("PATCH", "/list-users").await?)?;
        let users: VgwUsers = quick_xml::de::from_str(&text).context("parsing /list-users")?;
        // An account's one key is its name.
        inv.users = users.accounts.into_iter().map(|a| (a.access.clone(), vec![a.access])).collect();
        let text = String::from_utf8(self.admin_ok("PATCH", "/list-buckets").await?)?;
        let buckets: VgwBuckets = quick_xml::de::from_str(&text).context("parsing /list-buckets")?;
        inv.buckets = buckets.buckets.into_iter().map(|b| b.name).collect();
        Ok(inv)
    }

    async fn garage_inventory(&self) -> Result<Inventory> {
        let mut inv = Inventory::default();
        let keys: Vec<GarageKey> =
            serde_json::from_value(self.garage_admin_call(reqwest::Method::GET, "/v2/ListKeys", None).await?)?;
        // A user is the set of keys carrying its name (see the Garage backend).
        for key in keys.into_iter().filter(|k| k.id != self.admin_access_key()) {
            if key.name.is_empty() {
                inv.admin_keys.push(key.id);
            } else {
                inv.users.entry(key.name).or_default().push(key.id);
            }
        }
        inv.users.values_mut().for_each(|k| k.sort());
        inv.admin_keys.sort();
        let buckets: Vec<GarageBucket> =
            serde_json::from_value(self.garage_admin_call(reqwest::Method::GET, "/v2/ListBuckets", None).await?)?;
        for b in buckets {
            if b.global_aliases.is_empty() {
                // A bucket without a global name is none of the operator's doing; show it.
                inv.buckets.insert(format!("(no alias) {}", b.id));
            }
            inv.buckets.extend(b.global_aliases);
        }
        Ok(inv)
    }

    async fn moto_inventory(&self) -> Result<Inventory> {
        let mut inv = Inventory::default();
        let iam = self.iam_client();
        let mut pages = iam.list_users().into_paginator().send();
        while let Some(page) = pages.next().await {
            for user in page.map_err(|e| anyhow!("ListUsers: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?.users {
                // The enforcing moto's administrator is the harness's, not the operator's.
                if moto_admin(self, &user.user_name) {
                    continue;
                }
                let keys = iam
                    .list_access_keys()
                    .user_name(&user.user_name)
                    .send()
                    .await
                    .map_err(|e| anyhow!("ListAccessKeys: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
                let mut ids: Vec<String> =
                    keys.access_key_metadata.into_iter().filter_map(|k| k.access_key_id).collect();
                ids.sort();
                inv.users.insert(user.user_name, ids);
            }
        }
        inv.buckets = self.s3_bucket_names().await?;
        Ok(inv)
    }

    /// Bucket names from an S3 ListBuckets with the administrator's key.
    async fn s3_bucket_names(&self) -> Result<BTreeSet<String>> {
        let out = self
            .s3_client()
            .list_buckets()
            .send()
            .await
            .map_err(|e| anyhow!("ListBuckets: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(out.buckets().iter().filter_map(|b| b.name().map(str::to_string)).collect())
    }

    /// Every object key in `bucket`; none when there is no such bucket.
    async fn object_keys(&self, bucket: &str) -> Result<BTreeSet<String>> {
        let s3 = self.s3_client();
        let mut keys = BTreeSet::new();
        let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_string))),
                Err(e) if aws_sdk_s3::error::ProvideErrorMetadata::code(&e) == Some("NoSuchBucket") => break,
                Err(e) => bail!("ListObjectsV2 on {bucket}: {}", aws_sdk_s3::error::DisplayErrorContext(e)),
            }
        }
        Ok(keys)
    }
}

/// Whether `user` is the IAM administrator an enforcing moto was bootstrapped with.
fn moto_admin(store: &Store, user: &str) -> bool {
    store.moto_enforcing() && user == "s3op-admin"
}

/// An S3 client configured only from an S3User's Secret, as an app using `envFrom` would be.
pub fn app_client(secret: &Secret) -> Result<aws_sdk_s3::Client> {
    let field = |key: &str| -> Result<String> {
        let bytes = secret.data.as_ref().and_then(|d| d.get(key)).with_context(|| format!("no {key} in the Secret"))?;
        String::from_utf8(bytes.0.clone()).with_context(|| format!("{key} is not UTF-8"))
    };
    let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(20))
        .build();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(field(secret_keys::ENDPOINT_URL)?)
        .region(Region::new(field(secret_keys::REGION)?))
        .credentials_provider(Credentials::new(
            field(secret_keys::ACCESS_KEY_ID)?,
            field(secret_keys::SECRET_ACCESS_KEY)?,
            None,
            None,
            "app",
        ))
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .timeout_config(timeouts)
        .build();
    Ok(aws_sdk_s3::Client::from_conf(config))
}

/// What an audit looked at, when everything matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audit {
    /// S3Buckets checked.
    pub buckets: usize,
    /// S3Users checked, each with exactly one store user holding exactly its key.
    pub users: usize,
    /// Real S3 calls made with the Secrets' keys, all of which succeeded.
    pub key_checks: usize,
    /// What the store held.
    pub inventory: Inventory,
}

/// One S3User as its status and Secret describe it.
struct Claimed {
    object: String,
    user: String,
    key: String,
    secret: Secret,
    /// Store bucket names and permissions, from the S3Buckets it names.
    grants: Vec<(String, Permission)>,
}

/// Compares every S3Bucket and S3User in `namespace` (all must be Ready) to what `store`
/// holds, with the operator's `marker_bucket`: the store must hold exactly one user per
/// S3User, with exactly the key named in its status and Secret, every Secret's key must work
/// for a real S3 call on each bucket it is granted, and the store must hold nothing else that
/// the operator makes (users, keys, policies, buckets, ownership markers). Meant for a store
/// used by this namespace alone. Fails listing every difference.
pub async fn audit_namespace(client: &Client, namespace: &str, store: &Store, marker_bucket: &str) -> Result<Audit> {
    let bucket_api: Api<S3Bucket> = Api::namespaced(client.clone(), namespace);
    let user_api: Api<S3User> = Api::namespaced(client.clone(), namespace);
    let secret_api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut problems = Vec::new();
    let ready = |c: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]| {
        c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    };

    let mut bucket_names = BTreeMap::new();
    let s3buckets = list_all(&bucket_api).await?;
    for b in &s3buckets {
        let name = b.metadata.name.clone().unwrap_or_default();
        let status = b.status.clone().unwrap_or_default();
        if !ready(&status.conditions) {
            problems.push(format!("S3Bucket {name} is not Ready: {:?}", status.conditions));
        }
        match status.bucket_name {
            Some(bucket) => {
                bucket_names.insert(name, bucket);
            }
            None => problems.push(format!("S3Bucket {name} names no bucket in its status")),
        }
    }

    let mut claimed: Vec<Claimed> = Vec::new();
    let s3users = list_all(&user_api).await?;
    for u in &s3users {
        let object = u.metadata.name.clone().unwrap_or_default();
        let status = u.status.clone().unwrap_or_default();
        if !ready(&status.conditions) {
            problems.push(format!("S3User {object} is not Ready: {:?}", status.conditions));
        }
        let (Some(user), Some(key), Some(secret_name)) = (status.user_name, status.access_key_id, status.secret_name)
        else {
            problems.push(format!("S3User {object}: status lacks the user, key or Secret name"));
            continue;
        };
        let Some(secret) = secret_api.get_opt(&secret_name).await? else {
            problems.push(format!("S3User {object}: no Secret {secret_name}"));
            continue;
        };
        let in_secret = secret
            .data
            .as_ref()
            .and_then(|d| d.get(secret_keys::ACCESS_KEY_ID))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned());
        if in_secret.as_deref() != Some(key.as_str()) {
            problems.push(format!("S3User {object}: status names key {key}, its Secret holds {in_secret:?}"));
        }
        let grants = u
            .spec
            .access
            .iter()
            .filter_map(|a| bucket_names.get(&a.bucket).map(|b| (b.clone(), a.permission)))
            .collect();
        claimed.push(Claimed { object, user, key, secret, grants });
    }

    let inventory = store.inventory(marker_bucket).await?;
    let kind = store.kind();
    let uses_markers = kind != StoreKind::Moto;

    // Users and keys: exactly one store user per S3User, holding exactly the Secret's key.
    let mut expected_users = BTreeSet::new();
    for c in &claimed {
        if !expected_users.insert(c.user.clone()) {
            problems.push(format!("S3User {}: user {} is claimed by another S3User too", c.object, c.user));
        }
        match inventory.users.get(&c.user) {
            None => problems.push(format!("S3User {}: user {} is not on the store", c.object, c.user)),
            Some(keys) if keys != std::slice::from_ref(&c.key) => problems.push(format!(
                "S3User {}: user {} holds keys {keys:?} on the store, the Secret has {}",
                c.object, c.user, c.key
            )),
            Some(_) => {}
        }
    }
    for (user, keys) in &inventory.users {
        if !expected_users.contains(user) {
            problems.push(format!("orphaned user {user} on the store (keys {keys:?}): no S3User claims it"));
        }
    }
    if !inventory.admin_keys.is_empty() {
        problems.push(format!("orphaned keys held by the administrator: {:?}", inventory.admin_keys));
    }

    // Buckets: those of the S3Buckets, besides the marker bucket (its objects are compared below).
    let expected_buckets: BTreeSet<String> = bucket_names.values().cloned().collect();
    let mut buckets = inventory.buckets.clone();
    if uses_markers {
        buckets.remove(marker_bucket);
    }
    diff(&mut problems, "bucket", &expected_buckets, &buckets);

    // MinIO keeps each user's grants in one canned policy named after it.
    let expected_policies: BTreeSet<String> = if kind == StoreKind::Minio {
        expected_users.iter().map(|u| format!("s3op-{u}")).collect()
    } else {
        BTreeSet::new()
    };
    diff(&mut problems, "policy", &expected_policies, &inventory.policies);

    // Ownership markers: one per user and one per bucket (written before it is created).
    if uses_markers {
        let mut expected_markers: BTreeSet<String> = expected_users.iter().map(|u| format!("users/{u}")).collect();
        expected_markers.extend(bucket_names.values().map(|b| format!("buckets/{b}")));
        diff(&mut problems, "marker", &expected_markers, &inventory.markers);
    }

    // Every Secret's key works, for what it is granted.
    let checks: Vec<(String, Secret, String, Permission)> = claimed
        .iter()
        .flat_map(|c| c.grants.iter().map(|(b, p)| (c.object.clone(), c.secret.clone(), b.clone(), *p)))
        .collect();
    let key_checks = checks.len();
    let failures: Vec<String> = stream::iter(checks)
        .map(|(object, secret, bucket, permission)| async move {
            key_works(&secret, &bucket, permission).await.err().map(|e| format!("S3User {object}: {e:#}"))
        })
        .buffer_unordered(16)
        .filter_map(|r| async move { r })
        .collect()
        .await;
    problems.extend(failures);

    if !problems.is_empty() {
        let total = problems.len();
        problems.truncate(40);
        let not_ready =
            describe_not_ready(client, namespace).await.unwrap_or_else(|e| format!("(not described: {e:#})"));
        bail!(
            "{total} difference(s) between namespace {namespace} and the {kind} store:\n{}\nobjects not Ready:\n{not_ready}",
            problems.join("\n")
        );
    }
    Ok(Audit { buckets: s3buckets.len(), users: s3users.len(), key_checks, inventory })
}

/// Adds one problem per name missing from `have` and per name in `have` not expected.
fn diff(problems: &mut Vec<String>, what: &str, want: &BTreeSet<String>, have: &BTreeSet<String>) {
    for missing in want.difference(have) {
        problems.push(format!("{what} {missing} is missing on the store"));
    }
    for extra in have.difference(want) {
        problems.push(format!("orphaned {what} {extra} on the store"));
    }
}

/// A real S3 call with the Secret's key on `bucket`: a ReadWrite key puts, reads back and
/// removes an object; a ReadOnly key lists.
async fn key_works(secret: &Secret, bucket: &str, permission: Permission) -> Result<()> {
    let s3 = app_client(secret)?;
    let sdk = |op: &str, e: &dyn std::error::Error| anyhow!("{op} on {bucket}: {}", sdk_text(e));
    match permission {
        Permission::ReadOnly => {
            s3.list_objects_v2().bucket(bucket).send().await.map_err(|e| sdk("ListObjectsV2", &e))?;
        }
        Permission::ReadWrite => {
            let key = "s3op-audit-probe";
            let body = b"written with the Secret's key";
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from_static(body))
                .send()
                .await
                .map_err(|e| sdk("PutObject", &e))?;
            let got = s3.get_object().bucket(bucket).key(key).send().await.map_err(|e| sdk("GetObject", &e))?;
            let bytes = got.body.collect().await.context("reading the object")?.into_bytes();
            if bytes.as_ref() != body {
                bail!("GetObject on {bucket} returned other bytes");
            }
            // Leaves the bucket as it was, so deleting its S3Bucket needs no forceDelete.
            s3.delete_object().bucket(bucket).key(key).send().await.map_err(|e| sdk("DeleteObject", &e))?;
        }
    }
    Ok(())
}

fn sdk_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A report on every S3Bucket and S3User of `namespace` that is not Ready: its metadata
/// (uid, generation, finalizers, who wrote it), status, and the events about it; for the
/// failure message of a test that waited in vain.
pub async fn describe_not_ready(client: &Client, namespace: &str) -> Result<String> {
    use k8s_openapi::api::core::v1::Event;
    use kube::{Resource, api::ListParams};

    fn summary<K: Resource>(obj: &K, status: String) -> String {
        let m = obj.meta();
        let managers: Vec<String> = m
            .managed_fields
            .iter()
            .flatten()
            .map(|f| {
                format!(
                    "{}/{}{}",
                    f.manager.as_deref().unwrap_or("?"),
                    f.operation.as_deref().unwrap_or("?"),
                    f.subresource.as_deref().map(|s| format!("/{s}")).unwrap_or_default()
                )
            })
            .collect();
        format!(
            "uid {} generation {:?} resourceVersion {:?} finalizers {:?} deleting {} written by {managers:?}\n  status {status}",
            m.uid.as_deref().unwrap_or("?"),
            m.generation,
            m.resource_version,
            m.finalizers,
            m.deletion_timestamp.is_some()
        )
    }
    let ready = |c: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]| {
        c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    };
    let mut out = Vec::new();
    for b in list_all(&Api::<S3Bucket>::namespaced(client.clone(), namespace)).await? {
        if !ready(&b.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default()) {
            out.push((
                format!("S3Bucket {}", b.metadata.name.clone().unwrap_or_default()),
                summary(&b, format!("{:?}", b.status)),
            ));
        }
    }
    for u in list_all(&Api::<S3User>::namespaced(client.clone(), namespace)).await? {
        if !ready(&u.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default()) {
            out.push((
                format!("S3User {}", u.metadata.name.clone().unwrap_or_default()),
                summary(&u, format!("{:?}", u.status)),
            ));
        }
    }
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let mut text = String::new();
    for (what, summary) in out {
        let name = what.split(' ').nth(1).unwrap_or_default().to_string();
        let lp = ListParams::default().fields(&format!("involvedObject.name={name}"));
        let notes: Vec<String> = events
            .list(&lp)
            .await
            .map(|l| {
                l.items
                    .iter()
                    .map(|e| {
                        format!(
                            "{} {} x{}: {}",
                            e.type_.as_deref().unwrap_or("?"),
                            e.reason.as_deref().unwrap_or("?"),
                            e.count.unwrap_or(1),
                            e.message.as_deref().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_else(|e| vec![format!("(events not listed: {e})")]);
        text.push_str(&format!("{what}: {summary}\n  events {notes:?}\n"));
    }
    Ok(text)
}

/// The events of `namespace` with `reason` (e.g. `Recreated`), as "kind/name: message".
pub async fn events_with_reason(client: &Client, namespace: &str, reason: &str) -> Result<Vec<String>> {
    use k8s_openapi::api::core::v1::Event;
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let lp = kube::api::ListParams::default().fields(&format!("reason={reason}"));
    Ok(events
        .list(&lp)
        .await?
        .items
        .into_iter()
        .map(|e| {
            format!(
                "{}/{}: {}",
                e.involved_object.kind.unwrap_or_default(),
                e.involved_object.name.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
        .collect())
}
