//! A byte-for-byte TCP proxy in front of a store that counts the HTTP requests passing through,
//! by operation. The operator's metrics count `Backend` calls; one call can be several store
//! requests (a list, a marker read, a policy read), and what a store pays for is requests.
//!
//! It can also go silent ([`CountingProxy::stall`]): it keeps accepting connections and counting
//! requests but forwards and answers nothing, as a black-holed address or a hung store does; or
//! slow ([`CountingProxy::slow_down`]): each request waits before it is forwarded.
//!
//! Nothing is rewritten: the client signs for the proxy's address (SigV4 covers `Host`), the
//! store checks the signature against the same `Host` it receives, and replies flow back
//! untouched. Only plain HTTP/1.1 is understood, which is what every client here speaks to a
//! loopback store.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use anyhow::{Context, Result};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// Requests by operation label (see [`label`]).
pub type Counts = BTreeMap<String, u64>;

/// A running counting proxy. Dropping it stops accepting; open connections end with their peers.
#[derive(Debug)]
pub struct CountingProxy {
    url: String,
    counts: Arc<Mutex<Counts>>,
    stalled: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl CountingProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`
    /// (`http://host:port`). `markers` names buckets whose objects are the operator's
    /// ownership markers, so their requests are labelled apart from others.
    pub async fn start(upstream: &str, markers: Vec<String>) -> Result<CountingProxy> {
        let target = upstream
            .strip_prefix("http://")
            .with_context(|| format!("the counting proxy speaks plain HTTP only, not {upstream}"))?
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the counting proxy")?;
        let url = format!("http://{}", listener.local_addr()?);
        let counts = Arc::new(Mutex::new(Counts::new()));
        let markers = Arc::new(markers);
        let shared = counts.clone();
        let stalled = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let faults = Faults { stalled: stalled.clone(), delay_ms: delay_ms.clone() };
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (target, counts, markers, faults) =
                    (target.clone(), shared.clone(), markers.clone(), faults.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&target).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        pipe(client, server, &counts, &markers, &faults).await;
                    }
                });
            }
        });
        Ok(CountingProxy { url, counts, stalled, delay_ms, accept })
    }

    /// Goes silent (`true`): requests are still counted, but none reaches the store and none
    /// is answered, on new connections and open ones alike; `false` forwards again.
    pub fn stall(&self, silent: bool) {
        self.stalled.store(silent, Ordering::SeqCst);
    }

    /// Holds each request for `delay` before forwarding it (zero: none), as a loaded store or a
    /// far one does.
    pub fn slow_down(&self, delay: std::time::Duration) {
        self.delay_ms.store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// The URL clients use instead of the store's.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Requests counted so far.
    pub fn snapshot(&self) -> Counts {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// `after - before`, per label, leaving out labels that did not move.
pub fn delta(before: &Counts, after: &Counts) -> Counts {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// What a proxy does wrong on purpose, shared by its connections.
#[derive(Clone, Debug)]
struct Faults {
    stalled: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
}

/// Copies both ways until either side closes, parsing the client's bytes for requests; while
/// stalled, the client's bytes are counted and dropped; while slowed, each read of them waits.
async fn pipe(client: TcpStream, server: TcpStream, counts: &Mutex<Counts>, markers: &[String], faults: &Faults) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let mut parser = RequestParser::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for request in parser.feed(&buf[..n]) {
                let l = label(&request, markers);
                *counts.lock().unwrap_or_else(PoisonError::into_inner).entry(l).or_default() += 1;
            }
            if faults.stalled.load(Ordering::SeqCst) {
                continue;
            }
            let delay = faults.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}

/// One request as seen on the wire: its method, target and (for small form bodies, where an
/// IAM call names its action) the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `PUT`, …
    pub method: String,
    /// Path and query.
    pub target: String,
    /// The body when it is a form (`application/x-www-form-urlencoded`) of at most 16 KiB.
    pub form: Option<String>,
}

#[derive(Debug, Default)]
enum Body {
    #[default]
    None,
    Length(usize),
    Chunked(Chunk),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(usize),
    DataEnd,
    Trailer,
}

/// Splits a client's byte stream into requests (HTTP/1.1 with keep-alive: heads, then bodies
/// sized by `Content-Length` or chunked encoding).
#[derive(Debug, Default)]
pub struct RequestParser {
    buf: Vec<u8>,
    body: Body,
    pending: Option<Request>,
    keep_form: bool,
    form: Vec<u8>,
}

const FORM_LIMIT: usize = 16 * 1024;

impl RequestParser {
    /// Takes the next bytes; returns the requests completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Request> {
        self.buf.extend_from_slice(bytes);
        let mut done = Vec::new();
        loop {
            match &mut self.body {
                Body::None => {
                    let Some(end) = find(&self.buf, b"\r\n\r\n") else { break };
                    let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                    self.buf.drain(..end + 4);
                    self.start(&head, &mut done);
                }
                Body::Length(remaining) => {
                    let take = (*remaining).min(self.buf.len());
                    if self.keep_form && self.form.len() + take <= FORM_LIMIT {
                        self.form.extend_from_slice(&self.buf[..take]);
                    }
                    self.buf.drain(..take);
                    *remaining -= take;
                    if *remaining > 0 {
                        break;
                    }
                    self.finish(&mut done);
                }
                Body::Chunked(state) => match *state {
                    Chunk::Size | Chunk::Trailer | Chunk::DataEnd => {
                        let Some(end) = find(&self.buf, b"\r\n") else { break };
                        let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                        self.buf.drain(..end + 2);
                        let current = *state;
                        *state = match current {
                            Chunk::DataEnd => Chunk::Size,
                            Chunk::Trailer if line.is_empty() => {
                                self.finish(&mut done);
                                continue;
                            }
                            Chunk::Trailer => Chunk::Trailer,
                            _ => {
                                let size = line.split(';').next().unwrap_or("").trim();
                                match usize::from_str_radix(size, 16) {
                                    Ok(0) => Chunk::Trailer,
                                    Ok(n) => Chunk::Data(n),
                                    // Not chunked after all: give up on this body, resync on the next head.
                                    Err(_) => {
                                        self.finish(&mut done);
                                        continue;
                                    }
                                }
                            }
                        };
                    }
                    Chunk::Data(remaining) => {
                        let take = remaining.min(self.buf.len());
                        self.buf.drain(..take);
                        *state = if remaining == take { Chunk::DataEnd } else { Chunk::Data(remaining - take) };
                        if remaining > take {
                            break;
                        }
                    }
                },
            }
        }
        done
    }

    fn start(&mut self, head: &str, done: &mut Vec<Request>) {
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("").to_string();
        let target = first.next().unwrap_or("").to_string();
        let mut length = 0usize;
        let mut chunked = false;
        let mut form = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                "content-type" => form = value.starts_with("application/x-www-form-urlencoded"),
                _ => {}
            }
        }
        self.pending = Some(Request { method, target, form: None });
        self.keep_form = form;
        self.form.clear();
        self.body = if chunked {
            Body::Chunked(Chunk::Size)
        } else if length > 0 {
            Body::Length(length)
        } else {
            Body::None
        };
        if matches!(self.body, Body::None) {
            self.finish(done);
        }
    }

    fn finish(&mut self, done: &mut Vec<Request>) {
        self.body = Body::None;
        if let Some(mut r) = self.pending.take() {
            if self.keep_form {
                r.form = Some(String::from_utf8_lossy(&self.form).into_owned());
            }
            done.push(r);
        }
        self.keep_form = false;
        self.form.clear();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The operation a request performs, with names left out so requests on different buckets,
/// users and keys share a label:
/// - an IAM or STS call (form body with `Action=`): `IAM CreateUser`;
/// - Garage's admin API: `admin GetBucketInfo`;
/// - MinIO's admin API: `admin add-user`;
/// - VersityGW's admin API (`PATCH /<op>`): `admin list-users`;
/// - S3: the method, `/{bucket}` or `/{bucket}/{key}` (`/{markers}/…` for the marker bucket),
///   and the query's parameter names: `GET /{bucket}?tagging`.
pub fn label(r: &Request, markers: &[String]) -> String {
    if let Some(form) = &r.form
        && let Some(action) = form.split('&').find_map(|p| p.strip_prefix("Action="))
    {
        return format!("IAM {action}");
    }
    let (path, query) = r.target.split_once('?').unwrap_or((r.target.as_str(), ""));
    if let Some(op) = path.strip_prefix("/v2/") {
        return format!("admin {op}");
    }
    if let Some(rest) = path.strip_prefix("/minio/admin/") {
        let op = rest.rsplit('/').next().unwrap_or(rest);
        return format!("admin {op}");
    }
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(2, '/').filter(|s| !s.is_empty()).collect();
    if r.method == "PATCH" && segments.len() == 1 {
        return format!("admin {}", segments[0]);
    }
    let mut keys: Vec<&str> =
        query.split('&').filter(|p| !p.is_empty()).map(|p| p.split('=').next().unwrap_or(p)).collect();
    keys.sort_unstable();
    keys.dedup();
    // Signed query parameters (presigned URLs) are not operations.
    keys.retain(|k| !k.starts_with("X-Amz-") && !k.starts_with("x-id"));
    let bucket = |b: &str| if markers.iter().any(|m| m == b) { "{markers}" } else { "{bucket}" };
    let shape = match segments.as_slice() {
        [] => "/".to_string(),
        [b] => format!("/{}", bucket(b)),
        [b, _] => format!("/{}/{{key}}", bucket(b)),
        _ => path.to_string(),
    };
    let query = if keys.is_empty() { String::new() } else { format!("?{}", keys.join("&")) };
    format!("{} {shape}{query}", r.method)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(bytes: &[&[u8]]) -> Vec<String> {
        let mut p = RequestParser::default();
        let markers = vec!["marks".to_string()];
        bytes.iter().flat_map(|b| p.feed(b)).map(|r| label(&r, &markers)).collect()
    }

    #[test]
    fn requests_are_split_and_labelled() {
        let stream: &[u8] = b"GET /bkt-1?tagging HTTP/1.1\r\nHost: x\r\n\r\n\
PUT /marks/users/u1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
POST / HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 31\r\n\r\nAction=CreateUser&UserName=GET \
POST /v2/GetBucketInfo?globalAlias=b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
PATCH /list-users HTTP/1.1\r\n\r\n\
GET /minio/admin/v3/info-canned-policy?name=p HTTP/1.1\r\n\r\n\
GET /b2?list-type=2&prefix=x HTTP/1.1\r\n\r\n";
        let want = [
            "GET /{bucket}?tagging",
            "PUT /{markers}/{key}",
            "IAM CreateUser",
            "admin GetBucketInfo",
            "admin list-users",
            "admin info-canned-policy",
            "GET /{bucket}?list-type&prefix",
        ];
        assert_eq!(labels(&[stream]), want);
        // The same bytes one at a time give the same requests.
        let single: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(labels(&single), want);
    }

    #[test]
    fn deltas_leave_out_what_did_not_move() {
        let before = Counts::from([("a".to_string(), 2), ("b".to_string(), 1)]);
        let after = Counts::from([("a".to_string(), 5), ("b".to_string(), 1), ("c".to_string(), 1)]);
        assert_eq!(delta(&before, &after), Counts::from([("a".to_string(), 3), ("c".to_string(), 1)]));
    }
}
