//! The vocabulary shared by every backend: what a bucket or user should look like, what the
//! store says it looks like, and what a store can do.

use std::{collections::BTreeMap, fmt};

use crate::{BackendError, SecretString};

/// Kind of object store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// AWS S3 + IAM (moto in tests).
    Aws,
    /// Versity S3 Gateway.
    Versitygw,
    /// MinIO.
    Minio,
    /// Garage.
    Garage,
    /// The in-memory fake used by unit tests.
    Memory,
}

impl BackendKind {
    /// Lowercase name, as shown in status and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            BackendKind::Aws => "aws",
            BackendKind::Versitygw => "versitygw",
            BackendKind::Minio => "minio",
            BackendKind::Garage => "garage",
            BackendKind::Memory => "memory",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of object holds a claim in the ownership ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClaimantKind {
    /// An S3Bucket custom resource.
    S3Bucket,
    /// An S3User custom resource.
    S3User,
    /// A compatibility-mode Secret.
    Secret,
    /// A kind this version does not know (written by a newer one): never shared, never taken.
    Unknown,
}

impl ClaimantKind {
    /// The Kubernetes kind, as recorded in the ledger and shown in messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            ClaimantKind::S3Bucket => "S3Bucket",
            ClaimantKind::S3User => "S3User",
            ClaimantKind::Secret => "Secret",
            ClaimantKind::Unknown => "Unknown",
        }
    }

    /// The kind named by `s`, exactly as [`ClaimantKind::as_str`] writes it.
    pub fn parse(s: &str) -> Option<Self> {
        [ClaimantKind::S3Bucket, ClaimantKind::S3User, ClaimantKind::Secret].into_iter().find(|k| k.as_str() == s)
    }
}

/// The Kubernetes object a bucket or user was claimed for, recorded on the store (in the
/// ownership ledger, see [`crate::ledger`]) so the operator never takes over what is not its own.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    /// Kind of the claiming object.
    pub kind: ClaimantKind,
    /// Namespace of the owning object.
    pub namespace: String,
    /// Name of the owning object.
    pub name: String,
    /// UID of the owning object when the marker was written.
    pub uid: String,
}

impl Owner {
    /// A claim of an S3Bucket.
    pub fn s3bucket(namespace: impl Into<String>, name: impl Into<String>, uid: impl Into<String>) -> Self {
        Owner { kind: ClaimantKind::S3Bucket, namespace: namespace.into(), name: name.into(), uid: uid.into() }
    }

    /// A claim of an S3User.
    pub fn s3user(namespace: impl Into<String>, name: impl Into<String>, uid: impl Into<String>) -> Self {
        Owner { kind: ClaimantKind::S3User, namespace: namespace.into(), name: name.into(), uid: uid.into() }
    }

    /// A claim of a compatibility Secret.
    pub fn secret(namespace: impl Into<String>, name: impl Into<String>, uid: impl Into<String>) -> Self {
        Owner { kind: ClaimantKind::Secret, namespace: namespace.into(), name: name.into(), uid: uid.into() }
    }

    /// Same claim: kind, namespace and name agree. The uid is informative only, so an object
    /// that was deleted with Retain and applied again gets its bucket back.
    pub fn same_claim(&self, other: &Owner) -> bool {
        self.kind == other.kind && self.namespace == other.namespace && self.name == other.name
    }

    /// Decides whether `wanted` may use a bucket or user whose claim is `current`: `Ok(false)`
    /// when it is already its claim, `Ok(true)` when the claim must be written (adoption of
    /// something made outside the operator, only if `adopt`), and `NotOwned` otherwise.
    /// Another object's claim is never overridden, whatever `adopt` says (see
    /// [`crate::ledger::judge`]).
    pub fn check_claim(what: &str, current: &Option<Owner>, wanted: &Owner, adopt: bool) -> crate::Result<bool> {
        match crate::ledger::judge(current.as_ref(), wanted) {
            crate::ledger::Verdict::Ours => Ok(false),
            crate::ledger::Verdict::Taken(o) => {
                Err(BackendError::NotOwned { what: what.to_string(), detail: format!("claimed by {o}") })
            }
            crate::ledger::Verdict::Free if adopt => Ok(true),
            crate::ledger::Verdict::Free => {
                Err(BackendError::NotOwned { what: what.to_string(), detail: "created outside the operator".into() })
            }
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// Bucket versioning state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Versioning {
    /// Versions kept.
    Enabled,
    /// Versions no longer created.
    Suspended,
}

/// Bucket quota; `None` parts are unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Largest total size in bytes.
    pub max_size_bytes: Option<u64>,
    /// Largest number of objects.
    pub max_objects: Option<u64>,
}

/// What a bucket should look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketSpec {
    /// Bucket name on the store (already validated).
    pub name: String,
    /// Who it is for.
    pub owner: Owner,
    /// Desired versioning; `None` leaves the store's state alone.
    pub versioning: Option<Versioning>,
    /// Create with object lock (creation time only).
    pub object_lock: bool,
    /// User tags (ownership tags are added by the backend).
    pub tags: BTreeMap<String, String>,
    /// Desired quota; `None` leaves the store's quota alone.
    pub quota: Option<Quota>,
}

/// What the store says about a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketInfo {
    /// Bucket name.
    pub name: String,
    /// The ownership marker, if the operator created (or adopted) it.
    pub owner: Option<Owner>,
    /// Versioning state, where the store reports one.
    pub versioning: Option<Versioning>,
    /// User tags (ownership tags removed), where the store supports tags.
    pub tags: BTreeMap<String, String>,
    /// Quota, where the store supports quotas.
    pub quota: Option<Quota>,
}

/// Result of deleting a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BucketDeletion {
    /// The bucket was removed.
    Deleted,
    /// There was no such bucket: cleanup is done.
    AlreadyGone,
    /// The bucket holds objects and force was not given; nothing was removed.
    NotEmpty {
        /// Objects, versions and delete markers seen (counting stops at a limit).
        objects: u64,
    },
}

/// What a grant allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// List, read, write and delete objects, multipart uploads.
    ReadWrite,
    /// List and read objects.
    ReadOnly,
}

/// One bucket a user may use.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Grant {
    /// Bucket name on the store.
    pub bucket: String,
    /// What the user may do there.
    pub permission: Permission,
}

/// An access key pair. `Debug` never shows the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Access key id (public).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: SecretString,
}

/// What a user should look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSpec {
    /// User name on the store (already validated).
    pub name: String,
    /// Who it is for.
    pub owner: Owner,
}

/// What the store says about a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// The ownership marker, if the operator created (or adopted) it.
    pub owner: Option<Owner>,
    /// Ids of the user's access keys (never the secrets).
    pub access_key_ids: Vec<String>,
    /// The user's grants, sorted by bucket.
    pub grants: Vec<Grant>,
    /// Buckets the user reaches through an older grant model that `set_grants` replaces
    /// (VersityGW before bucket policies: the user owns the bucket). Not empty: `set_grants`
    /// is due even when `grants` match.
    pub legacy_grants: Vec<String>,
}

/// What an idempotent `ensure_*` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// It did not exist and was created.
    Created,
    /// It existed and something was changed.
    Updated,
    /// Everything was already in place: no write was made.
    Unchanged,
}

impl Change {
    /// True when a write happened.
    pub fn wrote(self) -> bool {
        self != Change::Unchanged
    }

    /// The stronger of two outcomes (Created > Updated > Unchanged), for combining steps.
    pub fn and(self, other: Change) -> Change {
        use Change::*;
        match (self, other) {
            (Created, _) | (_, Created) => Created,
            (Updated, _) | (_, Updated) => Updated,
            _ => Unchanged,
        }
    }
}

/// What a store can do, so callers report `Unsupported` for one setting instead of failing
/// the whole bucket or user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Bucket versioning.
    pub versioning: bool,
    /// Bucket tags.
    pub tags: bool,
    /// Object lock at creation.
    pub object_lock: bool,
    /// Quota on total size.
    pub quota_max_size: bool,
    /// Quota on object count.
    pub quota_max_objects: bool,
    /// ReadOnly grants are enforced (not just recorded).
    pub read_only_grants: bool,
    /// A user can hold two keys at once, so rotation has an overlap; otherwise a new key
    /// replaces the old secret at once.
    pub multiple_keys: bool,
    /// Credentials chosen by the caller can be imported (compatibility mode needs this).
    pub import_credentials: bool,
}
