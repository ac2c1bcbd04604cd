//! The `Backend` trait: idempotent operations on buckets, users, keys and grants, the same for
//! every store. Implementations read, compare, and write only the difference.

use async_trait::async_trait;

use crate::{
    compat::CompatStore,
    error::Result,
    ledger::Subject,
    model::{
        BackendKind, BucketDeletion, BucketInfo, BucketSpec, Capabilities, Change, Credentials, Grant, Owner, UserInfo,
        UserSpec,
    },
};

/// An object store, as the controller sees it. Held as `Arc<dyn Backend>`.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Which store this is.
    fn kind(&self) -> BackendKind;

    /// What the store can do.
    fn capabilities(&self) -> Capabilities;

    /// Cheap call proving the store answers and accepts the operator's credentials.
    async fn health(&self) -> Result<()>;

    /// The bucket as the store has it, or `None` when it does not exist.
    async fn describe_bucket(&self, name: &str) -> Result<Option<BucketInfo>>;

    /// Creates the bucket if absent and converges its settings. A bucket that exists without
    /// our marker for `spec.owner` is refused with `NotOwned`, unless `adopt` is true, in
    /// which case the marker is written. Settings the store cannot do give `Unsupported`
    /// after everything else was converged.
    async fn ensure_bucket(&self, spec: &BucketSpec, adopt: bool) -> Result<Change>;

    /// Deletes the bucket. Without `force`, a bucket holding any object, version or delete
    /// marker is left alone and reported as `NotEmpty`; with `force`, every version and
    /// delete marker is removed first.
    async fn delete_bucket(&self, name: &str, force: bool) -> Result<BucketDeletion>;

    /// The user as the store has it, or `None` when it does not exist.
    async fn describe_user(&self, name: &str) -> Result<Option<UserInfo>>;

    /// Creates the user if absent (without keys). A user that exists without our marker for
    /// `spec.owner` is refused with `NotOwned`, unless `adopt` is true.
    async fn ensure_user(&self, spec: &UserSpec, adopt: bool) -> Result<Change>;

    /// Issues a key for the user: generated, or `import`ed where the store allows it. Where a
    /// user holds a single key ([`Capabilities::multiple_keys`] false) the new secret
    /// replaces the old one at once.
    async fn create_key(&self, user: &str, import: Option<&Credentials>) -> Result<Credentials>;

    /// Revokes one key of the user; a key already gone is success.
    async fn delete_key(&self, user: &str, access_key_id: &str) -> Result<()>;

    /// Sets the user's grants to exactly `grants`, removing any grant not listed.
    async fn set_grants(&self, user: &str, grants: &[Grant]) -> Result<Change>;

    /// Deletes the user with its keys and grants; a user already gone is success.
    async fn delete_user(&self, name: &str) -> Result<()>;

    /// Who holds the bucket or user name in the store's ownership ledger (see
    /// [`crate::ledger`]), or `None`: one cheap read, asked before a grant is written.
    async fn holder(&self, subject: Subject, name: &str) -> Result<Option<Owner>>;

    /// Releases `owner`'s claim on a bucket or user name whose object is gone from the store
    /// (deleted behind the operator's back, or never created), so the name is free again.
    /// Someone else's claim is left alone. Stores whose claims live on the object itself (AWS
    /// tags) have nothing left to release.
    async fn release_claim(&self, subject: Subject, name: &str, owner: &Owner) -> Result<()> {
        let _ = (subject, name, owner);
        Ok(())
    }

    /// The store as compatibility mode uses it (accounts with keys chosen by a Secret's
    /// author), or `Unsupported` saying why this store cannot do that.
    fn compat(&self) -> Result<&dyn CompatStore>;
}
