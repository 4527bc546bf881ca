//! The WAN profile's network: a TCP proxy on loopback in front of one S3
//! server that delays every byte by half the round-trip time in each
//! direction, caps each direction's bandwidth (shared by all connections to
//! the endpoint, as one link is), and counts the requests that pass.
//!
//! Kernel netem is not available on the benchmark machines, so the proxy
//! models the link itself:
//! - **Latency** is a pipe, not stop-and-wait: each chunk read is stamped
//!   with `read time + one-way delay` and written when that time comes, so
//!   many requests and responses are in flight on a connection at once.
//! - **A new connection costs one round trip** before its first byte moves
//!   (the TCP handshake a real link charges).
//! - **No stall of its own**: it acks every read at once (`quickack`) and
//!   sets `TCP_NODELAY` on both sides, so Nagle and delayed ACKs on its
//!   extra hop add nothing to the link's delay.
//! - **Bandwidth** is a virtual clock per direction: a chunk of `n` bytes
//!   occupies the link for `n / rate` after the previous one, and is
//!   written when its transmission ends.
//!
//! With zero delay and no cap the proxy only forwards, which is how its own
//! overhead is measured (`compare --rtt 0ms`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::requests::{Kind, RequestParser};

/// The link a proxy emulates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Round-trip time added to every exchange (half each way).
    pub rtt: Duration,
    /// Bytes per second in each direction, or unlimited.
    pub bytes_per_sec: Option<f64>,
}

impl Link {
    /// "rtt 20 ms, 1 Gbit/s each way".
    pub fn describe(&self) -> String {
        let bw = match self.bytes_per_sec {
            Some(b) => format!("{} Mbit/s each way", b * 8.0 / 1e6),
            None => "no bandwidth cap".into(),
        };
        format!("rtt {} ms, {bw}", self.rtt.as_secs_f64() * 1e3)
    }
}

/// What passed through a proxy since it started or was last reset.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    /// Requests by [`Kind`] (indexed by `Kind::index`).
    pub requests: [u64; Kind::ALL.len()],
    /// Connections accepted.
    pub connections: u64,
    /// Bytes client to server.
    pub up: u64,
    /// Bytes server to client.
    pub down: u64,
    /// Connections whose requests could not all be parsed (counts are then
    /// a floor).
    pub unparsed: u64,
}

impl Counts {
    /// All requests.
    pub fn total(&self) -> u64 {
        self.requests.iter().sum()
    }

    /// The sum of two endpoints' counts.
    pub fn plus(&self, o: &Counts) -> Counts {
        let mut requests = self.requests;
        for (a, b) in requests.iter_mut().zip(o.requests) {
            *a += b;
        }
        Counts {
            requests,
            connections: self.connections + o.connections,
            up: self.up + o.up,
            down: self.down + o.down,
            unparsed: self.unparsed + o.unparsed,
        }
    }
}

#[derive(Default)]
struct Counters {
    requests: [AtomicU64; Kind::ALL.len()],
    connections: AtomicU64,
    up: AtomicU64,
    down: AtomicU64,
    unparsed: AtomicU64,
}

/// One direction of the link: its bandwidth clock.
struct Pacer {
    bytes_per_sec: f64,
    free_at: Mutex<Instant>,
}

impl Pacer {
    /// When a chunk of `n` bytes, ready at `ready`, has been sent.
    fn sent_at(&self, ready: Instant, n: usize) -> Instant {
        let mut free = self.free_at.lock().unwrap_or_else(|e| e.into_inner());
        let start = (*free).max(ready);
        *free = start + Duration::from_secs_f64(n as f64 / self.bytes_per_sec);
        *free
    }
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The proxy's accept queue: Linux's default `net.core.somaxconn`.
const ACCEPT_BACKLOG: u32 = 4096;

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr, link: Link) -> Result<Proxy> {
        // The kernel's own limit (net.core.somaxconn), as Go and nginx-like
        // front ends use: `TcpListener::bind` listens with std's 128, and a
        // burst of more new connections than that overflows the accept
        // queue, whose dropped SYNs come back only after a 1 s retransmit.
        let socket = tokio::net::TcpSocket::new_v4()
            .context("creating the shaping proxy's listening socket")?;
        socket
            .bind(([127, 0, 0, 1], 0).into())
            .context("binding the shaping proxy to a loopback port")?;
        let listener = socket
            .listen(ACCEPT_BACKLOG)
            .context("listening on the shaping proxy's port")?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let pacers = link.bytes_per_sec.map(|r| {
            let p = || {
                Arc::new(Pacer {
                    bytes_per_sec: r,
                    free_at: Mutex::new(Instant::now()),
                })
            };
            (p(), p())
        });
        let c = counters.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let accepted = Instant::now();
                let c = c.clone();
                let pacers = pacers.clone();
                tokio::spawn(async move {
                    c.connections.fetch_add(1, Ordering::Relaxed);
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    // The handshake's round trip delays the first request.
                    let open = accepted + link.rtt;
                    let (up_pacer, down_pacer) = pacers.unzip();
                    let up = pipe(cr, sw, link, open, up_pacer, c.clone(), true);
                    let down = pipe(sr, cw, link, open, down_pacer, c, false);
                    tokio::join!(up, down);
                });
            }
        });
        Ok(Proxy {
            addr,
            counters,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What passed since the last reset.
    pub fn counts(&self) -> Counts {
        let c = &self.counters;
        let mut requests = [0; Kind::ALL.len()];
        for (r, a) in requests.iter_mut().zip(&c.requests) {
            *r = a.load(Ordering::Relaxed);
        }
        Counts {
            requests,
            connections: c.connections.load(Ordering::Relaxed),
            up: c.up.load(Ordering::Relaxed),
            down: c.down.load(Ordering::Relaxed),
            unparsed: c.unparsed.load(Ordering::Relaxed),
        }
    }

    /// Zeroes the counters (between runs).
    pub fn reset(&self) {
        let c = &self.counters;
        for a in c
            .requests
            .iter()
            .chain([&c.connections, &c.up, &c.down, &c.unparsed])
        {
            a.store(0, Ordering::Relaxed);
        }
    }
}

/// Chunks read ahead of the delay line per connection and direction: with
/// 64 KiB reads, 4 MiB in flight, above a 1 Gbit/s × 10 ms link's 1.25 MB.
const LINE_CHUNKS: usize = 64;
const READ_SIZE: usize = 64 << 10;

/// Forwards one direction: the reader stamps each chunk with its due time,
/// the writer waits for it (and for the bandwidth clock) and writes.
async fn pipe(
    mut r: OwnedReadHalf,
    mut w: OwnedWriteHalf,
    link: Link,
    open: Instant,
    pacer: Option<Arc<Pacer>>,
    counters: Arc<Counters>,
    upstream: bool,
) {
    let one_way = link.rtt / 2;
    let (tx, mut rx) = mpsc::channel::<(Instant, Bytes)>(LINE_CHUNKS);
    let c = counters.clone();
    let reader = async move {
        let mut parser = upstream.then(RequestParser::default);
        let mut buf = BytesMut::with_capacity(READ_SIZE);
        loop {
            buf.reserve(READ_SIZE);
            match r.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    quickack(&r);
                    let chunk = buf.split().freeze();
                    let bytes = if upstream { &c.up } else { &c.down };
                    bytes.fetch_add(n as u64, Ordering::Relaxed);
                    if let Some(p) = parser.as_mut() {
                        let was_lost = p.lost();
                        p.feed(&chunk, &mut |k: Kind| {
                            c.requests[k.index()].fetch_add(1, Ordering::Relaxed);
                        });
                        if p.lost() && !was_lost {
                            c.unparsed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let due = Instant::now().max(open) + one_way;
                    if tx.send((due, chunk)).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            let due = match &pacer {
                Some(p) => p.sent_at(due, chunk.len()),
                None => due,
            };
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            if w.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// Acknowledges what was read at once (Linux turns quick ACKs off again
/// after each read, so this is called after every read), so the proxy's
/// extra TCP hop adds no delay of its own beyond the link's.
///
/// Measured: s3s-fs does not set `TCP_NODELAY`, so its response head and a
/// small body go out as two writes and Nagle holds the body until the head
/// is acked. Without quick ACKs the proxy's delayed ACK (up to 40 ms) held
/// every small GET: at rtt 10 ms the bench's own GETs ran at 777/s against
/// 2,212/s with them (32 at once, 4 KiB objects).
fn quickack(r: &OwnedReadHalf) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    #[allow(unsafe_code)]
    // SAFETY: setsockopt reads `one` (a c_int that outlives the call) on a
    // socket this half keeps open.
    unsafe {
        libc::setsockopt(
            r.as_ref().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            std::ptr::from_ref(&one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Parses `20ms`, `1.5s`, `0`: a duration for `--rtt`.
pub fn parse_rtt(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "ms"), |i| s.split_at(i));
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; try 20ms"))?;
    let secs = match unit {
        "ms" => v / 1e3,
        "us" => v / 1e6,
        "s" => v,
        _ => return Err(format!("{s:?}: unit must be ms, us or s")),
    };
    if !(0.0..=10.0).contains(&secs) {
        return Err(format!("{s:?}: the round trip must be between 0 and 10 s"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `--bandwidth`: bytes per second each way, or no cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bandwidth(pub Option<f64>);

/// Parses `1Gbit`, `100Mbit`, `500kbit`, `off`: bytes per second for
/// `--bandwidth` (bits, as links are sold).
pub fn parse_bandwidth(s: &str) -> Result<Bandwidth, String> {
    let t = s.trim().to_ascii_lowercase();
    if t == "off" || t == "0" || t == "none" {
        return Ok(Bandwidth(None));
    }
    let (num, unit) = t
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((t.as_str(), "bit"), |i| t.split_at(i));
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a bandwidth; try 1Gbit or off"))?;
    let bits = match unit {
        "bit" => v,
        "kbit" => v * 1e3,
        "mbit" => v * 1e6,
        "gbit" => v * 1e9,
        _ => return Err(format!("{s:?}: unit must be bit, kbit, Mbit or Gbit")),
    };
    if bits <= 0.0 {
        return Err(format!("{s:?}: must be more than 0 (or off)"));
    }
    Ok(Bandwidth(Some(bits / 8.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_settings_parse_as_users_write_them() {
        assert_eq!(parse_rtt("20ms"), Ok(Duration::from_millis(20)));
        assert_eq!(parse_rtt("5"), Ok(Duration::from_millis(5)));
        assert_eq!(parse_rtt("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_rtt("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_rtt("20 parsecs").is_err());
        assert!(parse_rtt("-1ms").is_err());
        assert_eq!(parse_bandwidth("1Gbit"), Ok(Bandwidth(Some(125e6))));
        assert_eq!(parse_bandwidth("100Mbit"), Ok(Bandwidth(Some(12.5e6))));
        assert_eq!(parse_bandwidth("off"), Ok(Bandwidth(None)));
        assert!(parse_bandwidth("1GB").is_err());
        assert!(parse_bandwidth("0bit").is_err());
    }

    #[test]
    fn the_bandwidth_clock_queues_chunks_back_to_back() {
        let t0 = Instant::now();
        let p = Pacer {
            bytes_per_sec: 1e6,
            free_at: Mutex::new(t0),
        };
        // Two chunks ready at once: the second waits for the first.
        assert_eq!(p.sent_at(t0, 1000), t0 + Duration::from_millis(1));
        assert_eq!(p.sent_at(t0, 2000), t0 + Duration::from_millis(3));
        // A chunk after an idle gap starts when it is ready.
        let later = t0 + Duration::from_millis(10);
        assert_eq!(p.sent_at(later, 500), later + Duration::from_micros(500));
    }

    /// Through the proxy, an echo exchange takes at least one round trip
    /// (plus one for the new connection's handshake), the bytes arrive
    /// intact, and the request is counted.
    #[tokio::test]
    async fn an_exchange_pays_the_round_trip_and_is_counted() {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = server.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = server.accept().await.unwrap();
            let mut buf = vec![0u8; 1024];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
        });
        let rtt = Duration::from_millis(40);
        let proxy = Proxy::start(
            upstream,
            Link {
                rtt,
                bytes_per_sec: None,
            },
        )
        .await
        .unwrap();
        let mut t = Instant::now();
        let mut c = TcpStream::connect(proxy.addr).await.unwrap();
        let req = b"GET /b/k HTTP/1.1\r\nhost: x\r\n\r\n";
        for round in 0..2 {
            if round > 0 {
                t = Instant::now();
            }
            c.write_all(req).await.unwrap();
            let mut back = vec![0u8; req.len()];
            c.read_exact(&mut back).await.unwrap();
            assert_eq!(back, req);
            let least = if round == 0 { rtt * 2 } else { rtt };
            assert!(t.elapsed() >= least, "round {round}: {:?}", t.elapsed());
        }
        let counts = proxy.counts();
        assert_eq!(counts.requests[Kind::Get.index()], 2);
        assert_eq!((counts.connections, counts.up, counts.down), (1, 60, 60));
        proxy.reset();
        assert_eq!(proxy.counts(), Counts::default());
    }
}
