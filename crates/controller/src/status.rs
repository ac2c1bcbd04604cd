//! The `Ready` condition and the rules for writing status: `lastTransitionTime` moves only when
//! the condition's status flips, and a status equal to the current one is never written.

use std::fmt::Debug;

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::Resource;
use s3op_api::{ConditionReason, ConditionType};
use s3op_backends::{BackendError, ErrorCategory};
use serde::{Serialize, de::DeserializeOwned};

/// A custom resource with a status the operator writes.
pub trait WithStatus: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug {
    /// The status type.
    type Status: Serialize + PartialEq + Clone + Default;
    /// The kind's name, as a bounded metric label.
    const KIND: &'static str;
    /// The current status, if any.
    fn status_ref(&self) -> Option<&Self::Status>;
    /// The API the object is read and written through (its namespace's, or the cluster's).
    fn api_of(&self, client: kube::Client) -> kube::Api<Self>;
    /// The conditions held in `status`.
    fn conditions(status: &Self::Status) -> &[Condition];
}

/// What a reconcile concluded, before it becomes a condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// Ready or not.
    pub ready: bool,
    /// Why.
    pub reason: ConditionReason,
    /// For humans; never a secret.
    pub message: String,
    /// Whether turning into this state deserves a Warning event. A wait that is part of normal
    /// convergence (a user whose new bucket is still being created) is shown in status only:
    /// a Warning for every user of a fresh rollout would bury the real problems.
    pub warn: bool,
}

impl Readiness {
    /// Ready, reason `Available`.
    pub fn available(message: impl Into<String>) -> Self {
        Self { ready: true, reason: ConditionReason::Available, message: message.into(), warn: false }
    }

    /// Not ready, for `reason`; a Warning event marks the change.
    pub fn not_ready(reason: ConditionReason, message: impl Into<String>) -> Self {
        Self { ready: false, reason, message: message.into(), warn: true }
    }

    /// Not ready yet, for `reason`, as expected while things converge: status only, no event.
    pub fn pending(reason: ConditionReason, message: impl Into<String>) -> Self {
        Self { ready: false, reason, message: message.into(), warn: false }
    }

    /// Not ready because the store failed: the error's own category is the reason.
    pub fn of_error(err: &BackendError) -> Self {
        Self::not_ready(reason_of(err.category()), err.to_string())
    }

    /// True when moving from `previous` to this state deserves a Warning event.
    pub fn warns_after(&self, previous: &[Condition]) -> bool {
        self.warn && transitions(previous, self)
    }
}

/// The condition reason a backend error category shows as: the category's own word, which the
/// API's reasons include (a unit test checks every one).
pub fn reason_of(category: ErrorCategory) -> ConditionReason {
    ConditionReason::parse(category.as_str()).unwrap_or(ConditionReason::BackendUnavailable)
}

/// The Ready condition among `conditions`.
pub fn ready_condition(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == ConditionType::Ready.as_str())
}

/// True when `conditions` say Ready=True.
pub fn is_ready(conditions: &[Condition]) -> bool {
    ready_condition(conditions).is_some_and(|c| c.status == "True")
}

/// True when `conditions` say Ready=True for `generation`: a Ready condition left from an
/// earlier spec (or written by hand without the generation) does not count.
pub fn is_ready_at(conditions: &[Condition], generation: Option<i64>) -> bool {
    ready_condition(conditions)
        .is_some_and(|c| c.status == "True" && generation.is_some_and(|g| c.observed_generation == Some(g)))
}

/// The conditions to write: `previous` with Ready replaced by `readiness`, keeping its
/// `lastTransitionTime` unless the status flips.
pub fn with_ready(previous: &[Condition], readiness: &Readiness, generation: Option<i64>) -> Vec<Condition> {
    let status = if readiness.ready { "True" } else { "False" };
    let last_transition_time = match ready_condition(previous) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(Timestamp::now()),
    };
    let ready = Condition {
        type_: ConditionType::Ready.as_str().to_string(),
        status: status.to_string(),
        reason: readiness.reason.as_str().to_string(),
        message: readiness.message.clone(),
        observed_generation: generation,
        last_transition_time,
    };
    let mut out: Vec<Condition> = previous.iter().filter(|c| c.type_ != ready.type_).cloned().collect();
    out.push(ready);
    out
}

/// True when the Ready condition moves to `readiness` from something else (another status or
/// reason): the moments that deserve an event.
pub fn transitions(previous: &[Condition], readiness: &Readiness) -> bool {
    match ready_condition(previous) {
        Some(c) => (c.status == "True") != readiness.ready || c.reason != readiness.reason.as_str(),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_a_flip() {
        let first = with_ready(&[], &Readiness::not_ready(ConditionReason::Creating, "creating"), Some(1));
        let t0 = first[0].last_transition_time.clone();
        let same_status =
            with_ready(&first, &Readiness::not_ready(ConditionReason::BackendUnavailable, "down"), Some(1));
        assert_eq!(same_status[0].last_transition_time, t0, "False to False keeps the time");
        assert_eq!(same_status[0].reason, "BackendUnavailable");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let flipped = with_ready(&same_status, &Readiness::available("ok"), Some(2));
        assert_ne!(flipped[0].last_transition_time, t0);
        assert_eq!(flipped.len(), 1);
        assert!(is_ready(&flipped));
        let again = with_ready(&flipped, &Readiness::available("ok"), Some(2));
        assert_eq!(again, flipped, "an unchanged outcome gives identical conditions");
    }

    #[test]
    fn a_pending_wait_is_quiet_and_its_failure_warns() {
        let waiting = Readiness::pending(ConditionReason::Creating, "waiting for S3Bucket a (not Ready)");
        assert!(!waiting.warns_after(&[]), "a new object's expected wait raises no event");
        let shown = with_ready(&[], &waiting, Some(1));
        let failed = Readiness::not_ready(ConditionReason::BucketNotReady, "waiting for S3Bucket a (not Ready)");
        assert!(failed.warns_after(&shown), "the wait turning into a problem warns");
        assert!(!failed.warns_after(&with_ready(&[], &failed, Some(1))), "once");
    }

    #[test]
    fn every_error_category_is_a_condition_reason() {
        for category in ErrorCategory::ALL {
            assert_eq!(reason_of(category).as_str(), category.as_str(), "{category:?}");
        }
        let down = Readiness::of_error(&BackendError::Unavailable { backend: "minio", cause: "down".into() });
        assert_eq!(down.reason, ConditionReason::BackendUnavailable);
        let taken = Readiness::of_error(&BackendError::NotOwned { what: "bucket b".into(), detail: "x".into() });
        assert_eq!(taken.reason, ConditionReason::Conflict);
        let unsupported = Readiness::of_error(&BackendError::Unsupported { backend: "garage", feature: "versioning" });
        assert_eq!(unsupported.reason, ConditionReason::Unsupported);
        assert!(unsupported.message.contains("versioning") && unsupported.warn);
    }

    #[test]
    fn transitions_are_status_or_reason_changes() {
        let ready = with_ready(&[], &Readiness::available("ok"), Some(1));
        assert!(!transitions(&ready, &Readiness::available("other message")));
        assert!(transitions(&ready, &Readiness::not_ready(ConditionReason::BackendUnavailable, "down")));
        assert!(transitions(&[], &Readiness::available("ok")));
    }
}
