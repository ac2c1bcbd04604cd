//! A MinIO user's keys, known without Argon2id.
//!
//! MinIO lists a user's service accounts only encrypted (`list-service-accounts`,
//! `list-access-keys-bulk`, `info-service-account`), and it seals those replies with Argon2id:
//! 64 MiB and tens of milliseconds on our side per list. Read at every resync, that one
//! derivation was the operator's memory peak and most of its CPU on MinIO.
//!
//! So the user's ledger record keeps, in its body, the access keys the operator made for it
//! (written *before* each key is made, so no cut leaves a key the record does not name), and
//! a resync checks each recorded key with the plain `user-info` call, which answers
//! `XMinioIAMActionNotAllowed` for an existing service account and `XMinioAdminNoSuchUser`
//! for a missing one. What this cannot see:
//! - keys made for the user outside the operator. The user's policy denies its own keys the
//!   admin actions on service accounts (see [`super::user_policy_document`]), so only an
//!   administrator can make one; the user's deletion still lists and removes them.
//! - whose key a recorded name is now, should it have been deleted and made again for another
//!   user in between. That needs the deletion's record trim to have been cut and someone to
//!   know the name, and all it can do is keep a dead key in a Secret: every deletion
//!   ([`super::Minio::delete_key`], `delete_user`) asks MinIO's encrypted list, not the record.
//!
//! A record from before this (an empty body) is upgraded once, from the encrypted list, under
//! the same per-user lock as every other change of the record, so no two writers lose a key.

use super::{Minio, record};
use crate::{BackendError, Result, ledger::Subject, model::Owner};

/// Where a user's record body lists its keys.
const KEYS: &str = "keys";

fn decode(body: &[u8]) -> Option<Vec<String>> {
    record::names(body, KEYS)
}

/// The user's record as read: who holds it, and the keys it names.
pub(super) struct KeyRecord {
    pub(super) owner: Option<Owner>,
    pub(super) keys: Vec<String>,
}

impl Minio {
    /// The user's record with the keys it names; a record from before keys were recorded is
    /// upgraded first from MinIO's encrypted list. The caller holds the user's record lock.
    async fn key_record_locked(&self, user: &str) -> Result<KeyRecord> {
        let record = self.markers.read(Subject::User, user).await?;
        let owner = record.as_ref().and_then(|r| r.owner.clone());
        if let Some(keys) = record.as_ref().and_then(|r| decode(&r.body)) {
            return Ok(KeyRecord { owner, keys });
        }
        let keys = self.shared_service_accounts(user).await?;
        // A user without a claim is not ours to write a record for; nothing to upgrade then.
        if let Some(owner) = &owner {
            self.write_key_record(user, owner, &keys).await?;
        }
        Ok(KeyRecord { owner, keys })
    }

    pub(super) async fn write_key_record(&self, user: &str, owner: &Owner, keys: &[String]) -> Result<()> {
        self.markers
            .record(Subject::User, user, owner, record::body(KEYS, keys)?, || self.markers.create_bucket())
            .await
    }

    /// The claim on the user and its keys that exist: the recorded ones MinIO still has.
    pub(super) async fn user_keys(&self, user: &str) -> Result<KeyRecord> {
        let record = {
            let _only_writer = self.record_locks.lock(Subject::User, user).await;
            self.key_record_locked(user).await?
        };
        let mut keys = Vec::with_capacity(record.keys.len());
        for key in record.keys {
            if self.key_exists(&key).await? {
                keys.push(key);
            }
        }
        Ok(KeyRecord { owner: record.owner, keys })
    }

    /// Records `key` as the user's before it is made: of the keys recorded so far only those
    /// that still exist stay (a key whose making failed is dropped here).
    pub(super) async fn record_new_key(&self, user: &str, key: &str) -> Result<()> {
        let _only_writer = self.record_locks.lock(Subject::User, user).await;
        let record = self.key_record_locked(user).await?;
        let owner = record.owner.ok_or_else(|| BackendError::NotOwned {
            what: format!("user {user}"),
            detail: "it has no claim in the operator's ledger".into(),
        })?;
        let mut keys = Vec::with_capacity(record.keys.len() + 1);
        for k in record.keys {
            if k != key && self.key_exists(&k).await? {
                keys.push(k);
            }
        }
        keys.push(key.to_string());
        self.write_key_record(user, &owner, &keys).await
    }

    /// Takes `key` out of the user's record once it is deleted.
    pub(super) async fn record_key_gone(&self, user: &str, key: &str) -> Result<()> {
        let _only_writer = self.record_locks.lock(Subject::User, user).await;
        let Some(record) = self.markers.read(Subject::User, user).await? else { return Ok(()) };
        let (Some(owner), Some(keys)) = (record.owner, decode(&record.body)) else { return Ok(()) };
        if !keys.iter().any(|k| k == key) {
            return Ok(());
        }
        let keys: Vec<String> = keys.into_iter().filter(|k| k != key).collect();
        self.write_key_record(user, &owner, &keys).await
    }
}
