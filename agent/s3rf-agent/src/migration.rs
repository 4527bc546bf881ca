//! Migration planning and accounting, all pure: bucket selection, ids, the
//! ledger events a migration records, and the fold that turns them into a
//! [`Tally`].
//!
//! Every event is recorded at most once per entity (bucket, page, object) in
//! the ledger stream (see `ledger.rs`), and the tally is a fold over those
//! events with a sequence watermark, so counts stay exact under redelivery and
//! with any number of agents.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};

use globset::{Glob, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a migration spec is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrationError {
    #[error("invalid migration id {0:?}: use 1-64 letters, digits, '-' or '_'")]
    BadId(String),
    #[error("invalid exclude_buckets pattern {pattern:?}: {detail}")]
    BadPattern { pattern: String, detail: String },
    #[error("bucket_map maps {src} to {dst:?}, which is not a bucket name")]
    BadMapping { src: String, dst: String },
}

/// Checks a user-given migration id (it becomes a subject token and KV key).
pub fn validate_id(id: &str) -> Result<(), MigrationError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(MigrationError::BadId(id.to_owned()))
    }
}

/// A fresh migration id such as `m-20261123-170301-3f9a1c`.
pub fn generate_id(now: std::time::SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    let digits: String = stamp
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect();
    let (date, time) = digits.split_at(digits.len().min(8));
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("m-{date}-{time}-{:06x}", random & 0xff_ffff)
}

/// The bucket pairs a migration covers, in name order.
pub fn select_buckets(
    available: &[String],
    requested: Option<&[String]>,
    exclude: &[String],
    bucket_map: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, MigrationError> {
    let mut set = GlobSetBuilder::new();
    for pattern in exclude {
        let glob = Glob::new(pattern).map_err(|e| MigrationError::BadPattern {
            pattern: pattern.clone(),
            detail: e.to_string(),
        })?;
        set.add(glob);
    }
    let excluded = set.build().map_err(|e| MigrationError::BadPattern {
        pattern: exclude.join(","),
        detail: e.to_string(),
    })?;
    let mut names: Vec<String> = match requested {
        Some(r) => r.to_vec(),
        None => available.to_vec(),
    };
    names.sort();
    names.dedup();
    let mut pairs = Vec::new();
    for name in names {
        if excluded.is_match(&name) {
            continue;
        }
        let dst = bucket_map
            .get(&name)
            .cloned()
            .unwrap_or_else(|| name.clone());
        if dst.is_empty() || dst.contains('/') {
            return Err(MigrationError::BadMapping { src: name, dst });
        }
        pairs.push((name, dst));
    }
    Ok(pairs)
}

/// A stable 128-bit hex id for ledger entities and message ids; keys never go
/// into subjects raw.
pub fn entity_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Which listing a page or object belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Objects to copy.
    Source,
    /// Destination objects checked for mirror deletion.
    Destination,
}

impl Side {
    fn letter(self) -> &'static str {
        match self {
            Side::Source => "s",
            Side::Destination => "d",
        }
    }
}

/// Ledger entity of a bucket.
pub fn bucket_entity(bucket: &str) -> String {
    format!("b-{}", entity_hash(&["bucket", bucket]))
}

/// Ledger entity of a listing page: of the bucket's first listing
/// (`split_prefix` `None`) or of the split listing of one prefix.
pub fn page_entity(bucket: &str, side: Side, split_prefix: Option<&str>, page: u64) -> String {
    let listing = match split_prefix {
        None => entity_hash(&["bucket", bucket]),
        Some(p) => entity_hash(&["bucket", bucket, p]),
    };
    format!("p-{listing}-{}{page}", side.letter())
}

/// Ledger entity of an object of a listing side.
pub fn object_entity(bucket: &str, side: Side, key: &str) -> String {
    format!("o-{}", entity_hash(&[side.letter(), bucket, key]))
}

/// Ledger entity of a batch: the keys it carries, in order.
pub fn batch_entity<'a>(bucket: &'a str, keys: impl IntoIterator<Item = &'a str>) -> String {
    let mut parts = vec!["batch", bucket];
    parts.extend(keys);
    format!("x-{}", entity_hash(&parts))
}

/// `Nats-Msg-Id` of the copy job of one listed object (published by a
/// listing, or handed off by a batch): the same object and ETag, the same
/// id, so JetStream drops a second publish within its duplicate window.
pub fn copy_msg_id(migration: &str, bucket: &str, key: &str, etag: Option<&str>) -> String {
    let entity = object_entity(bucket, Side::Source, key);
    format!("{migration}:copy:{entity}:{}", etag.unwrap_or(""))
}

/// How a listing page's source objects are published: every object of at
/// most `max_size` bytes goes into a batch, and the batches are as even as
/// possible, with at most `max_per_batch` objects and at least enough of them
/// that `concurrency` agents' slots can work on one page at once. Returns the
/// indexes of the objects published alone and the batches' index lists, in
/// listing order. `max_per_batch` below 2 turns batching off.
pub fn plan_batches(
    sizes: &[u64],
    max_size: u64,
    max_per_batch: usize,
    concurrency: usize,
) -> (Vec<usize>, Vec<Vec<usize>>) {
    if max_per_batch < 2 {
        return ((0..sizes.len()).collect(), Vec::new());
    }
    let (small, alone): (Vec<usize>, Vec<usize>) =
        (0..sizes.len()).partition(|&i| sizes[i] <= max_size);
    if small.len() < 2 {
        let mut alone = alone;
        alone.extend(small);
        alone.sort_unstable();
        return (alone, Vec::new());
    }
    let per = small
        .len()
        .div_ceil(concurrency.max(1))
        .clamp(1, max_per_batch);
    let batches = small.len().div_ceil(per);
    // Even sizes: the first `extra` batches get one object more.
    let (base, extra) = (small.len() / batches, small.len() % batches);
    let mut out = Vec::with_capacity(batches);
    let mut rest = small.as_slice();
    for b in 0..batches {
        let n = base + usize::from(b < extra);
        let (head, tail) = rest.split_at(n);
        out.push(head.to_vec());
        rest = tail;
    }
    // A batch of one is just a copy job.
    let mut alone = alone;
    out.retain(|b| {
        if b.len() == 1 {
            alone.push(b[0]);
            false
        } else {
            true
        }
    });
    alone.sort_unstable();
    (alone, out)
}

/// What happened to a destination bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BucketState {
    /// s3rf created it.
    Created,
    /// It already existed and is ours.
    Existed,
    /// Dry run: it would be created.
    WouldCreate,
    /// Dry run: it exists.
    WouldUse,
    /// It cannot be used (owned by someone else, access denied, ...).
    Failed,
}

/// The final outcome of one object of a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectOutcome {
    /// Copied.
    Copied,
    /// Already identical at the destination.
    Skipped,
    /// Dry run: would be copied.
    WouldCopy,
    /// A filter skipped it.
    Filtered,
    /// The copy was dead-lettered.
    CopyFailed,
    /// Mirror mode: deleted at the destination.
    Deleted,
    /// Mirror mode: still exists at the source, kept.
    Kept,
    /// Dry run: would be deleted.
    WouldDelete,
    /// The delete was dead-lettered.
    DeleteFailed,
}

impl ObjectOutcome {
    /// Whether this is a dead letter.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            ObjectOutcome::CopyFailed | ObjectOutcome::DeleteFailed
        )
    }

    /// The failure outcome of the same side.
    pub fn failure_of_side(self) -> ObjectOutcome {
        match self {
            ObjectOutcome::Copied
            | ObjectOutcome::Skipped
            | ObjectOutcome::WouldCopy
            | ObjectOutcome::Filtered
            | ObjectOutcome::CopyFailed => ObjectOutcome::CopyFailed,
            _ => ObjectOutcome::DeleteFailed,
        }
    }

    /// Ledger event name.
    pub fn event(self) -> &'static str {
        match self {
            ObjectOutcome::Copied => "copied",
            ObjectOutcome::Skipped => "skipped",
            ObjectOutcome::WouldCopy => "would_copy",
            ObjectOutcome::Filtered => "filtered",
            ObjectOutcome::CopyFailed => "copy_failed",
            ObjectOutcome::Deleted => "deleted",
            ObjectOutcome::Kept => "kept",
            ObjectOutcome::WouldDelete => "would_delete",
            ObjectOutcome::DeleteFailed => "delete_failed",
        }
    }
}

/// Ledger event name (last subject token) of a batch's event.
pub const BATCH_EVENT: &str = "batch";

/// One ledger event; recorded at most once per entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LedgerEvent {
    /// The migration's bucket selection.
    Planned {
        /// (source, destination) bucket pairs.
        buckets: Vec<(String, String)>,
        /// Mirror mode.
        mirror: bool,
        /// Dry run.
        dry_run: bool,
    },
    /// A destination bucket was settled.
    Bucket {
        /// Source bucket.
        bucket: String,
        /// What happened.
        state: BucketState,
        /// Why, when it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A listing page was listed and its jobs published.
    Page {
        /// Source bucket of the pair.
        bucket: String,
        /// Which side.
        side: Side,
        /// Page number, from 0.
        page: u64,
        /// Objects on the page.
        objects: u64,
        /// Their bytes.
        bytes: u64,
        /// No page follows.
        last: bool,
        /// Listings this page started, one per common prefix (split listing).
        #[serde(default, skip_serializing_if = "is_zero")]
        listings: u64,
    },
    /// A batch's objects reached their outcomes, except those it handed
    /// off as copy jobs of their own (each of which records an `Object`).
    Batch {
        /// Outcomes of the objects the batch finished.
        #[serde(flatten)]
        counts: BatchCounts,
        /// Keys handed off as copy jobs.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        handed_off: Vec<String>,
    },
    /// One object reached its final outcome.
    Object {
        /// The outcome.
        outcome: ObjectOutcome,
        /// Bytes involved.
        bytes: u64,
        /// This success replaces a recorded failure (a dead letter retried).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        replaces_failure: bool,
    },
}

impl LedgerEvent {
    /// Event name used as the last subject token.
    pub fn name(&self) -> &'static str {
        match self {
            LedgerEvent::Planned { .. } => "planned",
            LedgerEvent::Bucket { .. } => "bucket",
            LedgerEvent::Page { .. } => "listed",
            LedgerEvent::Batch { .. } => BATCH_EVENT,
            LedgerEvent::Object { outcome, .. } => outcome.event(),
        }
    }
}

/// Outcomes of a batch's objects, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchCounts {
    /// Objects copied.
    #[serde(skip_serializing_if = "is_zero")]
    pub copied: u64,
    /// Their bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub copied_bytes: u64,
    /// Objects already identical.
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped: u64,
    /// Their bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped_bytes: u64,
    /// Objects a filter skipped.
    #[serde(skip_serializing_if = "is_zero")]
    pub filtered: u64,
    /// Their bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub filtered_bytes: u64,
    /// Dry run: objects that would be copied.
    #[serde(skip_serializing_if = "is_zero")]
    pub would_copy: u64,
    /// Their bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub would_copy_bytes: u64,
}

impl BatchCounts {
    /// Counts one object's outcome (a copy-side outcome other than a failure).
    pub fn add(&mut self, outcome: ObjectOutcome, bytes: u64) {
        let (n, b) = match outcome {
            ObjectOutcome::Copied => (&mut self.copied, &mut self.copied_bytes),
            ObjectOutcome::Skipped => (&mut self.skipped, &mut self.skipped_bytes),
            ObjectOutcome::Filtered => (&mut self.filtered, &mut self.filtered_bytes),
            ObjectOutcome::WouldCopy => (&mut self.would_copy, &mut self.would_copy_bytes),
            _ => return,
        };
        *n += 1;
        *b += bytes;
    }

    /// Objects counted.
    pub fn objects(&self) -> u64 {
        self.copied + self.skipped + self.filtered + self.would_copy
    }
}

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
            } => {
                self.planned = true;
                self.mirror = *mirror;
                self.dry_run = *dry_run;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    type Row<'a> = (Option<Vec<String>>, Vec<String>, Vec<(&'a str, &'a str)>);

    #[test]
    fn bucket_selection_table() {
        let all = s(&["x", "y", "tmp-1", "tmp-2", "logs"]);
        let map: BTreeMap<String, String> = [("x".to_owned(), "x-new".to_owned())].into();
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            (None, vec![], vec![("logs", "logs"), ("tmp-1", "tmp-1"), ("tmp-2", "tmp-2"), ("x", "x-new"), ("y", "y")]),
            (None, s(&["tmp-*"]), vec![("logs", "logs"), ("x", "x-new"), ("y", "y")]),
            (Some(s(&["y", "x", "y"])), vec![], vec![("x", "x-new"), ("y", "y")]),
            (Some(s(&["tmp-1"])), s(&["tmp-?"]), vec![]),
        ];
        for (requested, exclude, want) in table {
            let got = select_buckets(&all, requested.as_deref(), &exclude, &map).unwrap();
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect();
            assert_eq!(got, want, "{requested:?} {exclude:?}");
        }
        assert!(select_buckets(&all, None, &s(&["[x"]), &map).is_err());
    }

    #[test]
    fn ids() {
        assert!(validate_id("m1").is_ok());
        assert!(validate_id("m.1").is_err());
        assert!(validate_id("").is_err());
        let id = generate_id(std::time::SystemTime::UNIX_EPOCH);
        assert!(id.starts_with("m-19700101-000000-"), "{id}");
        assert!(validate_id(&id).is_ok());
        assert_ne!(entity_hash(&["a", "bc"]), entity_hash(&["ab", "c"]));
        assert_eq!(entity_hash(&["a"]).len(), 32);
        assert_ne!(
            object_entity("b", Side::Source, "k"),
            object_entity("b", Side::Destination, "k")
        );
    }

    fn planned(buckets: &[(&str, &str)], mirror: bool) -> LedgerEvent {
        LedgerEvent::Planned {
            buckets: buckets
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
            mirror,
            dry_run: false,
        }
    }

    fn page(bucket: &str, side: Side, page: u64, objects: u64, last: bool) -> LedgerEvent {
        LedgerEvent::Page {
            bucket: bucket.to_owned(),
            side,
            page,
            objects,
            bytes: objects * 10,
            last,
            listings: 0,
        }
    }

    fn obj(outcome: ObjectOutcome) -> LedgerEvent {
        LedgerEvent::Object {
            outcome,
            bytes: 10,
            replaces_failure: false,
        }
    }

    fn bucket(b: &str, state: BucketState) -> LedgerEvent {
        LedgerEvent::Bucket {
            bucket: b.to_owned(),
            state,
            reason: None,
        }
    }

    #[test]
    fn fold_reaches_complete_exactly() {
        let events = [
            planned(&[("x", "x"), ("y", "y2")], false),
            bucket("x", BucketState::Created),
            page("x", Side::Source, 0, 2, false),
            obj(ObjectOutcome::Copied),
            bucket("y", BucketState::Existed),
            page("y", Side::Source, 0, 1, true),
            obj(ObjectOutcome::Skipped),
            page("x", Side::Source, 1, 1, true),
            obj(ObjectOutcome::CopyFailed),
            obj(ObjectOutcome::Copied),
        ];
        let mut t = Tally::default();
        for (i, e) in events.iter().enumerate() {
            assert!(!t.complete(), "complete too early at event {i}");
            t.apply(i as u64 + 1, 1000 + i as u64, e);
        }
        assert!(t.complete(), "{t:?}");
        assert_eq!(
            (t.listed, t.copied, t.skipped, t.dead_lettered),
            (4, 2, 1, 1)
        );
        assert_eq!(t.copied_bytes, 20);
        assert_eq!(t.buckets["y"].dst_bucket, "y2");
        assert_eq!((t.first_event_ms, t.last_event_ms), (1000, 1009));

        // Re-folding events at or below the watermark changes nothing.
        let before = t.clone();
        for (i, e) in events.iter().enumerate() {
            t.apply(i as u64 + 1, 0, e);
        }
        assert_eq!(t, before);
    }

    #[test]
    fn mirror_mode_waits_for_the_destination_listing() {
        let mut t = Tally::default();
        let events = [
            planned(&[("x", "x")], true),
            bucket("x", BucketState::Existed),
            page("x", Side::Source, 0, 0, true),
            page("x", Side::Destination, 0, 1, true),
        ];
        for (i, e) in events.iter().enumerate() {
            t.apply(i as u64 + 1, 0, e);
        }
        assert!(t.listing_finished());
        assert!(!t.complete());
        t.apply(10, 0, &obj(ObjectOutcome::Deleted));
        assert!(t.complete());
        assert_eq!(t.deleted, 1);
    }

    #[test]
    fn an_announced_page_keeps_the_listing_open() {
        // A page is recorded before the jobs of the pages it announces are
        // published (control.rs), so a page never precedes its announcer.
        let mut t = Tally::default();
        t.apply(1, 0, &planned(&[("x", "x")], false));
        t.apply(2, 0, &bucket("x", BucketState::Created));
        t.apply(3, 0, &page("x", Side::Source, 0, 1, false));
        t.apply(4, 0, &obj(ObjectOutcome::Copied));
        assert!(!t.listing_finished());
        t.apply(5, 0, &page("x", Side::Source, 1, 1, false));
        t.apply(6, 0, &obj(ObjectOutcome::Copied));
        assert!(!t.listing_finished());
        assert!(!t.complete());
        t.apply(7, 0, &page("x", Side::Source, 2, 1, true));
        assert!(t.listing_finished());
        assert!(!t.complete());
        t.apply(8, 0, &obj(ObjectOutcome::Skipped));
        assert!(t.complete());
    }

    #[test]
    fn split_listings_finish_when_every_announced_page_is_recorded() {
        let split = |page, objects, last, listings| LedgerEvent::Page {
            bucket: "x".to_owned(),
            side: Side::Source,
            page,
            objects,
            bytes: objects * 10,
            last,
            listings,
        };
        let mut t = Tally::default();
        t.apply(1, 0, &planned(&[("x", "x")], false));
        t.apply(2, 0, &bucket("x", BucketState::Created));
        // The root listing: page 0 has 2 prefixes and a next page; page 1
        // (recorded after the listings page 0 started) has one more prefix.
        t.apply(3, 0, &split(0, 1, false, 2));
        // The second prefix's single page comes before the first prefix's.
        t.apply(4, 0, &split(0, 2, true, 0));
        // The first prefix's listing has two pages.
        t.apply(5, 0, &split(0, 3, false, 0));
        t.apply(6, 0, &split(1, 3, true, 0));
        assert!(!t.listing_finished(), "root page 1 is still missing: {t:?}");
        t.apply(7, 0, &split(1, 0, true, 1));
        assert!(!t.listing_finished(), "the third prefix is still missing");
        t.apply(8, 0, &split(0, 1, true, 0));
        assert!(t.listing_finished(), "{t:?}");
        assert_eq!((t.listed, t.buckets["x"].source_pages), (10, 6));
        for i in 0..9 {
            assert!(!t.complete());
            t.apply(10 + i, 0, &obj(ObjectOutcome::Copied));
        }
        assert!(!t.complete());
        t.apply(20, 0, &obj(ObjectOutcome::Copied));
        assert!(t.complete());
    }

    #[test]
    fn a_tally_stored_before_split_listings_is_folded_again() {
        let old = r#"{"dst_bucket":"x","state":"created","source_pages":2,"source_last":1,"destination_pages":0,"destination_last":null,"objects":3}"#;
        assert!(serde_json::from_str::<BucketTally>(old).is_err());
    }

    #[test]
    fn a_retried_dead_letter_replaces_its_failure() {
        let mut t = Tally::default();
        t.apply(1, 0, &planned(&[("x", "x")], false));
        t.apply(2, 0, &bucket("x", BucketState::Created));
        t.apply(3, 0, &page("x", Side::Source, 0, 1, true));
        t.apply(4, 0, &obj(ObjectOutcome::CopyFailed));
        assert!(t.complete());
        assert_eq!(t.dead_lettered, 1);
        let retried = LedgerEvent::Object {
            outcome: ObjectOutcome::Copied,
            bytes: 10,
            replaces_failure: true,
        };
        t.apply(5, 0, &retried);
        assert!(t.complete());
        assert_eq!((t.dead_lettered, t.copied, t.source_outcomes), (0, 1, 1));
    }

    #[test]
    fn a_batch_counts_its_objects_and_its_hand_offs_count_their_own() {
        let mut counts = BatchCounts::default();
        counts.add(ObjectOutcome::Copied, 4);
        counts.add(ObjectOutcome::Copied, 4);
        counts.add(ObjectOutcome::Skipped, 4);
        counts.add(ObjectOutcome::CopyFailed, 4); // not a batch outcome: ignored
        assert_eq!(counts.objects(), 3);
        let batch = LedgerEvent::Batch {
            counts,
            handed_off: vec!["k4".to_owned()],
        };
        // The stored form round-trips (the hand-off list is read back on redelivery).
        let text = serde_json::to_string(&batch).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"event":"batch","copied":2,"copied_bytes":8,"skipped":1,"skipped_bytes":4,"handed_off":["k4"]}"#
        );
        assert_eq!(
            serde_json::from_str::<LedgerEvent>(&text).ok(),
            Some(batch.clone())
        );
        let mut t = Tally::default();
        t.apply(1, 0, &planned(&[("x", "x")], false));
        t.apply(2, 0, &bucket("x", BucketState::Created));
        t.apply(3, 0, &page("x", Side::Source, 0, 4, true));
        t.apply(4, 0, &batch);
        assert!(!t.complete(), "the handed-off object is outstanding");
        assert_eq!(t.outstanding(), 1);
        t.apply(5, 0, &obj(ObjectOutcome::CopyFailed));
        assert!(t.complete());
        assert_eq!(
            (t.copied, t.copied_bytes, t.skipped, t.dead_lettered),
            (2, 8, 1, 1)
        );
    }

    #[test]
    fn batch_plan_table() {
        // (sizes, max size, max per batch, concurrency, alone, batches)
        type Row = (Vec<u64>, u64, usize, usize, Vec<usize>, Vec<Vec<usize>>);
        const K: u64 = 1024;
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            // Off: everything alone.
            (vec![1, 1, 1], K, 1, 4, vec![0, 1, 2], vec![]),
            // One small object is not a batch.
            (vec![1, 2 * K], K, 100, 4, vec![0, 1], vec![]),
            // Large objects stay alone, small ones batch around them.
            (vec![1, 2 * K, 1, 1, 3 * K, 1], K, 100, 1, vec![1, 4], vec![vec![0, 2, 3, 5]]),
            // Enough batches for the agent's slots: 10 objects, 4 slots -> 3, 3, 2, 2.
            (vec![1; 10], K, 100, 4, vec![], vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7], vec![8, 9]]),
            // At most max_per_batch each, sizes even.
            (vec![1; 7], K, 3, 1, vec![], vec![vec![0, 1, 2], vec![3, 4], vec![5, 6]]),
            // Batches of one are copy jobs.
            (vec![1; 3], K, 100, 8, vec![0, 1, 2], vec![]),
            (vec![], K, 100, 8, vec![], vec![]),
        ];
        for (sizes, max_size, max_per, conc, alone, batches) in table {
            let got = plan_batches(&sizes, max_size, max_per, conc);
            assert_eq!(got, (alone, batches), "{sizes:?} {max_per} {conc}");
        }
    }

    #[test]
    fn failed_buckets_do_not_block_completion() {
        let mut t = Tally::default();
        t.apply(1, 0, &planned(&[("x", "x")], false));
        assert!(!t.listing_finished());
        t.apply(2, 0, &bucket("x", BucketState::Failed));
        assert!(t.complete());
    }
}
