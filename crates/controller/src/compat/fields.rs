//! Reading an annotated Secret the way the older operator did: which Secrets count, which
//! keys mean what (with every alias it accepted), and the endpoint comparison. Pure functions,
//! so the old operator's own test cases can be replayed here without a cluster.

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::Secret};
use s3op_api::naming::validate_bucket_name;
use s3op_backends::{CompatAccount, SecretString};
use thiserror::Error;

/// Keys of the bucket name, first non-empty wins.
pub const BUCKET_KEYS: &[&str] = &["bucket-name", "BUCKET_NAME"];
/// Keys of the access key.
pub const ACCESS_KEY_KEYS: &[&str] = &["access-key", "ACCESS_KEY", "ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"];
/// Keys of the secret key (`access-secret` is the old README's name, `secret-key` its code's).
pub const SECRET_KEY_KEYS: &[&str] =
    &["secret-key", "access-secret", "SECRET_KEY", "SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"];
/// Keys of the endpoint.
pub const ENDPOINT_KEYS: &[&str] = &["endpoint-url", "ENDPOINT_URL", "AWS_ENDPOINT_URL", "AWS_ENDPOINTS"];
/// Keys of the role.
pub const ROLE_KEYS: &[&str] = &["role", "ROLE"];
/// Keys of the POSIX user id.
pub const USER_ID_KEYS: &[&str] = &["user-id", "USER_ID"];
/// Keys of the POSIX group id.
pub const GROUP_ID_KEYS: &[&str] = &["group-id", "GROUP_ID"];

/// Role given when the Secret names none.
pub const DEFAULT_ROLE: &str = "user";

/// Longest access or secret key accepted: far above any store's, short enough that a hostile
/// value cannot bloat requests, events or logs.
const MAX_KEY_LEN: usize = 256;

/// What one annotated Secret asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The bucket.
    pub bucket: String,
    /// The account and its keys.
    pub account: CompatAccount,
    /// The endpoint the Secret was written for, if it names one.
    pub endpoint: Option<String>,
}

/// Why a Secret cannot be used. Names the key (never its value, which may be a secret).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum FieldError {
    /// No key of a required field holds a value.
    #[error("missing required field {0} (looked for {keys})", keys = .1.join(", "))]
    Missing(&'static str, &'static [&'static str]),
    /// The value is not UTF-8 text.
    #[error("field {0} is not UTF-8 text")]
    NotUtf8(&'static str),
    /// The value is not a number in range.
    #[error("field {0} must be a whole number between 0 and 4294967295")]
    NotNumeric(&'static str),
    /// The value breaks a rule for that field.
    #[error("field {0} is invalid: {1}")]
    Invalid(&'static str, String),
}

impl FieldError {
    /// The Secret key the problem is about.
    pub fn field(&self) -> &'static str {
        match self {
            FieldError::Missing(f, _)
            | FieldError::NotUtf8(f)
            | FieldError::NotNumeric(f)
            | FieldError::Invalid(f, _) => f,
        }
    }
}

/// True when the Secret opts in: the annotation is present and not `false`/`0`/`no`.
// The old operator acted on the key alone, even with value "false"; an explicit opt-out
// that is ignored is a trap, so we honour it (documented as a difference).
pub fn enabled(annotations: Option<&BTreeMap<String, String>>, key: &str) -> bool {
    annotations.and_then(|a| a.get(key)).is_some_and(|v| {
        let v = v.trim().to_ascii_lowercase();
        !matches!(v.as_str(), "false" | "0" | "no")
    })
}

/// The Secret's values: `data` with `stringData` on top, as the API server merges them on write
/// (a Secret read back has only `data`; an object built by hand may have both).
fn values(secret: &Secret) -> BTreeMap<&str, &[u8]> {
    let mut all: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for (k, ByteString(v)) in secret.data.iter().flatten() {
        all.insert(k, v);
    }
    for (k, v) in secret.string_data.iter().flatten() {
        all.insert(k, v.as_bytes());
    }
    all
}

/// The first non-empty value among `keys` (an empty value falls through to the next alias),
/// with the key it came from.
fn first<'a>(values: &BTreeMap<&str, &'a [u8]>, keys: &'static [&'static str]) -> Option<(&'static str, &'a [u8])> {
    keys.iter().find_map(|k| values.get(k).filter(|v| !v.is_empty()).map(|v| (*k, *v)))
}

fn text<'a>(values: &BTreeMap<&str, &'a [u8]>, keys: &'static [&'static str]) -> Result<Option<&'a str>, FieldError> {
    match first(values, keys) {
        None => Ok(None),
        Some((key, v)) => std::str::from_utf8(v).map(|s| Some(s.trim())).map_err(|_| FieldError::NotUtf8(key)),
    }
}

fn required<'a>(values: &BTreeMap<&str, &'a [u8]>, keys: &'static [&'static str]) -> Result<&'a str, FieldError> {
    text(values, keys)?.filter(|s| !s.is_empty()).ok_or(FieldError::Missing(keys[0], keys))
}

fn id(values: &BTreeMap<&str, &[u8]>, keys: &'static [&'static str]) -> Result<u32, FieldError> {
    match text(values, keys)? {
        None | Some("") => Ok(0),
        Some(s) => s.parse().map_err(|_| FieldError::NotNumeric(keys[0])),
    }
}

/// Printable ASCII without spaces, bounded: every store's key alphabet fits, and nothing that
/// could break a request line, a log line or an event.
fn key_text(field: &'static str, value: &str) -> Result<(), FieldError> {
    if value.len() > MAX_KEY_LEN {
        return Err(FieldError::Invalid(field, format!("longer than {MAX_KEY_LEN} characters")));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(FieldError::Invalid(field, "only printable ASCII characters without spaces are allowed".into()));
    }
    Ok(())
}

/// An access key also names the account's claim marker on the store (`compat-accounts/<key>`),
/// where a `/` makes a path: `../users/<name>` would land on an S3User's ownership marker on a
/// store that resolves object paths (VersityGW's posix backend does). No store's generated
/// keys contain one, and SigV4 splits its credential scope on `/`.
fn access_key_text(value: &str) -> Result<(), FieldError> {
    key_text(ACCESS_KEY_KEYS[0], value)?;
    if value.contains('/') || value == "." || value == ".." {
        return Err(FieldError::Invalid(
            ACCESS_KEY_KEYS[0],
            "'/' is not allowed, nor an access key of only '.' or '..'".into(),
        ));
    }
    Ok(())
}

/// Reads a Secret's fields, checking each one.
pub fn parse(secret: &Secret) -> Result<Request, FieldError> {
    let values = values(secret);
    let bucket = required(&values, BUCKET_KEYS)?;
    validate_bucket_name(bucket).map_err(|e| FieldError::Invalid(BUCKET_KEYS[0], e.to_string()))?;
    let access_key = required(&values, ACCESS_KEY_KEYS)?;
    access_key_text(access_key)?;
    let secret_key = required(&values, SECRET_KEY_KEYS)?;
    key_text(SECRET_KEY_KEYS[0], secret_key)?;
    let role = text(&values, ROLE_KEYS)?.filter(|s| !s.is_empty()).unwrap_or(DEFAULT_ROLE);
    if !role.bytes().all(|b| b.is_ascii_alphanumeric()) || role.len() > 32 {
        return Err(FieldError::Invalid(ROLE_KEYS[0], "a role is a short word such as user".into()));
    }
    let endpoint = text(&values, ENDPOINT_KEYS)?.filter(|s| !s.is_empty()).map(str::to_string);
    Ok(Request {
        bucket: bucket.to_string(),
        account: CompatAccount {
            access_key: access_key.to_string(),
            secret_key: SecretString::new(secret_key),
            role: role.to_string(),
            user_id: id(&values, USER_ID_KEYS)?,
            group_id: id(&values, GROUP_ID_KEYS)?,
        },
        endpoint,
    })
}

/// Most characters of a Secret's endpoint an event shows.
const SHOWN_ENDPOINT_MAX: usize = 120;

/// A Secret's endpoint as an event may show it: without the credentials a URL can carry in
/// its user-info part, quoted with control and invisible characters escaped (a newline or a
/// right-to-left override cannot forge the rest of the line), at most [`SHOWN_ENDPOINT_MAX`]
/// characters. Something that is not a URL is described, not echoed.
pub fn shown_endpoint(endpoint: &str) -> String {
    let Ok(mut url) = url::Url::parse(endpoint.trim()) else {
        return format!("(not a URL, {} bytes)", endpoint.len());
    };
    // Either call fails only for URLs that cannot have user-info, which then have none.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let text = url.as_str();
    let shown: String = text.chars().take(SHOWN_ENDPOINT_MAX).collect();
    if shown.len() < text.len() { format!("{shown:?}…") } else { format!("{shown:?}") }
}

/// Scheme, host and port (the scheme's default when absent) and the path without trailing
/// slashes, all the way the URL standard normalises them; `None` for what is not a URL.
fn normalise(url: &str) -> Option<(String, String, u16, String)> {
    let u = url::Url::parse(url.trim()).ok()?;
    let host = u.host_str()?.to_ascii_lowercase();
    let port = u.port_or_known_default()?;
    Some((u.scheme().to_string(), host, port, u.path().trim_end_matches('/').to_string()))
}

/// True when two endpoint URLs name the same place (`http://Host:80/` equals `http://host`).
/// Unparseable URLs fall back to comparing the raw strings without trailing slashes.
pub fn same_endpoint(a: &str, b: &str) -> bool {
    match (normalise(a), normalise(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/'),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn secret(data: &[(&str, &str)], string_data: &[(&str, &str)]) -> Secret {
        Secret {
            data: (!data.is_empty())
                .then(|| data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()),
            string_data: (!string_data.is_empty())
                .then(|| string_data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Secret::default()
        }
    }

    #[test]
    fn the_documented_keys_are_read() {
        let r = parse(&secret(
            &[
                ("bucket-name", "my-bucket"),
                ("access-key", "AK1"),
                ("secret-key", "s3cr3t"),
                ("endpoint-url", "http://s3:7070"),
                ("role", "userplus"),
                ("user-id", "1000"),
                ("group-id", "2000"),
            ],
            &[],
        ))
        .unwrap();
        assert_eq!(r.bucket, "my-bucket");
        assert_eq!(r.account.access_key, "AK1");
        assert_eq!(r.account.secret_key.expose(), "s3cr3t");
        assert_eq!(r.account.role, "userplus");
        assert_eq!((r.account.user_id, r.account.group_id), (1000, 2000));
        assert_eq!(r.endpoint.as_deref(), Some("http://s3:7070"));
    }

    #[test]
    fn uppercase_and_aws_style_aliases_are_read() {
        let upper = parse(&secret(
            &[("BUCKET_NAME", "b-upper"), ("ACCESS_KEY", "AK2"), ("SECRET_KEY", "s2"), ("ENDPOINT_URL", "http://e")],
            &[],
        ))
        .unwrap();
        assert_eq!((upper.bucket.as_str(), upper.account.access_key.as_str()), ("b-upper", "AK2"));
        assert_eq!(upper.account.secret_key.expose(), "s2");
        assert_eq!(upper.endpoint.as_deref(), Some("http://e"));
        let aws = parse(&secret(
            &[
                ("BUCKET_NAME", "b-aws"),
                ("AWS_ACCESS_KEY_ID", "AK3"),
                ("AWS_SECRET_ACCESS_KEY", "s3"),
                ("AWS_ENDPOINT_URL", "http://a"),
                ("ROLE", "user"),
                ("USER_ID", "7"),
                ("GROUP_ID", "8"),
            ],
            &[],
        ))
        .unwrap();
        assert_eq!((aws.account.access_key.as_str(), aws.account.secret_key.expose()), ("AK3", "s3"));
        assert_eq!((aws.account.user_id, aws.account.group_id), (7, 8));
        let readme =
            parse(&secret(&[("bucket-name", "bkt"), ("ACCESS_KEY_ID", "AK4"), ("access-secret", "s4")], &[])).unwrap();
        assert_eq!((readme.account.access_key.as_str(), readme.account.secret_key.expose()), ("AK4", "s4"));
        let other = parse(&secret(
            &[
                ("bucket-name", "bbb"),
                ("access-key", "AK5"),
                ("SECRET_ACCESS_KEY", "s5"),
                ("AWS_ENDPOINTS", "http://x"),
            ],
            &[],
        ))
        .unwrap();
        assert_eq!(other.account.secret_key.expose(), "s5");
        assert_eq!(other.endpoint.as_deref(), Some("http://x"));
    }

    #[test]
    fn first_non_empty_alias_wins() {
        let r = parse(&secret(
            &[("bucket-name", ""), ("BUCKET_NAME", "fallback"), ("access-key", "first"), ("ACCESS_KEY", "second")],
            &[("secret-key", "s")],
        ))
        .unwrap();
        assert_eq!(r.bucket, "fallback", "an empty value falls through");
        assert_eq!(r.account.access_key, "first");
    }

    #[test]
    fn data_and_string_data_are_decoded_and_string_data_wins() {
        let r = parse(&secret(
            &[("bucket-name", "from-data"), ("access-key", "AK")],
            &[("secret-key", "from-string-data"), ("bucket-name", "from-string-data")],
        ))
        .unwrap();
        assert_eq!(r.bucket, "from-string-data");
        assert_eq!(r.account.secret_key.expose(), "from-string-data");
        assert_eq!((r.account.role.as_str(), r.account.user_id, r.account.group_id), ("user", 0, 0));
        assert_eq!(r.endpoint, None);
    }

    #[test]
    fn problems_name_the_field_never_the_value() {
        let cases: Vec<(Secret, &str)> = vec![
            (secret(&[("access-key", "AK"), ("secret-key", "s")], &[]), "bucket-name"),
            (secret(&[("bucket-name", "bbb"), ("secret-key", "hunter2")], &[]), "access-key"),
            (secret(&[("bucket-name", "bbb"), ("access-key", "AK")], &[]), "secret-key"),
            (secret(&[("bucket-name", "Not_Valid"), ("access-key", "AK"), ("secret-key", "s")], &[]), "bucket-name"),
            (secret(&[("bucket-name", "bbb"), ("access-key", "A K"), ("secret-key", "s")], &[]), "access-key"),
            (
                secret(
                    &[("bucket-name", "bbb"), ("access-key", "AK"), ("secret-key", "hunter2"), ("user-id", "x")],
                    &[],
                ),
                "user-id",
            ),
            (
                secret(
                    &[("bucket-name", "bbb"), ("access-key", "AK"), ("secret-key", "hunter2"), ("USER_ID", "-1")],
                    &[],
                ),
                "user-id",
            ),
            (
                secret(
                    &[("bucket-name", "bbb"), ("access-key", "AK"), ("secret-key", "hunter2"), ("role", "<admin/>")],
                    &[],
                ),
                "role",
            ),
        ];
        for (s, field) in cases {
            let err = parse(&s).unwrap_err();
            assert_eq!(err.field(), field, "{err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        for path in ["../users/victim", "a/b", "..", "."] {
            let s = secret(&[("bucket-name", "bbb"), ("access-key", path), ("secret-key", "hunter2")], &[]);
            let err = parse(&s).unwrap_err();
            assert_eq!(err.field(), "access-key", "{path}: {err}");
            assert!(!err.to_string().contains("victim") && !err.to_string().contains("hunter2"), "{err}");
        }
        // Dots elsewhere, and every other printable character, are still fine.
        let dotted = secret(&[("bucket-name", "bbb"), ("access-key", "a..b<&>'\"]]>"), ("secret-key", "s")], &[]);
        assert_eq!(parse(&dotted).unwrap().account.access_key, "a..b<&>'\"]]>");
        let mut binary = secret(&[("bucket-name", "bbb"), ("access-key", "AK")], &[]);
        binary.data.as_mut().unwrap().insert("secret-key".into(), ByteString(vec![0xff, 0xfe, 0x00]));
        assert_eq!(parse(&binary).unwrap_err(), FieldError::NotUtf8("secret-key"));
    }

    #[test]
    fn the_annotation_opts_in_unless_it_says_no() {
        let key = "s3-resource-operator.io/enabled";
        let with = |v: &str| BTreeMap::from([(key.to_string(), v.to_string())]);
        for yes in ["true", "", "yes", "1", "anything"] {
            assert!(enabled(Some(&with(yes)), key), "{yes:?}");
        }
        for no in ["false", "FALSE", "0", "no", " No "] {
            assert!(!enabled(Some(&with(no)), key), "{no:?}");
        }
        assert!(!enabled(None, key));
        assert!(!enabled(Some(&BTreeMap::from([("other".to_string(), "true".to_string())])), key));
    }

    #[test]
    fn endpoints_are_shown_without_credentials_or_control_characters() {
        assert_eq!(shown_endpoint("http://other-store:7070"), "\"http://other-store:7070/\"");
        let with_creds = shown_endpoint("http://AKIA:hunter2@other-store:7070/");
        assert!(!with_creds.contains("hunter2") && !with_creds.contains("AKIA"), "{with_creds}");
        assert!(with_creds.contains("other-store:7070"), "{with_creds}");
        assert_eq!(shown_endpoint("not a url\n\u{202E}hunter2"), "(not a URL, 20 bytes)");
        let rtl = shown_endpoint("http://evil.example/\u{202E}gnp.exe");
        assert!(!rtl.contains('\u{202E}'), "{rtl}");
        let long = shown_endpoint(&format!("http://{}.example", "e".repeat(900_000)));
        assert!(long.len() < 200 && long.ends_with('…'), "{long}");
    }

    #[test]
    fn endpoints_compare_normalised() {
        assert!(same_endpoint("http://versitygw:7070", "http://versitygw:7070/"));
        assert!(same_endpoint("HTTP://VersityGW:7070", "http://versitygw:7070"));
        assert!(same_endpoint("http://s3.local", "http://s3.local:80/"));
        assert!(same_endpoint("https://s3.local:443", "https://s3.local"));
        assert!(!same_endpoint("http://s3.local", "https://s3.local"));
        assert!(!same_endpoint("http://s3.local:7070", "http://s3.local:7071"));
        assert!(!same_endpoint("http://a:7070", "http://b:7070"));
        assert!(same_endpoint("not a url/", "not a url"));
    }
}
