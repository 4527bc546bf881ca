//! Per-key ordering of event-driven jobs: an older S3 event never undoes a
//! newer one.
//!
//! The last sequencer claimed for each destination object lives in the KV
//! bucket `<prefix>-sequencers` (entries expire after a TTL). A job claims its
//! key with compare-and-swap before it acts; a job whose sequencer is older than
//! the claimed one is skipped as stale. If a newer event claims the key while a
//! job is still writing, the job reconciles afterwards (see `worker.rs`).

use std::cmp::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;

use crate::events::compare_sequencers;
use crate::jetstream::QueueError;
use crate::migration::entity_hash;
use crate::names::Names;

/// What to do with an event job, given the key's claimed sequencer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours is the newest (or a redelivery of it): act.
    Apply,
    /// A newer event was already claimed: skip.
    Stale,
}

/// The pure rule: apply unless a strictly newer sequencer is stored.
pub fn decide(stored: Option<&str>, mine: &str) -> Claim {
    match stored {
        Some(s) if compare_sequencers(s, mine) == Ordering::Greater => Claim::Stale,
        _ => Claim::Apply,
    }
}

/// The sequencer store.
#[derive(Debug, Clone)]
pub struct Sequencers {
    kv: kv::Store,
}

fn err(e: impl std::fmt::Display, bucket: &str) -> QueueError {
    QueueError::Setup {
        what: "key-value bucket",
        name: bucket.to_owned(),
        detail: e.to_string(),
    }
}

/// The KV key of a destination object.
pub fn key_of(endpoint: &str, bucket: &str, key: &str) -> String {
    format!("k{}", entity_hash(&[endpoint, bucket, key]))
}

impl Sequencers {
    /// Opens (or creates) the bucket with entries kept for `ttl`.
    pub async fn open(
        js: &jetstream::Context,
        names: &Names,
        replicas: usize,
        ttl: Duration,
    ) -> Result<Self, QueueError> {
        let kv = crate::jetstream::open_kv(
            js,
            &names.sequencers_kv(),
            "s3rf: last S3 event sequencer applied per object",
            ttl,
            replicas,
        )
        .await?;
        Ok(Self { kv })
    }

    /// Claims `key` for `mine`, unless a newer sequencer holds it.
    pub async fn claim(&self, key: &str, mine: &str) -> Result<Claim, QueueError> {
        for _ in 0..16 {
            let entry = self.kv.entry(key).await.map_err(|e| err(e, key))?;
            let live = entry.as_ref().filter(|e| e.operation == kv::Operation::Put);
            let stored = live.map(|e| String::from_utf8_lossy(&e.value).into_owned());
            if decide(stored.as_deref(), mine) == Claim::Stale {
                return Ok(Claim::Stale);
            }
            if stored.as_deref() == Some(mine) {
                return Ok(Claim::Apply);
            }
            let value = Bytes::copy_from_slice(mine.as_bytes());
            let written = match &entry {
                None => self.kv.create(key, value).await.is_ok(),
                Some(e) => self.kv.update(key, value, e.revision).await.is_ok(),
            };
            if written {
                return Ok(Claim::Apply);
            }
        }
        Err(err("too much contention on one key; retrying later", key))
    }

    /// Whether a newer sequencer than `mine` has claimed `key` since.
    pub async fn superseded(&self, key: &str, mine: &str) -> Result<bool, QueueError> {
        let entry = self.kv.entry(key).await.map_err(|e| err(e, key))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .is_some_and(|e| {
                compare_sequencers(&String::from_utf8_lossy(&e.value), mine) == Ordering::Greater
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims() {
        assert_eq!(decide(None, "0A"), Claim::Apply);
        assert_eq!(decide(Some("09"), "0A"), Claim::Apply);
        assert_eq!(
            decide(Some("0A"), "0A"),
            Claim::Apply,
            "a redelivery acts again"
        );
        assert_eq!(decide(Some("0B"), "0A"), Claim::Stale);
        assert_eq!(decide(Some("100"), "FF"), Claim::Stale, "padded comparison");
        assert_ne!(key_of("b", "x", "k"), key_of("b", "x", "k2"));
    }
}
