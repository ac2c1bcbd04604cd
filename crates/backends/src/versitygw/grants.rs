//! Grants on VersityGW as bucket policies. The gateway evaluates a bucket's policy for every
//! account without the admin role, and then looks at nothing else (not the bucket's ACL), so a
//! policy naming each granted user, with exactly the actions of its permission, gives
//! least-privilege access, ReadOnly grants and any number of users per bucket. Buckets stay
//! owned by the admin account: a user may not change a policy or delete a bucket.
//!
//! Which buckets a user is in is recorded in the body of its ledger record (the policies are
//! spread over buckets, and listing them all per reconcile would cost one read per bucket),
//! written before a statement is added and trimmed after one is removed, so a cut between the
//! two never leaves a statement the record does not name.
//!
//! Earlier versions made a ReadWrite user the bucket's owner. `describe_user` reports such
//! buckets as `legacy_grants` until a statement names the user, so `set_grants` runs and
//! writes it: from that moment the policy, not the ownership, gives the access (with a policy
//! the gateway gives an owner no rights of its own). The bucket stays with that user until the
//! grant goes, because the gateway's change of owner drops the bucket's policy: moving it while
//! granted would cut the app off for a moment. When the policy ends empty the bucket goes back
//! to the admin.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::VersityGw;
use crate::{
    BackendError, Result,
    ledger::Subject,
    model::{Change, ClaimantKind, Grant, Owner, Permission},
    policy, recorded_grants,
};

/// What a bucket's policy holds for the operator.
enum BucketPolicy {
    /// The bucket does not exist.
    NoBucket,
    /// A policy of ours (or none): each granted user and how.
    Ours(BTreeMap<String, Permission>),
    /// A policy the operator did not write; `names_user` says whether it mentions the user
    /// asked about anywhere.
    Foreign { names_user: bool },
}

/// Every principal string a policy document names, whatever its shape.
fn principals_named(doc: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for st in doc.get("Statement").and_then(Value::as_array).into_iter().flatten() {
        let principal = st.get("Principal");
        let values = match principal {
            Some(Value::Object(m)) => m.values().collect::<Vec<_>>(),
            Some(v) => vec![v],
            None => Vec::new(),
        };
        for v in values {
            match v {
                Value::String(s) => {
                    out.insert(s.clone());
                }
                Value::Array(a) => out.extend(a.iter().filter_map(Value::as_str).map(str::to_string)),
                _ => {}
            }
        }
    }
    out
}

/// Reads a stored policy for `user`'s sake: ours, or foreign (and whether it names the user).
fn classify(bucket: &str, user: &str, text: Option<&str>) -> BucketPolicy {
    let Some(text) = text else { return BucketPolicy::Ours(BTreeMap::new()) };
    let Ok(doc) = serde_json::from_str::<Value>(text) else {
        return BucketPolicy::Foreign { names_user: text.contains(user) };
    };
    match policy::principals_from_bucket_policy(bucket, &doc) {
        Some(principals) => BucketPolicy::Ours(principals),
        None => BucketPolicy::Foreign { names_user: principals_named(&doc).contains(user) },
    }
}

/// A policy someone else wrote: not ours to rewrite, and no retry changes that.
fn foreign(bucket: &str) -> BackendError {
    BackendError::NotOwned {
        what: format!("the bucket policy of bucket {bucket}"),
        detail: "written outside the operator; remove it (or the grant) to let the operator manage access".into(),
    }
}

impl VersityGw {
    async fn bucket_policy(&self, bucket: &str, user: &str) -> Result<BucketPolicy> {
        match self.s3.get_bucket_policy(bucket).await {
            Ok(text) => Ok(classify(bucket, user, text.as_deref())),
            Err(BackendError::NotFound { .. }) => Ok(BucketPolicy::NoBucket),
            Err(e) => Err(e),
        }
    }

    /// Makes `user`'s statement on `bucket` grant `want` (`None`: no statement). A missing
    /// bucket needs no removal; a foreign policy is reported, unless there is nothing of the
    /// user's to remove from it.
    async fn set_principal(&self, bucket: &str, user: &str, want: Option<Permission>) -> Result<Change> {
        self.markers.refuse_own_bucket(bucket)?;
        // Read, change, write: two grants on one bucket at once must not lose each other.
        let _one_at_a_time = self.policy_locks.lock(Subject::Bucket, bucket).await;
        let mut principals = match self.bucket_policy(bucket, user).await? {
            BucketPolicy::NoBucket if want.is_none() => return Ok(Change::Unchanged),
            BucketPolicy::NoBucket => return Err(BackendError::not_found(format!("bucket {bucket}"))),
            BucketPolicy::Foreign { names_user: false } if want.is_none() => return Ok(Change::Unchanged),
            BucketPolicy::Foreign { .. } => return Err(foreign(bucket)),
            BucketPolicy::Ours(principals) => principals,
        };
        if principals.get(user).copied() == want {
            return Ok(Change::Unchanged);
        }
        if want.is_some() && principals.is_empty() {
            principals.extend(self.owner_to_keep(bucket, user).await?);
        }
        match want {
            Some(p) => principals.insert(user.to_string(), p),
            None => principals.remove(user),
        };
        // The gateway refuses a whole document naming an account it does not know: one deleted
        // behind our back would block every other grant on the bucket.
        let mut kept = BTreeMap::new();
        for (name, p) in principals {
            if name == user || self.account_exists(&name).await? {
                kept.insert(name, p);
            }
        }
        match policy::bucket_policy_document(bucket, &kept) {
            Some(doc) => self.s3.put_bucket_policy(bucket, &doc.to_string()).await?,
            // Without a policy the gateway judges by the bucket's ACL, where an owner has full
            // control: a bucket an earlier version gave to a user goes back to the admin now
            // (which drops the policy as well), or that user would get more than it had.
            None => match self.owner_now(bucket).await?.as_ref() {
                Some(owner) if *owner != self.config.access_key => {
                    self.change_owner(bucket, &self.config.access_key).await?;
                }
                _ => self.s3.delete_bucket_policy(bucket).await?,
            },
        }
        Ok(Change::Updated)
    }

    /// The bucket's owner as the gateway has it now, read from its ACL: the shared snapshot may be
    /// seconds old, and a wrong answer here would cut an owner off or leave it full control.
    async fn owner_now(&self, bucket: &str) -> Result<Option<String>> {
        let what = format!("bucket {bucket}");
        match self.s3.client().get_bucket_acl().bucket(bucket).send().await {
            Ok(acl) => Ok(acl.owner().and_then(|o| o.id()).filter(|id| !id.is_empty()).map(str::to_string)),
            Err(e) => match self.s3.map_error("GetBucketAcl", &what, e) {
                BackendError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// The first statement of a policy takes away what the bucket's owner had through the ACL.
    /// An owner that is an S3User an earlier version granted the bucket keeps its access as a
    /// statement of its own (its own reconcile records it); an account the operator does not
    /// manage is not cut off: that is a conflict to resolve by hand.
    async fn owner_to_keep(&self, bucket: &str, user: &str) -> Result<Option<(String, Permission)>> {
        let Some(owner) = self.owner_now(bucket).await? else { return Ok(None) };
        if owner == user || owner == self.config.access_key || owner.is_empty() {
            return Ok(None);
        }
        match self.markers.holder(Subject::User, &owner).await? {
            Some(h) if h.kind == ClaimantKind::S3User => Ok(Some((owner, Permission::ReadWrite))),
            _ => Err(BackendError::NotOwned {
                what: format!("bucket {bucket}"),
                detail: format!(
                    "owned by account {owner}, which the operator does not manage; a grant would cut its access"
                ),
            }),
        }
    }

    /// Gives a bucket a user owns back to the admin, keeping the grants of its policy. The
    /// gateway's change of owner drops the policy, so its statements are written again right
    /// after: the other users of the bucket lose access for that one round trip. A policy the
    /// operator did not write is left with the bucket and its owner: while a policy exists the
    /// owner has no rights of its own, and that policy is not ours to drop.
    pub(super) async fn hand_back(&self, bucket: &str) -> Result<()> {
        let _one_at_a_time = self.policy_locks.lock(Subject::Bucket, bucket).await;
        // No user is asked about: only whether the policy is ours, and whom it grants.
        let principals = match self.bucket_policy(bucket, "").await? {
            BucketPolicy::NoBucket | BucketPolicy::Foreign { .. } => return Ok(()),
            BucketPolicy::Ours(principals) => principals,
        };
        self.change_owner(bucket, &self.config.access_key).await?;
        if let Some(doc) = policy::bucket_policy_document(bucket, &principals) {
            self.s3.put_bucket_policy(bucket, &doc.to_string()).await?;
        }
        Ok(())
    }

    /// The user's ledger record: its claim and the grants it records.
    async fn user_record(&self, user: &str) -> Result<(Owner, Vec<Grant>)> {
        match self.markers.read(Subject::User, user).await? {
            Some(crate::ledger::Record { owner: Some(owner), body }) => Ok((owner, recorded_grants::decode(&body))),
            _ => Err(BackendError::not_found(format!("claim on user {user}"))),
        }
    }

    async fn record_grants(&self, user: &str, owner: &Owner, grants: &[Grant]) -> Result<()> {
        let body = recorded_grants::encode(grants)?;
        self.markers.record(Subject::User, user, owner, body, || self.markers.create_bucket()).await
    }

    /// The grants the bucket policies give `user`, looked up in the buckets its record names
    /// (`recorded`).
    pub(super) async fn policy_grants(&self, user: &str, recorded: Vec<Grant>) -> Result<Vec<Grant>> {
        let mut out = Vec::new();
        for g in recorded {
            if let BucketPolicy::Ours(principals) = self.bucket_policy(&g.bucket, user).await?
                && let Some(&permission) = principals.get(user)
            {
                out.push(Grant { bucket: g.bucket, permission });
            }
        }
        Ok(out)
    }

    /// Makes the bucket policies give `user` exactly `grants`.
    pub(super) async fn converge_grants(&self, user: &str, grants: &[Grant]) -> Result<Change> {
        let wanted = recorded_grants::normalize(grants);
        let (owner, recorded) = self.user_record(user).await?;
        let mut union = recorded.clone();
        union.extend(wanted.iter().cloned());
        let union = recorded_grants::normalize(&union);
        let mut change = Change::Unchanged;
        if union != recorded {
            self.record_grants(user, &owner, &union).await?;
            change = Change::Updated;
        }
        for g in &wanted {
            change = change.and(self.set_principal(&g.bucket, user, Some(g.permission)).await?);
        }
        // Grants no longer wanted: recorded ones, and those an earlier version gave by
        // ownership (their policy then ends empty, and the bucket goes back to the admin).
        let kept: BTreeSet<&str> = wanted.iter().map(|g| g.bucket.as_str()).collect();
        let mut unwanted: BTreeSet<String> = recorded.iter().map(|g| g.bucket.clone()).collect();
        unwanted.extend(self.owned_buckets(user, &owner).await?);
        for bucket in unwanted.iter().filter(|b| !kept.contains(b.as_str())) {
            change = change.and(self.set_principal(bucket, user, None).await?);
        }
        if wanted != union {
            self.record_grants(user, &owner, &wanted).await?;
            change = Change::Updated;
        }
        Ok(change)
    }

    /// Takes `user` out of every bucket policy its record names (before its account goes).
    pub(super) async fn drop_grants(&self, user: &str) -> Result<()> {
        let Some(record) = self.markers.read(Subject::User, user).await? else { return Ok(()) };
        for g in recorded_grants::decode(&record.body) {
            self.set_principal(&g.bucket, user, None).await?;
        }
        Ok(())
    }

    /// The buckets an earlier version granted to `user` by making it their owner: only those
    /// the ledger holds for an S3Bucket of the namespace of `owner` (the user's claim). A
    /// bucket an adopted account owned before is not ours to change.
    pub(super) async fn owned_buckets(&self, user: &str, owner: &Owner) -> Result<Vec<String>> {
        let owned: Vec<String> =
            self.bucket_owners(&[]).await?.iter().filter(|(_, o)| *o == user).map(|(b, _)| b.clone()).collect();
        let mut out = Vec::new();
        for bucket in owned {
            let held = self.markers.holder(Subject::Bucket, &bucket).await?;
            if held.is_some_and(|h| h.kind == ClaimantKind::S3Bucket && h.namespace == owner.namespace) {
                out.push(bucket);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_policy_is_ours_only_when_we_could_have_written_it() {
        let ours = policy::bucket_policy_document("b", &BTreeMap::from([("u".to_string(), Permission::ReadOnly)]))
            .unwrap()
            .to_string();
        assert!(matches!(classify("b", "u", Some(&ours)), BucketPolicy::Ours(p) if p["u"] == Permission::ReadOnly));
        assert!(matches!(classify("b", "u", None), BucketPolicy::Ours(p) if p.is_empty()));
        let public = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#;
        assert!(matches!(classify("b", "u", Some(public)), BucketPolicy::Foreign { names_user: false }));
        let widened = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":["u","v"]},"Action":"s3:*","Resource":"arn:aws:s3:::b/*"}]}"#;
        assert!(matches!(classify("b", "u", Some(widened)), BucketPolicy::Foreign { names_user: true }));
        assert!(matches!(classify("b", "w", Some(widened)), BucketPolicy::Foreign { names_user: false }));
        assert!(matches!(classify("b", "u", Some("not json u")), BucketPolicy::Foreign { names_user: true }));
    }
}
