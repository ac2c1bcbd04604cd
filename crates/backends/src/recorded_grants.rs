//! The grants a user's ledger record keeps in its body, for stores that cannot list a user's
//! grants themselves (Garage: a key's permissions list bucket ids only while the key exists;
//! VersityGW: a user's statements are spread over bucket policies). The body is what the
//! operator last set, so a grant removed from the spec can be found and taken away.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    BackendError, Result,
    model::{Grant, Permission},
};

/// A grant as recorded in a user record's body.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct StoredGrant {
    bucket: String,
    /// `rw` or `ro`.
    access: String,
}

/// The body recording `grants`.
pub fn encode(grants: &[Grant]) -> Result<Vec<u8>> {
    let stored: Vec<StoredGrant> = grants
        .iter()
        .map(|g| StoredGrant {
            bucket: g.bucket.clone(),
            access: match g.permission {
                Permission::ReadWrite => "rw".into(),
                Permission::ReadOnly => "ro".into(),
            },
        })
        .collect();
    serde_json::to_vec(&stored).map_err(|e| BackendError::InvalidInput(format!("user record: {e}")))
}

/// Grants from a record's body, sorted; an empty body is no grants, and an unreadable one too
/// (the next set_grants writes it again).
pub fn decode(body: &[u8]) -> Vec<Grant> {
    let stored: Vec<StoredGrant> = serde_json::from_slice(body).unwrap_or_default();
    let mut grants: Vec<Grant> = stored
        .into_iter()
        .filter_map(|g| {
            let permission = match g.access.as_str() {
                "rw" => Permission::ReadWrite,
                "ro" => Permission::ReadOnly,
                _ => return None,
            };
            Some(Grant { bucket: g.bucket, permission })
        })
        .collect();
    grants.sort();
    grants
}

/// Grants as one entry per bucket, sorted; a bucket named twice keeps its strongest permission.
pub fn normalize(grants: &[Grant]) -> Vec<Grant> {
    let mut by_bucket: BTreeMap<&str, Permission> = BTreeMap::new();
    for g in grants {
        let p = by_bucket.entry(g.bucket.as_str()).or_insert(g.permission);
        if g.permission == Permission::ReadWrite {
            *p = Permission::ReadWrite;
        }
    }
    by_bucket.into_iter().map(|(bucket, permission)| Grant { bucket: bucket.to_string(), permission }).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn grants_round_trip_through_the_record_body() {
        let grants = normalize(&[
            Grant { bucket: "b".into(), permission: Permission::ReadOnly },
            Grant { bucket: "a".into(), permission: Permission::ReadOnly },
            Grant { bucket: "b".into(), permission: Permission::ReadWrite },
        ]);
        assert_eq!(
            grants,
            vec![
                Grant { bucket: "a".into(), permission: Permission::ReadOnly },
                Grant { bucket: "b".into(), permission: Permission::ReadWrite },
            ]
        );
        assert_eq!(decode(&encode(&grants).unwrap()), grants);
        assert!(decode(b"").is_empty());
        assert!(decode(b"{not json").is_empty());
    }
}
