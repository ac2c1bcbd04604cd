//! Compatibility mode on Garage: an account is a key imported with the Secret's id and secret
//! (named after its id); owning a bucket is holding read, write and owner on it. Garage cannot
//! change a key's secret, so a changed secret is refused with what to do instead.

use async_trait::async_trait;

use super::{
    BACKEND, Garage,
    admin::{BucketDetails, Import, Perm},
};
use crate::{
    Backend, BackendError, Result,
    compat::{AccountState, CompatAccount, CompatStore},
    ledger::Subject,
    model::Owner,
};

/// Why Garage cannot import these keys (what ImportKey of Garage 2.5 refuses), checked before
/// any call; `None` when it can. Never quotes the secret.
fn garage_key_problem(access_key: &str, secret_key: &str) -> Option<String> {
    let id_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if access_key.len() < 8 || !access_key.bytes().all(id_ok) {
        return Some(format!(
            "access key {access_key:?}: Garage imports only access keys of at least 8 characters from \
             A-Z, a-z, 0-9, '.', '_' and '-'; choose such a key, or use an S3User, whose keys Garage generates"
        ));
    }
    if secret_key.len() < 16 || !secret_key.bytes().all(|b| b.is_ascii_graphic()) {
        return Some(format!(
            "the secret key of access key {access_key}: Garage imports only secret keys of at least 16 printable \
             ASCII characters without spaces; choose such a secret, or use an S3User, whose keys Garage generates"
        ));
    }
    None
}

#[async_trait]
impl CompatStore for Garage {
    fn accepts(&self, account: &CompatAccount) -> Result<()> {
        crate::compat::not_the_operators_key(account, &self.config.access_key)?;
        match garage_key_problem(&account.access_key, account.secret_key.expose()) {
            Some(problem) => Err(BackendError::InvalidInput(problem)),
            None => Ok(()),
        }
    }

    async fn account(&self, wanted: &CompatAccount) -> Result<AccountState> {
        // The secret is read only to compare it; it is dropped with the reply.
        let key = match self.key_info(&wanted.access_key, true).await {
            Ok(k) => k,
            Err(BackendError::NotFound { .. }) => return Ok(AccountState::Missing),
            Err(e) => return Err(e),
        };
        // Compatibility keys are named after their id. A key named after a user the ledger
        // knows is that user's (an S3User's keys are named after it), never this Secret's to
        // take; one made by hand under another name is judged like any account, by proof.
        if key.name != wanted.access_key
            && !key.name.is_empty()
            && self.holder(Subject::User, &key.name).await?.is_some()
        {
            return Err(BackendError::NotOwned {
                what: format!("access key {}", wanted.access_key),
                detail: format!(
                    "a key named {:?}, not made for a compatibility Secret (e.g. an S3User's key)",
                    key.name
                ),
            });
        }
        let mut differs = Vec::new();
        if key.secret_access_key.as_deref() != Some(wanted.secret_key.expose()) {
            differs.push("secret key");
        }
        if key.expired {
            differs.push("expiration");
        }
        Ok(AccountState::existing(differs))
    }

    async fn create_account(&self, account: &CompatAccount) -> Result<()> {
        let id = account.access_key.as_str();
        let what = format!("access key {id}");
        // Compatibility keys are named after their id.
        match self.import(id, &account.secret_key, id, &what).await? {
            Import::Done => Ok(()),
            Import::Taken => {
                Err(BackendError::NotOwned { what, detail: "imported meanwhile outside the operator".into() })
            }
            // Not retryable.
            Import::Deleted => Err(BackendError::InvalidInput(format!(
                "{what} belonged to a key deleted from Garage, and Garage never imports a deleted key id \
                 again: put a new access key in the Secret, or use an S3User"
            ))),
        }
    }

    async fn update_account(&self, account: &CompatAccount, differs: &[&'static str]) -> Result<()> {
        if differs.contains(&"secret key") {
            return Err(BackendError::Unsupported {
                backend: BACKEND,
                feature: "a new secret key for an existing access key (Garage cannot change a key's secret, nor import \
                          a deleted key id again; put a new access key in the Secret, or use an S3User)",
            });
        }
        if differs.contains(&"expiration") {
            self.never_expire(&account.access_key).await?;
        }
        Ok(())
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        Ok(self.find_bucket(bucket).await?.is_some())
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.markers.refuse_own_bucket(bucket)?;
        let what = format!("bucket {bucket}");
        let created = self.create_with_access(bucket, &what).await?;
        self.ensure_operator_access(&created, &what).await.map(|_| ())
    }

    async fn bucket_owner(&self, bucket: &str) -> Result<Option<String>> {
        let Some(info) = self.find_bucket(bucket).await? else { return Ok(None) };
        // Several owners (granted by hand) is drift: reporting none makes the caller set the
        // owner, which takes owner rights from the others.
        Ok(match self.compat_owners(&info).as_slice() {
            [one] => Some((*one).to_string()),
            _ => None,
        })
    }

    async fn change_bucket_owner(&self, bucket: &str, owner: &str, _previous: Option<&str>) -> Result<()> {
        self.markers.refuse_own_bucket(bucket)?;
        let what = format!("bucket {bucket}");
        let info = self.find_bucket(bucket).await?.ok_or_else(|| BackendError::not_found(what.clone()))?;
        if !info.global_aliases.iter().any(|a| a == bucket) {
            // The account reaches the bucket by its name.
            self.add_global_alias(&info.id, bucket, &what).await?;
        }
        let has = info.keys.iter().find(|k| k.access_key_id == owner).is_some_and(|k| k.permissions.covers(Perm::FULL));
        if !has {
            self.allow(&info.id, owner, Perm::FULL, &format!("{what} for access key {owner}")).await?;
        }
        // Every other owner loses it: `previous` (if it still is one), and any granted by hand.
        for other in self.compat_owners(&info).into_iter().filter(|k| *k != owner) {
            self.deny(&info.id, other, Perm::FULL, &format!("{what} for access key {other}")).await?;
        }
        Ok(())
    }

    async fn privileged(&self, access_key: &str) -> Result<Option<String>> {
        match self.key_info(access_key, false).await {
            Ok(k) if k.permissions.create_bucket => Ok(Some("may create buckets".into())),
            Ok(_) | Err(BackendError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn claim(&self, subject: Subject, name: &str, owner: &Owner) -> Result<bool> {
        self.claim_marker(subject, name, owner).await
    }
}

impl Garage {
    /// The keys (never the operator's) holding read, write and owner on the bucket, sorted.
    fn compat_owners<'a>(&self, info: &'a BucketDetails) -> Vec<&'a str> {
        let mut owners: Vec<&str> = info
            .keys
            .iter()
            .filter(|k| k.access_key_id != self.config.access_key && k.permissions.covers(Perm::FULL))
            .map(|k| k.access_key_id.as_str())
            .collect();
        owners.sort_unstable();
        owners
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{
        SecretString,
        garage::{
            GarageConfig,
            admin::{KeyDetails, parse},
        },
    };

    #[test]
    fn compat_keys_garage_cannot_import_are_named_before_any_call() {
        let hex64 = "0123456789abcdef".repeat(4);
        assert_eq!(garage_key_problem("GK0123456789abcdef01234567", &hex64), None);
        assert_eq!(garage_key_problem("eight.c_-", "0123456789~!@#$%"), None);
        let short = garage_key_problem("seven77", &hex64).unwrap();
        assert!(short.contains("at least 8") && short.contains("S3User"), "{short}");
        assert!(garage_key_problem("eight+chr", &hex64).unwrap().contains("'.', '_' and '-'"));
        for secret in ["0123456789abcde", "0123456789 abcdef", "0123456789\tabcdef", "0123456789é0abcdef"] {
            let problem = garage_key_problem("eightchr", secret).unwrap();
            assert!(problem.contains("16 printable") && !problem.contains(secret), "{problem}");
        }
    }

    #[test]
    fn compat_owners_are_full_holders_other_than_the_operator() {
        let garage = Garage::new(GarageConfig {
            endpoint: "http://127.0.0.1:1".into(),
            region: "garage".into(),
            access_key: "GKoperator".into(),
            secret_key: SecretString::from("s"),
            admin_endpoint: "http://127.0.0.1:2".into(),
            admin_token: SecretString::from("t"),
            marker_bucket: "markers".into(),
            ca_bundle: None,
        })
        .unwrap();
        let info: BucketDetails = parse(
            r#"{"id":"b1","globalAliases":["b"],"keys":[
                {"accessKeyId":"GKoperator","permissions":{"read":true,"write":true,"owner":true}},
                {"accessKeyId":"GKuser","permissions":{"read":true,"write":true,"owner":false}},
                {"accessKeyId":"GKcompat","permissions":{"read":true,"write":true,"owner":true}}]}"#,
            "t",
        )
        .unwrap();
        assert_eq!(garage.compat_owners(&info), ["GKcompat"]);
        assert!(garage.markers.refuse_own_bucket("markers").is_err() && garage.markers.refuse_own_bucket("b").is_ok());
        let key: KeyDetails = parse(
            r#"{"accessKeyId":"GKcompat","name":"GKcompat","expired":true,"secretAccessKey":"x","buckets":[]}"#,
            "t",
        )
        .unwrap();
        assert!(key.expired);
    }
}
