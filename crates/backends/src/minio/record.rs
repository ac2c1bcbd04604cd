//! The names a MinIO ledger record keeps in its body: a user's access keys (`keys`), a
//! compatibility bucket's policy holders (`holders`). Each is what the operator made, so a
//! resync checks those few names with plain admin calls instead of opening one of MinIO's
//! Argon2id-sealed lists.

use crate::{BackendError, Result};

/// The names under `field` in a record's body, sorted; `None` when the body has no such list
/// (a record written before names were recorded has an empty body).
pub(super) fn names(body: &[u8], field: &str) -> Option<Vec<String>> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut names: Vec<String> =
        value.get(field)?.as_array()?.iter().map(|n| n.as_str().map(str::to_string)).collect::<Option<_>>()?;
    names.sort();
    names.dedup();
    Some(names)
}

/// The body recording `names` under `field`.
pub(super) fn body(field: &str, names: &[String]) -> Result<Vec<u8>> {
    let mut names = names.to_vec();
    names.sort();
    names.dedup();
    serde_json::to_vec(&serde_json::json!({ field: names }))
        .map_err(|e| BackendError::InvalidInput(format!("ledger record: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_round_trip_and_an_old_record_names_none() {
        let b = body("keys", &["K2".into(), "K1".into(), "K2".into()]).unwrap();
        assert_eq!(String::from_utf8(b.clone()).unwrap(), r#"{"keys":["K1","K2"]}"#);
        assert_eq!(names(&b, "keys"), Some(vec!["K1".to_string(), "K2".to_string()]));
        assert_eq!(names(&b, "holders"), None);
        assert_eq!(names(br#"{"holders":[]}"#, "holders"), Some(Vec::new()));
        // Records written before names were recorded have an empty body: unknown, not empty.
        assert_eq!(names(b"", "keys"), None);
        assert_eq!(names(b"[]", "keys"), None);
        assert_eq!(names(br#"{"keys":[1]}"#, "keys"), None);
    }
}
