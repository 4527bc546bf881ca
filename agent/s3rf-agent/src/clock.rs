//! Wall-clock time as milliseconds since the Unix epoch, the unit of every
//! timestamp s3rf writes to NATS (schedules, pauses, resume records, rate
//! windows) and of JetStream's own message timestamps.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch; 0 for a clock set before it.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// [`now_ms`] as the signed milliseconds JetStream timestamps and resume
/// records compare in.
pub fn now_ms_signed() -> i64 {
    i64::try_from(now_ms()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_2020_and_consistent() {
        // 2020-01-01T00:00:00Z.
        let a = now_ms();
        let b = now_ms_signed();
        assert!(a > 1_577_836_800_000, "{a}");
        assert!(u64::try_from(b).unwrap() >= a);
    }
}
