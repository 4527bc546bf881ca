//! `[limits]` and migration rates: token buckets (`governor`) for object
//! jobs started and source bytes read per second, by this agent (`[limits]`)
//! and by this agent for one migration (its share of the migration's fleet
//! rate, kept in a [`RateBook`] by `fleet.rs`). Each bucket holds one
//! second's worth, so over a window of `t` seconds at most `t + 1` seconds'
//! worth gets through.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::LimitsConfig;
use crate::gate::ByteBucket;
use crate::rate::Share;

/// The agent's rate limits; both unlimited by default.
#[derive(Debug, Default)]
pub struct Throttle {
    objects: Option<DefaultDirectRateLimiter>,
    bytes: Option<ByteBucket>,
}

impl Throttle {
    /// The buckets `cfg` asks for.
    pub fn new(cfg: &LimitsConfig) -> Self {
        let objects = cfg
            .objects_per_sec
            .and_then(NonZeroU32::new)
            .map(|n| RateLimiter::direct(Quota::per_second(n)));
        let bytes = cfg.bytes_per_sec.and_then(ByteBucket::new);
        Self { objects, bytes }
    }

    /// The buckets of one share of a fleet rate (fractional rates).
    pub fn share(share: &Share) -> Self {
        let objects = share.objects_per_sec.and_then(|o| {
            let burst = NonZeroU32::new((o.floor() as u32).max(1))?;
            let quota = Quota::with_period(Duration::from_secs_f64(1.0 / o))?.allow_burst(burst);
            Some(RateLimiter::direct(quota))
        });
        let bytes = share.bytes_per_sec.and_then(ByteBucket::with_rate);
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
        if let Some(b) = &self.bytes {
            b.take(n).await;
        }
    }
}

/// This agent's buckets per migration, replaced by `fleet.rs` whenever a
/// rate or the number of live agents changes.
#[derive(Debug, Clone, Default)]
pub struct RateBook(Arc<RwLock<Shares>>);

/// Each migration's share and the buckets made for it.
type Shares = HashMap<String, (Share, Arc<Throttle>)>;

impl RateBook {
    /// The buckets of migration `id`, if it has a rate.
    pub fn get(&self, id: &str) -> Option<Arc<Throttle>> {
        let book = self.0.read().ok()?;
        book.get(id).map(|(_, t)| t.clone())
    }

    /// Sets every migration's share; a bucket whose share is unchanged is
    /// kept (with what it holds), a migration left out loses its bucket.
    pub fn set(&self, shares: HashMap<String, Share>) {
        let Ok(mut book) = self.0.write() else {
            return;
        };
        book.retain(|id, _| shares.contains_key(id));
        for (id, share) in shares {
            if book.get(&id).is_some_and(|(s, _)| *s == share) {
                continue;
            }
            book.insert(id, (share, Arc::new(Throttle::share(&share))));
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
