//! A fault-injecting HTTP proxy for S3, on a free loopback port.
//!
//! It sits between s3rf and a real S3 server, recognises the S3 operation of
//! each request (path-style addressing), and applies the first [`Rule`] that
//! matches: flip a bit in the request or response body, answer with an S3
//! error, reset the connection, lose the response after the server acted,
//! delay, or truncate the response body. The Host header and every other
//! header pass unchanged, so SigV4 signatures stay valid.
//!
//! Faults are deterministic: a rule fires on the matching requests it
//! selects by count (`skip`, `times`), so a test knows what happened, and
//! the proxy counts every request and every fault per operation so the test
//! can assert that the faults it asked for were injected.
//!
//! Bodies are collected whole before forwarding: fine for test objects of a
//! few hundred MiB, with parts of a few MiB each.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// The S3 operation of a request, as the proxy recognises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    HeadBucket,
    HeadObject,
    GetObject,
    GetObjectTagging,
    ListObjects,
    ListMultipartUploads,
    ListParts,
    ListBuckets,
    PutObject,
    PutObjectTagging,
    CopyObject,
    CreateBucket,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    DeleteObject,
    DeleteObjects,
    DeleteBucket,
    Other,
}

/// What to do to a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Flip one bit in the middle of the request body before forwarding it.
    FlipRequestBody,
    /// Flip one bit in the middle of the response body.
    FlipResponseBody,
    /// Answer with this status and an S3 XML error of this code, without
    /// forwarding (for example 503 `SlowDown`, 500 `InternalError`).
    Error { status: u16, code: &'static str },
    /// Close the connection without forwarding or answering.
    ResetBeforeRequest,
    /// Forward the request, let the server act, then close the connection
    /// without answering: the client never learns that it worked.
    LoseResponse,
    /// Wait this long before forwarding.
    Delay(Duration),
    /// Forward, let the server act, then wait this long before answering
    /// (time for a test to kill the client between the effect and its
    /// acknowledgement).
    DelayResponse(Duration),
    /// Forward, then send only the first half of the response body while
    /// announcing the whole length.
    TruncateResponse,
}

/// One rule: `fault` for requests of `op` (and, for GETs, `ranged` or not),
/// skipping the first `skip` matches and firing `times` times (`None`:
/// every match after the skipped ones).
#[derive(Debug, Clone)]
pub struct Rule {
    pub op: Op,
    /// `Some(true)`: only GETs with a Range header; `Some(false)`: only
    /// without; `None`: either.
    pub ranged: Option<bool>,
    pub fault: Fault,
    pub skip: u32,
    pub times: Option<u32>,
    /// Only requests whose path contains this (a key, a bucket), if set.
    pub path_contains: Option<String>,
}

impl Rule {
    /// `fault` on every request of `op`.
    pub fn always(op: Op, fault: Fault) -> Self {
        Self {
            op,
            ranged: None,
            fault,
            skip: 0,
            times: None,
            path_contains: None,
        }
    }

    /// `fault` on the first `times` requests of `op`.
    pub fn first(op: Op, fault: Fault, times: u32) -> Self {
        Self {
            times: Some(times),
            ..Self::always(op, fault)
        }
    }

    /// The same rule, only for ranged (`true`) or whole (`false`) GETs.
    #[must_use]
    pub fn ranged(mut self, ranged: bool) -> Self {
        self.ranged = Some(ranged);
        self
    }

    /// The same rule, letting the first `skip` matches pass.
    #[must_use]
    pub fn after(mut self, skip: u32) -> Self {
        self.skip = skip;
        self
    }

    /// The same rule, only for paths containing `s`.
    #[must_use]
    pub fn on_path(mut self, s: &str) -> Self {
        self.path_contains = Some(s.to_owned());
        self
    }
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<(Rule, u32)>,
    chaos: Option<Chaos>,
    seen: BTreeMap<Op, u64>,
    injected: BTreeMap<Op, u64>,
    /// Faults injected, by kind (`Fault`'s variant name).
    kinds: BTreeMap<&'static str, u64>,
    /// A store's request-rate ceiling: SlowDown above it.
    slow_down: Option<SlowDown>,
    /// Every request in arrival order: its operation and path (the first
    /// `LOG_LIMIT`).
    log: Vec<(Op, String)>,
}

/// Requests [`FaultProxy::requests`] keeps.
const LOG_LIMIT: usize = 100_000;

/// Answers 503 SlowDown to the requests beyond `per_sec` in each second,
/// as S3 does above a prefix's request rate.
#[derive(Debug)]
struct SlowDown {
    per_sec: u32,
    origin: std::time::Instant,
    second: u64,
    count: u32,
}

impl SlowDown {
    fn over(&mut self) -> bool {
        let second = self.origin.elapsed().as_secs();
        if second != self.second {
            self.second = second;
            self.count = 0;
        }
        self.count += 1;
        self.count > self.per_sec
    }
}

/// Random faults on any request no rule claimed: `per_mille` of them, the
/// kind drawn from what makes sense for the operation, from a seeded RNG
/// (the same seed gives the same sequence of decisions).
#[derive(Debug)]
struct Chaos {
    per_mille: u32,
    rng: fastrand::Rng,
}

impl Chaos {
    /// A fault for a request of `op`, if this one draws one. Bits are
    /// flipped only in object bodies: a flipped listing would name another
    /// key, which no client can tell from the truth without TLS.
    fn draw(&mut self, op: Op) -> Option<Fault> {
        if self.rng.u32(0..1000) >= self.per_mille {
            return None;
        }
        let mut menu = vec![
            Fault::Error {
                status: 503,
                code: "SlowDown",
            },
            Fault::Error {
                status: 500,
                code: "InternalError",
            },
            Fault::ResetBeforeRequest,
            Fault::LoseResponse,
            Fault::Delay(Duration::from_millis(
                500 + u64::from(self.rng.u32(0..1500)),
            )),
        ];
        match op {
            Op::GetObject => menu.extend([Fault::FlipResponseBody, Fault::TruncateResponse]),
            Op::PutObject | Op::UploadPart => menu.push(Fault::FlipRequestBody),
            _ => {}
        }
        Some(menu[self.rng.usize(0..menu.len())].clone())
    }
}

impl Fault {
    fn kind(&self) -> &'static str {
        match self {
            Fault::FlipRequestBody => "flip_request",
            Fault::FlipResponseBody => "flip_response",
            Fault::Error { status: 503, .. } => "503",
            Fault::Error { .. } => "500",
            Fault::ResetBeforeRequest => "reset",
            Fault::LoseResponse => "lost_response",
            Fault::Delay(_) => "delay",
            Fault::DelayResponse(_) => "delayed_response",
            Fault::TruncateResponse => "truncated",
        }
    }
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy in front of `upstream` (an `http://127.0.0.1:PORT` URL).
    pub fn start(upstream: &str) -> Result<Self> {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("upstream {upstream} is not http://IP:PORT"))?;
        anyhow::ensure!(
            upstream.ip().is_loopback(),
            "the fault proxy only forwards to loopback, not {upstream}"
        );
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("fault-proxy".to_owned())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("listener");
                    tokio::select! {
                        () = serve(listener, upstream, shared) => {}
                        _ = stopped => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The proxy's URL, for an endpoint's `url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far in arrival order (up to 100,000): its
    /// operation and URL path (`/bucket/key`, path style).
    pub fn requests(&self) -> Vec<(Op, String)> {
        self.state.lock().unwrap().log.clone()
    }

    /// Adds a rule; rules are tried in the order they were added.
    pub fn add(&self, rule: Rule) {
        self.state.lock().unwrap().rules.push((rule, 0));
    }

    /// Removes every rule and the chaos: from now on requests pass
    /// untouched.
    pub fn clear(&self) {
        let mut s = self.state.lock().unwrap();
        s.rules.clear();
        s.chaos = None;
    }

    /// Injects a random fault into `per_mille` of the requests no rule
    /// claims, deterministically from `seed`: S3 errors (503 SlowDown,
    /// 500), resets, lost responses, delays, truncated GET bodies and
    /// flipped bits in object bodies.
    pub fn chaos(&self, per_mille: u32, seed: u64) {
        self.state.lock().unwrap().chaos = Some(Chaos {
            per_mille,
            rng: fastrand::Rng::with_seed(seed),
        });
    }

    /// Answers 503 SlowDown to every request beyond `per_sec` in each
    /// second (before any rule); `None` lifts the ceiling.
    pub fn slow_down_above(&self, per_sec: Option<u32>) {
        self.state.lock().unwrap().slow_down = per_sec.map(|per_sec| SlowDown {
            per_sec,
            origin: std::time::Instant::now(),
            second: 0,
            count: 0,
        });
    }

    /// Every request that passed through, of any operation.
    pub fn seen_total(&self) -> u64 {
        self.state.lock().unwrap().seen.values().sum()
    }

    /// Every fault injected so far.
    pub fn injected_total(&self) -> u64 {
        self.state.lock().unwrap().injected.values().sum()
    }

    /// How many requests of `op` passed through (faulted or not).
    pub fn seen(&self, op: Op) -> u64 {
        self.state
            .lock()
            .unwrap()
            .seen
            .get(&op)
            .copied()
            .unwrap_or(0)
    }

    /// How many faults were injected into requests of `op`.
    pub fn injected(&self, op: Op) -> u64 {
        self.state
            .lock()
            .unwrap()
            .injected
            .get(&op)
            .copied()
            .unwrap_or(0)
    }

    /// Faults injected, per operation and per kind, for a test's summary
    /// line.
    pub fn injected_summary(&self) -> String {
        let s = self.state.lock().unwrap();
        let ops = s
            .injected
            .iter()
            .map(|(op, n)| format!("{op:?}={n}"))
            .collect::<Vec<_>>()
            .join(" ");
        let kinds = s
            .kinds
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(" ");
        format!("{ops} | {kinds}")
    }

    /// How many faults of a kind were injected (`flip_request`,
    /// `flip_response`, `503`, `500`, `reset`, `lost_response`, `delay`,
    /// `delayed_response`, `truncated`).
    pub fn injected_kind(&self, kind: &str) -> u64 {
        self.state
            .lock()
            .unwrap()
            .kinds
            .get(kind)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(listener: TcpListener, upstream: SocketAddr, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { handle(req, upstream, state).await }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The S3 operation of a path-style request.
pub fn classify(method: &hyper::Method, path: &str, query: &str, copy_source: bool) -> Op {
    let has = |q: &str| {
        query
            .split('&')
            .any(|kv| kv == q || kv.starts_with(&format!("{q}=")))
    };
    let trimmed = path.trim_start_matches('/');
    let object = trimmed.split_once('/').is_some_and(|(_, k)| !k.is_empty());
    let bucket = !trimmed.is_empty();
    match (method.as_str(), bucket, object) {
        ("GET", false, _) => Op::ListBuckets,
        ("HEAD", true, false) => Op::HeadBucket,
        ("HEAD", true, true) => Op::HeadObject,
        ("GET", true, true) if has("tagging") => Op::GetObjectTagging,
        ("GET", true, true) if has("uploadId") => Op::ListParts,
        ("GET", true, true) => Op::GetObject,
        ("GET", true, false) if has("uploads") => Op::ListMultipartUploads,
        ("GET", true, false) => Op::ListObjects,
        ("PUT", true, true) if has("tagging") => Op::PutObjectTagging,
        ("PUT", true, true) if has("uploadId") && copy_source => Op::UploadPartCopy,
        ("PUT", true, true) if has("uploadId") => Op::UploadPart,
        ("PUT", true, true) if copy_source => Op::CopyObject,
        ("PUT", true, true) => Op::PutObject,
        ("PUT", true, false) => Op::CreateBucket,
        ("POST", true, true) if has("uploads") => Op::CreateMultipartUpload,
        ("POST", true, true) if has("uploadId") => Op::CompleteMultipartUpload,
        ("POST", true, false) if has("delete") => Op::DeleteObjects,
        ("DELETE", true, true) if has("uploadId") => Op::AbortMultipartUpload,
        ("DELETE", true, true) => Op::DeleteObject,
        ("DELETE", true, false) => Op::DeleteBucket,
        _ => Op::Other,
    }
}

/// The fault for this request, if a rule fires; counts the request.
fn pick(state: &Mutex<State>, op: Op, ranged: bool, path: &str) -> Option<Fault> {
    let mut s = state.lock().unwrap();
    *s.seen.entry(op).or_default() += 1;
    if s.log.len() < LOG_LIMIT {
        s.log.push((op, path.to_owned()));
    }
    let mut fault = s
        .slow_down
        .as_mut()
        .is_some_and(SlowDown::over)
        .then_some(Fault::Error {
            status: 503,
            code: "SlowDown",
        });
    for (rule, matched) in &mut s.rules {
        if fault.is_some() {
            break;
        }
        if rule.op != op
            || rule.ranged.is_some_and(|r| r != ranged)
            || rule
                .path_contains
                .as_deref()
                .is_some_and(|p| !path.contains(p))
        {
            continue;
        }
        *matched += 1;
        let n = *matched;
        if n <= rule.skip || rule.times.is_some_and(|t| n > rule.skip + t) {
            continue;
        }
        fault = Some(rule.fault.clone());
        break;
    }
    if fault.is_none()
        && let Some(chaos) = s.chaos.as_mut()
    {
        fault = chaos.draw(op);
    }
    if let Some(f) = &fault {
        *s.injected.entry(op).or_default() += 1;
        *s.kinds.entry(f.kind()).or_default() += 1;
    }
    fault
}

fn flip_middle(body: Bytes) -> Bytes {
    if body.is_empty() {
        return body;
    }
    let mut v = body.to_vec();
    let mid = v.len() / 2;
    v[mid] ^= 0x01;
    Bytes::from(v)
}

/// An error that makes hyper close the connection without a response.
#[derive(Debug)]
struct Reset;
impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the fault proxy")
    }
}
impl std::error::Error for Reset {}

type ProxyBody =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

async fn handle(
    req: Request<Incoming>,
    upstream: SocketAddr,
    state: Arc<Mutex<State>>,
) -> Result<Response<ProxyBody>, Reset> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let op = classify(
        req.method(),
        &path,
        &query,
        req.headers().contains_key("x-amz-copy-source"),
    );
    let ranged = req.headers().contains_key(hyper::header::RANGE);
    let fault = pick(&state, op, ranged, &path);
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|_| Reset)?.to_bytes();
    let body = match fault {
        Some(Fault::FlipRequestBody) => flip_middle(body),
        _ => body,
    };
    match &fault {
        Some(Fault::Error { status, code }) => return Ok(s3_error(*status, code)),
        Some(Fault::ResetBeforeRequest) => return Err(Reset),
        Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
        _ => {}
    }
    let head_request = parts.method == hyper::Method::HEAD;
    let forwarded = Request::from_parts(parts, Full::new(body));
    let response = forward(forwarded, upstream).await.map_err(|_| Reset)?;
    let (mut parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|_| Reset)?.to_bytes();
    if let Some(Fault::DelayResponse(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let out: ProxyBody = match fault {
        Some(Fault::LoseResponse) => return Err(Reset),
        Some(Fault::FlipResponseBody) => boxed(Full::new(flip_middle(body))),
        Some(Fault::TruncateResponse) if !head_request => {
            let half = body.slice(..body.len() / 2);
            // The announced length stays; the body ends early with an error.
            let stream = futures::stream::iter(vec![
                Ok(hyper::body::Frame::data(half)),
                Err(Box::new(Reset) as Box<dyn std::error::Error + Send + Sync>),
            ]);
            http_body_util::StreamBody::new(stream).boxed()
        }
        _ => boxed(Full::new(body)),
    };
    parts.headers.remove(hyper::header::TRANSFER_ENCODING);
    Ok(Response::from_parts(parts, out))
}

fn boxed(body: Full<Bytes>) -> ProxyBody {
    body.map_err(|never: Infallible| match never {}).boxed()
}

fn s3_error(status: u16, code: &str) -> Response<ProxyBody> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the s3rf fault proxy</Message><RequestId>fault</RequestId></Error>"
    );
    let mut r = Response::new(boxed(Full::new(Bytes::from(xml))));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    r
}

async fn forward(
    req: Request<Full<Bytes>>,
    upstream: SocketAddr,
) -> Result<Response<Incoming>, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(upstream).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender.send_request(req).await?)
}

#[cfg(test)]
mod tests;
