//! The one error type of every backend. Each error knows whether a retry can help and its
//! category, whose word is the reason conditions, events and metric labels all show, so the
//! controller never inspects messages and maps nothing itself.

use thiserror::Error;

/// What went wrong talking to an object store. Messages never hold secret values.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// The bucket, user or key does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. "bucket my-bucket".
        what: String,
    },
    /// The name is taken on the store by something this operator did not create for this owner.
    #[error("{what} already exists and is not ours: {detail}")]
    NotOwned {
        /// The bucket or user.
        what: String,
        /// Who owns it, as far as the store tells.
        detail: String,
    },
    /// The store refused a write because of the current state (e.g. a bucket that is not empty).
    #[error("{what}: {detail}")]
    Conflict {
        /// The bucket or user.
        what: String,
        /// Why the store refused.
        detail: String,
    },
    /// The request is invalid for this store (bad name, value out of range).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The store refused the operator's own credentials for this action.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The store cannot do this at all (e.g. versioning on Garage).
    #[error("{feature} is not supported by {backend}")]
    Unsupported {
        /// The store kind.
        backend: &'static str,
        /// The setting or operation.
        feature: &'static str,
    },
    /// The store answered that it failed on its side (HTTP 5xx, throttling, still starting); a
    /// retry may succeed.
    #[error("{backend} unavailable: {cause}")]
    Unavailable {
        /// The store kind.
        backend: &'static str,
        /// What the store answered.
        cause: String,
    },
    /// The store gave no answer at all: no connection, a timeout, a reply cut off. Kept apart
    /// from [`BackendError::Unavailable`] because every later call to that store will likely
    /// wait out the same timeout, so the controller stops asking it for a while.
    #[error("{backend} unavailable: {cause}")]
    Unreachable {
        /// The store kind.
        backend: &'static str,
        /// What happened (connection refused, timeout …).
        cause: String,
    },
    /// The store answered something we do not understand.
    #[error("unexpected answer from {backend}: {detail}")]
    Protocol {
        /// The store kind.
        backend: &'static str,
        /// What was unexpected.
        detail: String,
    },
}

/// Coarse class of a [`BackendError`]: the one bounded vocabulary of failures. Its word is the
/// `Ready` condition's reason, the Warning event's reason and the metric label alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    /// See [`BackendError::NotFound`].
    NotFound,
    /// See [`BackendError::NotOwned`] and [`BackendError::Conflict`].
    Conflict,
    /// See [`BackendError::InvalidInput`].
    InvalidInput,
    /// See [`BackendError::Forbidden`].
    Forbidden,
    /// See [`BackendError::Unsupported`].
    Unsupported,
    /// See [`BackendError::Unavailable`], [`BackendError::Unreachable`] and
    /// [`BackendError::Protocol`]: all are the store failing, and the log line keeps which.
    Unavailable,
}

impl ErrorCategory {
    /// Every category, for tests and metric pre-registration.
    pub const ALL: [ErrorCategory; 6] = [
        ErrorCategory::NotFound,
        ErrorCategory::Conflict,
        ErrorCategory::InvalidInput,
        ErrorCategory::Forbidden,
        ErrorCategory::Unsupported,
        ErrorCategory::Unavailable,
    ];

    /// The CamelCase reason: a `Ready` condition reason of the API (`s3op_api::ConditionReason`),
    /// an event reason and a metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::NotFound => "NotFound",
            ErrorCategory::Conflict => "Conflict",
            ErrorCategory::InvalidInput => "InvalidSpec",
            ErrorCategory::Forbidden => "Forbidden",
            ErrorCategory::Unsupported => "Unsupported",
            ErrorCategory::Unavailable => "BackendUnavailable",
        }
    }
}

impl BackendError {
    /// The error's class.
    pub fn category(&self) -> ErrorCategory {
        match self {
            BackendError::NotFound { .. } => ErrorCategory::NotFound,
            BackendError::NotOwned { .. } | BackendError::Conflict { .. } => ErrorCategory::Conflict,
            BackendError::InvalidInput(_) => ErrorCategory::InvalidInput,
            BackendError::Forbidden(_) => ErrorCategory::Forbidden,
            BackendError::Unsupported { .. } => ErrorCategory::Unsupported,
            BackendError::Unavailable { .. } | BackendError::Unreachable { .. } | BackendError::Protocol { .. } => {
                ErrorCategory::Unavailable
            }
        }
    }

    /// True when the same call may succeed later without any change of spec: the store was
    /// down or overloaded, a conflict that other work may clear (a bucket being emptied), or
    /// something missing that other work brings back (a bucket its own reconcile makes again, a
    /// user read back right after it was made). A protocol error is retried too: stores answer
    /// garbage while starting up. What is left needs a human: a name taken by someone else,
    /// invalid input, refused credentials, an unsupported setting.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BackendError::Unavailable { .. }
                | BackendError::Unreachable { .. }
                | BackendError::Protocol { .. }
                | BackendError::Conflict { .. }
                | BackendError::NotFound { .. }
        )
    }

    /// Shorthand for [`BackendError::NotFound`].
    pub fn not_found(what: impl Into<String>) -> Self {
        BackendError::NotFound { what: what.into() }
    }
}

/// Result of a backend call.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let unavailable = BackendError::Unavailable { backend: "minio", cause: "HTTP 503".into() };
        assert!(unavailable.is_retryable());
        assert_eq!(unavailable.category().as_str(), "BackendUnavailable");
        let silent = BackendError::Unreachable { backend: "minio", cause: "connection refused".into() };
        assert!(silent.is_retryable());
        assert_eq!(silent.category(), unavailable.category(), "one reason word for both");
        let unsupported = BackendError::Unsupported { backend: "garage", feature: "versioning" };
        assert!(!unsupported.is_retryable());
        assert_eq!(unsupported.to_string(), "versioning is not supported by garage");
        let taken = BackendError::NotOwned { what: "bucket b".into(), detail: "no ownership tag".into() };
        assert!(!taken.is_retryable(), "a name taken by someone else needs a human");
        assert_eq!(taken.category(), ErrorCategory::Conflict);
        assert!(!BackendError::Forbidden("x".into()).is_retryable());
        assert!(BackendError::not_found("user u").is_retryable(), "other work may bring it back");
        let garbage = BackendError::Protocol { backend: "garage", detail: "html".into() };
        assert_eq!(garbage.category(), ErrorCategory::Unavailable);
        assert!(garbage.is_retryable());
        assert_eq!(BackendError::InvalidInput("x".into()).category().as_str(), "InvalidSpec");
    }
}
