//! What a migration records in its ledger: the state of each bucket, the
//! outcome of each object, and the events ([`LedgerEvent`]) with the counts
//! of a batch.

use super::*;

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
/// Ledger event name of a versioned key's event.
pub const VERSIONS_EVENT: &str = "versions";

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
        /// Every version of every key: the tally counts keys as listed
        /// objects and versions as copied ones.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        versions: bool,
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
    /// A versioned migration's key: its versions reached their outcomes
    /// (one source outcome: the tally counts keys).
    Versions {
        /// What happened to its versions.
        #[serde(flatten)]
        counts: VersionCounts,
        /// This success replaces a recorded failure (a dead letter retried).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        replaces_failure: bool,
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
            LedgerEvent::Versions { .. } => VERSIONS_EVENT,
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

/// What a versions job did with its key's versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VersionCounts {
    /// Versions copied.
    #[serde(skip_serializing_if = "is_zero")]
    pub copied: u64,
    /// Their bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub copied_bytes: u64,
    /// Delete markers written.
    #[serde(skip_serializing_if = "is_zero")]
    pub markers: u64,
    /// Versions (and markers) the destination already had.
    #[serde(skip_serializing_if = "is_zero")]
    pub present: u64,
    /// Their bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub present_bytes: u64,
    /// Versions a filter skipped.
    #[serde(skip_serializing_if = "is_zero")]
    pub filtered: u64,
    /// Their bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub filtered_bytes: u64,
    /// Versions deleted at the source since they were listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub vanished: u64,
    /// Dry run: versions that would be copied.
    #[serde(skip_serializing_if = "is_zero")]
    pub would_copy: u64,
    /// Their bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub would_copy_bytes: u64,
    /// Dry run: delete markers that would be written.
    #[serde(skip_serializing_if = "is_zero")]
    pub would_mark: u64,
}
