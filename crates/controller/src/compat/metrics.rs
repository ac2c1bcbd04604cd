//! The older operator's metrics: fixed names, no labels, the same meaning, so its dashboards
//! and alerts keep working. They sit on the operator's one registry, beside its own metrics.

use prometheus_client::{
    metrics::{counter::Counter, histogram::Histogram},
    registry::Registry,
};

use crate::metrics::duration_histogram;

/// Handles on the legacy metrics; clones share the values.
#[derive(Debug, Clone)]
pub struct LegacyMetrics {
    /// Secrets whose flow ran to the end (`s3_operator_secrets_processed_total`).
    pub secrets_processed: Counter,
    /// Secrets that failed or were refused (`s3_operator_errors_total`).
    pub errors: Counter,
    /// Time to handle one Secret.
    pub handle_secret_duration: Histogram,
    /// Time from start-up until every annotated Secret of the first list was handled once.
    pub sync_duration: Histogram,
    /// Accounts created.
    pub users_created: Counter,
    /// Accounts updated (secret, role or ids).
    pub users_updated: Counter,
    /// Accounts deleted: always 0, deleting a Secret deletes nothing; kept for dashboards.
    pub users_deleted: Counter,
    /// Buckets created.
    pub buckets_created: Counter,
    /// Bucket owners changed.
    pub bucket_owners_changed: Counter,
}

impl LegacyMetrics {
    /// Fresh metrics, not yet registered.
    pub fn new() -> Self {
        Self {
            secrets_processed: Counter::default(),
            errors: Counter::default(),
            handle_secret_duration: duration_histogram(),
            sync_duration: duration_histogram(),
            users_created: Counter::default(),
            users_updated: Counter::default(),
            users_deleted: Counter::default(),
            buckets_created: Counter::default(),
            bucket_owners_changed: Counter::default(),
        }
    }

    /// Registers every metric under its legacy name (the encoder appends `_total` to
    /// counters, so counters are registered by their stem).
    pub fn register(&self, registry: &mut Registry) {
        let counters = [
            ("s3_operator_secrets_processed", "Annotated Secrets processed", &self.secrets_processed),
            ("s3_operator_errors", "Annotated Secrets that failed or were refused", &self.errors),
            ("s3_operator_users_created", "Users created for annotated Secrets", &self.users_created),
            ("s3_operator_users_updated", "Users updated for annotated Secrets", &self.users_updated),
            (
                "s3_operator_users_deleted",
                "Users deleted (never: deleting a Secret keeps its user)",
                &self.users_deleted,
            ),
            ("s3_operator_buckets_created", "Buckets created for annotated Secrets", &self.buckets_created),
            (
                "s3_operator_bucket_owners_changed",
                "Bucket owners changed for annotated Secrets",
                &self.bucket_owners_changed,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "s3_operator_handle_secret_duration_seconds",
            "Time to handle one annotated Secret",
            self.handle_secret_duration.clone(),
        );
        registry.register(
            "s3_operator_sync_duration_seconds",
            "Time from start-up until every annotated Secret was handled once",
            self.sync_duration.clone(),
        );
    }
}

impl Default for LegacyMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn legacy_names_have_no_labels() {
        let legacy = LegacyMetrics::new();
        let metrics = Metrics::with_registry(|r| legacy.register(r));
        legacy.secrets_processed.inc();
        legacy.handle_secret_duration.observe(0.02);
        let text = metrics.encode();
        for line in [
            "s3_operator_secrets_processed_total 1",
            "s3_operator_errors_total 0",
            "s3_operator_users_created_total 0",
            "s3_operator_users_updated_total 0",
            "s3_operator_users_deleted_total 0",
            "s3_operator_buckets_created_total 0",
            "s3_operator_bucket_owners_changed_total 0",
            "s3_operator_handle_secret_duration_seconds_count 1",
            "s3_operator_sync_duration_seconds_count 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
    }
}
