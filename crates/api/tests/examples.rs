//! The YAML under deploy/examples parses into our types, passes the CEL rules, and holds no
//! field the types do not know (a typo would otherwise be dropped silently).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};

use kube::core::cel::validate_cel;
use s3op_api::{ClusterS3Store, S3Bucket, S3Store, S3User};
use serde_json::Value;

fn examples() -> Vec<(PathBuf, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples");
    let mut out = Vec::new();
    // The examples, and one folder down those of stores (not applied by the demo: they name
    // stores that exist only in a real cluster).
    let files = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).flat_map(|p| {
        if p.is_dir() { std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()).collect() } else { vec![p] }
    });
    for path in files {
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in text.split("\n---") {
                let value: Value = yaml_serde::from_str(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.push((path.clone(), value));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Round-trips `value` through `T` and checks that nothing of `spec` was lost.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(path: &Path, value: &Value) -> T {
    let typed: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let back = serde_json::to_value(&typed).unwrap();
    let orig_spec = value["spec"].as_object().unwrap();
    for (k, v) in orig_spec {
        assert_eq!(&back["spec"][k], v, "{}: spec.{k} did not survive parsing (typo?)", path.display());
    }
    typed
}

#[test]
fn every_example_parses_and_validates() {
    let mut kinds = Vec::new();
    for (path, value) in examples() {
        let kind = value["kind"].as_str().unwrap().to_string();
        match kind.as_str() {
            "S3Bucket" => {
                let b: S3Bucket = round_trip(&path, &value);
                validate_cel(&b).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            }
            "S3User" => {
                let u: S3User = round_trip(&path, &value);
                validate_cel(&u).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            }
            "S3Store" => {
                let st: S3Store = round_trip(&path, &value);
                validate_cel(&st).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            }
            "ClusterS3Store" => {
                let st: ClusterS3Store = round_trip(&path, &value);
                validate_cel(&st).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            }
            "Secret" => {
                let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(value.clone()).unwrap();
                let ann = s.metadata.annotations.unwrap_or_default();
                let data = s.string_data.unwrap_or_default();
                // A compatibility Secret, or a store's admin Secret (the keys a store's
                // auth.secretRef reads by default).
                let keys: &[&str] = if ann.contains_key(s3op_api::DEFAULT_COMPAT_ANNOTATION) {
                    &["bucket-name", "access-key", "secret-key"]
                } else {
                    &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
                };
                for key in keys {
                    assert!(data.contains_key(*key), "{}: {key}", path.display());
                }
            }
            other => panic!("{}: unexpected kind {other}", path.display()),
        }
        kinds.push(kind);
    }
    for want in ["S3Bucket", "S3User", "Secret", "S3Store", "ClusterS3Store"] {
        assert!(kinds.iter().any(|k| k == want), "no {want} example");
    }
    assert!(kinds.iter().filter(|k| *k == "S3User").count() >= 2, "read-write and read-only users");
}
