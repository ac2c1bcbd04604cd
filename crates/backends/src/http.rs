//! Pieces every hand-made admin call shares (VersityGW's and MinIO's signed admin APIs,
//! Garage's bearer-token API): SigV4 signing with the payload hash the stores require, query
//! encoding, random secrets, and the mapping of transport failures and HTTP statuses to
//! [`BackendError`]. The AWS SDK cannot make these calls: they are not AWS operations.

use std::time::{Duration, SystemTime};

use aws_sigv4::{
    http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
        UriPathNormalizationMode, sign,
    },
    sign::v4,
};

use crate::{BackendError, Result, SecretString};

/// Time allowed to open a connection to an admin endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed for a whole admin call.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// An HTTP client with the admin timeouts, so a dead store fails within seconds; with
/// `ca_bundle` (PEM) it also trusts those CAs, for a store with a private CA.
pub fn client(backend: &'static str, ca_bundle: Option<&str>) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).timeout(REQUEST_TIMEOUT);
    for ca in ca_certificates(ca_bundle)? {
        builder = builder.add_root_certificate(ca);
    }
    builder.build().map_err(|e| BackendError::Unavailable { backend, cause: format!("building the HTTP client: {e}") })
}

/// The certificates of a PEM bundle; an error names what is wrong with it, never its content.
fn ca_certificates(ca_bundle: Option<&str>) -> Result<Vec<reqwest::Certificate>> {
    let Some(pem) = ca_bundle else { return Ok(Vec::new()) };
    let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
        .map_err(|e| BackendError::InvalidInput(format!("the CA bundle is not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(BackendError::InvalidInput("the CA bundle holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// The HTTP client of the AWS SDK clients, trusting `ca_bundle` (PEM) besides the system's
/// roots; `None` keeps the SDK's default client.
pub fn sdk_client(ca_bundle: Option<&str>) -> Result<Option<aws_sdk_s3::config::SharedHttpClient>> {
    use aws_smithy_http_client::{
        Builder,
        tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode},
    };
    let Some(pem) = ca_bundle else { return Ok(None) };
    // Checked here, where an error can say so; the SDK would only fail at the first request.
    ca_certificates(Some(pem))?;
    let trust = TrustStore::default().with_pem_certificate(pem.as_bytes().to_vec());
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| BackendError::InvalidInput(format!("the CA bundle cannot be used: {e}")))?;
    Ok(Some(Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc)).tls_context(context).build_https()))
}

/// The headers that sign `method url` with `body` for SigV4 service `s3` in `region`,
/// including `x-amz-content-sha256` of the real body (VersityGW and MinIO require it).
pub fn sigv4_headers(
    method: &str,
    url: &str,
    body: &[u8],
    region: &str,
    access_key: &str,
    secret_key: &SecretString,
) -> Result<Vec<(String, String)>> {
    let identity = aws_sdk_s3::config::Credentials::new(access_key, secret_key.expose(), None, None, "s3op").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    // S3 rules: the path is encoded once and not normalised.
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| BackendError::InvalidInput(format!("signing parameters: {e}")))?
        .into();
    let signable = SignableRequest::new(method, url, std::iter::empty(), SignableBody::Bytes(body))
        .map_err(|e| BackendError::InvalidInput(format!("admin request: {e}")))?;
    let (instructions, _signature) =
        sign(signable, &params).map_err(|e| BackendError::InvalidInput(format!("signing: {e}")))?.into_parts();
    Ok(instructions.headers().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

/// A `method` request to `url` carrying the [`sigv4_headers`] that sign `body`; the caller
/// attaches `body` itself (and any header left unsigned, such as the content type).
pub fn signed_request(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: &[u8],
    region: &str,
    access_key: &str,
    secret_key: &SecretString,
) -> Result<reqwest::RequestBuilder> {
    let headers = sigv4_headers(method.as_str(), url, body, region, access_key, secret_key)?;
    Ok(headers.into_iter().fold(client.request(method, url), |req, (name, value)| req.header(name, value)))
}

/// A request that never reached the store or whose reply could not be read: retryable.
/// Without the URL: `op` names the call, and reqwest's text is about the transport.
pub fn transport_error(backend: &'static str, op: &str, what: &str, err: reqwest::Error) -> BackendError {
    // reqwest's own text says only "error sending request"; the causes below it say why (a
    // refused connection, an untrusted certificate), and none of them holds a header.
    let err = err.without_url();
    let mut cause = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(e) = source {
        let text = e.to_string();
        if !cause.contains(&text) {
            cause.push_str(": ");
            cause.push_str(&text);
        }
        source = e.source();
    }
    BackendError::Unreachable { backend, cause: format!("{op} on {what}: {cause}") }
}

/// Maps a non-2xx admin reply to an error; `detail` already names the call, the store's
/// error code and message.
pub fn status_error(backend: &'static str, status: u16, what: &str, detail: String) -> BackendError {
    match status {
        400 => BackendError::InvalidInput(detail),
        401 | 403 => BackendError::Forbidden(detail),
        404 => BackendError::NotFound { what: detail },
        409 => BackendError::Conflict { what: what.to_string(), detail },
        501 => BackendError::Unsupported { backend, feature: "admin API" },
        429 | 500..=599 => BackendError::Unavailable { backend, cause: detail },
        _ => BackendError::Protocol { backend, detail },
    }
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A secret of 40 characters from `[A-Za-z0-9]`, from the operating system's generator.
pub fn generate_secret(backend: &'static str) -> Result<SecretString> {
    random_text(backend, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 40).map(SecretString::new)
}

/// An access key id of 20 characters from `[A-Z0-9]`, the shape MinIO and AWS give theirs.
pub fn generate_access_key(backend: &'static str) -> Result<String> {
    random_text(backend, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 20)
}

/// `len` characters drawn uniformly from `alphabet` (at most 256 symbols).
fn random_text(backend: &'static str, alphabet: &[u8], len: usize) -> Result<String> {
    // The largest multiple of the alphabet's size that fits a byte: rejecting bytes at or above
    // it keeps every character equally likely.
    let limit = 256 - 256 % alphabet.len();
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf)
            .map_err(|e| BackendError::Unavailable { backend, cause: format!("random generator: {e}") })?;
        for &b in buf.iter().filter(|&&b| usize::from(b) < limit) {
            if out.len() == len {
                break;
            }
            out.push(char::from(alphabet[usize::from(b) % alphabet.len()]));
        }
    }
    Ok(out)
}

/// Parses a JSON admin reply; anything else is a protocol error naming the call.
pub fn parse_json<T: serde::de::DeserializeOwned>(backend: &'static str, body: &[u8], op: &str) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|e| BackendError::Protocol { backend, detail: format!("{op}: reply is not the expected JSON: {e}") })
}

/// Serialises a JSON admin request body.
pub fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| BackendError::InvalidInput(format!("JSON body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_the_length_and_alphabet() {
        let a = generate_secret("test").unwrap();
        let b = generate_secret("test").unwrap();
        assert_eq!(a.expose().len(), 40);
        assert!(a.expose().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        let key = generate_access_key("test").unwrap();
        assert_eq!(key.len(), 20);
        assert!(key.bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()), "{key}");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("a b/c&d=é"), "a%20b%2Fc%26d%3D%C3%A9");
        assert_eq!(encode("Az09-._~"), "Az09-._~");
    }

    #[test]
    fn signing_sends_the_payload_hash() {
        let headers =
            sigv4_headers("PUT", "http://127.0.0.1:9000/x?a=b", b"{}", "us-east-1", "AK", &SecretString::new("s"))
                .unwrap();
        let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        assert!(names.contains(&"x-amz-content-sha256") && names.contains(&"authorization"), "{names:?}");
        assert!(!headers.iter().any(|(_, v)| v.contains('s') && v == "s"), "the secret is never a header");
    }
}
