//! The ownership ledger: one record per bucket name and per user (or compatibility access key)
//! that the operator claimed on a store, asked before anything is created, changed, granted,
//! adopted or deleted, by every path: S3Bucket, S3User and compatibility Secrets alike.
//!
//! Stores whose users (or buckets) carry no tags or free-form fields (VersityGW, MinIO,
//! Garage) keep the ledger as objects in a bucket of the operator's own. A naming convention
//! would let anyone pick a name that looks like ours; an object in a bucket only the operator's
//! credentials may write cannot be forged by a tenant. Each record is `<subject>/<name>`
//! (`users/…` or `buckets/…`) with the claim (kind of claimant, namespace, name, uid, time) in
//! its user metadata and an optional body for what the store cannot record itself.
//!
//! The rules are [`judge`] (pure, unit-tested); [`Ledger::claim`] applies them so that two
//! claimants racing for a free name end with exactly one holder, and the loser has written
//! nothing it would have to undo. Claims made by one operator process are serialised per name
//! (every request of every namespace goes through the leader). Across processes (two
//! operators pointed at one store, a leader hand-over) the write is conditional
//! (`If-None-Match: *`), which MinIO makes atomic; VersityGW 1.7 checks the condition but not
//! atomically, and Garage 2.5 ignores it (both measured here), so there the claim is read back
//! after it is written and whoever reads another's claim refuses before any other write (see
//! [`Conditional`]). That narrows the window between two processes but cannot close it: a
//! loser's write may still land over the winner's record. AWS keeps its claims as tags on the
//! bucket or IAM user, not here.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use aws_sdk_s3::{
    Client,
    error::{ProvideErrorMetadata, SdkError},
    operation::put_object::PutObjectError,
    primitives::ByteStream,
};
use tokio::sync::OnceCell;

use crate::{
    BackendError, Result,
    model::{ClaimantKind, Owner},
    s3ops::S3,
};

/// Object metadata keys of a record's claim.
const META_KIND: &str = "kind";
const META_NAMESPACE: &str = "namespace";
const META_NAME: &str = "name";
const META_UID: &str = "uid";
const META_CLAIMED_AT: &str = "claimed-at";

/// Prefixes where versions before the one ledger kept compatibility claims; moved into the
/// ledger once per process (see [`Ledger::migrate`]).
const LEGACY_PREFIXES: [(&str, Subject); 2] =
    [("compat-accounts/", Subject::User), ("compat-buckets/", Subject::Bucket)];

/// What a claim is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// A user; in compatibility mode the account of an access key (VersityGW and MinIO name
    /// accounts by their key, Garage's compatibility keys are named after their id).
    User,
    /// A bucket, by name.
    Bucket,
}

impl Subject {
    fn prefix(self) -> &'static str {
        match self {
            Subject::User => "users",
            Subject::Bucket => "buckets",
        }
    }

    /// Lowercase noun for messages.
    pub const fn noun(self) -> &'static str {
        match self {
            Subject::User => "user",
            Subject::Bucket => "bucket",
        }
    }

    /// The claimant kind a record without one was written by: versions before the one ledger
    /// wrote only CRD claims under these prefixes.
    fn default_claimant(self) -> ClaimantKind {
        match self {
            Subject::User => ClaimantKind::S3User,
            Subject::Bucket => ClaimantKind::S3Bucket,
        }
    }
}

/// What the ledger says about one claimant's wish for a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nobody holds the name.
    Free,
    /// The claimant already holds it.
    Ours,
    /// Someone else holds it: nothing may be done for the claimant.
    Taken(Owner),
}

/// The ledger's rule. A claim belongs to one object (kind, namespace and name; the uid is
/// informative, so an object deleted with `Retain` and applied again gets its bucket back).
/// Compatibility Secrets are the exception the older operator's users rely on: any Secret of
/// the holder's namespace shares its claims (two Secrets of one team naming one bucket), and
/// a namespace boundary is never crossed, whatever the mode of either side.
pub fn judge(holder: Option<&Owner>, wanted: &Owner) -> Verdict {
    match holder {
        None => Verdict::Free,
        Some(h) if h.same_claim(wanted) => Verdict::Ours,
        Some(h)
            if h.kind == ClaimantKind::Secret
                && wanted.kind == ClaimantKind::Secret
                && h.namespace == wanted.namespace =>
        {
            Verdict::Ours
        }
        Some(h) => Verdict::Taken(h.clone()),
    }
}

/// `judge` as an error: `NotOwned` naming the holder when the name is taken.
pub fn refuse_taken(subject: Subject, name: &str, verdict: &Verdict) -> Result<()> {
    match verdict {
        Verdict::Taken(holder) => Err(BackendError::NotOwned {
            what: format!("{} {name}", subject.noun()),
            detail: format!("claimed by {holder}"),
        }),
        Verdict::Free | Verdict::Ours => Ok(()),
    }
}

/// A record as read back: the claim (absent when the object has no complete claim) and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Who the user or bucket is for.
    pub owner: Option<Owner>,
    /// What the backend stored beside the claim (may be empty).
    pub body: Vec<u8>,
}

/// The ledger of one store, in one bucket.
#[derive(Clone, Debug)]
pub struct Ledger {
    s3: S3,
    bucket: String,
    conditional: Conditional,
    migrated: Arc<OnceCell<()>>,
    claiming: ClaimLocks,
}

/// How a store treats `If-None-Match: *` on PutObject, measured per store (see the module's doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conditional {
    /// The write fails when the record exists, even for two writers at once (MinIO, AWS).
    Atomic,
    /// The write fails when the record existed before it, but two at once may both succeed
    /// (VersityGW 1.7): right within one process, whose claims are serialised; read back.
    Sequential,
    /// The condition is not looked at (Garage 2.5): each claim reads first and reads back.
    Ignored,
}

/// Locks that serialise the claims of one process per name (see the module's doc), also for
/// stores whose claims are not ledger records (AWS buckets carry theirs as tags).
#[derive(Clone, Debug)]
pub struct ClaimLocks(Arc<[tokio::sync::Mutex<()>; CLAIM_STRIPES]>);

/// Claims are rare (a new name), so a few stripes serialise them cheaply.
const CLAIM_STRIPES: usize = 64;

impl Default for ClaimLocks {
    fn default() -> Self {
        ClaimLocks(Arc::new(std::array::from_fn(|_| tokio::sync::Mutex::new(()))))
    }
}

impl ClaimLocks {
    /// Waits until no other claim of this process is in progress for `name`.
    pub async fn lock(&self, subject: Subject, name: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one((subject, name));
        self.0[(hash % CLAIM_STRIPES as u64) as usize].lock().await
    }
}

impl Ledger {
    /// The ledger in `bucket`, read and written with `s3` (the operator's own credentials).
    /// `conditional`: what the store makes of a conditional write.
    pub fn new(s3: Client, backend: &'static str, bucket: impl Into<String>, conditional: Conditional) -> Self {
        Self {
            s3: S3::new(s3, backend),
            bucket: bucket.into(),
            conditional,
            migrated: Arc::new(OnceCell::new()),
            claiming: ClaimLocks::default(),
        }
    }

    /// The bucket holding the ledger.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The record's object key. A name must stay one plain path segment: `a/../users/x` would
    /// be stored by a store that resolves paths (VersityGW's posix backend) as `users/x`,
    /// another object's record.
    fn key(subject: Subject, name: &str) -> Result<String> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(BackendError::InvalidInput(format!(
                "{}: a claimed name must not be empty, contain '/' or be '.' or '..'",
                Self::what(subject, name)
            )));
        }
        Ok(format!("{}/{name}", subject.prefix()))
    }

    fn what(subject: Subject, name: &str) -> String {
        format!("claim on {} {name}", subject.noun())
    }

    /// Refuses the ledger's own bucket as a bucket to create, grant or hand out: its holder
    /// could forge every claim.
    pub fn refuse_own_bucket(&self, bucket: &str) -> Result<()> {
        if bucket == self.bucket {
            return Err(BackendError::NotOwned {
                what: format!("bucket {bucket}"),
                detail: "the operator's marker bucket".into(),
            });
        }
        Ok(())
    }

    /// Who holds the name, with one HEAD; `None` when nobody does (or there is no ledger yet).
    pub async fn holder(&self, subject: Subject, name: &str) -> Result<Option<Owner>> {
        self.migrate().await?;
        if subject == Subject::Bucket {
            self.refuse_own_bucket(name)?;
        }
        self.head(subject, name).await
    }

    async fn head(&self, subject: Subject, name: &str) -> Result<Option<Owner>> {
        let what = Self::what(subject, name);
        match self.s3.client().head_object().bucket(&self.bucket).key(Self::key(subject, name)?).send().await {
            Ok(out) => Ok(owner_from_meta(subject, out.metadata())),
            // HEAD answers carry no error code: a 404 is a missing key or a missing bucket.
            Err(e) => match self.s3.map_error("HeadObject", &what, e) {
                BackendError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// The whole record, claim and body; `None` when there is none.
    pub async fn read(&self, subject: Subject, name: &str) -> Result<Option<Record>> {
        self.migrate().await?;
        let what = Self::what(subject, name);
        match self.s3.client().get_object().bucket(&self.bucket).key(Self::key(subject, name)?).send().await {
            Ok(out) => {
                let owner = owner_from_meta(subject, out.metadata());
                let body = out.body.collect().await.map_err(|e| BackendError::Unreachable {
                    backend: self.s3.backend(),
                    cause: format!("GetObject on {what}: reading the body: {e}"),
                })?;
                Ok(Some(Record { owner, body: body.into_bytes().to_vec() }))
            }
            Err(e) => match self.s3.map_error("GetObject", &what, e) {
                // NoSuchKey, or NoSuchBucket before the first record.
                BackendError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Claims `name` for `owner`: `Ok(true)` when this call made the claim, `Ok(false)` when
    /// `owner` held it already, `NotOwned` naming the holder otherwise. A free name is taken
    /// with one conditional write, so of two claimants racing only one succeeds; `prepare` is
    /// called once when the ledger's bucket is missing (or not yet usable by our key).
    pub async fn claim<F, Fut>(&self, subject: Subject, name: &str, owner: &Owner, prepare: F) -> Result<bool>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let _one_at_a_time = self.claiming.lock(subject, name).await;
        let verdict = judge(self.holder(subject, name).await?.as_ref(), owner);
        refuse_taken(subject, name, &verdict)?;
        if verdict == Verdict::Ours {
            return Ok(false);
        }
        self.create(subject, name, owner, prepare).await
    }

    /// [`Ledger::claim`] of a name the caller has just read as free: where the store refuses a
    /// conditional write over an existing record, that write is the check (one read saved);
    /// a record made meanwhile is judged as `claim` judges it.
    pub async fn claim_free<F, Fut>(&self, subject: Subject, name: &str, owner: &Owner, prepare: F) -> Result<bool>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        if self.conditional == Conditional::Ignored {
            return self.claim(subject, name, owner, prepare).await;
        }
        if subject == Subject::Bucket {
            self.refuse_own_bucket(name)?;
        }
        let _one_at_a_time = self.claiming.lock(subject, name).await;
        self.create(subject, name, owner, prepare).await
    }

    /// Writes a new record unless one exists; see [`Ledger::claim`].
    async fn create<F, Fut>(&self, subject: Subject, name: &str, owner: &Owner, prepare: F) -> Result<bool>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        match self.put(subject, name, owner, Vec::new(), true, prepare).await {
            Ok(()) => {}
            Err(PutError::Failed(e)) => return Err(e),
            Err(PutError::Lost) => {
                // Someone claimed it between our read and our write: judge their claim.
                let verdict = judge(self.head(subject, name).await?.as_ref(), owner);
                refuse_taken(subject, name, &verdict)?;
                return Ok(false);
            }
        }
        if self.conditional != Conditional::Atomic {
            // This store may have let a racing claimant overwrite us (or we them): whoever
            // reads back another's claim refuses now, before any other write.
            match self.head(subject, name).await? {
                Some(h) if h.same_claim(owner) && h.uid == owner.uid => {}
                Some(h) => refuse_taken(subject, name, &Verdict::Taken(h))?,
                None => {
                    return Err(BackendError::Conflict {
                        what: Self::what(subject, name),
                        detail: "the claim was removed while it was being written".into(),
                    });
                }
            }
        }
        Ok(true)
    }

    /// Rewrites the record of a claim `owner` already holds (e.g. the body Garage keeps beside
    /// a user's claim); the caller has judged the claim first.
    pub async fn record<F, Fut>(
        &self,
        subject: Subject,
        name: &str,
        owner: &Owner,
        body: Vec<u8>,
        prepare: F,
    ) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        match self.put(subject, name, owner, body, false, prepare).await {
            Ok(()) => Ok(()),
            Err(PutError::Failed(e)) => Err(e),
            Err(PutError::Lost) => Err(BackendError::Conflict {
                what: Self::what(subject, name),
                detail: "the store refused an unconditional write as a lost race".into(),
            }),
        }
    }

    /// One PutObject of the record; `only_new` adds `If-None-Match: *`, and the store's refusal
    /// because a record exists is `PutError::Lost`.
    async fn put<F, Fut>(
        &self,
        subject: Subject,
        name: &str,
        owner: &Owner,
        body: Vec<u8>,
        only_new: bool,
        prepare: F,
    ) -> std::result::Result<(), PutError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let what = Self::what(subject, name);
        let key = Self::key(subject, name)?;
        let claimed_at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0).to_string();
        let put = || {
            let mut req = self
                .s3
                .client()
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .metadata(META_KIND, owner.kind.as_str())
                .metadata(META_NAMESPACE, &owner.namespace)
                .metadata(META_NAME, &owner.name)
                .metadata(META_UID, &owner.uid)
                .metadata(META_CLAIMED_AT, &claimed_at)
                .body(ByteStream::from(body.clone()));
            if only_new {
                req = req.if_none_match("*");
            }
            req.send()
        };
        let classify = |e: SdkError<PutObjectError>| {
            let lost =
                matches!(ProvideErrorMetadata::code(&e), Some("PreconditionFailed" | "ConditionalRequestConflict"))
                    || e.raw_response().is_some_and(|r| matches!(r.status().as_u16(), 412));
            if lost { PutError::Lost } else { PutError::Failed(self.s3.map_error("PutObject", &what, e)) }
        };
        match put().await.map_err(classify) {
            Ok(_) => Ok(()),
            Err(PutError::Failed(BackendError::NotFound { .. } | BackendError::Forbidden(_))) => {
                prepare().await?;
                put().await.map(|_| ()).map_err(classify)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates the ledger's bucket over S3 (stores where the operator's key may create
    /// buckets); one that already exists is fine. A `prepare` for [`Ledger::claim`].
    pub async fn create_bucket(&self) -> Result<()> {
        match self.s3.create_bucket(&self.bucket, false).await {
            Ok(()) | Err(BackendError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Releases a claim; one already gone is success. Only the holder's own paths call this,
    /// after judging the claim theirs.
    pub async fn release(&self, subject: Subject, name: &str) -> Result<()> {
        let what = Self::what(subject, name);
        match self.s3.client().delete_object().bucket(&self.bucket).key(Self::key(subject, name)?).send().await {
            Ok(_) => Ok(()),
            Err(e) => match self.s3.map_error("DeleteObject", &what, e) {
                BackendError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Releases `owner`'s claim on a name whose bucket or user is gone (deleted, or never
    /// created); someone else's claim is left alone.
    pub async fn release_held(&self, subject: Subject, name: &str, owner: &Owner) -> Result<()> {
        let _one_at_a_time = self.claiming.lock(subject, name).await;
        match self.holder(subject, name).await? {
            Some(h) if h.same_claim(owner) => self.release(subject, name).await,
            _ => Ok(()),
        }
    }

    /// Releases a claim this call made a moment ago and must undo, only while it is still
    /// `owner`'s (on a store without conditional writes a racing claimant may hold it now).
    pub async fn release_own(&self, subject: Subject, name: &str, owner: &Owner) -> Result<()> {
        match self.head(subject, name).await? {
            Some(h) if h.same_claim(owner) && h.uid == owner.uid => self.release(subject, name).await,
            _ => Ok(()),
        }
    }

    /// Moves compatibility claims kept by earlier versions (`compat-accounts/…`,
    /// `compat-buckets/…`) into the ledger, once per process before its first read: after
    /// that every path reads one record per name. A name claimed in both places keeps the
    /// ledger's claim (it was written later, by a path that judged the old one).
    async fn migrate(&self) -> Result<()> {
        self.migrated
            .get_or_try_init(|| async {
                for (prefix, subject) in LEGACY_PREFIXES {
                    for key in self.list(prefix).await? {
                        let Some(name) = key.strip_prefix(prefix) else { continue };
                        let legacy = self.legacy_owner(&key).await?;
                        if let Some(owner) = legacy {
                            let owner = Owner { kind: ClaimantKind::Secret, ..owner };
                            match self.put(subject, name, &owner, Vec::new(), true, || async { Ok(()) }).await {
                                Ok(()) | Err(PutError::Lost) => {}
                                Err(PutError::Failed(e)) => return Err(e),
                            }
                        }
                        self.delete_key(&key).await?;
                    }
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = match self
                .s3
                .client()
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    return match self.s3.map_error("ListObjectsV2", &format!("ledger {}", self.bucket), e) {
                        // No ledger yet: nothing to move. (A refusal is an error, so the move is
                        // tried again once our key may read the ledger.)
                        BackendError::NotFound { .. } => Ok(keys),
                        other => Err(other),
                    };
                }
            };
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_string)));
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => return Ok(keys),
            }
        }
    }

    async fn legacy_owner(&self, key: &str) -> Result<Option<Owner>> {
        match self.s3.client().head_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => Ok(owner_from_meta(Subject::User, out.metadata())),
            Err(e) => match self.s3.map_error("HeadObject", key, e) {
                BackendError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn delete_key(&self, key: &str) -> Result<()> {
        match self.s3.client().delete_object().bucket(&self.bucket).key(key).send().await {
            Ok(_) => Ok(()),
            Err(e) => match self.s3.map_error("DeleteObject", key, e) {
                BackendError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}

/// Why a record was not written.
enum PutError {
    /// A record exists: the conditional write lost.
    Lost,
    /// Anything else.
    Failed(BackendError),
}

impl From<BackendError> for PutError {
    fn from(e: BackendError) -> Self {
        PutError::Failed(e)
    }
}

/// The claim in a record's metadata; `None` unless namespace and name are both there. A record
/// without a kind was written before the one ledger, by the CRD path of its subject.
fn owner_from_meta(subject: Subject, meta: Option<&HashMap<String, String>>) -> Option<Owner> {
    let get = |k: &str| meta.and_then(|m| m.get(k)).cloned();
    let kind = match get(META_KIND) {
        None => subject.default_claimant(),
        // An unknown kind is someone else's claim, never ours: refuse rather than guess.
        Some(k) => ClaimantKind::parse(&k).unwrap_or(ClaimantKind::Unknown),
    };
    match (get(META_NAMESPACE), get(META_NAME)) {
        (Some(namespace), Some(name)) => Some(Owner { kind, namespace, name, uid: get(META_UID).unwrap_or_default() }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(kind: ClaimantKind, ns: &str, name: &str) -> Owner {
        Owner { kind, namespace: ns.into(), name: name.into(), uid: format!("uid-{ns}-{name}") }
    }

    #[test]
    fn a_claim_needs_namespace_and_name_and_defaults_its_kind_by_subject() {
        let full = HashMap::from([
            ("namespace".to_string(), "ns".to_string()),
            ("name".to_string(), "n".to_string()),
            ("uid".to_string(), "u".to_string()),
        ]);
        assert_eq!(
            owner_from_meta(Subject::Bucket, Some(&full)),
            Some(Owner { kind: ClaimantKind::S3Bucket, namespace: "ns".into(), name: "n".into(), uid: "u".into() })
        );
        assert_eq!(owner_from_meta(Subject::User, Some(&full)).map(|o| o.kind), Some(ClaimantKind::S3User));
        let mut secret = full.clone();
        secret.insert("kind".into(), "Secret".into());
        assert_eq!(owner_from_meta(Subject::User, Some(&secret)).map(|o| o.kind), Some(ClaimantKind::Secret));
        secret.insert("kind".into(), "Deployment".into());
        assert_eq!(owner_from_meta(Subject::User, Some(&secret)).map(|o| o.kind), Some(ClaimantKind::Unknown));
        let partial = HashMap::from([("namespace".to_string(), "ns".to_string())]);
        assert_eq!(owner_from_meta(Subject::User, Some(&partial)), None);
        assert_eq!(owner_from_meta(Subject::User, None), None);
        assert_eq!(Ledger::key(Subject::Bucket, "b").unwrap(), "buckets/b");
        assert_eq!(Ledger::key(Subject::User, "a..b").unwrap(), "users/a..b");
    }

    #[test]
    fn a_claimed_name_cannot_walk_to_another_record() {
        for name in ["../users/victim", "x/../../users/victim", "a/b", "..", ".", ""] {
            let err = Ledger::key(Subject::User, name).unwrap_err();
            assert!(matches!(err, BackendError::InvalidInput(_)), "{name}: {err:?}");
        }
    }

    #[test]
    fn a_name_belongs_to_one_object_and_never_crosses_a_namespace() {
        use ClaimantKind::*;
        let bucket_a = who(S3Bucket, "a", "backups");
        assert_eq!(judge(None, &bucket_a), Verdict::Free);
        assert_eq!(judge(Some(&bucket_a), &bucket_a), Verdict::Ours);
        // A new uid of the same object (deleted with Retain, applied again) is the same claim.
        let again = Owner { uid: "other".into(), ..bucket_a.clone() };
        assert_eq!(judge(Some(&bucket_a), &again), Verdict::Ours);
        // Every other claimant is refused, whatever its mode or namespace.
        for other in [
            who(S3Bucket, "a", "other"),
            who(S3Bucket, "b", "backups"),
            who(S3User, "a", "backups"),
            who(Secret, "a", "backups"),
            who(Secret, "b", "s"),
        ] {
            assert_eq!(judge(Some(&bucket_a), &other), Verdict::Taken(bucket_a.clone()), "{other}");
        }
        // Secrets share their namespace's claims (the older operator's teams did), only theirs.
        let secret_a = who(Secret, "a", "s1");
        assert_eq!(judge(Some(&secret_a), &who(Secret, "a", "s2")), Verdict::Ours);
        assert_eq!(judge(Some(&secret_a), &who(Secret, "b", "s1")), Verdict::Taken(secret_a.clone()));
        assert_eq!(judge(Some(&secret_a), &who(S3Bucket, "a", "s1")), Verdict::Taken(secret_a.clone()));
        assert_eq!(judge(Some(&secret_a), &who(S3User, "a", "s1")), Verdict::Taken(secret_a.clone()));
        // A claim of a kind this version does not know is nobody's to share.
        let unknown = who(Unknown, "a", "s1");
        assert_eq!(judge(Some(&unknown), &who(Secret, "a", "s1")), Verdict::Taken(unknown.clone()));
        assert!(refuse_taken(Subject::Bucket, "b", &Verdict::Taken(unknown)).is_err());
        assert!(refuse_taken(Subject::Bucket, "b", &Verdict::Free).is_ok());
    }
}
