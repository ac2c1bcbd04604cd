//! Compatibility mode on VersityGW, the older operator's own backend: accounts with role and
//! POSIX ids, a bucket made with the admin credentials, then handed to the account with
//! `change-bucket-owner`.

use async_trait::async_trait;

use super::{
    VersityGw,
    admin::{MutableProps, NewAccount},
};
use crate::{
    Result,
    compat::{AccountState, CompatAccount, CompatStore},
    ledger::Subject,
    model::Owner,
};

#[async_trait]
impl CompatStore for VersityGw {
    fn accepts(&self, account: &CompatAccount) -> Result<()> {
        crate::compat::not_the_operators_key(account, &self.config.access_key)?;
        Ok(())
    }

    async fn account(&self, wanted: &CompatAccount) -> Result<AccountState> {
        let Some(have) = self.accounts().await?.into_iter().find(|a| a.access == wanted.access_key) else {
            return Ok(AccountState::Missing);
        };
        Ok(wanted.compare_existing(&have.secret, &have.role, have.user_id, have.group_id))
    }

    async fn create_account(&self, account: &CompatAccount) -> Result<()> {
        self.create_user(&NewAccount {
            access: &account.access_key,
            secret: account.secret_key.expose(),
            role: &account.role,
            user_id: Some(account.user_id),
            group_id: Some(account.group_id),
        })
        .await
    }

    async fn update_account(&self, account: &CompatAccount, _differs: &[&'static str]) -> Result<()> {
        let props = MutableProps {
            secret: account.secret_key.expose(),
            role: Some(&account.role),
            user_id: Some(account.user_id),
            group_id: Some(account.group_id),
        };
        self.update_user(&account.access_key, &props).await
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        self.s3.bucket_exists(bucket).await
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.s3.create_bucket(bucket, false).await?;
        self.owner_changed(bucket, Some(&self.config.access_key));
        Ok(())
    }

    async fn bucket_owner(&self, bucket: &str) -> Result<Option<String>> {
        // A bucket the admin account holds (just created, or handed back) has no user owner.
        let owners = self.bucket_owners(&[bucket]).await?;
        Ok(owners.get(bucket).filter(|o| !o.is_empty() && **o != self.config.access_key).cloned())
    }

    async fn change_bucket_owner(&self, bucket: &str, owner: &str, _previous: Option<&str>) -> Result<()> {
        // The gateway has one owner per bucket: the previous one loses it by this very call.
        self.change_owner(bucket, owner).await
    }

    async fn privileged(&self, access_key: &str) -> Result<Option<String>> {
        self.account_privilege(access_key).await
    }

    async fn claim(&self, subject: Subject, name: &str, owner: &Owner) -> Result<bool> {
        self.markers.claim_free(subject, name, owner, || self.markers.create_bucket()).await
    }
}
