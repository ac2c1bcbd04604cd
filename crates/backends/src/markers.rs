//! Ownership markers kept as objects in a bucket of the operator's own, for stores whose users
//! (or buckets) carry no tags or free-form fields: VersityGW, MinIO and Garage.
//!
//! A naming convention would let anyone pick a name that looks like ours; an object in a
//! bucket only the operator's credentials may write cannot be forged by a tenant. Each marker
//! is `<kind>/<name>` (kind `users` or `buckets`) with the claim (namespace, name, uid) in its
//! user metadata and an optional body for what the store cannot record itself.

use aws_sdk_s3::{Client, primitives::ByteStream};

use crate::{BackendError, Result, compat::ClaimKind, model::Owner, s3ops};

/// Object metadata keys of a marker's claim.
const META_NAMESPACE: &str = "namespace";
const META_NAME: &str = "name";
const META_UID: &str = "uid";

/// What a marker is about: the first part of its object key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerKind {
    /// A user (`users/<name>`).
    User,
    /// A bucket (`buckets/<name>`).
    Bucket,
    /// A compatibility-mode claim on an account (`compat-accounts/<access key>`).
    CompatAccount,
    /// A compatibility-mode claim on a bucket (`compat-buckets/<name>`).
    CompatBucket,
}

impl From<ClaimKind> for MarkerKind {
    fn from(kind: crate::compat::ClaimKind) -> Self {
        match kind {
            crate::compat::ClaimKind::Account => MarkerKind::CompatAccount,
            crate::compat::ClaimKind::Bucket => MarkerKind::CompatBucket,
        }
    }
}

impl MarkerKind {
    fn prefix(self) -> &'static str {
        match self {
            MarkerKind::User => "users",
            MarkerKind::Bucket => "buckets",
            MarkerKind::CompatAccount => "compat-accounts",
            MarkerKind::CompatBucket => "compat-buckets",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            MarkerKind::User => "user",
            MarkerKind::Bucket => "bucket",
            MarkerKind::CompatAccount => "compatibility claim on access key",
            MarkerKind::CompatBucket => "compatibility claim on bucket",
        }
    }
}

/// A marker as read back: the claim (absent when the object has no complete claim) and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// Who the user or bucket is for.
    pub owner: Option<Owner>,
    /// What the backend stored beside the claim (may be empty).
    pub body: Vec<u8>,
}

/// The markers of one store, in one bucket.
#[derive(Clone, Debug)]
pub struct MarkerStore {
    s3: Client,
    backend: &'static str,
    bucket: String,
}

impl MarkerStore {
    /// Markers in `bucket`, read and written with `s3` (the operator's own credentials).
    pub fn new(s3: Client, backend: &'static str, bucket: impl Into<String>) -> Self {
        Self { s3, backend, bucket: bucket.into() }
    }

    /// The bucket holding the markers.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The marker's object key. A name must stay one plain path segment: `a/../users/x` would
    /// be stored by a store that resolves paths (VersityGW's posix backend) as `users/x`,
    /// another object's ownership marker.
    fn key(kind: MarkerKind, name: &str) -> Result<String> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(BackendError::InvalidInput(format!(
                "{}: a marker name must not be empty, contain '/' or be '.' or '..'",
                Self::what(kind, name)
            )));
        }
        Ok(format!("{}/{name}", kind.prefix()))
    }

    fn what(kind: MarkerKind, name: &str) -> String {
        format!("marker of {} {name}", kind.noun())
    }

    /// The claim of a marker, with one HEAD; `None` when there is no marker (or no bucket yet).
    pub async fn owner(&self, kind: MarkerKind, name: &str) -> Result<Option<Owner>> {
        let what = Self::what(kind, name);
        match self.s3.head_object().bucket(&self.bucket).key(Self::key(kind, name)?).send().await {
            Ok(out) => Ok(owner_from_meta(out.metadata())),
            // HEAD answers carry no error code: a 404 is a missing key or a missing bucket.
            Err(e) => match s3ops::map_error(self.backend, "HeadObject", &what, e) {
                BackendError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// The whole marker, claim and body; `None` when there is none.
    pub async fn read(&self, kind: MarkerKind, name: &str) -> Result<Option<Marker>> {
        let what = Self::what(kind, name);
        match self.s3.get_object().bucket(&self.bucket).key(Self::key(kind, name)?).send().await {
            Ok(out) => {
                let owner = owner_from_meta(out.metadata());
                let body = out.body.collect().await.map_err(|e| BackendError::Unavailable {
                    backend: self.backend,
                    cause: format!("GetObject on {what}: reading the body: {e}"),
                })?;
                Ok(Some(Marker { owner, body: body.into_bytes().to_vec() }))
            }
            Err(e) => match s3ops::map_error(self.backend, "GetObject", &what, e) {
                // NoSuchKey, or NoSuchBucket before the first marker.
                BackendError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Writes the marker. When the store answers that the bucket is missing (or not ours to
    /// write yet), `prepare` is called once to make it usable and the write is tried again.
    pub async fn write<F, Fut>(
        &self,
        kind: MarkerKind,
        name: &str,
        owner: &Owner,
        body: Vec<u8>,
        prepare: F,
    ) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let what = Self::what(kind, name);
        let key = Self::key(kind, name)?;
        let put = || {
            self.s3
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .metadata(META_NAMESPACE, &owner.namespace)
                .metadata(META_NAME, &owner.name)
                .metadata(META_UID, &owner.uid)
                .body(ByteStream::from(body.clone()))
                .send()
        };
        match put().await {
            Ok(_) => Ok(()),
            Err(e) => match s3ops::map_error(self.backend, "PutObject", &what, e) {
                BackendError::NotFound { .. } | BackendError::Forbidden(_) => {
                    prepare().await?;
                    put().await.map(|_| ()).map_err(|e| s3ops::map_error(self.backend, "PutObject", &what, e))
                }
                other => Err(other),
            },
        }
    }

    /// Refuses the marker bucket itself as a compatibility-mode bucket: handing it to an
    /// account would let that account forge every claim.
    pub fn refuse_own_bucket(&self, bucket: &str) -> Result<()> {
        if bucket == self.bucket {
            return Err(BackendError::NotOwned {
                what: format!("bucket {bucket}"),
                detail: "the operator's marker bucket".into(),
            });
        }
        Ok(())
    }

    /// Who claimed an access key or bucket in compatibility mode; `None` when nobody has.
    pub async fn claim(&self, kind: ClaimKind, name: &str) -> Result<Option<Owner>> {
        if kind == ClaimKind::Bucket {
            self.refuse_own_bucket(name)?;
        }
        self.owner(kind.into(), name).await
    }

    /// Records a compatibility-mode claim, with `prepare` as in [`MarkerStore::write`].
    pub async fn write_claim<F, Fut>(&self, kind: ClaimKind, name: &str, owner: &Owner, prepare: F) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        if kind == ClaimKind::Bucket {
            self.refuse_own_bucket(name)?;
        }
        self.write(kind.into(), name, owner, Vec::new(), prepare).await
    }

    /// Creates the marker bucket over S3 (stores where the operator's key may create buckets);
    /// one that already exists is fine. A `prepare` for [`MarkerStore::write`].
    pub async fn create_bucket(&self) -> Result<()> {
        match s3ops::create_bucket(&self.s3, self.backend, &self.bucket, false).await {
            Ok(()) | Err(BackendError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes the marker; one already gone is success.
    pub async fn delete(&self, kind: MarkerKind, name: &str) -> Result<()> {
        let what = Self::what(kind, name);
        match self.s3.delete_object().bucket(&self.bucket).key(Self::key(kind, name)?).send().await {
            Ok(_) => Ok(()),
            Err(e) => match s3ops::map_error(self.backend, "DeleteObject", &what, e) {
                BackendError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}

/// The claim in a marker's metadata; `None` unless namespace and name are both there.
fn owner_from_meta(meta: Option<&std::collections::HashMap<String, String>>) -> Option<Owner> {
    let get = |k: &str| meta.and_then(|m| m.get(k)).cloned();
    match (get(META_NAMESPACE), get(META_NAME)) {
        (Some(namespace), Some(name)) => Some(Owner { namespace, name, uid: get(META_UID).unwrap_or_default() }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_claim_needs_namespace_and_name() {
        let full = HashMap::from([
            ("namespace".to_string(), "ns".to_string()),
            ("name".to_string(), "n".to_string()),
            ("uid".to_string(), "u".to_string()),
        ]);
        assert_eq!(
            owner_from_meta(Some(&full)),
            Some(Owner { namespace: "ns".into(), name: "n".into(), uid: "u".into() })
        );
        let partial = HashMap::from([("namespace".to_string(), "ns".to_string())]);
        assert_eq!(owner_from_meta(Some(&partial)), None);
        assert_eq!(owner_from_meta(None), None);
        assert_eq!(MarkerStore::key(MarkerKind::Bucket, "b").unwrap(), "buckets/b");
        assert_eq!(MarkerStore::key(MarkerKind::User, "u").unwrap(), "users/u");
        assert_eq!(MarkerStore::key(MarkerKind::CompatAccount, "a..b").unwrap(), "compat-accounts/a..b");
    }

    #[test]
    fn a_marker_name_cannot_walk_to_another_marker() {
        for name in ["../users/victim", "x/../../users/victim", "a/b", "..", ".", ""] {
            let err = MarkerStore::key(MarkerKind::CompatAccount, name).unwrap_err();
            assert!(matches!(err, BackendError::InvalidInput(_)), "{name}: {err:?}");
        }
    }
}
