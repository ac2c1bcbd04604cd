//! S3 primitives shared by every S3-compatible store (VersityGW, MinIO, Garage, AWS), on
//! aws-sdk-s3: the client, bucket existence, creation, versioning, tags, emptying and deletion,
//! and the one mapping of SDK errors to [`BackendError`]. Knows nothing of claims: the ledger
//! is built on these, and [`crate::claimed_buckets`] on both.

use std::{collections::BTreeMap, time::Duration};

use aws_sdk_s3::{
    Client,
    config::{
        BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
        retry::RetryConfig, timeout::TimeoutConfig,
    },
    error::{ProvideErrorMetadata, SdkError},
    types::{
        BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, Delete, ObjectIdentifier, Tag,
        Tagging, VersioningConfiguration,
    },
};

use crate::{
    BackendError, Result, SecretString,
    model::{BucketDeletion, Owner, Versioning},
};

/// Tag key of the ownership marker: namespace of the owning object.
pub const TAG_NAMESPACE: &str = "s3-resource-operator.io/namespace";
/// Tag key of the ownership marker: name of the owning object.
pub const TAG_NAME: &str = "s3-resource-operator.io/name";
/// Tag key of the ownership marker: uid of the owning object.
pub const TAG_UID: &str = "s3-resource-operator.io/uid";

/// Objects counted before a bucket is reported non-empty (the count is only informative).
pub const COUNT_LIMIT: u64 = 1000;

/// Most keys one DeleteObjects call may name (the S3 limit).
const DELETE_BATCH: usize = 1000;

/// An S3 client for an S3-compatible store: path-style addressing (no per-bucket DNS names),
/// checksums only when an operation requires them (the SDK's default CRC32 checksums since
/// 1.69 break several S3-compatible servers), short connect/operation timeouts and a bounded
/// number of attempts, so a dead store fails within seconds instead of hanging a reconcile.
pub fn client(
    endpoint: &str,
    region: &str,
    access_key: &str,
    secret_key: &SecretString,
    ca_bundle: Option<&str>,
) -> Result<Client> {
    let mut config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new(access_key, secret_key.expose(), None, None, "s3-resource-operator"))
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(8))
                .operation_timeout(Duration::from_secs(15))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3));
    if let Some(http) = crate::http::sdk_client(ca_bundle)? {
        config = config.http_client(http);
    }
    Ok(Client::from_conf(config.build()))
}

/// Maps an SDK error to a [`BackendError`]. `op` is the S3 operation (also the feature named
/// by `Unsupported`), `what` the bucket or object concerned. Messages carry the status, the
/// store's error code and message, never request headers (so never credentials).
pub fn map_error<E>(backend: &'static str, op: &'static str, what: &str, err: SdkError<E>) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(failed) = unanswered(backend, op, what, &err) {
        return failed;
    }
    let (code, status, detail) = answer_of(op, what, &err);
    match (code.as_str(), status) {
        ("NotImplemented", _) | (_, Some(501)) => BackendError::Unsupported { backend, feature: op },
        ("AccessDenied" | "SignatureDoesNotMatch" | "InvalidAccessKeyId", _) | (_, Some(403)) => {
            BackendError::Forbidden(detail)
        }
        ("NoSuchBucket" | "NoSuchKey" | "NotFound", _) | (_, Some(404)) => BackendError::NotFound { what: detail },
        ("BucketAlreadyExists" | "BucketAlreadyOwnedByYou" | "BucketNotEmpty" | "OperationAborted", _)
        | (_, Some(409)) => BackendError::Conflict { what: what.to_string(), detail },
        ("SlowDown" | "ServiceUnavailable" | "InternalError", _) | (_, Some(429 | 500..=599)) => {
            BackendError::Unavailable { backend, cause: detail }
        }
        (_, Some(400)) => BackendError::InvalidInput(detail),
        _ => BackendError::Protocol { backend, detail },
    }
}

/// The classes of an SDK call that got no answer, the same for S3 and IAM: no connection or a
/// timeout is `Unreachable`, a request that could not even be built is `Protocol`.
pub fn unanswered<E>(backend: &'static str, op: &'static str, what: &str, err: &SdkError<E>) -> Option<BackendError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => Some(BackendError::Unreachable {
            backend,
            cause: format!("{op} on {what}: {}", aws_sdk_s3::error::DisplayErrorContext(err)),
        }),
        SdkError::ConstructionFailure(_) => Some(BackendError::Protocol {
            backend,
            detail: format!(
                "{op} on {what}: request could not be built: {}",
                aws_sdk_s3::error::DisplayErrorContext(err)
            ),
        }),
        _ => None,
    }
}

/// The error code, HTTP status and a message naming the call of an answered SDK error; each API
/// classifies its own codes.
pub fn answer_of<E>(op: &'static str, what: &str, err: &SdkError<E>) -> (String, Option<u16>, String)
where
    E: ProvideErrorMetadata,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().unwrap_or("").to_string();
    let detail = format!(
        "{op} on {what}: HTTP {}: {code}: {}",
        status.map_or_else(|| "?".to_string(), |s| s.to_string()),
        err.message().unwrap_or("")
    );
    (code, status, detail)
}

/// Splits a tag set into the ownership marker (when namespace and name are both present) and
/// the user's tags.
pub fn split_tags(tags: impl IntoIterator<Item = (String, String)>) -> (Option<Owner>, BTreeMap<String, String>) {
    let mut user = BTreeMap::new();
    let (mut namespace, mut name, mut uid) = (None, None, None);
    for (k, v) in tags {
        match k.as_str() {
            TAG_NAMESPACE => namespace = Some(v),
            TAG_NAME => name = Some(v),
            TAG_UID => uid = Some(v),
            _ => {
                user.insert(k, v);
            }
        }
    }
    let owner = match (namespace, name) {
        (Some(namespace), Some(name)) => Some(Owner::s3bucket(namespace, name, uid.unwrap_or_default())),
        _ => None,
    };
    (owner, user)
}

/// The user tags with the ownership marker of `owner` merged in (the marker wins over a user
/// tag of the same key, so a tenant cannot forge or erase it).
pub fn merge_tags(owner: &Owner, tags: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut all: BTreeMap<String, String> = tags
        .iter()
        .filter(|(k, _)| !k.starts_with("s3-resource-operator.io/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    all.insert(TAG_NAMESPACE.to_string(), owner.namespace.clone());
    all.insert(TAG_NAME.to_string(), owner.name.clone());
    all.insert(TAG_UID.to_string(), owner.uid.clone());
    all
}

/// An S3-compatible store as the backends speak to it: the SDK client, and the store's name
/// that every error it maps carries. Cheap to clone (the client is shared).
#[derive(Clone, Debug)]
pub struct S3 {
    client: Client,
    backend: &'static str,
}

impl S3 {
    /// The store `backend` at `endpoint`, with [`client`]'s settings.
    pub fn connect(
        backend: &'static str,
        endpoint: &str,
        region: &str,
        access_key: &str,
        secret_key: &SecretString,
        ca_bundle: Option<&str>,
    ) -> Result<Self> {
        Ok(Self::new(client(endpoint, region, access_key, secret_key, ca_bundle)?, backend))
    }

    /// A client built elsewhere (AWS's, from the standard configuration chain).
    pub fn new(client: Client, backend: &'static str) -> Self {
        Self { client, backend }
    }

    /// The SDK client, for requests no primitive here makes.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The store's name, as errors carry it.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// [`map_error`] for this store.
    pub fn map_error<E>(&self, op: &'static str, what: &str, err: SdkError<E>) -> BackendError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        map_error(self.backend, op, what, err)
    }

    /// True when the bucket exists (HeadBucket; 404 is `false`).
    pub async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(true),
            Err(e) => match self.map_error("HeadBucket", &format!("bucket {bucket}"), e) {
                BackendError::NotFound { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    /// Creates a bucket, with object lock when asked (which can only be chosen at creation). The
    /// region of the client is sent as LocationConstraint unless it is us-east-1, as AWS requires.
    pub async fn create_bucket(&self, bucket: &str, object_lock: bool) -> Result<()> {
        let mut req = self.client.create_bucket().bucket(bucket);
        if object_lock {
            req = req.object_lock_enabled_for_bucket(true);
        }
        if let Some(region) = self.client.config().region().map(|r| r.as_ref().to_string())
            && region != "us-east-1"
        {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        req.send().await.map(|_| ()).map_err(|e| self.map_error("CreateBucket", &format!("bucket {bucket}"), e))
    }

    /// The bucket's versioning state; `None` when it was never set.
    pub async fn get_versioning(&self, bucket: &str) -> Result<Option<Versioning>> {
        let out = self
            .client
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| self.map_error("GetBucketVersioning", &format!("bucket {bucket}"), e))?;
        Ok(match out.status() {
            Some(BucketVersioningStatus::Enabled) => Some(Versioning::Enabled),
            Some(BucketVersioningStatus::Suspended) => Some(Versioning::Suspended),
            _ => None,
        })
    }

    /// Sets the bucket's versioning state.
    pub async fn put_versioning(&self, bucket: &str, versioning: Versioning) -> Result<()> {
        let status = match versioning {
            Versioning::Enabled => BucketVersioningStatus::Enabled,
            Versioning::Suspended => BucketVersioningStatus::Suspended,
        };
        self.client
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(VersioningConfiguration::builder().status(status).build())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.map_error("PutBucketVersioning", &format!("bucket {bucket}"), e))
    }

    /// True when the bucket was created with object lock.
    pub async fn object_lock_enabled(&self, bucket: &str) -> Result<bool> {
        match self.client.get_object_lock_configuration().bucket(bucket).send().await {
            Ok(out) => Ok(out.object_lock_configuration().and_then(|c| c.object_lock_enabled()).is_some()),
            Err(e) => {
                // AWS answers 404 ObjectLockConfigurationNotFoundError for a bucket without it.
                let code = e.code().unwrap_or("").to_string();
                match self.map_error("GetObjectLockConfiguration", &format!("bucket {bucket}"), e) {
                    BackendError::NotFound { .. } => Ok(false),
                    _ if code.contains("ObjectLockConfigurationNotFound") => Ok(false),
                    other => Err(other),
                }
            }
        }
    }

    /// The bucket's ownership marker and user tags. A bucket without tags gives `(None, {})`.
    pub async fn get_tags(&self, bucket: &str) -> Result<(Option<Owner>, BTreeMap<String, String>)> {
        match self.client.get_bucket_tagging().bucket(bucket).send().await {
            Ok(out) => Ok(split_tags(out.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())))),
            Err(e) => {
                // No tag set is an error on S3 (404 NoSuchTagSet), not an empty answer; a 404
                // for the bucket itself is told apart by its code.
                let code = e.code().unwrap_or("").to_string();
                if code == "NoSuchTagSet" || code == "NoSuchTagSetError" {
                    return Ok((None, BTreeMap::new()));
                }
                Err(self.map_error("GetBucketTagging", &format!("bucket {bucket}"), e))
            }
        }
    }

    /// The bucket's policy document as stored; `None` when it has none. A missing bucket is
    /// `NotFound`.
    pub async fn get_bucket_policy(&self, bucket: &str) -> Result<Option<String>> {
        match self.client.get_bucket_policy().bucket(bucket).send().await {
            Ok(out) => Ok(out.policy().map(str::to_string).filter(|p| !p.trim().is_empty())),
            Err(e) => {
                // Like tags: no policy is a 404 of its own code, told apart from a missing bucket.
                if e.code() == Some("NoSuchBucketPolicy") {
                    return Ok(None);
                }
                Err(self.map_error("GetBucketPolicy", &format!("bucket {bucket}"), e))
            }
        }
    }

    /// Replaces the bucket's policy with `policy` (a JSON document).
    pub async fn put_bucket_policy(&self, bucket: &str, policy: &str) -> Result<()> {
        self.client
            .put_bucket_policy()
            .bucket(bucket)
            .policy(policy)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.map_error("PutBucketPolicy", &format!("bucket {bucket}"), e))
    }

    /// Removes the bucket's policy; none there is success.
    pub async fn delete_bucket_policy(&self, bucket: &str) -> Result<()> {
        match self.client.delete_bucket_policy().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("NoSuchBucketPolicy") => Ok(()),
            Err(e) => Err(self.map_error("DeleteBucketPolicy", &format!("bucket {bucket}"), e)),
        }
    }

    /// Replaces the bucket's tags with `tags` plus the ownership marker of `owner`.
    pub async fn put_tags(&self, bucket: &str, owner: &Owner, tags: &BTreeMap<String, String>) -> Result<()> {
        let what = format!("bucket {bucket}");
        let mut set = Vec::new();
        for (k, v) in merge_tags(owner, tags) {
            set.push(
                Tag::builder().key(k).value(v).build().map_err(|e| BackendError::InvalidInput(format!("tag: {e}")))?,
            );
        }
        let tagging = Tagging::builder()
            .set_tag_set(Some(set))
            .build()
            .map_err(|e| BackendError::InvalidInput(format!("tags: {e}")))?;
        self.client
            .put_bucket_tagging()
            .bucket(bucket)
            .tagging(tagging)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.map_error("PutBucketTagging", &what, e))
    }

    /// Every object version and delete marker of the bucket, as DeleteObjects identifiers, at most
    /// `limit` of them.
    async fn list_versions(&self, bucket: &str, limit: u64) -> Result<Vec<ObjectIdentifier>> {
        let what = format!("bucket {bucket}");
        let mut out = Vec::new();
        let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(bucket)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| self.map_error("ListObjectVersions", &what, e))?;
            let versions = page.versions().iter().map(|v| (v.key(), v.version_id()));
            let markers = page.delete_markers().iter().map(|m| (m.key(), m.version_id()));
            for (key, version) in versions.chain(markers) {
                let Some(key) = key else { continue };
                let id =
                    ObjectIdentifier::builder().key(key).set_version_id(version.map(str::to_string)).build().map_err(
                        |e| BackendError::Protocol {
                            backend: self.backend,
                            detail: format!("ListObjectVersions on {what}: {e}"),
                        },
                    )?;
                out.push(id);
                if out.len() as u64 >= limit {
                    return Ok(out);
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(out);
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
            if key_marker.is_none() {
                // A truncated page without a marker would loop for ever.
                return Err(BackendError::Protocol {
                    backend: self.backend,
                    detail: format!("ListObjectVersions on {what}: truncated without a marker"),
                });
            }
        }
    }

    /// Objects, versions and delete markers in the bucket, counting up to `limit`.
    pub async fn count_objects(&self, bucket: &str, limit: u64) -> Result<u64> {
        Ok(self.list_versions(bucket, limit).await?.len() as u64)
    }

    /// Removes every object version and delete marker, in DeleteObjects batches (quiet mode, so
    /// only failures are reported). Returns how many were removed.
    pub async fn empty_bucket(&self, bucket: &str) -> Result<u64> {
        let mut removed = 0u64;
        loop {
            let batch = self.list_versions(bucket, DELETE_BATCH as u64).await?;
            if batch.is_empty() {
                return Ok(removed);
            }
            removed += self.delete_batch(bucket, batch).await?;
        }
    }

    /// One DeleteObjects call (quiet mode); any object it could not delete is a `Conflict`, since
    /// listing again would find the same keys: the caller retries later.
    async fn delete_batch(&self, bucket: &str, batch: Vec<ObjectIdentifier>) -> Result<u64> {
        let what = format!("bucket {bucket}");
        let n = batch.len() as u64;
        let delete = Delete::builder().set_objects(Some(batch)).quiet(true).build().map_err(|e| {
            BackendError::Protocol { backend: self.backend, detail: format!("DeleteObjects on {what}: {e}") }
        })?;
        let out = self
            .client
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| self.map_error("DeleteObjects", &what, e))?;
        if let Some(first) = out.errors().first() {
            return Err(BackendError::Conflict {
                what,
                detail: format!(
                    "{} objects could not be deleted, first {:?}: {} {}",
                    out.errors().len(),
                    first.key().unwrap_or(""),
                    first.code().unwrap_or(""),
                    first.message().unwrap_or("")
                ),
            });
        }
        Ok(n)
    }

    /// Deletes an empty bucket; a bucket already gone is `AlreadyGone`.
    pub async fn delete_bucket(&self, bucket: &str) -> Result<BucketDeletion> {
        match self.client.delete_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(BucketDeletion::Deleted),
            Err(e) => match self.map_error("DeleteBucket", &format!("bucket {bucket}"), e) {
                BackendError::NotFound { .. } => Ok(BucketDeletion::AlreadyGone),
                other => Err(other),
            },
        }
    }

    /// Up to `limit` object keys of a bucket, from ListObjectsV2: for stores without versioning
    /// (Garage answers NotImplemented to ListObjectVersions).
    async fn list_current_keys(&self, bucket: &str, limit: u64) -> Result<Vec<String>> {
        let what = format!("bucket {bucket}");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.map_error("ListObjectsV2", &what, e))?;
            for key in page.contents().iter().filter_map(|o| o.key()) {
                out.push(key.to_string());
                if out.len() as u64 >= limit {
                    return Ok(out);
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(out);
            }
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Err(BackendError::Protocol {
                    backend: self.backend,
                    detail: format!("ListObjectsV2 on {what}: truncated without a continuation token"),
                });
            }
        }
    }

    /// Objects in a bucket of a store without versioning, counting up to `limit`.
    pub async fn count_current_objects(&self, bucket: &str, limit: u64) -> Result<u64> {
        Ok(self.list_current_keys(bucket, limit).await?.len() as u64)
    }

    /// [`S3::empty_bucket`] for a store without versioning: removes every object listed by
    /// ListObjectsV2, in DeleteObjects batches. Returns how many were removed.
    pub async fn empty_unversioned_bucket(&self, bucket: &str) -> Result<u64> {
        let what = format!("bucket {bucket}");
        let mut removed = 0u64;
        loop {
            let keys = self.list_current_keys(bucket, DELETE_BATCH as u64).await?;
            if keys.is_empty() {
                return Ok(removed);
            }
            let batch = keys
                .into_iter()
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| BackendError::Protocol {
                    backend: self.backend,
                    detail: format!("DeleteObjects on {what}: {e}"),
                })?;
            removed += self.delete_batch(bucket, batch).await?;
        }
    }
}

/// Where a bucket's versioning state is read from: the SDK's GetBucketVersioning (an [`S3`]),
/// unless a store answers it in a way the SDK rejects.
#[async_trait::async_trait]
pub trait VersioningSource: Send + Sync + std::fmt::Debug {
    /// The bucket's versioning state; `None` when it was never set.
    async fn bucket_versioning(&self, bucket: &str) -> Result<Option<Versioning>>;
}

#[async_trait::async_trait]
impl VersioningSource for S3 {
    async fn bucket_versioning(&self, bucket: &str) -> Result<Option<Versioning>> {
        self.get_versioning(bucket).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn marker_tags_round_trip_and_cannot_be_forged() {
        let owner = Owner::s3bucket("ns", "b", "u-1");
        let mut tags = BTreeMap::from([("team".to_string(), "payments".to_string())]);
        tags.insert(TAG_NAMESPACE.to_string(), "evil".to_string());
        let all = merge_tags(&owner, &tags);
        assert_eq!(all.get(TAG_NAMESPACE).map(String::as_str), Some("ns"));
        let (read, user) = split_tags(all);
        assert_eq!(read, Some(owner));
        assert_eq!(user, BTreeMap::from([("team".to_string(), "payments".to_string())]));
        let (none, _) = split_tags([(TAG_NAME.to_string(), "x".to_string())]);
        assert_eq!(none, None, "a partial marker is no claim");
    }
}
