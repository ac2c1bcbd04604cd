//! The bucket steps of stores whose buckets carry the ownership tags (AWS, VersityGW, MinIO),
//! judged against the store's ownership ledger where it keeps one: describe, create or check
//! the claim of, and delete a bucket. Built on the primitives of [`crate::s3ops`] and on
//! [`crate::ledger`], neither of which knows these steps.

use crate::{
    BackendError, Result,
    ledger::{Ledger, Subject, Verdict, judge, refuse_taken},
    model::{BucketDeletion, BucketInfo, BucketSpec, Change, Owner, Versioning},
    s3ops::{COUNT_LIMIT, S3, VersioningSource},
};

/// One store's tagged buckets: its S3 API, where it reads versioning from, and its ledger.
#[derive(Clone, Copy, Debug)]
pub struct ClaimedBuckets<'a> {
    /// The store's S3 API, with the operator's credentials.
    pub s3: &'a S3,
    /// The store's reader of a bucket's versioning state (usually `s3` itself).
    pub versioning: &'a dyn VersioningSource,
    /// The store's ownership ledger; `None` where the tags are the only claim (AWS).
    pub claims: Option<&'a Ledger>,
}

impl ClaimedBuckets<'_> {
    /// A bucket on a store whose bucket tags carry the ownership marker: owner and user tags from
    /// the tags, versioning from the store's reader. `None` when absent.
    pub async fn describe(&self, name: &str) -> Result<Option<BucketInfo>> {
        if !self.s3.bucket_exists(name).await? {
            return Ok(None);
        }
        let (owner, tags) = self.s3.get_tags(name).await?;
        let versioning = self.versioning.bucket_versioning(name).await?;
        Ok(Some(BucketInfo { name: name.to_string(), owner, versioning, tags, quota: None }))
    }

    /// Creates the bucket with its ownership tags, or checks the claim of the one there (see
    /// [`Owner::check_claim`]), then converges tags and versioning; object lock is refused on an
    /// existing bucket that lacks it. Quotas are the caller's (stores differ).
    ///
    /// Creating and tagging are two calls, so a creation can be cut between them (the operator
    /// killed, the store stopped): the bucket then exists without its tags and would look made
    /// outside the operator for ever. Where the store keeps `claims` (marker objects), the claim
    /// is recorded as `buckets/<name>` before the bucket is created, and an untagged, empty bucket
    /// whose marker names this claim is taken as that interrupted creation and tagged. The marker
    /// stays until [`ClaimedBuckets::delete`] removes the bucket.
    pub async fn ensure(&self, spec: &BucketSpec, adopt: bool) -> Result<Change> {
        let name = spec.name.as_str();
        let what = format!("bucket {name}");
        // A converged resync costs one read (and the versioning read when versioning is asked
        // for): the tags of a bucket that exists answer both questions. No tags at all leaves
        // existence open (MinIO answers NoSuchTagSet for a missing bucket too), so HEAD decides.
        let existing = match self.s3.get_tags(name).await {
            Ok((None, tags)) if tags.is_empty() => self.s3.bucket_exists(name).await?.then_some((None, tags)),
            Ok(tags) => Some(tags),
            Err(BackendError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let (current_owner, current_tags) = match existing {
            Some(tags) => tags,
            None => {
                if self.create(spec).await? {
                    return Ok(Change::Created);
                }
                // An earlier attempt's bucket under our claim: judged below like any that exists.
                self.s3.get_tags(name).await?
            }
        };
        // Tags naming this claim answer a converged resync without reading the ledger.
        let adopting = match self.claims {
            Some(claims) if !current_owner.as_ref().is_some_and(|o| o.same_claim(&spec.owner)) => {
                self.judge_existing(claims, spec, &current_owner, adopt).await?
            }
            _ => Owner::check_claim(&what, &current_owner, &spec.owner, adopt)?,
        };
        let mut change = Change::Unchanged;
        if adopting || current_tags != spec.tags {
            self.s3.put_tags(name, &spec.owner, &spec.tags).await?;
            change = Change::Updated;
        }
        if let Some(wanted) = spec.versioning
            && self.versioning.bucket_versioning(name).await? != Some(wanted)
        {
            self.s3.put_versioning(name, wanted).await?;
            change = Change::Updated;
        }
        if spec.object_lock && !self.s3.object_lock_enabled(name).await? {
            return Err(BackendError::Conflict {
                what,
                detail: "object lock can only be enabled when the bucket is created".into(),
            });
        }
        Ok(change)
    }

    /// Creates the bucket with its ownership tags and versioning, its claim recorded first where
    /// the store keeps `claims`. False when the bucket turned out to exist under our own earlier
    /// claim (an interrupted creation), for the caller to judge.
    async fn create(&self, spec: &BucketSpec) -> Result<bool> {
        let name = spec.name.as_str();
        let what = format!("bucket {name}");
        // A claim without a bucket (removed behind our back) still names its holder.
        let wrote_claim = match self.claims {
            Some(claims) => claims.claim(Subject::Bucket, name, &spec.owner, || claims.create_bucket()).await?,
            None => false,
        };
        // LocationConstraint outside us-east-1 comes from the client's region.
        match self.s3.create_bucket(name, spec.object_lock).await {
            Ok(()) => {
                // Without its tags the bucket would be foreign to us from now on: if tagging
                // fails, remove the bucket we just made (still empty) and report the failure.
                if let Err(e) = self.s3.put_tags(name, &spec.owner, &spec.tags).await {
                    let _ = self.s3.delete_bucket(name).await;
                    return Err(e);
                }
                // Object lock turns versioning on by itself, and it cannot be suspended then.
                if let Some(wanted) = spec.versioning
                    && !(wanted == Versioning::Enabled && spec.object_lock)
                {
                    self.s3.put_versioning(name, wanted).await?;
                }
                Ok(true)
            }
            Err(BackendError::Conflict { .. }) if wrote_claim => {
                // Someone else created it between our check and our create: not ours, and the
                // ledger must not say it is.
                if let Some(claims) = self.claims {
                    claims.release_own(Subject::Bucket, name, &spec.owner).await?;
                }
                Err(BackendError::NotOwned { what, detail: "created outside the operator".into() })
            }
            // Our claim was there before this attempt, so the bucket may be an earlier attempt's
            // that the existence check did not see: the caller judges it like any that exists.
            Err(BackendError::Conflict { .. }) if self.claims.is_some() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Judges an existing bucket whose tags do not name `spec.owner`, by the ledger: `Ok(true)`
    /// when its tags must be (re)written. The ledger's claim wins over tags (a user owning a bucket
    /// may edit its tags on some stores). Held by us and untagged: our own creation cut before its
    /// tags, taken up only while nobody has written to it (only an administrator could have, since
    /// no user is granted a bucket before it is tagged). Free: the tags decide, with adoption.
    async fn judge_existing(
        &self,
        claims: &Ledger,
        spec: &BucketSpec,
        tagged: &Option<Owner>,
        adopt: bool,
    ) -> Result<bool> {
        let name = spec.name.as_str();
        let what = format!("bucket {name}");
        let verdict = judge(claims.holder(Subject::Bucket, name).await?.as_ref(), &spec.owner);
        refuse_taken(Subject::Bucket, name, &verdict)?;
        match verdict {
            Verdict::Ours if tagged.is_some() => Ok(true),
            Verdict::Ours if self.s3.count_objects(name, 1).await? == 0 => Ok(true),
            Verdict::Ours => Err(BackendError::NotOwned { what, detail: "created outside the operator".into() }),
            _ => {
                let adopting = Owner::check_claim(&what, tagged, &spec.owner, adopt)?;
                if adopting {
                    claims.claim(Subject::Bucket, name, &spec.owner, || claims.create_bucket()).await?;
                }
                Ok(adopting)
            }
        }
    }

    /// Deletes a bucket of a versioning store: without `force` a bucket holding any version or
    /// delete marker is left alone (counted up to [`COUNT_LIMIT`]); with it, everything goes
    /// first.
    pub async fn delete(&self, name: &str, force: bool) -> Result<BucketDeletion> {
        let deletion = if self.s3.bucket_exists(name).await? {
            if force {
                self.s3.empty_bucket(name).await?;
            } else {
                let objects = self.s3.count_objects(name, COUNT_LIMIT).await?;
                if objects > 0 {
                    return Ok(BucketDeletion::NotEmpty { objects });
                }
            }
            self.s3.delete_bucket(name).await?
        } else {
            BucketDeletion::AlreadyGone
        };
        // The claim recorded at creation (see `ensure`) goes with the bucket.
        if let Some(claims) = self.claims {
            claims.release(Subject::Bucket, name).await?;
        }
        Ok(deletion)
    }
}
