//! What happens to a job message after an attempt: the pure mapping from an
//! error's disposition and the delivery count to ack, delayed nak or dead letter.

use std::time::Duration;

/// What an error says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Transient: try again later (5xx, SlowDown, timeouts, resets).
    Retry,
    /// Permanent: retrying cannot help (403, NoSuchBucket, malformed job).
    DeadLetter,
    /// The agent is shutting down: give the job back at once, not counting it
    /// as a failure of the job.
    Release,
    /// NATS JetStream itself failed (a publish, the ledger): retry, but
    /// slowly enough to outlast a cluster electing a new leader, whatever
    /// `retry_base_delay_ms` says (see [`QUEUE_RETRY_BASE`]).
    QueueDown,
}

/// The first retry delay after a JetStream failure; it doubles per
/// delivery up to [`QUEUE_RETRY_MAX`], so the default 5 deliveries wait
/// out 75 s of NATS trouble before a job is dead-lettered.
pub const QUEUE_RETRY_BASE: Duration = Duration::from_secs(5);
/// The longest wait between two deliveries after JetStream failures.
pub const QUEUE_RETRY_MAX: Duration = Duration::from_secs(60);

/// What to tell JetStream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `-NAK` with this delay.
    Nak(Duration),
    /// Publish to the dead-letter stream, then `+TERM`.
    DeadLetter,
}

/// Retry pacing: `base × 2^(delivered-1)`, capped at `max`.
pub fn retry_delay(delivered: u64, base: Duration, max: Duration) -> Duration {
    let exp = delivered.saturating_sub(1).min(30) as u32;
    base.saturating_mul(2u32.saturating_pow(exp)).min(max)
}

/// Decides the fate of a failed attempt. `delivered` counts this delivery.
pub fn decide(
    disposition: Disposition,
    delivered: u64,
    max_deliver: u64,
    base: Duration,
    max: Duration,
) -> Action {
    match disposition {
        Disposition::DeadLetter => Action::DeadLetter,
        Disposition::Release => Action::Nak(Duration::ZERO),
        Disposition::Retry | Disposition::QueueDown if delivered >= max_deliver => {
            Action::DeadLetter
        }
        Disposition::Retry => Action::Nak(retry_delay(delivered, base, max)),
        Disposition::QueueDown => Action::Nak(retry_delay(
            delivered,
            base.max(QUEUE_RETRY_BASE),
            max.max(QUEUE_RETRY_MAX),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_table() {
        let s = Duration::from_secs;
        #[rustfmt::skip]
        let table = [
            (Disposition::Retry, 1, Action::Nak(s(1))),
            (Disposition::Retry, 2, Action::Nak(s(2))),
            (Disposition::Retry, 3, Action::Nak(s(4))),
            (Disposition::Retry, 4, Action::Nak(s(8))),
            (Disposition::Retry, 5, Action::DeadLetter),
            (Disposition::Retry, 9, Action::DeadLetter),
            (Disposition::DeadLetter, 1, Action::DeadLetter),
            (Disposition::Release, 1, Action::Nak(Duration::ZERO)),
            (Disposition::Release, 5, Action::Nak(Duration::ZERO)),
            // JetStream itself failed: slow enough to outlast an election.
            (Disposition::QueueDown, 1, Action::Nak(s(5))),
            (Disposition::QueueDown, 2, Action::Nak(s(10))),
            (Disposition::QueueDown, 4, Action::Nak(s(40))),
            (Disposition::QueueDown, 5, Action::DeadLetter),
        ];
        for (disposition, delivered, want) in table {
            let got = decide(disposition, delivered, 5, s(1), s(60));
            assert_eq!(got, want, "{disposition:?} at delivery {delivered}");
        }
    }

    #[test]
    fn delay_is_capped() {
        let d = retry_delay(40, Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(d, Duration::from_secs(60));
        assert_eq!(
            retry_delay(0, Duration::from_millis(500), Duration::from_secs(60)),
            Duration::from_millis(500)
        );
    }
}
