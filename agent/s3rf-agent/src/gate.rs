//! The gate in front of one endpoint: every HTTP request the AWS SDK sends
//! to it, reads and writes, passes here (an `HttpClient` wrapping the SDK's
//! own, installed by `store.rs`).
//!
//! - `[endpoints.x] max_requests_per_sec`: a token bucket (`governor`) one
//!   second deep that each request waits on.
//! - `[endpoints.x] max_bytes_per_sec`: request bodies are charged by their
//!   `Content-Length` before they are sent, response bodies frame by frame
//!   as they are read, against one bucket for both directions.
//! - `[endpoints.x] adaptive` (on by default): a 503 (SlowDown) or 429
//!   answer cuts the requests this agent keeps in flight to the endpoint
//!   and paces its request rate; both recover slowly (`aimd.rs`, pure).
//!   A request holds its in-flight slot until its response headers arrive,
//!   so a GET whose body is being piped into a PUT to the same endpoint
//!   cannot starve that PUT.
//!
//! The levels are metrics: `s3rf_endpoint_concurrency_limit`,
//! `s3rf_endpoint_rate_limit` (0 while unpaced) and
//! `s3rf_endpoint_throttled_total`.

use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use crate::clock::now_ms;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Notify;

use crate::aimd::{Aimd, RateWindow};

/// Requests in flight to one endpoint before any throttle: the adaptive
/// limit starts here and grows back to it.
pub const ADAPTIVE_CEILING: u32 = 1024;

/// Bytes per token of a byte bucket.
const BYTE_UNIT: u64 = 1024;

/// A bucket of bytes per second (KiB tokens, one second deep).
#[derive(Debug)]
pub struct ByteBucket {
    limiter: DefaultDirectRateLimiter,
    capacity: NonZeroU32,
}

impl ByteBucket {
    /// A bucket for `bytes_per_sec` (at least 1 KiB), or `None`.
    pub fn new(bytes_per_sec: u64) -> Option<Self> {
        Self::with_rate(bytes_per_sec as f64)
    }

    /// A bucket for a fractional rate of bytes per second (at least 1 KiB),
    /// one second deep, or `None`.
    pub fn with_rate(bytes_per_sec: f64) -> Option<Self> {
        let units = bytes_per_sec / BYTE_UNIT as f64;
        // NaN and rates below one unit have no bucket.
        if units.is_nan() || units < 1.0 {
            return None;
        }
        let capacity = NonZeroU32::new(units.min(f64::from(u32::MAX)) as u32)?;
        let quota = Quota::with_period(Duration::from_secs_f64(1.0 / units))?.allow_burst(capacity);
        Some(Self {
            limiter: RateLimiter::direct(quota),
            capacity,
        })
    }

    /// Waits until `n` more bytes may pass, a bucketful at a time.
    pub async fn take(&self, n: u64) {
        let mut units = n.div_ceil(BYTE_UNIT);
        while units > 0 {
            let take = units.min(u64::from(self.capacity.get()));
            let Some(take_nz) = u32::try_from(take).ok().and_then(NonZeroU32::new) else {
                return;
            };
            // `take` never exceeds the bucket, so this cannot fail.
            let _ = self.limiter.until_n_ready(take_nz).await;
            units -= take;
        }
    }
}

/// What `[endpoints.x]` asks of the gate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateConfig {
    /// Requests per second, if limited.
    pub max_requests_per_sec: Option<u32>,
    /// Bytes per second both ways, if limited.
    pub max_bytes_per_sec: Option<u64>,
    /// Adapt to SlowDown and 429.
    pub adaptive: bool,
}

/// The adaptive state of one endpoint.
#[derive(Debug)]
struct Adaptive {
    aimd: Aimd,
    in_flight: u32,
    /// Requests sent per second.
    window: RateWindow,
    /// Requests the store took per second: what a throttle cuts from.
    took: RateWindow,
    /// The pacing limiter and the rate it was built for.
    paced: Option<(f64, Arc<DefaultDirectRateLimiter>)>,
}

/// One endpoint's gate.
#[derive(Debug)]
pub struct Gate {
    endpoint: String,
    requests: Option<DefaultDirectRateLimiter>,
    bytes: Option<ByteBucket>,
    adaptive: Option<Mutex<Adaptive>>,
    freed: Notify,
}

/// An in-flight slot, given back on drop.
struct Slot {
    gate: Arc<Gate>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(a) = &self.gate.adaptive {
            if let Ok(mut a) = a.lock() {
                a.in_flight = a.in_flight.saturating_sub(1);
            }
            self.gate.freed.notify_one();
        }
    }
}

impl Gate {
    /// The gate `cfg` asks for, or `None` when it asks for nothing.
    pub fn new(endpoint: &str, cfg: GateConfig) -> Option<Arc<Self>> {
        if cfg == GateConfig::default() {
            return None;
        }
        let gate = Self {
            endpoint: endpoint.to_owned(),
            requests: cfg
                .max_requests_per_sec
                .and_then(NonZeroU32::new)
                .map(|n| RateLimiter::direct(Quota::per_second(n))),
            bytes: cfg.max_bytes_per_sec.and_then(ByteBucket::new),
            adaptive: cfg.adaptive.then(|| {
                Mutex::new(Adaptive {
                    aimd: Aimd::new(ADAPTIVE_CEILING),
                    in_flight: 0,
                    window: RateWindow::default(),
                    took: RateWindow::default(),
                    paced: None,
                })
            }),
            freed: Notify::new(),
        };
        gate.report(&Aimd::new(ADAPTIVE_CEILING));
        Some(Arc::new(gate))
    }

    /// Wraps the SDK's HTTP client.
    pub fn wrap(self: &Arc<Self>, inner: SharedHttpClient) -> SharedHttpClient {
        SharedHttpClient::new(GatedClient {
            inner,
            gate: self.clone(),
        })
    }

    fn report(&self, aimd: &Aimd) {
        if self.adaptive.is_some() {
            crate::metrics::endpoint_levels(&self.endpoint, aimd.limit(), aimd.rate());
        }
    }

    /// Waits for an in-flight slot and for the adaptive pace.
    async fn slot(self: &Arc<Self>) -> Option<Slot> {
        let adaptive = self.adaptive.as_ref()?;
        let paced = loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let Ok(mut a) = adaptive.lock() else {
                    return None;
                };
                if a.in_flight < a.aimd.limit() {
                    a.in_flight += 1;
                    a.window.record(now_ms());
                    break a.paced.as_ref().map(|(_, l)| l.clone());
                }
            }
            freed.await;
        };
        let slot = Slot { gate: self.clone() };
        if let Some(l) = paced {
            l.until_ready().await;
        }
        Some(slot)
    }

    /// Takes what a response status says about the store's load.
    fn observe(&self, status: u16) {
        let Some(adaptive) = &self.adaptive else {
            return;
        };
        let Ok(mut a) = adaptive.lock() else {
            return;
        };
        let now = now_ms();
        if status == 503 || status == 429 {
            // Cut from what the store took lately; from what was sent if
            // it took nothing yet.
            let took = a.took.per_sec(now);
            let measured = if took > 0.0 {
                took
            } else {
                a.window.per_sec(now)
            };
            let in_flight = a.in_flight;
            crate::metrics::endpoint_throttled(&self.endpoint);
            if !a.aimd.throttled(now, in_flight, measured) {
                return;
            }
            tracing::warn!(endpoint = %self.endpoint, status,
                limit = a.aimd.limit(), rate = a.aimd.rate().unwrap_or_default(),
                "the store is throttling; fewer requests in flight and a slower pace");
        } else {
            a.took.record(now);
            let before = (a.aimd.limit(), a.aimd.rate());
            a.aimd.succeeded();
            if before == (a.aimd.limit(), a.aimd.rate()) {
                return;
            }
        }
        let rate = a.aimd.rate();
        let rebuild = match (&a.paced, rate) {
            (None, None) => false,
            (Some((built, _)), Some(r)) => (r - built).abs() > built * 0.05,
            _ => true,
        };
        if rebuild {
            a.paced = rate.map(|r| {
                let period = Duration::from_secs_f64(1.0 / r);
                let quota = Quota::with_period(period)
                    .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN));
                (r, Arc::new(RateLimiter::direct(quota)))
            });
        }
        self.report(&a.aimd);
        drop(a);
        // A higher limit may free a waiting request.
        self.freed.notify_one();
    }
}

#[derive(Debug)]
struct GatedClient {
    inner: SharedHttpClient,
    gate: Arc<Gate>,
}

impl HttpClient for GatedClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(GatedConnector {
            inner: self.inner.http_connector(settings, components),
            gate: self.gate.clone(),
        })
    }
}

#[derive(Debug)]
struct GatedConnector {
    inner: SharedHttpConnector,
    gate: Arc<Gate>,
}

impl HttpConnector for GatedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let inner = self.inner.clone();
        let gate = self.gate.clone();
        HttpConnectorFuture::new(async move {
            let slot = gate.slot().await;
            if let Some(l) = &gate.requests {
                l.until_ready().await;
            }
            if let Some(b) = &gate.bytes {
                let sent = request
                    .headers()
                    .get("content-length")
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                b.take(sent).await;
            }
            let response = inner.call(request).await;
            drop(slot);
            let mut response = response?;
            gate.observe(response.status().as_u16());
            if gate.bytes.is_some() {
                let body = response.take_body();
                *response.body_mut() = SdkBody::from_body_1_x(MeteredBody {
                    inner: body,
                    gate: gate.clone(),
                    wait: Mutex::new(None),
                });
            }
            Ok(response)
        })
    }
}

type Wait = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A response body charged against the byte bucket as its frames arrive.
struct MeteredBody {
    inner: SdkBody,
    gate: Arc<Gate>,
    /// The charge being waited for, with the frame it is for. In a mutex
    /// only to make the body `Sync`; it is only reached through `&mut`.
    wait: Mutex<Option<(Wait, http_body::Frame<Bytes>)>>,
}

impl http_body::Body for MeteredBody {
    type Data = Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let wait = this.wait.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some((charge, _)) = wait.as_mut() {
            ready!(charge.as_mut().poll(cx));
            if let Some((_, frame)) = wait.take() {
                return Poll::Ready(Some(Ok(frame)));
            }
        }
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            other => return Poll::Ready(other),
        };
        let n = frame.data_ref().map_or(0, |d| d.len() as u64);
        if n == 0 {
            return Poll::Ready(Some(Ok(frame)));
        }
        let gate = this.gate.clone();
        let mut charge: Wait = Box::pin(async move {
            if let Some(b) = &gate.bytes {
                b.take(n).await;
            }
        });
        if charge.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Ok(frame)));
        }
        *wait = Some((charge, frame));
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn a_byte_bucket_holds_one_second() {
        assert!(ByteBucket::new(1023).is_none(), "below 1 KiB: no bucket");
        let b = ByteBucket::new(1024 * 1024).unwrap();
        let t = Instant::now();
        b.take(1024 * 1024).await;
        assert!(t.elapsed() < Duration::from_millis(200));
        b.take(512 * 1024).await;
        assert!(
            t.elapsed() >= Duration::from_millis(400),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn no_gate_unless_asked() {
        assert!(Gate::new("a", GateConfig::default()).is_none());
        assert!(
            Gate::new(
                "a",
                GateConfig {
                    adaptive: true,
                    ..Default::default()
                }
            )
            .is_some()
        );
    }
}
