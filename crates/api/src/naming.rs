//! Name rules, written twice on purpose: once as CEL rules the API server enforces at
//! admission, once as plain Rust the controller re-checks before any backend call
//! (defence in depth: CRDs can be installed stale, or edited). Unit tests make the two agree.

use thiserror::Error;

/// One CEL rule with the message the API server returns when it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CelRule {
    /// The CEL expression; `self` is the validated value.
    pub rule: &'static str,
    /// What a user reads when the rule rejects their object.
    pub message: &'static str,
}

/// Shortest bucket name S3 accepts.
pub const BUCKET_NAME_MIN_LEN: usize = 3;
/// Longest bucket name S3 accepts.
pub const BUCKET_NAME_MAX_LEN: usize = 63;
/// Prefixes AWS reserves; other stores accept them, but a bucket must be portable.
pub const RESERVED_BUCKET_PREFIXES: &[&str] = &["xn--", "sthree-", "amzn-s3-demo-"];
/// Suffixes AWS reserves for access points, Object Lambda, directory and table buckets.
pub const RESERVED_BUCKET_SUFFIXES: &[&str] = &["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];

/// The S3 general-purpose bucket naming rules as CEL, one rule per message.
/// The prefix/suffix rules must list the same strings as the constants above (a test checks it).
pub const BUCKET_NAME_RULES: &[CelRule] = &[
    CelRule {
        rule: "size(self) >= 3 && size(self) <= 63",
        message: "bucket name must be between 3 and 63 characters long",
    },
    CelRule {
        rule: "self.matches('^[a-z0-9.-]*$')",
        message: "bucket name may contain only lowercase letters, digits, dots (.) and hyphens (-)",
    },
    CelRule {
        rule: "self.matches('^[a-z0-9].*[a-z0-9]$')",
        message: "bucket name must start and end with a lowercase letter or a digit",
    },
    CelRule { rule: "!self.contains('..')", message: "bucket name must not contain two adjacent dots" },
    CelRule {
        rule: "!self.matches('^[0-9]+\\\\.[0-9]+\\\\.[0-9]+\\\\.[0-9]+$')",
        message: "bucket name must not be formatted as an IP address",
    },
    CelRule {
        rule: "!self.startsWith('xn--') && !self.startsWith('sthree-') && !self.startsWith('amzn-s3-demo-')",
        message: "bucket name must not start with the reserved prefixes xn--, sthree- or amzn-s3-demo-",
    },
    CelRule {
        rule: "!self.endsWith('-s3alias') && !self.endsWith('--ol-s3') && !self.endsWith('.mrap') && !self.endsWith('--x-s3') && !self.endsWith('--table-s3')",
        message: "bucket name must not end with the reserved suffixes -s3alias, --ol-s3, .mrap, --x-s3 or --table-s3",
    },
];

/// Why a bucket name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BucketNameError {
    /// Length outside 3–63.
    #[error("bucket name must be between 3 and 63 characters long (got {0})")]
    Length(usize),
    /// A character other than `a-z`, `0-9`, `.`, `-`.
    #[error("bucket name may contain only lowercase letters, digits, dots (.) and hyphens (-); found {0:?}")]
    InvalidCharacter(char),
    /// First or last character is not a letter or digit.
    #[error("bucket name must start and end with a lowercase letter or a digit")]
    BadEdge,
    /// `..` somewhere.
    #[error("bucket name must not contain two adjacent dots")]
    AdjacentDots,
    /// Looks like `192.168.5.4`.
    #[error("bucket name must not be formatted as an IP address")]
    IpAddress,
    /// Starts with a reserved prefix.
    #[error("bucket name must not start with the reserved prefix {0:?}")]
    ReservedPrefix(&'static str),
    /// Ends with a reserved suffix.
    #[error("bucket name must not end with the reserved suffix {0:?}")]
    ReservedSuffix(&'static str),
}

/// Checks a bucket name against the S3 general-purpose bucket naming rules.
pub fn validate_bucket_name(name: &str) -> Result<(), BucketNameError> {
    // Count characters, not bytes, so a multi-byte character reports as one (CEL's size() does the same).
    let len = name.chars().count();
    if !(BUCKET_NAME_MIN_LEN..=BUCKET_NAME_MAX_LEN).contains(&len) {
        return Err(BucketNameError::Length(len));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-')) {
        return Err(BucketNameError::InvalidCharacter(c));
    }
    let is_alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !is_alnum(name.chars().next()) || !is_alnum(name.chars().last()) {
        return Err(BucketNameError::BadEdge);
    }
    if name.contains("..") {
        return Err(BucketNameError::AdjacentDots);
    }
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() == 4 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(BucketNameError::IpAddress);
    }
    if let Some(p) = RESERVED_BUCKET_PREFIXES.iter().find(|p| name.starts_with(*p)) {
        return Err(BucketNameError::ReservedPrefix(p));
    }
    if let Some(s) = RESERVED_BUCKET_SUFFIXES.iter().find(|s| name.ends_with(*s)) {
        return Err(BucketNameError::ReservedSuffix(s));
    }
    Ok(())
}

/// Shortest user name accepted (MinIO refuses access keys under 3 characters).
pub const USER_NAME_MIN_LEN: usize = 3;
/// Longest user name accepted (IAM's limit for user names).
pub const USER_NAME_MAX_LEN: usize = 64;

/// The user-name rules as CEL. The character set is the intersection of what IAM user
/// names, MinIO and VersityGW access keys and Garage key names all accept.
pub const USER_NAME_RULES: &[CelRule] = &[
    CelRule {
        rule: "size(self) >= 3 && size(self) <= 64",
        message: "user name must be between 3 and 64 characters long",
    },
    CelRule {
        rule: "self.matches('^[A-Za-z0-9][A-Za-z0-9._-]*$')",
        message: "user name may contain only letters, digits, dots (.), underscores (_) and hyphens (-), and must start with a letter or digit",
    },
];

/// Why a user name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UserNameError {
    /// Length outside 3–64.
    #[error("user name must be between 3 and 64 characters long (got {0})")]
    Length(usize),
    /// A character outside `A-Z a-z 0-9 . _ -`, or a first character that is not alphanumeric.
    #[error(
        "user name may contain only letters, digits, dots (.), underscores (_) and hyphens (-), and must start with a letter or digit"
    )]
    InvalidCharacter,
}

/// Checks a user name against [`USER_NAME_RULES`].
pub fn validate_user_name(name: &str) -> Result<(), UserNameError> {
    let len = name.chars().count();
    if !(USER_NAME_MIN_LEN..=USER_NAME_MAX_LEN).contains(&len) {
        return Err(UserNameError::Length(len));
    }
    let first_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !(first_ok && rest_ok) {
        return Err(UserNameError::InvalidCharacter);
    }
    Ok(())
}

/// Longest Kubernetes object name (DNS-1123 subdomain).
pub const OBJECT_NAME_MAX_LEN: usize = 253;

/// A reference to a Kubernetes object by name: a DNS-1123 subdomain.
pub const OBJECT_NAME_RULE: CelRule = CelRule {
    rule: "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",
    message: "must be a valid Kubernetes object name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
};

/// The bucket name used when `spec.bucketName` is absent: `<namespace>-<name>`, shortened with a
/// stable hash suffix when too long. Errors when even that is not a valid bucket name (for
/// example a namespace starting with `xn--`): the user must then set `spec.bucketName`.
pub fn default_bucket_name(namespace: &str, name: &str) -> Result<String, BucketNameError> {
    let candidate = shorten(&format!("{namespace}-{name}"), BUCKET_NAME_MAX_LEN);
    validate_bucket_name(&candidate)?;
    Ok(candidate)
}

/// The user name used when `spec.userName` is absent: `<namespace>-<name>`, shortened like
/// [`default_bucket_name`].
pub fn default_user_name(namespace: &str, name: &str) -> Result<String, UserNameError> {
    let candidate = shorten(&format!("{namespace}-{name}"), USER_NAME_MAX_LEN);
    validate_user_name(&candidate)?;
    Ok(candidate)
}

/// Cuts `s` to `max` characters, keeping it unique by replacing the tail with a hash of the whole.
/// Input is ASCII here (Kubernetes names), so byte and character positions agree.
fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max || !s.is_ascii() {
        return s.to_string();
    }
    let hash = format!("{:08x}", fnv1a32(s.as_bytes()));
    let mut head = s[..max - hash.len() - 1].to_string();
    // A dot right before the hash would read ".-", which older S3 naming rules forbid.
    while head.ends_with('.') {
        head.pop();
    }
    format!("{head}-{hash}")
}

/// FNV-1a: a tiny, stable, non-cryptographic hash; only used to keep shortened names distinct.
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}
