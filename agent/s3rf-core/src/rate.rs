//! Fleet-wide rates (pure): a migration's `rate` is shared by every live
//! agent, each taking `1/N` of it, where N is the number of agents whose
//! heartbeat is fresh (`fleet.rs` in the agent counts them).
//!
//! Error bound: between two counts (every few seconds) the fleet can run
//! over the rate by one share per agent that joined and was not yet
//! counted by the others, and under it by one share per agent that died
//! and is still counted (until its heartbeat expires) or that has none of
//! the migration's jobs. With a steady fleet that shares the work, the
//! fleet rate is the rate.

use s3rf_wire::Rate;

/// The smallest byte rate, per agent (token buckets count KiB).
pub const MIN_BYTES_PER_SEC: u64 = 1024;

/// Why a rate is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    /// A zero rate.
    #[error("{0} must be at least 1; leave it out for no limit")]
    Zero(&'static str),
    /// Bytes below the bucket's unit.
    #[error("bytes_per_sec must be at least {MIN_BYTES_PER_SEC}; leave it out for no limit")]
    TooFewBytes,
}

/// Checks a rate from a job or the command line.
pub fn validate(rate: &Rate) -> Result<(), RateError> {
    if rate.objects_per_sec == Some(0) {
        return Err(RateError::Zero("objects_per_sec"));
    }
    if rate.bytes_per_sec.is_some_and(|b| b < MIN_BYTES_PER_SEC) {
        return Err(RateError::TooFewBytes);
    }
    Ok(())
}

/// One agent's share of a fleet rate, per second (fractions allowed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    /// Object jobs per second.
    pub objects_per_sec: Option<f64>,
    /// Bytes per second, at least [`MIN_BYTES_PER_SEC`].
    pub bytes_per_sec: Option<f64>,
}

/// `rate` split among `agents` (counted as at least 1).
pub fn share(rate: &Rate, agents: usize) -> Share {
    let n = agents.max(1) as f64;
    Share {
        objects_per_sec: rate.objects_per_sec.map(|o| f64::from(o) / n),
        bytes_per_sec: rate
            .bytes_per_sec
            .map(|b| (b as f64 / n).max(MIN_BYTES_PER_SEC as f64)),
    }
}

/// `rate` in words, for the CLI.
pub fn describe(rate: &Rate) -> String {
    let mut parts = Vec::new();
    if let Some(o) = rate.objects_per_sec {
        parts.push(format!("{o} objects/s"));
    }
    if let Some(b) = rate.bytes_per_sec {
        parts.push(format!("{b} bytes/s"));
    }
    if parts.is_empty() {
        "unlimited".to_owned()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_split_the_rate_and_keep_a_floor() {
        let r = Rate {
            bytes_per_sec: Some(10 * 1024),
            objects_per_sec: Some(20),
        };
        let s = share(&r, 3);
        assert!((s.objects_per_sec.unwrap() - 20.0 / 3.0).abs() < 1e-9);
        assert!((s.bytes_per_sec.unwrap() - 10.0 * 1024.0 / 3.0).abs() < 1e-6);
        assert_eq!(share(&r, 0), share(&r, 1), "no count yet: all of it");
        let tiny = share(&r, 100);
        assert_eq!(tiny.bytes_per_sec, Some(1024.0));
        assert_eq!(share(&Rate::default(), 2).objects_per_sec, None);
    }

    #[test]
    fn zero_and_tiny_rates_are_refused() {
        assert!(validate(&Rate::default()).is_ok());
        assert_eq!(
            validate(&Rate {
                objects_per_sec: Some(0),
                ..Rate::default()
            }),
            Err(RateError::Zero("objects_per_sec"))
        );
        assert_eq!(
            validate(&Rate {
                bytes_per_sec: Some(1000),
                ..Rate::default()
            }),
            Err(RateError::TooFewBytes)
        );
        assert_eq!(
            describe(&Rate {
                bytes_per_sec: Some(2048),
                objects_per_sec: Some(5)
            }),
            "5 objects/s, 2048 bytes/s"
        );
    }
}
