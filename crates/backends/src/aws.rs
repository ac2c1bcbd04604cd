//! AWS: users are IAM users, grants one inline policy per user scoped to the granted buckets,
//! keys IAM access keys (two at most, so rotation overlaps); buckets go through
//! [`crate::s3ops`]. In tests the endpoint is moto, which serves IAM and S3 on one port.
//!
//! Real IAM is eventually consistent: a new user, key or policy may take seconds before S3
//! honours it. The backend does not wait for that; callers that hand a fresh key to an
//! application should expect the first requests to be refused for a moment.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, retry::RetryConfig, timeout::TimeoutConfig};
use aws_sdk_iam::{
    error::{ProvideErrorMetadata, SdkError},
    types::Tag,
};
use aws_sdk_s3::config::{
    ProvideCredentials, RequestChecksumCalculation, ResponseChecksumValidation, SharedCredentialsProvider,
};
use serde_json::Value;

use crate::{
    Backend, BackendError, Result, SecretString,
    claimed_buckets::ClaimedBuckets,
    http,
    ledger::{ClaimLocks, Subject},
    model::{
        BackendKind, BucketDeletion, BucketInfo, BucketSpec, Capabilities, Change, ClaimantKind, Credentials, Grant,
        Owner, UserInfo, UserSpec, Versioning,
    },
    policy,
    s3ops::{self, S3},
};

const BACKEND: &str = "aws";

/// Name of the one inline policy holding a user's grants.
pub const POLICY_NAME: &str = "s3-resource-operator";

/// IAM's limit on a user's inline policies, in characters without whitespace.
const POLICY_SIZE_LIMIT: usize = 2048;

/// Where and as whom to reach AWS.
#[derive(Clone, Debug, Default)]
pub struct AwsConfig {
    /// Region of the buckets; `None` takes it from the standard chain (`AWS_REGION`, profile,
    /// instance metadata).
    pub region: Option<String>,
    /// Endpoint override for IAM and S3 (moto in tests); `None` is real AWS.
    pub endpoint: Option<String>,
    /// Static access key and secret; `None` uses aws-config's standard chain: environment, web
    /// identity (IRSA), profile, instance metadata.
    pub credentials: Option<(String, SecretString)>,
    /// CA certificates (PEM) the endpoint's certificates are checked against, besides the
    /// system's roots.
    pub ca_bundle: Option<String>,
}

/// The AWS backend (IAM + S3).
// Ownership of users: IAM users carry tags, so the marker is the same three tags buckets get.
// A user without them was made outside the operator.
#[derive(Debug, Clone)]
pub struct Aws {
    s3: S3,
    iam: aws_sdk_iam::Client,
    /// ARN partition of the region (`aws`, `aws-cn`, `aws-us-gov`).
    partition: &'static str,
    /// The endpoint override and the region, for [`Aws::versioning`]'s fallback.
    endpoint: Option<String>,
    region: String,
    credentials: Option<SharedCredentialsProvider>,
    http: reqwest::Client,
    // CreateBucket in us-east-1 answers 200 for a bucket the account already owns, so two
    // S3Buckets racing for one name would both "create" it and the later tags would win: the
    // operator's own claims of one name are serialised instead (as the ledger's are).
    claiming: ClaimLocks,
}

impl Aws {
    /// A backend for the account reached through `config`. Makes no IAM or S3 call (without a
    /// configured region, aws-config may ask the profile or instance metadata for one).
    pub async fn new(config: AwsConfig) -> Result<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_attempt_timeout(Duration::from_secs(8))
                    .operation_timeout(Duration::from_secs(15))
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(3));
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(http) = http::sdk_client(config.ca_bundle.as_deref())? {
            loader = loader.http_client(http);
        }
        if let Some((access_key, secret_key)) = &config.credentials {
            loader = loader.credentials_provider(aws_sdk_iam::config::Credentials::new(
                access_key,
                secret_key.expose(),
                None,
                None,
                "s3-resource-operator",
            ));
        }
        let sdk = loader.load().await;
        let region = sdk.region().map(|r| r.as_ref().to_string()).ok_or_else(|| {
            BackendError::InvalidInput("no AWS region: set one in the configuration or AWS_REGION".into())
        })?;
        let mut s3 = aws_sdk_s3::config::Builder::from(&sdk);
        if config.endpoint.is_some() {
            // As s3ops::client: an S3-compatible endpoint has no per-bucket DNS names, and the
            // SDK's default CRC32 checksums are not understood everywhere. Real AWS keeps the
            // SDK's defaults (virtual-hosted style, checksums).
            s3 = s3
                .force_path_style(true)
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        Ok(Self {
            s3: S3::new(aws_sdk_s3::Client::from_conf(s3.build()), BACKEND),
            iam: aws_sdk_iam::Client::new(&sdk),
            partition: partition(&region),
            endpoint: config.endpoint.clone(),
            credentials: sdk.credentials_provider(),
            region,
            http: http::client(BACKEND, config.ca_bundle.as_deref())?,
            claiming: ClaimLocks::default(),
        })
    }

    /// Buckets carry their claim as tags alone; versioning is read by [`Aws::versioning`].
    fn buckets(&self) -> ClaimedBuckets<'_> {
        ClaimedBuckets { s3: &self.s3, versioning: self, claims: None }
    }

    /// The bucket's versioning state. On an endpoint override whose reply the SDK cannot
    /// parse, the state is read again with a plain signed GET: moto 5.2 answers
    /// GetBucketVersioning with the root element `GetBucketVersioningResponse` instead of
    /// `VersioningConfiguration` (its S3 `resultWrapper` overrides miss this operation), which
    /// botocore ignores and the Rust SDK rejects. Real AWS never takes this path (and the
    /// fallback signs without a session token, so it suits static credentials only).
    async fn versioning(&self, bucket: &str) -> Result<Option<Versioning>> {
        match self.s3.get_versioning(bucket).await {
            Err(BackendError::Protocol { .. }) if self.endpoint.is_some() => self.versioning_plain(bucket).await,
            other => other,
        }
    }

    async fn versioning_plain(&self, bucket: &str) -> Result<Option<Versioning>> {
        let what = format!("bucket {bucket}");
        let endpoint = self.endpoint.as_deref().unwrap_or_default().trim_end_matches('/');
        let url = format!("{endpoint}/{}?versioning", http::encode(bucket));
        let provider = self.credentials.as_ref().ok_or_else(|| {
            BackendError::Forbidden(format!("GetBucketVersioning on {what}: no credentials provider"))
        })?;
        let creds = provider.provide_credentials().await.map_err(|e| {
            BackendError::Forbidden(format!(
                "GetBucketVersioning on {what}: no credentials: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            ))
        })?;
        let secret = SecretString::new(creds.secret_access_key());
        let req = http::signed_request(
            &self.http,
            reqwest::Method::GET,
            &url,
            &[],
            &self.region,
            creds.access_key_id(),
            &secret,
        )?;
        let op = "GetBucketVersioning";
        let resp = req.send().await.map_err(|e| http::transport_error(BACKEND, op, &what, e))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| http::transport_error(BACKEND, op, &what, e))?;
        if !(200..300).contains(&status) {
            return Err(http::status_error(BACKEND, status, &what, format!("{op} on {what}: HTTP {status}")));
        }
        parse_versioning(&text)
    }

    /// The user's ownership marker: `None` when the user does not exist, `Some(None)` when it
    /// exists without our tags.
    async fn user_owner(&self, name: &str) -> Result<Option<Option<Owner>>> {
        let what = format!("user {name}");
        let mut tags = Vec::new();
        let mut marker = None;
        loop {
            let out = match self.iam.list_user_tags().user_name(name).set_marker(marker.take()).send().await {
                Ok(out) => out,
                Err(e) => {
                    return match map_iam_error("ListUserTags", &what, e) {
                        BackendError::NotFound { .. } => Ok(None),
                        other => Err(other),
                    };
                }
            };
            tags.extend(out.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())));
            match out.marker() {
                Some(m) if out.is_truncated() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(Some(user_claim(tags)))
    }

    async fn tag_user(&self, name: &str, owner: &Owner) -> Result<()> {
        self.iam
            .tag_user()
            .user_name(name)
            .set_tags(Some(marker_tags(owner)?))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| map_iam_error("TagUser", &format!("user {name}"), e))
    }

    /// Ids of the user's access keys; a missing user gives `NotFound`.
    async fn access_key_ids(&self, name: &str) -> Result<Vec<String>> {
        let what = format!("user {name}");
        let mut ids = Vec::new();
        let mut marker = None;
        loop {
            let out = self
                .iam
                .list_access_keys()
                .user_name(name)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| map_iam_error("ListAccessKeys", &what, e))?;
            ids.extend(out.access_key_metadata().iter().filter_map(|k| k.access_key_id().map(str::to_string)));
            match out.marker() {
                Some(m) if out.is_truncated() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(ids)
    }

    /// Names of the user's inline policies; a missing user gives `NotFound`.
    async fn inline_policy_names(&self, name: &str) -> Result<Vec<String>> {
        let what = format!("user {name}");
        let mut names = Vec::new();
        let mut marker = None;
        loop {
            let out = self
                .iam
                .list_user_policies()
                .user_name(name)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| map_iam_error("ListUserPolicies", &what, e))?;
            names.extend(out.policy_names().iter().cloned());
            match out.marker() {
                Some(m) if out.is_truncated() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(names)
    }

    /// Our inline policy of the user, parsed; `None` when there is none (or no user).
    async fn current_policy(&self, user: &str) -> Result<Option<Value>> {
        let what = format!("policy {POLICY_NAME} of user {user}");
        match self.iam.get_user_policy().user_name(user).policy_name(POLICY_NAME).send().await {
            Ok(out) => parse_policy_document(out.policy_document()).map(Some),
            Err(e) => match map_iam_error("GetUserPolicy", &what, e) {
                BackendError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn delete_inline_policy(&self, user: &str, policy: &str) -> Result<()> {
        let what = format!("policy {policy} of user {user}");
        match self.iam.delete_user_policy().user_name(user).policy_name(policy).send().await {
            Ok(_) => Ok(()),
            Err(e) => match map_iam_error("DeleteUserPolicy", &what, e) {
                BackendError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Why an IAM user is privileged: it holds a policy or group the operator did not give it
    /// (the operator's own identity among them, whatever its name).
    async fn user_privilege(&self, name: &str) -> Result<Option<String>> {
        let what = format!("user {name}");
        if let Some(other) = self.inline_policy_names(name).await?.into_iter().find(|p| p != POLICY_NAME) {
            return Ok(Some(format!("inline policy {other}")));
        }
        let attached = self
            .iam
            .list_attached_user_policies()
            .user_name(name)
            .send()
            .await
            .map_err(|e| map_iam_error("ListAttachedUserPolicies", &what, e))?;
        if let Some(p) = attached.attached_policies().first() {
            return Ok(Some(format!("attached policy {}", p.policy_name().unwrap_or("?"))));
        }
        let groups = self
            .iam
            .list_groups_for_user()
            .user_name(name)
            .send()
            .await
            .map_err(|e| map_iam_error("ListGroupsForUser", &what, e))?;
        Ok(groups.groups().first().map(|g| format!("member of group {}", g.group_name())))
    }

    /// Converges a user that exists: writes the marker when adopting (never a privileged one).
    async fn claim_existing(&self, spec: &UserSpec, current: &Option<Owner>, adopt: bool) -> Result<Change> {
        let what = format!("user {}", spec.name);
        if Owner::check_claim(&what, current, &spec.owner, adopt)? {
            if let Some(why) = self.user_privilege(&spec.name).await? {
                return Err(BackendError::NotOwned { what, detail: format!("a privileged user ({why})") });
            }
            self.tag_user(&spec.name, &spec.owner).await?;
            return Ok(Change::Updated);
        }
        Ok(Change::Unchanged)
    }
}

/// The `Status` of a GetBucketVersioning reply, whatever its root element is called.
fn parse_versioning(text: &str) -> Result<Option<Versioning>> {
    #[derive(serde::Deserialize)]
    struct Reply {
        #[serde(rename = "Status")]
        status: Option<String>,
    }
    let reply: Reply = quick_xml::de::from_str(text).map_err(|e| BackendError::Protocol {
        backend: BACKEND,
        detail: format!("GetBucketVersioning: reply is not the expected XML: {e}"),
    })?;
    Ok(match reply.status.as_deref() {
        Some("Enabled") => Some(Versioning::Enabled),
        Some("Suspended") => Some(Versioning::Suspended),
        _ => None,
    })
}

/// ARN partition of a region.
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// An IAM user's claim, from its tags: the bucket tags' layout, naming an S3User.
fn user_claim(tags: impl IntoIterator<Item = (String, String)>) -> Option<Owner> {
    s3ops::split_tags(tags).0.map(|o| Owner { kind: ClaimantKind::S3User, ..o })
}

/// The three IAM tags of the ownership marker.
fn marker_tags(owner: &Owner) -> Result<Vec<Tag>> {
    s3ops::merge_tags(owner, &BTreeMap::new())
        .into_iter()
        .map(|(k, v)| {
            Tag::builder().key(k).value(v).build().map_err(|e| BackendError::InvalidInput(format!("user tag: {e}")))
        })
        .collect()
}

/// some emulators.
fn parse_policy_document(doc: &str) -> Result<Value> {
    let protocol = |detail: String| BackendError::Protocol { backend: BACKEND, detail };
    if let Ok(v) = serde_json::from_str::<Value>(doc) {
        return Ok(v);
    }
    let decoded = percent_decode(doc).ok_or_else(|| protocol("GetUserPolicy: policy is not URL-encoded".into()))?;
    serde_json::from_str(&decoded).map_err(|e| protocol(format!("GetUserPolicy: policy is not JSON: {e}")))
}

/// Decodes `%XX` escapes; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Maps an IAM SDK error to a [`BackendError`]; `op` is the IAM action, `what` the user, key
/// or policy. Messages carry IAM's code and message, never request headers.
fn map_iam_error<E>(op: &'static str, what: &str, err: SdkError<E>) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(failed) = s3ops::unanswered(BACKEND, op, what, &err) {
        return failed;
    }
    let (code, status, detail) = s3ops::answer_of(op, what, &err);
    match (code.as_str(), status) {
        ("NoSuchEntity", _) => BackendError::NotFound { what: detail },
        ("EntityAlreadyExists" | "LimitExceeded" | "DeleteConflict" | "ConcurrentModification", _) => {
            BackendError::Conflict { what: what.to_string(), detail }
        }
        ("AccessDenied" | "InvalidClientTokenId" | "SignatureDoesNotMatch" | "UnrecognizedClientException", _) => {
            BackendError::Forbidden(detail)
        }
        (
            "ServiceFailure" | "ServiceUnavailable" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded",
            _,
        ) => BackendError::Unavailable { backend: BACKEND, cause: detail },
        ("MalformedPolicyDocument" | "InvalidInput" | "ValidationError", _) => BackendError::InvalidInput(detail),
        (_, Some(401 | 403)) => BackendError::Forbidden(detail),
        (_, Some(404)) => BackendError::NotFound { what: detail },
        (_, Some(409)) => BackendError::Conflict { what: what.to_string(), detail },
        (_, Some(429 | 500..=599)) => BackendError::Unavailable { backend: BACKEND, cause: detail },
        (_, Some(400)) => BackendError::InvalidInput(detail),
        _ => BackendError::Protocol { backend: BACKEND, detail },
    }
}

#[async_trait]
impl s3ops::VersioningSource for Aws {
    async fn bucket_versioning(&self, bucket: &str) -> Result<Option<Versioning>> {
        self.versioning(bucket).await
    }
}

#[async_trait]
impl Backend for Aws {
    fn kind(&self) -> BackendKind {
        BackendKind::Aws
    }

    fn compat(&self) -> Result<&dyn crate::compat::CompatStore> {
        // IAM generates every access key itself: the keys an annotated Secret brings can never
        // be given to an IAM user.
        Err(BackendError::Unsupported {
            backend: BACKEND,
            feature: "access keys chosen by a compatibility Secret (IAM generates its own keys; create an S3User, which writes the generated keys to a Secret)",
        })
    }

    async fn holder(&self, subject: Subject, name: &str) -> Result<Option<Owner>> {
        // On AWS the claim is the tags of the bucket or IAM user itself.
        match subject {
            Subject::Bucket => match self.s3.get_tags(name).await {
                Ok((owner, _)) => Ok(owner),
                Err(BackendError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            },
            Subject::User => Ok(self.user_owner(name).await?.flatten()),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            versioning: true,
            tags: true,
            object_lock: true,
            // S3 has no bucket quotas.
            quota_max_size: false,
            quota_max_objects: false,
            read_only_grants: true,
            // IAM allows two access keys per user.
            multiple_keys: true,
            // IAM generates every secret; there is no import.
            import_credentials: false,
        }
    }

    async fn health(&self) -> Result<()> {
        match self.iam.list_users().max_items(1).send().await {
            Ok(_) => Ok(()),
            // AccessDenied comes only after IAM has accepted the credentials; an operator whose
            // policy is scoped to its users' path may not list all users and is still healthy.
            Err(e) if e.code() == Some("AccessDenied") => Ok(()),
            Err(e) => Err(map_iam_error("ListUsers", "the account", e)),
        }
    }

    async fn describe_bucket(&self, name: &str) -> Result<Option<BucketInfo>> {
        self.buckets().describe(name).await
    }

    async fn ensure_bucket(&self, spec: &BucketSpec, adopt: bool) -> Result<Change> {
        let change = {
            let _one_at_a_time = self.claiming.lock(Subject::Bucket, &spec.name).await;
            self.buckets().ensure(spec, adopt).await?
        };
        if spec.quota.is_some() {
            return Err(BackendError::Unsupported { backend: BACKEND, feature: "quota" });
        }
        Ok(change)
    }

    async fn delete_bucket(&self, name: &str, force: bool) -> Result<BucketDeletion> {
        self.buckets().delete(name, force).await
    }

    async fn describe_user(&self, name: &str) -> Result<Option<UserInfo>> {
        let Some(owner) = self.user_owner(name).await? else {
            return Ok(None);
        };
        let access_key_ids = self.access_key_ids(name).await?;
        let grants = self
            .current_policy(name)
            .await?
            .and_then(|doc| policy::grants_from_document(self.partition, &doc))
            .unwrap_or_default();
        Ok(Some(UserInfo { name: name.to_string(), owner, access_key_ids, grants, legacy_grants: Vec::new() }))
    }

    async fn ensure_user(&self, spec: &UserSpec, adopt: bool) -> Result<Change> {
        let name = spec.name.as_str();
        let what = format!("user {name}");
        if let Some(current) = self.user_owner(name).await? {
            return self.claim_existing(spec, &current, adopt).await;
        }
        // Created with its marker in one call, so there is never a user of ours without it.
        match self.iam.create_user().user_name(name).set_tags(Some(marker_tags(&spec.owner)?)).send().await {
            Ok(_) => Ok(Change::Created),
            Err(e) if e.code() == Some("EntityAlreadyExists") => {
                // Made by someone else between our read and create (or by another reconcile
                // of ours): judge it like any existing user.
                let current = self.user_owner(name).await?.ok_or_else(|| BackendError::Conflict {
                    what: what.clone(),
                    detail: "created and deleted concurrently; retry".into(),
                })?;
                self.claim_existing(spec, &current, adopt).await
            }
            Err(e) => Err(map_iam_error("CreateUser", &what, e)),
        }
    }

    async fn create_key(&self, user: &str, import: Option<&Credentials>) -> Result<Credentials> {
        if import.is_some() {
            return Err(BackendError::Unsupported { backend: BACKEND, feature: "importing credentials" });
        }
        let what = format!("user {user}");
        // On real AWS the new key may be refused for a few seconds (eventual consistency).
        let out = match self.iam.create_access_key().user_name(user).send().await {
            Ok(out) => out,
            Err(e) if e.code() == Some("LimitExceeded") => {
                return Err(BackendError::Conflict {
                    what,
                    detail: "already holds two access keys, the IAM limit: revoke one first".into(),
                });
            }
            Err(e) => return Err(map_iam_error("CreateAccessKey", &what, e)),
        };
        let key = out.access_key().ok_or_else(|| BackendError::Protocol {
            backend: BACKEND,
            detail: format!("CreateAccessKey on {what}: no key in the reply"),
        })?;
        Ok(Credentials {
            access_key_id: key.access_key_id().to_string(),
            secret_access_key: SecretString::new(key.secret_access_key()),
        })
    }

    async fn delete_key(&self, user: &str, access_key_id: &str) -> Result<()> {
        let what = format!("key {access_key_id} of user {user}");
        match self.iam.delete_access_key().user_name(user).access_key_id(access_key_id).send().await {
            Ok(_) => Ok(()),
            Err(e) => match map_iam_error("DeleteAccessKey", &what, e) {
                BackendError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn set_grants(&self, user: &str, grants: &[Grant]) -> Result<Change> {
        let what = format!("user {user}");
        let wanted = policy::policy_document(self.partition, grants);
        // A user that does not exist has no policy either: PutUserPolicy then reports it.
        let current = self.current_policy(user).await?;
        // Compared as JSON values: whitespace, key order and IAM's URL encoding do not count.
        if current == wanted {
            return Ok(Change::Unchanged);
        }
        let Some(wanted) = wanted else {
            self.delete_inline_policy(user, POLICY_NAME).await?;
            return Ok(Change::Updated);
        };
        let doc = wanted.to_string();
        if doc.len() > POLICY_SIZE_LIMIT {
            return Err(BackendError::InvalidInput(format!(
                "grants of {what}: the policy for {} buckets has {} characters, more than IAM's {POLICY_SIZE_LIMIT} \
                 for a user's inline policies",
                policy::normalise(grants).len(),
                doc.len()
            )));
        }
        // On real AWS the new policy takes effect after a few seconds (eventual consistency).
        self.iam
            .put_user_policy()
            .user_name(user)
            .policy_name(POLICY_NAME)
            .policy_document(doc)
            .send()
            .await
            .map_err(|e| map_iam_error("PutUserPolicy", &what, e))?;
        Ok(Change::Updated)
    }

    async fn delete_user(&self, name: &str) -> Result<()> {
        let what = format!("user {name}");
        // IAM refuses to delete a user that still has keys or inline policies.
        let keys = match self.access_key_ids(name).await {
            Ok(keys) => keys,
            Err(BackendError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        for key in keys {
            self.delete_key(name, &key).await?;
        }
        let policies = match self.inline_policy_names(name).await {
            Ok(p) => p,
            Err(BackendError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        for policy in policies {
            self.delete_inline_policy(name, &policy).await?;
        }
        match self.iam.delete_user().user_name(name).send().await {
            Ok(_) => Ok(()),
            Err(e) => match map_iam_error("DeleteUser", &what, e) {
                BackendError::NotFound { .. } => Ok(()),
                // Attached managed policies, groups, a login profile, MFA devices, certificates
                // or SSH keys: never created by the operator, so not removed by it either.
                BackendError::Conflict { what, detail } => Err(BackendError::Conflict {
                    what,
                    detail: format!(
                        "still has attached policies, groups, a login profile or other credentials the operator \
                         did not create; remove them first ({detail})"
                    ),
                }),
                other => Err(other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rw(b: &str) -> Grant {
        Grant { bucket: b.into(), permission: crate::Permission::ReadWrite }
    }

    #[test]
    fn arns_use_the_region_partition() {
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition("eu-west-1"), "aws");
    }

    #[test]
    fn policy_from_iam_compares_semantically() {
        let ours = policy::policy_document("aws", &[rw("b")]).unwrap();
        // IAM answers URL-encoded, with its own whitespace and key order.
        let pretty = serde_json::to_string_pretty(&ours).unwrap();
        let encoded: String = pretty
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        assert_eq!(parse_policy_document(&encoded).unwrap(), ours);
        assert_eq!(parse_policy_document(&pretty).unwrap(), ours);
        assert!(parse_policy_document("%7").is_err());
        assert!(parse_policy_document("%7Bnot json").is_err());
    }

    #[test]
    fn versioning_reply_parses_under_any_root() {
        let moto = "<?xml version=\"1.0\"?>\n<GetBucketVersioningResponse xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>Enabled</Status></GetBucketVersioningResponse>";
        assert_eq!(parse_versioning(moto).unwrap(), Some(Versioning::Enabled));
        let aws = "<VersioningConfiguration><Status>Suspended</Status></VersioningConfiguration>";
        assert_eq!(parse_versioning(aws).unwrap(), Some(Versioning::Suspended));
        assert_eq!(parse_versioning("<VersioningConfiguration/>").unwrap(), None);
    }

    #[test]
    fn marker_tags_are_the_ownership_tags() {
        let owner = Owner::s3user("ns", "u", "1");
        let tags = marker_tags(&owner).unwrap();
        let pairs = || tags.iter().map(|t| (t.key().to_string(), t.value().to_string()));
        assert_eq!(user_claim(pairs()), Some(owner));
        assert!(s3ops::split_tags(pairs()).1.is_empty());
    }
}
