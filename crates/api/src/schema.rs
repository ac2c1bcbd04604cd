//! Hand-built schema pieces for string fields whose rules are CEL lists shared with the Rust
//! validators in [`crate::naming`], so each rule is written once for admission.

use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};

use crate::naming::{
    BUCKET_NAME_MAX_LEN, BUCKET_NAME_RULES, CelRule, OBJECT_NAME_MAX_LEN, OBJECT_NAME_RULE, USER_NAME_MAX_LEN,
    USER_NAME_RULES,
};

fn validations(rules: &[CelRule]) -> Value {
    Value::Array(rules.iter().map(|r| json!({"rule": r.rule, "message": r.message})).collect())
}

// maxLength also bounds the CEL cost estimate, which the API server checks at CRD creation.
fn string_with_rules(max_len: usize, rules: &[CelRule]) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": max_len,
        "x-kubernetes-validations": validations(rules),
    })
}

/// `spec.bucketName` of an S3Bucket.
pub(crate) fn bucket_name(_: &mut SchemaGenerator) -> Schema {
    string_with_rules(BUCKET_NAME_MAX_LEN, BUCKET_NAME_RULES)
}

/// `spec.userName` of an S3User.
pub(crate) fn user_name(_: &mut SchemaGenerator) -> Schema {
    string_with_rules(USER_NAME_MAX_LEN, USER_NAME_RULES)
}

/// A field naming another Kubernetes object in the same namespace.
pub(crate) fn object_name(_: &mut SchemaGenerator) -> Schema {
    string_with_rules(OBJECT_NAME_MAX_LEN, &[OBJECT_NAME_RULE])
}

/// An HTTP(S) endpoint of a store: the rules of [`crate::store::validate_endpoint`].
pub(crate) fn endpoint(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": 2048,
        "x-kubernetes-validations": [{
            "rule": crate::store::ENDPOINT_RULE,
            "message": crate::store::ENDPOINT_MESSAGE,
        }],
    })
}

/// A key of a Secret's data.
pub(crate) fn secret_key(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": 253,
        "pattern": "^[-._a-zA-Z0-9]+$",
    })
}
