//! `[limits]`: token buckets (`governor`) for object jobs started and
//! source bytes read per second by this agent. Each bucket holds one
//! second's worth, so over a window of `t` seconds at most `t + 1`
//! seconds' worth gets through.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::LimitsConfig;

/// Bytes per token of the byte bucket.
const BYTE_UNIT: u64 = 1024;

/// The agent's rate limits; both unlimited by default.
#[derive(Debug, Default)]
pub struct Throttle {
    objects: Option<DefaultDirectRateLimiter>,
    /// The byte bucket (KiB tokens) and how many tokens it holds.
    bytes: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
}

impl Throttle {
    /// The buckets `cfg` asks for.
    pub fn new(cfg: &LimitsConfig) -> Self {
        let objects = cfg
            .objects_per_sec
            .and_then(NonZeroU32::new)
            .map(|n| RateLimiter::direct(Quota::per_second(n)));
        let bytes = cfg.bytes_per_sec.and_then(|b| {
            let per_sec = u32::try_from(b / BYTE_UNIT).unwrap_or(u32::MAX);
            let n = NonZeroU32::new(per_sec)?;
            Some((RateLimiter::direct(Quota::per_second(n)), n))
        });
        Self { objects, bytes }
    }

    /// Waits until one more object job may start.
    pub async fn object(&self) {
        if let Some(l) = &self.objects {
            l.until_ready().await;
        }
    }

    /// Waits until `n` more bytes may be read, a bucketful at a time.
    pub async fn bytes(&self, n: u64) {
        let Some((l, capacity)) = &self.bytes else {
            return;
        };
        let mut units = n.div_ceil(BYTE_UNIT);
        while units > 0 {
            let take = units.min(u64::from(capacity.get()));
            let Some(take_nz) = u32::try_from(take).ok().and_then(NonZeroU32::new) else {
                return;
            };
            // `take` never exceeds the bucket, so this cannot fail.
            let _ = l.until_n_ready(take_nz).await;
            units -= take;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn unlimited_by_default_and_a_bucket_holds_one_second() {
        let free = Throttle::new(&LimitsConfig::default());
        let t = Instant::now();
        for _ in 0..1000 {
            free.object().await;
        }
        free.bytes(1 << 30).await;
        assert!(t.elapsed() < Duration::from_millis(200));
        // 50 objects per second: the first 50 pass at once, the next ones
        // wait their turn.
        let limited = Throttle::new(&LimitsConfig {
            objects_per_sec: Some(50),
            bytes_per_sec: Some(1024 * 1024),
        });
        let t = Instant::now();
        for _ in 0..50 {
            limited.object().await;
        }
        assert!(t.elapsed() < Duration::from_millis(200));
        for _ in 0..10 {
            limited.object().await;
        }
        assert!(
            t.elapsed() >= Duration::from_millis(150),
            "{:?}",
            t.elapsed()
        );
        // 1 MiB/s: a 1 MiB bucketful, then 512 KiB more takes about 0.5 s,
        // and a read larger than the bucket is taken in bucketfuls.
        let t = Instant::now();
        limited.bytes(1024 * 1024).await;
        limited.bytes(512 * 1024).await;
        assert!(
            t.elapsed() >= Duration::from_millis(400),
            "{:?}",
            t.elapsed()
        );
    }
}
