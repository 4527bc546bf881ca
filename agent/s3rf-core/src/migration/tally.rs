//! The fold of ledger events into a migration's [`Tally`] (per bucket and
//! in all), exact under redelivery and any number of agents.

use super::*;

/// Per-bucket progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketTally {
    /// Destination bucket.
    pub dst_bucket: String,
    /// Settled state, once known.
    pub state: Option<BucketState>,
    /// Failure reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Source pages recorded.
    pub source_pages: u64,
    /// Source pages that recorded pages announced: a next page, and the first
    /// page of each listing a split page started. Every listing is done when
    /// `source_pages == 1 + source_followups`. (No serde default: a tally
    /// stored by an older agent fails to parse and is folded again.)
    pub source_followups: u64,
    /// Destination (mirror) pages recorded.
    pub destination_pages: u64,
    /// As `source_followups`, for the destination listing.
    pub destination_followups: u64,
    /// Source objects listed.
    pub objects: u64,
}

/// A migration's counters, folded from its ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Highest ledger sequence folded in.
    pub applied_seq: u64,
    /// The bucket plan was recorded.
    pub planned: bool,
    /// Mirror mode.
    pub mirror: bool,
    /// Dry run.
    pub dry_run: bool,
    /// Versioned: `listed` counts keys; `copied`, `skipped` (already at
    /// the destination), `filtered` and `would_copy` count versions.
    #[serde(default)]
    pub versions: bool,
    /// Per source bucket.
    pub buckets: BTreeMap<String, BucketTally>,
    /// Source objects listed.
    pub listed: u64,
    /// Their bytes.
    pub listed_bytes: u64,
    /// Objects copied.
    pub copied: u64,
    /// Bytes copied.
    pub copied_bytes: u64,
    /// Objects already identical.
    pub skipped: u64,
    /// Their bytes.
    pub skipped_bytes: u64,
    /// Objects a filter skipped.
    #[serde(default)]
    pub filtered: u64,
    /// Their bytes.
    #[serde(default)]
    pub filtered_bytes: u64,
    /// Dry run: objects that would be copied.
    pub would_copy: u64,
    /// Their bytes.
    pub would_copy_bytes: u64,
    /// Versioned migration: delete markers written.
    #[serde(default)]
    pub markers: u64,
    /// Dry run: delete markers that would be written.
    #[serde(default)]
    pub would_mark: u64,
    /// Versioned migration: versions deleted at the source after listing.
    #[serde(default)]
    pub vanished: u64,
    /// Jobs dead-lettered (copies and deletes).
    pub dead_lettered: u64,
    /// Destination objects checked in mirror mode.
    pub mirror_listed: u64,
    /// Destination objects deleted.
    pub deleted: u64,
    /// Dry run: objects that would be deleted.
    pub would_delete: u64,
    /// Destination objects kept (still at the source).
    pub kept: u64,
    /// Source-side outcomes recorded.
    pub source_outcomes: u64,
    /// Destination-side outcomes recorded.
    pub destination_outcomes: u64,
    /// Milliseconds since the epoch of the first event.
    pub first_event_ms: u64,
    /// Milliseconds since the epoch of the latest event.
    pub last_event_ms: u64,
}

impl BucketTally {
    /// Every source page of every listing is recorded.
    pub fn source_listed(&self) -> bool {
        self.source_pages > 0 && self.source_pages == 1 + self.source_followups
    }

    /// Every destination page of every listing is recorded.
    pub fn destination_listed(&self) -> bool {
        self.destination_pages > 0 && self.destination_pages == 1 + self.destination_followups
    }
}

impl Tally {
    /// Folds one event recorded at ledger sequence `seq` and time `at_ms`.
    /// Events at or below the watermark were already folded and are ignored.
    pub fn apply(&mut self, seq: u64, at_ms: u64, event: &LedgerEvent) {
        if seq <= self.applied_seq {
            return;
        }
        self.applied_seq = seq;
        if self.first_event_ms == 0 {
            self.first_event_ms = at_ms;
        }
        self.last_event_ms = self.last_event_ms.max(at_ms);
        match event {
            LedgerEvent::Planned {
                buckets,
                mirror,
                dry_run,
                versions,
            } => {
                self.planned = true;
                self.mirror = *mirror;
                self.dry_run = *dry_run;
                self.versions = *versions;
                for (src, dst) in buckets {
                    self.buckets.entry(src.clone()).or_default().dst_bucket = dst.clone();
                }
            }
            LedgerEvent::Bucket {
                bucket,
                state,
                reason,
            } => {
                let b = self.buckets.entry(bucket.clone()).or_default();
                b.state = Some(*state);
                b.reason = reason.clone();
            }
            LedgerEvent::Page {
                bucket,
                side,
                page: _,
                objects,
                bytes,
                last,
                listings,
            } => {
                let b = self.buckets.entry(bucket.clone()).or_default();
                let followups = u64::from(!*last) + listings;
                match side {
                    Side::Source => {
                        b.objects += objects;
                        b.source_pages += 1;
                        b.source_followups += followups;
                        self.listed += objects;
                        self.listed_bytes += bytes;
                    }
                    Side::Destination => {
                        b.destination_pages += 1;
                        b.destination_followups += followups;
                        self.mirror_listed += objects;
                    }
                }
            }
            LedgerEvent::Batch {
                counts,
                handed_off: _,
            } => {
                self.copied += counts.copied;
                self.copied_bytes += counts.copied_bytes;
                self.skipped += counts.skipped;
                self.skipped_bytes += counts.skipped_bytes;
                self.filtered += counts.filtered;
                self.filtered_bytes += counts.filtered_bytes;
                self.would_copy += counts.would_copy;
                self.would_copy_bytes += counts.would_copy_bytes;
                self.source_outcomes += counts.objects();
            }
            LedgerEvent::Versions {
                counts: c,
                replaces_failure,
            } => {
                if *replaces_failure {
                    self.dead_lettered = self.dead_lettered.saturating_sub(1);
                    self.source_outcomes = self.source_outcomes.saturating_sub(1);
                }
                self.copied += c.copied;
                self.copied_bytes += c.copied_bytes;
                self.skipped += c.present;
                self.skipped_bytes += c.present_bytes;
                self.filtered += c.filtered;
                self.filtered_bytes += c.filtered_bytes;
                self.would_copy += c.would_copy;
                self.would_copy_bytes += c.would_copy_bytes;
                self.markers += c.markers;
                self.would_mark += c.would_mark;
                self.vanished += c.vanished;
                self.source_outcomes += 1;
            }
            LedgerEvent::Object {
                outcome,
                bytes,
                replaces_failure,
            } => {
                if *replaces_failure {
                    self.dead_lettered = self.dead_lettered.saturating_sub(1);
                    if outcome.failure_of_side() == ObjectOutcome::CopyFailed {
                        self.source_outcomes = self.source_outcomes.saturating_sub(1);
                    } else {
                        self.destination_outcomes = self.destination_outcomes.saturating_sub(1);
                    }
                }
                let (count, byte_count, source) = match outcome {
                    ObjectOutcome::Copied => (&mut self.copied, Some(&mut self.copied_bytes), true),
                    ObjectOutcome::Skipped => {
                        (&mut self.skipped, Some(&mut self.skipped_bytes), true)
                    }
                    ObjectOutcome::WouldCopy => {
                        (&mut self.would_copy, Some(&mut self.would_copy_bytes), true)
                    }
                    ObjectOutcome::Filtered => {
                        (&mut self.filtered, Some(&mut self.filtered_bytes), true)
                    }
                    ObjectOutcome::CopyFailed => (&mut self.dead_lettered, None, true),
                    ObjectOutcome::Deleted => (&mut self.deleted, None, false),
                    ObjectOutcome::Kept => (&mut self.kept, None, false),
                    ObjectOutcome::WouldDelete => (&mut self.would_delete, None, false),
                    ObjectOutcome::DeleteFailed => (&mut self.dead_lettered, None, false),
                };
                *count += 1;
                if let Some(b) = byte_count {
                    *b += bytes;
                }
                if source {
                    self.source_outcomes += 1;
                } else {
                    self.destination_outcomes += 1;
                }
            }
        }
    }

    /// Buckets with a settled state.
    pub fn buckets_done(&self) -> usize {
        self.buckets.values().filter(|b| b.state.is_some()).count()
    }

    /// Every selected bucket's listing has finished.
    pub fn listing_finished(&self) -> bool {
        self.planned
            && self.buckets.values().all(|b| match b.state {
                None => false,
                Some(BucketState::Failed) => true,
                Some(BucketState::WouldCreate) => b.source_listed(),
                Some(_) => b.source_listed() && (!self.mirror || b.destination_listed()),
            })
    }

    /// Listing finished and every listed object has an outcome.
    pub fn complete(&self) -> bool {
        self.listing_finished()
            && self.source_outcomes >= self.listed
            && self.destination_outcomes >= self.mirror_listed
    }

    /// Objects listed but without an outcome yet.
    pub fn outstanding(&self) -> u64 {
        (self.listed + self.mirror_listed)
            .saturating_sub(self.source_outcomes + self.destination_outcomes)
    }
}
