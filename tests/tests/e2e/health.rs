//! What kstatus (Flux, kpt), Flux's documented `healthCheckExprs` and Argo CD's documented Lua
//! script conclude from each state our status conventions can put an object in. The objects are
//! written by hand, so these pin the tools' readings of the conventions; the operator suites
//! check that the operator writes them. `docs/health-checks.md` has the same table.

use s3op_tests::health::{Verdict, argo_health, flux_cel, kstatus};
use serde_json::{Value, json};

const API_VERSION: &str = "s3-resource-operator.io/v1alpha1";

fn condition(kind: &str, status: &str, reason: &str, message: &str, generation: i64) -> Value {
    json!({
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    })
}

fn object(kind: &str, generation: i64, status: Option<Value>) -> Value {
    let mut obj = json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": "photos", "namespace": "media", "generation": generation, "uid": "0b5e"},
        "spec": {"store": {"name": "minio"}},
    });
    if let Some(status) = status {
        obj["status"] = status;
    }
    obj
}

fn bucket(generation: i64, observed: i64, conditions: Vec<Value>) -> Value {
    object("S3Bucket", generation, Some(json!({"observedGeneration": observed, "conditions": conditions})))
}

fn deleting(mut obj: Value) -> Value {
    obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:05:00Z");
    obj["metadata"]["finalizers"] = json!(["s3-resource-operator.io/cleanup"]);
    obj
}

fn ready(generation: i64) -> Value {
    condition("Ready", "True", "Available", "bucket photos is available", generation)
}

/// kstatus, Flux CEL and Argo CD statuses of `obj`, messages left out.
fn statuses(obj: &Value) -> [String; 3] {
    [
        kstatus(obj).expect("kstatus").status,
        flux_cel(obj).expect("flux CEL").status,
        argo_health(obj).expect("argo health").status,
    ]
}

#[test]
fn without_status_only_kstatus_calls_it_current() {
    let obj = object("S3Bucket", 1, None);
    // kstatus has no rule for an object nobody has written a status for yet.
    assert_eq!(kstatus(&obj).unwrap(), Verdict::new("Current", "Resource is current"));
    let cel = flux_cel(&obj).unwrap();
    assert_eq!(cel.status, "Unknown", "{cel:?}");
    assert!(cel.message.contains("no such attribute"), "{cel:?}");
    assert_eq!(
        argo_health(&obj).unwrap(),
        Verdict::new("Progressing", "Waiting for the operator to observe generation 1")
    );
}

#[test]
fn an_unobserved_generation_is_in_progress_whatever_the_conditions_say() {
    let obj = bucket(2, 1, vec![ready(1)]);
    assert_eq!(
        kstatus(&obj).unwrap(),
        Verdict::new("InProgress", "S3Bucket generation is 2, but latest observed generation is 1")
    );
    assert_eq!(flux_cel(&obj).unwrap(), Verdict::new("InProgress", ""));
    assert_eq!(
        argo_health(&obj).unwrap(),
        Verdict::new("Progressing", "Waiting for the operator to observe generation 2")
    );
}

#[test]
fn ready_is_current_and_healthy() {
    let obj = bucket(3, 3, vec![ready(3)]);
    assert_eq!(kstatus(&obj).unwrap(), Verdict::new("Current", "Resource is Ready"));
    assert_eq!(flux_cel(&obj).unwrap(), Verdict::new("Current", ""));
    assert_eq!(argo_health(&obj).unwrap(), Verdict::new("Healthy", "bucket photos is available"));
}

#[test]
fn every_kind_is_judged_by_its_own_documented_entry() {
    for kind in ["S3Bucket", "S3User", "S3Store", "ClusterS3Store"] {
        let obj = object(kind, 1, Some(json!({"observedGeneration": 1, "conditions": [ready(1)]})));
        assert_eq!(statuses(&obj), ["Current", "Current", "Healthy"], "{kind}");
        let stalled = object(
            kind,
            1,
            Some(json!({"observedGeneration": 1, "conditions": [
                condition("Ready", "False", "InvalidSpec", "spec.name is not a valid bucket name", 1),
                condition("Stalled", "True", "InvalidSpec", "spec.name is not a valid bucket name", 1),
            ]})),
        );
        assert_eq!(statuses(&stalled), ["Failed", "Failed", "Degraded"], "{kind}");
    }
}

#[test]
fn work_under_way_and_retryable_waits_are_in_progress() {
    for (reason, message) in [
        ("Creating", "creating bucket photos"),
        ("BackendUnavailable", "store minio: connection refused; retrying"),
        ("StoreNotReady", "S3Store minio is not Ready"),
        ("BucketNotReady", "S3Bucket photos is not Ready"),
        ("StoreInUse", "2 buckets still use this store"),
    ] {
        let obj = bucket(
            1,
            1,
            vec![condition("Ready", "False", reason, message, 1), condition("Reconciling", "True", reason, message, 1)],
        );
        assert_eq!(kstatus(&obj).unwrap(), Verdict::new("InProgress", message), "{reason}");
        assert_eq!(flux_cel(&obj).unwrap(), Verdict::new("InProgress", ""), "{reason}");
        assert_eq!(argo_health(&obj).unwrap(), Verdict::new("Progressing", &format!("{reason}: {message}")));
    }
}

#[test]
fn stalled_is_failed_and_degraded() {
    for reason in
        ["InvalidSpec", "Conflict", "Forbidden", "Unsupported", "StoreNotFound", "StoreNotAllowed", "StoreMismatch"]
    {
        let message = format!("{reason} needs a change from you");
        let obj = bucket(
            4,
            4,
            vec![condition("Ready", "False", reason, &message, 4), condition("Stalled", "True", reason, &message, 4)],
        );
        assert_eq!(kstatus(&obj).unwrap(), Verdict::new("Failed", &message), "{reason}");
        assert_eq!(flux_cel(&obj).unwrap(), Verdict::new("Failed", ""), "{reason}");
        assert_eq!(argo_health(&obj).unwrap(), Verdict::new("Degraded", &format!("{reason}: {message}")));
    }
}

#[test]
fn deleting_is_terminating_for_kstatus_and_progressing_for_argo() {
    let obj = deleting(bucket(
        2,
        2,
        vec![
            condition("Ready", "False", "Deleting", "emptying bucket photos", 2),
            condition("Reconciling", "True", "Deleting", "emptying bucket photos", 2),
        ],
    ));
    assert_eq!(kstatus(&obj).unwrap(), Verdict::new("Terminating", "Resource scheduled for deletion"));
    assert_eq!(flux_cel(&obj).unwrap(), Verdict::new("InProgress", ""));
    assert_eq!(argo_health(&obj).unwrap(), Verdict::new("Progressing", "Deleting: emptying bucket photos"));

    // Ready still True from before the delete: deletion wins over it for both.
    let obj = deleting(bucket(2, 2, vec![ready(2)]));
    assert_eq!(statuses(&obj), ["Terminating", "Current", "Progressing"]);
    assert_eq!(argo_health(&obj).unwrap().message, "Deleting");
}

#[test]
fn a_blocked_deletion_is_degraded_for_argo_but_still_terminating_for_kstatus() {
    let message = "bucket photos is not empty and spec.deletionPolicy is Retain-if-not-empty";
    let obj = deleting(bucket(
        2,
        2,
        vec![
            condition("Ready", "False", "DeletionBlocked", message, 2),
            condition("Stalled", "True", "DeletionBlocked", message, 2),
        ],
    ));
    // kstatus looks at deletionTimestamp before any condition.
    assert_eq!(kstatus(&obj).unwrap(), Verdict::new("Terminating", "Resource scheduled for deletion"));
    assert_eq!(flux_cel(&obj).unwrap(), Verdict::new("Failed", ""));
    assert_eq!(argo_health(&obj).unwrap(), Verdict::new("Degraded", &format!("DeletionBlocked: {message}")));
}

#[test]
fn ready_false_without_reconciling_or_stalled_is_in_progress() {
    let obj = bucket(1, 1, vec![condition("Ready", "False", "NotFound", "the bucket is gone", 1)]);
    assert_eq!(kstatus(&obj).unwrap(), Verdict::new("InProgress", "the bucket is gone"));
    assert_eq!(flux_cel(&obj).unwrap(), Verdict::new("InProgress", ""));
    assert_eq!(argo_health(&obj).unwrap(), Verdict::new("Progressing", "NotFound: the bucket is gone"));
}

#[test]
fn reconciling_outranks_ready_for_all_three() {
    let obj =
        bucket(1, 1, vec![ready(1), condition("Reconciling", "True", "Creating", "applying the bucket policy", 1)]);
    assert_eq!(statuses(&obj), ["InProgress", "InProgress", "Progressing"]);
}

#[test]
fn a_stale_ready_condition_fools_only_kstatus() {
    // status.observedGeneration is current but the Ready condition was written for an older
    // spec. The operator writes both in one update, so this shows what the condition's own
    // observedGeneration buys: kstatus does not read it.
    let obj = bucket(5, 5, vec![ready(4)]);
    assert_eq!(statuses(&obj), ["Current", "InProgress", "Progressing"]);
}

#[test]
fn a_null_observed_generation_is_unknown_to_kstatus() {
    // Why the API types skip a None observedGeneration rather than write null.
    let obj = object("S3Bucket", 1, Some(json!({"observedGeneration": null, "conditions": [ready(1)]})));
    let verdict = kstatus(&obj).unwrap();
    assert_eq!(verdict.status, "Unknown", "{verdict:?}");
    assert!(verdict.message.contains("observedGeneration"), "{verdict:?}");
    assert_eq!(argo_health(&obj).unwrap().status, "Healthy");
}

#[test]
fn messages_reach_argo_byte_for_byte() {
    let message = "policy \"read-only\" ]] rejected: \\d+ é\u{1F4A5}\u{7}";
    let obj = bucket(
        1,
        1,
        vec![
            condition("Ready", "False", "Forbidden", message, 1),
            condition("Stalled", "True", "Forbidden", message, 1),
        ],
    );
    assert_eq!(argo_health(&obj).unwrap(), Verdict::new("Degraded", &format!("Forbidden: {message}")));
    assert_eq!(kstatus(&obj).unwrap(), Verdict::new("Failed", message));
}
