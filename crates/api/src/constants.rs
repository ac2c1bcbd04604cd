//! Names shared by the controller, the chart and the tests.

/// API group of every custom resource of this operator.
pub const API_GROUP: &str = "s3-resource-operator.io";
/// The only served (and stored) version.
pub const API_VERSION: &str = "v1alpha1";
/// Finalizer added before the first backend write, removed once cleanup honoured `deletionPolicy`.
pub const FINALIZER: &str = "s3-resource-operator.io/finalizer";
/// Field manager for every server-side apply the operator makes (status and owned objects).
pub const FIELD_MANAGER: &str = "s3-resource-operator";
/// Default annotation that opts a Secret into compatibility mode.
pub const DEFAULT_COMPAT_ANNOTATION: &str = "s3-resource-operator.io/enabled";
/// Annotation on a compatibility Secret naming the ClusterS3Store it is for (absent: the
/// operator's default store).
pub const STORE_ANNOTATION: &str = "s3-resource-operator.io/store";
/// Label put on every object the operator creates (credentials Secrets).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "s3-resource-operator";
/// Prefix of tag keys the operator reserves for its ownership markers; users may not set them.
pub const RESERVED_TAG_PREFIX: &str = "s3-resource-operator.io/";

/// Keys of the credentials Secret an S3User owns: the AWS SDKs' standard environment names,
/// so an app can `envFrom` the Secret without any mapping.
pub mod secret_keys {
    /// Access key id.
    pub const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
    /// Secret access key.
    pub const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
    /// S3 endpoint the key works against (absent for AWS itself).
    pub const ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
    /// Region to sign requests for.
    pub const REGION: &str = "AWS_REGION";
    /// The granted bucket's name, when the user has exactly one grant.
    pub const BUCKET_NAME: &str = "BUCKET_NAME";
    /// Comma-separated names of every granted bucket.
    pub const BUCKET_NAMES: &str = "BUCKET_NAMES";
}
