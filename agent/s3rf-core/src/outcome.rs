//! What a job did ([`Outcome`], and what it counts as in a migration's
//! ledger) and what happens to its message after an attempt: the pure
//! mapping from an error's disposition and the delivery count to ack,
//! delayed nak or dead letter.

use std::time::Duration;

use tracing::info;

use crate::migration::ObjectOutcome;
use crate::plan::SkipReason;

/// What a job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The object was copied.
    Copied {
        /// Which method.
        method: &'static str,
        /// Bytes copied.
        bytes: u64,
    },
    /// Nothing needed doing.
    Skipped {
        /// Why.
        reason: SkipReason,
        /// Object size.
        bytes: u64,
        /// When the identical destination object was last written (ms since
        /// the epoch), if its store said.
        dst_modified_ms: Option<i64>,
    },
    /// Dry run: the object would be copied.
    WouldCopy {
        /// Object size.
        bytes: u64,
    },
    /// The object was deleted (or was already gone).
    Deleted,
    /// Mirror mode: the source still has the object, so it stays.
    Kept,
    /// Dry run: the object would be deleted.
    WouldDelete,
    /// A filter skipped the object.
    Filtered {
        /// Which filter.
        filter: String,
        /// Its reason.
        reason: String,
        /// Object size (0 for deletes).
        bytes: u64,
    },
}

impl Outcome {
    /// Clock difference allowed between the store that dated an object and
    /// the NATS server that dated the job.
    pub const CLOCK_SLACK_MS: i64 = 60_000;

    /// The outcome of a job that an earlier attempt may have done: a
    /// redelivery (`delivered` > 1, the job published at `published_ms`),
    /// or an object a batch handed off after its own attempt, begun at
    /// `attempted_since_ms`. An identical object written since then was
    /// written by that attempt, whose agent died, lost its ack or saw an
    /// error after the store had acted, so it counts as copied, not as
    /// already there. Other outcomes stay as they are.
    #[must_use]
    pub fn redone(
        self,
        delivered: u64,
        published_ms: i64,
        attempted_since_ms: Option<i64>,
    ) -> Self {
        let since = attempted_since_ms.map_or(published_ms, |t| t.min(published_ms));
        let earlier_attempt = delivered > 1 || attempted_since_ms.is_some();
        match self {
            Outcome::Skipped {
                reason: SkipReason::Identical,
                bytes,
                dst_modified_ms: Some(written),
            } if earlier_attempt && written >= since - Self::CLOCK_SLACK_MS => {
                info!(
                    bytes,
                    "counted as copied: an earlier delivery of this job wrote it"
                );
                Outcome::Copied {
                    method: "earlier_delivery",
                    bytes,
                }
            }
            other => other,
        }
    }

    /// The migration ledger's outcome of a result and its bytes. A filter's
    /// skip is `Filtered` for a copy; for a mirror delete it means the
    /// object stays (`Kept`).
    pub fn ledger(&self, side: crate::migration::Side) -> (ObjectOutcome, u64) {
        use crate::migration::Side;
        match self {
            Outcome::Copied { bytes, .. } => (ObjectOutcome::Copied, *bytes),
            Outcome::Skipped { bytes, .. } => (ObjectOutcome::Skipped, *bytes),
            Outcome::WouldCopy { bytes } => (ObjectOutcome::WouldCopy, *bytes),
            Outcome::Deleted => (ObjectOutcome::Deleted, 0),
            Outcome::Kept => (ObjectOutcome::Kept, 0),
            Outcome::WouldDelete => (ObjectOutcome::WouldDelete, 0),
            Outcome::Filtered { bytes, .. } => match side {
                Side::Source => (ObjectOutcome::Filtered, *bytes),
                Side::Destination => (ObjectOutcome::Kept, 0),
            },
        }
    }
}

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

#[cfg(test)]
mod outcome_tests {
    use super::*;
    use crate::migration::Side;

    #[test]
    fn redone_work_counts_as_copied() {
        let published = 1_000_000_000;
        let identical = |written| Outcome::Skipped {
            reason: SkipReason::Identical,
            bytes: 9,
            dst_modified_ms: written,
        };
        let copied = Outcome::Copied {
            method: "earlier_delivery",
            bytes: 9,
        };
        #[rustfmt::skip]
        let table = [
            // Written after the job was published, seen on a redelivery.
            (identical(Some(published + 5_000)), 2, copied.clone()),
            // Within the clock slack (the store's clock runs behind).
            (identical(Some(published - 30_000)), 3, copied),
            // Already there long before the job: skipped.
            (identical(Some(published - 3_600_000)), 2, identical(Some(published - 3_600_000))),
            // The first delivery never redoes anything.
            (identical(Some(published + 5_000)), 1, identical(Some(published + 5_000))),
            (identical(None), 2, identical(None)),
            (Outcome::Skipped { reason: SkipReason::Stale, bytes: 0, dst_modified_ms: Some(published) }, 2,
             Outcome::Skipped { reason: SkipReason::Stale, bytes: 0, dst_modified_ms: Some(published) }),
        ];
        for (outcome, delivered, want) in table {
            assert_eq!(
                outcome.clone().redone(delivered, published, None),
                want,
                "{outcome:?} {delivered}"
            );
        }
        // A batch's hand-off, first delivery: written after the batch's
        // attempt began, before the hand-off was published.
        let handed_off = identical(Some(published - 90_000));
        assert_eq!(
            handed_off
                .clone()
                .redone(1, published, Some(published - 100_000)),
            Outcome::Copied {
                method: "earlier_delivery",
                bytes: 9
            }
        );
        assert_eq!(handed_off.clone().redone(1, published, None), handed_off);
    }

    #[test]
    fn outcomes_map_to_ledger_outcomes() {
        let filtered = Outcome::Filtered {
            filter: "f".to_owned(),
            reason: "r".to_owned(),
            bytes: 9,
        };
        #[rustfmt::skip]
        let table = [
            (Outcome::Copied { method: "put", bytes: 5 }, Side::Source, (ObjectOutcome::Copied, 5)),
            (Outcome::Skipped { reason: SkipReason::Stale, bytes: 6, dst_modified_ms: None }, Side::Source, (ObjectOutcome::Skipped, 6)),
            (Outcome::WouldCopy { bytes: 7 }, Side::Source, (ObjectOutcome::WouldCopy, 7)),
            (filtered.clone(), Side::Source, (ObjectOutcome::Filtered, 9)),
            // A filter holding back a mirror delete keeps the object.
            (filtered, Side::Destination, (ObjectOutcome::Kept, 0)),
            (Outcome::Deleted, Side::Destination, (ObjectOutcome::Deleted, 0)),
            (Outcome::Kept, Side::Destination, (ObjectOutcome::Kept, 0)),
            (Outcome::WouldDelete, Side::Destination, (ObjectOutcome::WouldDelete, 0)),
        ];
        for (outcome, side, want) in table {
            assert_eq!(outcome.ledger(side), want, "{outcome:?} {side:?}");
        }
    }
}
