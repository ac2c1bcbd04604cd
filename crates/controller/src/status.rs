//! The conditions the operator owns and the rules for writing status. `Ready` says whether the
//! object converged; when it did not, exactly one of the kstatus conditions `Stalled` (only a
//! change by the user can help) or `Reconciling` (the operator is still at it) says which kind
//! of wait it is, so kstatus, Flux and Argo CD fail a stuck object instead of waiting for ever.
//! `lastTransitionTime` moves only when a condition's status flips, and a status equal to the
//! current one is never written.

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
    /// Not ready, and only a change by the user ends it: shown as `Stalled`, else as
    /// `Reconciling`. Follows the reason ([`ConditionReason::stalls`]) unless a constructor or
    /// [`Readiness::stalling`] knows better.
    pub stalled: bool,
}

impl Readiness {
    /// Ready, reason `Available`.
    pub fn available(message: impl Into<String>) -> Self {
        Self { ready: true, reason: ConditionReason::Available, message: message.into(), warn: false, stalled: false }
    }

    /// Not ready, for `reason`; a Warning event marks the change.
    pub fn not_ready(reason: ConditionReason, message: impl Into<String>) -> Self {
        Self { ready: false, reason, message: message.into(), warn: true, stalled: reason.stalls() }
    }

    /// Not ready yet, for `reason`, as expected while things converge: status only, no event.
    pub fn pending(reason: ConditionReason, message: impl Into<String>) -> Self {
        Self { ready: false, reason, message: message.into(), warn: false, stalled: reason.stalls() }
    }

    /// Not ready because the store failed: the error's own category is the reason. An error a
    /// retry may clear (a `Conflict` with the store's current state) is retried with backoff,
    /// so it reconciles whatever its reason.
    pub fn of_error(err: &BackendError) -> Self {
        let mut readiness = Self::not_ready(reason_of(err.category()), err.to_string());
        readiness.stalled &= !err.is_retryable();
        readiness
    }

    /// The same state, shown as `Stalled` whatever its reason: for a wait the reason's word
    /// does not tell apart from a passing one (a store's missing admin Secret reads `NotFound`,
    /// as a user read back too early does, but only its creation ends it).
    pub fn stalling(mut self) -> Self {
        self.stalled = !self.ready;
        self
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

/// The condition of type `kind` among `conditions`.
fn condition_of(conditions: &[Condition], kind: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == kind.as_str())
}

/// The Ready condition among `conditions`.
pub fn ready_condition(conditions: &[Condition]) -> Option<&Condition> {
    condition_of(conditions, ConditionType::Ready)
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

/// The condition types this operator writes; any other type in a status is someone else's.
const OWNED: [ConditionType; 3] = [ConditionType::Ready, ConditionType::Reconciling, ConditionType::Stalled];

/// The conditions to write: `previous` with the operator's own replaced by what `readiness`
/// says: `Ready`, plus `Stalled=True` or `Reconciling=True` with the same reason and message
/// while not ready (neither once ready: kstatus reads only their presence with status True, and
/// removing them is its convention). Each keeps its `lastTransitionTime` unless its status
/// flips; one that appears gets now. Conditions of other types are kept as they are, first,
/// so an unchanged outcome gives an identical list (and no write).
pub fn conditions_for(previous: &[Condition], readiness: &Readiness, generation: Option<i64>) -> Vec<Condition> {
    let now = Time(Timestamp::now());
    let condition = |kind: ConditionType, status: &str| {
        let last_transition_time = match condition_of(previous, kind) {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => now.clone(),
        };
        Condition {
            type_: kind.as_str().to_string(),
            status: status.to_string(),
            reason: readiness.reason.as_str().to_string(),
            message: readiness.message.clone(),
            observed_generation: generation,
            last_transition_time,
        }
    };
    let mut out: Vec<Condition> =
        previous.iter().filter(|c| !OWNED.iter().any(|t| t.as_str() == c.type_)).cloned().collect();
    out.push(condition(ConditionType::Ready, if readiness.ready { "True" } else { "False" }));
    if !readiness.ready {
        let kind = if readiness.stalled { ConditionType::Stalled } else { ConditionType::Reconciling };
        out.push(condition(kind, "True"));
    }
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
        let first = conditions_for(&[], &Readiness::not_ready(ConditionReason::Creating, "creating"), Some(1));
        let t0 = first[0].last_transition_time.clone();
        let same_status =
            conditions_for(&first, &Readiness::not_ready(ConditionReason::BackendUnavailable, "down"), Some(1));
        assert_eq!(same_status[0].last_transition_time, t0, "False to False keeps the time");
        assert_eq!(same_status[0].reason, "BackendUnavailable");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let flipped = conditions_for(&same_status, &Readiness::available("ok"), Some(2));
        assert_ne!(flipped[0].last_transition_time, t0);
        assert_eq!(flipped.len(), 1);
        assert!(is_ready(&flipped));
        let again = conditions_for(&flipped, &Readiness::available("ok"), Some(2));
        assert_eq!(again, flipped, "an unchanged outcome gives identical conditions");
    }

    #[test]
    fn a_pending_wait_is_quiet_and_its_failure_warns() {
        let waiting = Readiness::pending(ConditionReason::Creating, "waiting for S3Bucket a (not Ready)");
        assert!(!waiting.warns_after(&[]), "a new object's expected wait raises no event");
        let shown = conditions_for(&[], &waiting, Some(1));
        let failed = Readiness::not_ready(ConditionReason::BucketNotReady, "waiting for S3Bucket a (not Ready)");
        assert!(failed.warns_after(&shown), "the wait turning into a problem warns");
        assert!(!failed.warns_after(&conditions_for(&[], &failed, Some(1))), "once");
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
        let ready = conditions_for(&[], &Readiness::available("ok"), Some(1));
        assert!(!transitions(&ready, &Readiness::available("other message")));
        assert!(transitions(&ready, &Readiness::not_ready(ConditionReason::BackendUnavailable, "down")));
        assert!(transitions(&[], &Readiness::available("ok")));
    }

    fn types(conditions: &[Condition]) -> Vec<&str> {
        conditions.iter().map(|c| c.type_.as_str()).collect()
    }

    #[test]
    fn a_stalled_object_shows_stalled_until_it_is_ready_again() {
        let ready = conditions_for(&[], &Readiness::available("ok"), Some(1));
        assert_eq!(types(&ready), ["Ready"], "a Ready object carries neither Stalled nor Reconciling");
        let invalid = Readiness::not_ready(ConditionReason::InvalidSpec, "bucketName \"Bad_Name\": uppercase");
        let stalled = conditions_for(&ready, &invalid, Some(2));
        assert_eq!(types(&stalled), ["Ready", "Stalled"]);
        let shown = condition_of(&stalled, ConditionType::Stalled).unwrap();
        assert_eq!(
            (shown.status.as_str(), shown.reason.as_str(), shown.message.as_str(), shown.observed_generation),
            ("True", "InvalidSpec", invalid.message.as_str(), Some(2)),
            "Stalled says what Ready says"
        );
        assert_eq!(ready_condition(&stalled).unwrap().status, "False");
        let fixed = conditions_for(&stalled, &Readiness::available("ok"), Some(3));
        assert_eq!(types(&fixed), ["Ready"], "Stalled goes once the object is Ready");
        assert!(is_ready_at(&fixed, Some(3)));
    }

    #[test]
    fn a_retryable_failure_reconciles_and_a_refusal_stalls() {
        let down = Readiness::of_error(&BackendError::Unavailable { backend: "minio", cause: "refused".into() });
        assert_eq!(types(&conditions_for(&[], &down, Some(1))), ["Ready", "Reconciling"]);
        let busy = Readiness::of_error(&BackendError::Conflict { what: "bucket b".into(), detail: "busy".into() });
        assert_eq!(busy.reason, ConditionReason::Conflict);
        assert!(!busy.stalled, "a conflict a retry may clear is still being worked on");
        let taken = Readiness::of_error(&BackendError::NotOwned { what: "bucket b".into(), detail: "x".into() });
        assert_eq!(types(&conditions_for(&[], &taken, Some(1))), ["Ready", "Stalled"]);
        let refused = Readiness::of_error(&BackendError::Forbidden("AccessDenied".into()));
        assert!(refused.stalled);
        let store_down = Readiness::not_ready(ConditionReason::StoreNotReady, "store minio is not ready");
        assert_eq!(types(&conditions_for(&[], &store_down, Some(1))), ["Ready", "Reconciling"]);
        let missing = Readiness::not_ready(ConditionReason::NotFound, "Secret ns/admin does not exist");
        assert!(!missing.stalled && missing.clone().stalling().stalled, "a caller may know a wait is the user's");
        assert!(!Readiness::available("ok").stalling().stalled, "a Ready state never stalls");
    }

    #[test]
    fn a_new_message_keeps_every_transition_time_and_a_new_kind_of_wait_starts_its_own() {
        let first = conditions_for(&[], &Readiness::not_ready(ConditionReason::BackendUnavailable, "a"), Some(1));
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = conditions_for(&first, &Readiness::not_ready(ConditionReason::StoreNotReady, "b"), Some(1));
        assert_eq!(types(&second), ["Ready", "Reconciling"]);
        for (before, after) in first.iter().zip(&second) {
            assert_eq!(before.last_transition_time, after.last_transition_time, "{}", after.type_);
            assert_eq!(after.message, "b");
        }
        let stuck = conditions_for(&second, &Readiness::not_ready(ConditionReason::Forbidden, "c"), Some(1));
        assert_eq!(types(&stuck), ["Ready", "Stalled"], "Reconciling goes when the wait stalls");
        assert_eq!(stuck[0].last_transition_time, first[0].last_transition_time, "Ready stayed False");
        assert_ne!(stuck[1].last_transition_time, first[1].last_transition_time, "Stalled is new");
    }

    #[test]
    fn an_unchanged_outcome_gives_identical_conditions_and_others_are_kept() {
        let foreign = Condition {
            type_: "Synced".into(),
            status: "True".into(),
            reason: "Elsewhere".into(),
            message: "written by another controller".into(),
            observed_generation: Some(1),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        };
        for readiness in [
            Readiness::available("ok"),
            Readiness::not_ready(ConditionReason::InvalidSpec, "bad"),
            Readiness::pending(ConditionReason::Creating, "waiting"),
        ] {
            let once = conditions_for(std::slice::from_ref(&foreign), &readiness, Some(4));
            assert_eq!(once[0], foreign, "another controller's condition is kept as it was");
            std::thread::sleep(std::time::Duration::from_millis(2));
            let twice = conditions_for(&once, &readiness, Some(4));
            assert_eq!(twice, once, "{readiness:?}: nothing to write");
        }
    }
}
