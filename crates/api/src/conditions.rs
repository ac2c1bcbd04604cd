//! Condition types and reasons, following the Kubernetes API conventions (CamelCase reasons)
//! so `kubectl wait --for=condition=Ready`, kstatus, Flux and Argo CD understand them.

use std::fmt;

/// Condition types the operator sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionType {
    /// The backend resource exists and matches the spec.
    Ready,
    /// Not Ready yet, and the operator is still working on it: a retry, a wait for the store or
    /// for another object may end it without anyone changing anything. kstatus reads `InProgress`.
    Reconciling,
    /// Not Ready, and the operator cannot make progress until someone changes the spec or the
    /// objects it depends on. kstatus reads `Failed`, so `kubectl wait` and Flux stop waiting.
    Stalled,
}

impl ConditionType {
    /// The string written to `status.conditions[].type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Reconciling => "Reconciling",
            ConditionType::Stalled => "Stalled",
        }
    }
}

impl fmt::Display for ConditionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Machine-readable reasons for a condition; also the bounded label set of error metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionReason {
    /// Everything is in place.
    Available,
    /// The operator is creating or converging the resource.
    Creating,
    /// The spec breaks a rule the API server could not check (or a rule it did not enforce).
    InvalidSpec,
    /// The object store did not answer or answered with a server error; retried with backoff.
    BackendUnavailable,
    /// The name is claimed by another object, or the Secret to write belongs to someone else.
    Conflict,
    /// The object store refused the operator's credentials for this action.
    Forbidden,
    /// The object store cannot do what the spec asks (e.g. versioning on Garage).
    Unsupported,
    /// Something the store should hold is missing right now (e.g. a user read back right after
    /// it was made); retried with backoff.
    NotFound,
    /// A granted bucket does not exist yet or is not Ready.
    BucketNotReady,
    /// Cleanup is in progress.
    Deleting,
    /// Deletion was asked for but would lose data the user did not agree to lose.
    DeletionBlocked,
    /// The store the object names does not exist (or it names none and there is no default).
    StoreNotFound,
    /// The ClusterS3Store the object names does not allow the object's namespace.
    StoreNotAllowed,
    /// The object's store does not answer with its credentials, or is being deleted.
    StoreNotReady,
    /// A grant names an S3Bucket on another store than the S3User's.
    StoreMismatch,
    /// A store's deletion waits until no object uses it.
    StoreInUse,
}

impl ConditionReason {
    /// Every reason, for tests and metric pre-registration.
    pub const ALL: [ConditionReason; 16] = [
        ConditionReason::Available,
        ConditionReason::Creating,
        ConditionReason::InvalidSpec,
        ConditionReason::BackendUnavailable,
        ConditionReason::Conflict,
        ConditionReason::Forbidden,
        ConditionReason::Unsupported,
        ConditionReason::NotFound,
        ConditionReason::BucketNotReady,
        ConditionReason::Deleting,
        ConditionReason::DeletionBlocked,
        ConditionReason::StoreNotFound,
        ConditionReason::StoreNotAllowed,
        ConditionReason::StoreNotReady,
        ConditionReason::StoreMismatch,
        ConditionReason::StoreInUse,
    ];

    /// The CamelCase string written to `status.conditions[].reason`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConditionReason::Available => "Available",
            ConditionReason::Creating => "Creating",
            ConditionReason::InvalidSpec => "InvalidSpec",
            ConditionReason::BackendUnavailable => "BackendUnavailable",
            ConditionReason::Conflict => "Conflict",
            ConditionReason::Forbidden => "Forbidden",
            ConditionReason::Unsupported => "Unsupported",
            ConditionReason::NotFound => "NotFound",
            ConditionReason::BucketNotReady => "BucketNotReady",
            ConditionReason::Deleting => "Deleting",
            ConditionReason::DeletionBlocked => "DeletionBlocked",
            ConditionReason::StoreNotFound => "StoreNotFound",
            ConditionReason::StoreNotAllowed => "StoreNotAllowed",
            ConditionReason::StoreNotReady => "StoreNotReady",
            ConditionReason::StoreMismatch => "StoreMismatch",
            ConditionReason::StoreInUse => "StoreInUse",
        }
    }
}

impl ConditionReason {
    /// True when an object that is not Ready for this reason is `Stalled` rather than
    /// `Reconciling`: the operator cannot make progress until someone changes the spec, a
    /// referenced object or the data (kstatus then reports `Failed` instead of waiting for
    /// ever). A retryable outage of the store never stalls. `Available` is never shown as
    /// either: a Ready object carries neither condition.
    pub const fn stalls(self) -> bool {
        // Exhaustive on purpose: a new reason must be classified here.
        match self {
            ConditionReason::InvalidSpec
            | ConditionReason::Conflict
            | ConditionReason::Forbidden
            | ConditionReason::Unsupported
            | ConditionReason::StoreNotFound
            | ConditionReason::StoreNotAllowed
            | ConditionReason::StoreMismatch
            | ConditionReason::DeletionBlocked => true,
            ConditionReason::Available
            | ConditionReason::Creating
            | ConditionReason::BackendUnavailable
            | ConditionReason::NotFound
            | ConditionReason::BucketNotReady
            | ConditionReason::Deleting
            | ConditionReason::StoreNotReady
            | ConditionReason::StoreInUse => false,
        }
    }

    /// The reason written as `s`, if it is one.
    pub fn parse(s: &str) -> Option<ConditionReason> {
        ConditionReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for ConditionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_camel_case_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in ConditionReason::ALL {
            let s = r.as_str();
            assert!(s.chars().next().unwrap().is_ascii_uppercase(), "{s}");
            assert!(s.chars().all(|c| c.is_ascii_alphanumeric()), "{s}");
            assert!(seen.insert(s), "duplicate reason {s}");
        }
    }

    #[test]
    fn reasons_needing_a_change_stall_and_the_rest_reconcile() {
        use ConditionReason::*;
        let stalled = [
            InvalidSpec,
            Conflict,
            Forbidden,
            Unsupported,
            StoreNotFound,
            StoreNotAllowed,
            StoreMismatch,
            DeletionBlocked,
        ];
        let reconciling =
            [Available, Creating, BackendUnavailable, NotFound, BucketNotReady, Deleting, StoreNotReady, StoreInUse];
        for r in stalled {
            assert!(r.stalls(), "{r} waits for a change by the user");
        }
        for r in reconciling {
            assert!(!r.stalls(), "{r} may end without a change by the user");
        }
        assert_eq!(stalled.len() + reconciling.len(), ConditionReason::ALL.len(), "every reason is listed above");
    }

    #[test]
    fn condition_types_are_the_kstatus_words() {
        let types = [ConditionType::Ready, ConditionType::Reconciling, ConditionType::Stalled];
        assert_eq!(types.map(ConditionType::as_str), ["Ready", "Reconciling", "Stalled"]);
    }

    #[test]
    fn every_reason_has_its_troubleshooting_section() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/troubleshooting.md");
        let doc = std::fs::read_to_string(path).unwrap();
        for r in ConditionReason::ALL {
            let heading = format!("\n### {}\n", r.as_str());
            assert!(doc.contains(&heading), "docs/troubleshooting.md has no section `### {}`", r.as_str());
        }
    }
}
