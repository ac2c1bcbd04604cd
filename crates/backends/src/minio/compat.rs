//! Compatibility mode on MinIO: an account is a MinIO user whose access key and secret are
//! the Secret's; owning a bucket is having its policy `s3op_compat_<bucket>` (ReadWrite on that
//! bucket) attached. Roles and POSIX ids do not exist on MinIO and are ignored.
//!
//! Who holds a policy MinIO tells only in an Argon2id-sealed list (`policy-entities`), and a
//! resync of every Secret asks who owns its bucket. So the bucket's ledger record names, in
//! its body, the accounts the operator attached the policy to (each written *before* it is
//! attached), and a resync reads each named account's plain `user-info`. The list is opened
//! only for a bucket whose record names nobody yet (claimed before holders were recorded, or
//! not claimed: adoption is judged by the store's own word), and then the record is filled
//! in. A holder an administrator attaches by hand to a recorded bucket is not seen; MinIO
//! refuses to remove a policy that is attached, so a missing policy has no holders.

use async_trait::async_trait;

use super::{Minio, record};
use crate::{
    BackendError, Result,
    compat::{AccountState, CompatAccount, CompatStore},
    ledger::Subject,
    model::{Grant, Owner, Permission},
    policy, s3ops,
};

/// Name of the canned policy that makes a compatibility account the owner of `bucket`.
// An underscore, not the suggested `s3op-compat-<bucket>`: that is also `policy_name` of a user
// named `compat-<bucket>`, so an S3User could overwrite a compatibility bucket's policy. User
// and bucket names never hold an underscore (Kubernetes and S3 naming), so the two sets of
// policy names cannot meet.
fn compat_policy_name(bucket: &str) -> String {
    format!("{COMPAT_POLICY_PREFIX}{bucket}")
}

/// Where a compatibility bucket's record body lists the accounts holding its policy.
const HOLDERS: &str = "holders";

/// What every compatibility policy's name starts with.
pub(super) const COMPAT_POLICY_PREFIX: &str = "s3op_compat_";

/// What MinIO refuses as a user's keys (its `auth` package and `add-user`), checked before any
/// call so the Secret's author reads why instead of an HTTP 400.
fn minio_key_problem(access_key: &str, secret_key: &str) -> Option<String> {
    if access_key.len() < 3 {
        return Some(format!("access key {access_key}: MinIO needs access keys of at least 3 characters"));
    }
    if access_key.contains(['=', ',']) {
        return Some(format!("access key {access_key}: MinIO refuses access keys containing '=' or ','"));
    }
    if secret_key.len() < 8 {
        return Some(format!(
            "the secret key of access key {access_key} is shorter than the 8 characters MinIO requires"
        ));
    }
    None
}

impl Minio {
    /// True when the bucket's compatibility policy exists and grants exactly ReadWrite on it.
    async fn compat_policy_current(&self, bucket: &str) -> Result<bool> {
        let wanted = vec![Grant { bucket: bucket.to_string(), permission: Permission::ReadWrite }];
        let current = self.canned_policy(&compat_policy_name(bucket)).await?;
        Ok(current.as_ref().and_then(|d| policy::grants_from_document("aws", d)) == Some(wanted))
    }

    /// The claim on the bucket and the holders its record names (`None`: names nobody yet).
    async fn recorded_holders(&self, bucket: &str) -> Result<(Option<Owner>, Option<Vec<String>>)> {
        match self.markers.read(Subject::Bucket, bucket).await? {
            Some(r) => Ok((r.owner, record::names(&r.body, HOLDERS))),
            None => Ok((None, None)),
        }
    }

    async fn record_holders(&self, bucket: &str, claimant: &Owner, holders: &[String]) -> Result<()> {
        let body = record::body(HOLDERS, holders)?;
        self.markers.record(Subject::Bucket, bucket, claimant, body, || self.markers.create_bucket()).await
    }

    /// Of `accounts`, those holding `policy`, by their plain `user-info`.
    async fn holding(&self, accounts: &[String], policy: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for account in accounts {
            match self.user_info(account).await {
                Ok(Some(info)) if info.policies().iter().any(|p| p == policy) => out.push(account.clone()),
                // Gone, or no longer a user (a service account now): holds nothing.
                Ok(_) | Err(BackendError::NotOwned { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The claim on the bucket, and everyone holding its compatibility policy: the recorded
    /// accounts that still do or, for a record that names nobody yet, MinIO's sealed list,
    /// recorded then for the next time. The caller holds the bucket's record lock.
    async fn compat_holders_locked(&self, bucket: &str) -> Result<(Option<Owner>, Vec<String>)> {
        let name = compat_policy_name(bucket);
        let (claimant, recorded) = self.recorded_holders(bucket).await?;
        if let Some(recorded) = recorded {
            let holders = self.holding(&recorded, &name).await?;
            return Ok((claimant, holders));
        }
        if self.canned_policy(&name).await?.is_none() {
            return Ok((claimant, Vec::new()));
        }
        let holders = self.shared_policy_users(&name).await?;
        if let Some(claimant) = &claimant {
            self.record_holders(bucket, claimant, &holders).await?;
        }
        Ok((claimant, holders))
    }
}

#[async_trait]
impl CompatStore for Minio {
    fn accepts(&self, account: &CompatAccount) -> Result<()> {
        crate::compat::not_the_operators_key(account, &self.config.access_key)?;
        match minio_key_problem(&account.access_key, account.secret_key.expose()) {
            Some(problem) => Err(BackendError::InvalidInput(problem)),
            None => Ok(()),
        }
    }

    async fn account(&self, wanted: &CompatAccount) -> Result<AccountState> {
        let user = wanted.access_key.as_str();
        let what = format!("access key {user}");
        // A service account is refused here with NotOwned: add-user would be refused too.
        let Some(info) = self.user_info(user).await? else { return Ok(AccountState::Missing) };
        if info.status != "enabled" {
            // A disabled user's secret cannot be probed; the update rewrites it anyway.
            return Ok(AccountState::Differs(vec!["status"]));
        }
        // MinIO never returns a user's secret: sign a request with the wanted one and see
        // whether the server takes it. AccessDenied comes after authentication, so the secret
        // matches (the user may simply not list buckets).
        let probe = s3ops::client(
            &self.config.endpoint,
            &self.config.region,
            user,
            &wanted.secret_key,
            self.config.ca_bundle.as_deref(),
        )?;
        match probe.list_buckets().send().await {
            Ok(_) => Ok(AccountState::Matches),
            Err(e) => match aws_sdk_s3::error::ProvideErrorMetadata::code(&e) {
                Some("AccessDenied") => Ok(AccountState::Matches),
                Some("SignatureDoesNotMatch" | "InvalidAccessKeyId") => Ok(AccountState::Differs(vec!["secret key"])),
                _ => Err(self.s3.map_error("ListBuckets", &format!("{what} (checking its secret)"), e)),
            },
        }
    }

    async fn create_account(&self, account: &CompatAccount) -> Result<()> {
        self.add_user(&account.access_key, &account.secret_key).await
    }

    async fn update_account(&self, account: &CompatAccount, _differs: &[&'static str]) -> Result<()> {
        // add-user on an existing user sets its secret and status and keeps its policies.
        self.add_user(&account.access_key, &account.secret_key).await
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        self.s3.bucket_exists(bucket).await
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.markers.refuse_own_bucket(bucket)?;
        self.s3.create_bucket(bucket, false).await
    }

    async fn bucket_owner(&self, bucket: &str) -> Result<Option<String>> {
        let users = {
            let _only_writer = self.record_locks.lock(Subject::Bucket, bucket).await;
            self.compat_holders_locked(bucket).await?.1
        };
        // Several holders (attached by hand) is drift: reporting none makes the caller set the
        // owner, which detaches the others. A policy edited by hand grants nobody ReadWrite.
        let [user] = users.as_slice() else { return Ok(None) };
        if !self.compat_policy_current(bucket).await? {
            return Ok(None);
        }
        Ok(Some(user.clone()))
    }

    async fn change_bucket_owner(&self, bucket: &str, owner: &str, previous: Option<&str>) -> Result<()> {
        self.markers.refuse_own_bucket(bucket)?;
        let _only_writer = self.record_locks.lock(Subject::Bucket, bucket).await;
        let name = compat_policy_name(bucket);
        let (claimant, mut holders) = self.compat_holders_locked(bucket).await?;
        if let Some(previous) = previous.filter(|p| !holders.iter().any(|h| h == p)) {
            holders.extend(self.holding(&[previous.to_string()], &name).await?);
        }
        // The record names the new holder before it holds anything, so no cut leaves a holder
        // the record does not name. The caller claimed the bucket first.
        let claimant = claimant.ok_or_else(|| BackendError::NotOwned {
            what: format!("bucket {bucket}"),
            detail: "it has no claim in the operator's ledger".into(),
        })?;
        let mut named = holders.clone();
        named.push(owner.to_string());
        self.record_holders(bucket, &claimant, &named).await?;
        if !self.compat_policy_current(bucket).await? {
            let grants = [Grant { bucket: bucket.to_string(), permission: Permission::ReadWrite }];
            let doc = policy::policy_document("aws", &grants)
                .ok_or_else(|| BackendError::InvalidInput(format!("policy {name}: no grant")))?;
            self.put_canned_policy(&name, &doc).await?;
        }
        // Attached beside the user's other policies: the user keeps whatever it had.
        self.associate(owner, &[&name], true).await?;
        // Everyone else holding it loses it: `previous` if it still does, and whoever else
        // the record (or, once, MinIO's list) names.
        for user in holders.iter().filter(|u| *u != owner) {
            self.associate(user, &[&name], false).await?;
        }
        self.record_holders(bucket, &claimant, &[owner.to_string()]).await
    }

    async fn privileged(&self, access_key: &str) -> Result<Option<String>> {
        self.user_privilege(access_key).await
    }

    async fn claim(&self, subject: Subject, name: &str, owner: &Owner) -> Result<bool> {
        self.markers.claim_free(subject, name, owner, || self.markers.create_bucket()).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::minio::policy_name;

    #[test]
    fn compat_keys_minio_refuses_are_named_before_any_call() {
        assert_eq!(minio_key_problem("GK0123456789abcdef01234567", "0123456789abcdef"), None);
        assert_eq!(minio_key_problem("abc", "12345678"), None);
        assert!(minio_key_problem("ab", "12345678").unwrap().contains("at least 3"));
        assert!(minio_key_problem("a=b", "12345678").unwrap().contains("'='"));
        assert!(minio_key_problem("a,bc", "12345678").unwrap().contains("','"));
        let short = minio_key_problem("abc", "1234567").unwrap();
        assert!(short.contains("8 characters") && !short.contains("1234567"), "{short}");
    }

    #[test]
    fn compat_policy_names_cannot_meet_user_policy_names() {
        assert_eq!(compat_policy_name("b1"), "s3op_compat_b1");
        assert_ne!(compat_policy_name("b1"), policy_name("compat-b1"));
        assert_ne!(compat_policy_name("b1"), policy_name("compat_b1"));
    }
}
