//! Validated jobs: the domain form of the wire JSON in `s3rf-wire`.
//!
//! Parsing (`parse.rs`) is pure. It checks shape, field values and that
//! every endpoint a job names exists in this agent's config, so a job naming
//! an unknown endpoint is refused before any connection is made.

use crate::names::JobKind;
pub use crate::settings::MAX_LIST_SPLIT;

mod parse;
#[cfg(test)]
mod tests;

/// Longest S3 key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Most objects one batch job may carry (a listing page's worth).
pub const MAX_BATCH_OBJECTS: usize = 1000;

/// Why a job payload was refused. All of these are permanent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("malformed {kind} job: {detail}; publish JSON as documented in README.md (Jobs)")]
    Malformed { kind: JobKind, detail: String },
    #[error(
        "unknown endpoint {name}: it is not defined in this agent's config; add [endpoints.{name}] or fix the job"
    )]
    UnknownEndpoint { name: String },
    #[error("invalid {field} in {kind} job: {detail}")]
    Invalid {
        kind: JobKind,
        field: &'static str,
        detail: String,
    },
}

/// One object on one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// Endpoint name from the agent config.
    pub endpoint: String,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
}

impl ObjectRef {
    /// The same endpoint, another bucket and key (a filter's rename).
    pub fn moved_to(&self, bucket: String, key: String) -> Self {
        Self {
            endpoint: self.endpoint.clone(),
            bucket,
            key,
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}/{}", self.endpoint, self.bucket, self.key)
    }
}

/// Where an object job came from. It decides how the job is accounted and
/// ordered; on the wire it is the `migration`, `sequencer` and
/// `skip_if_source_missing` fields, of which a job has one origin's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Origin {
    /// Published by hand (`nats pub`, `s3rf-agent copy`): no ledger, no
    /// ordering, a missing source is an error.
    #[default]
    Direct,
    /// A migration's listing or batch: its outcome is recorded in that
    /// migration's ledger.
    Migration(String),
    /// An S3 event: applied in sequencer order (when it has one), and a copy
    /// whose source is gone by now is skipped, since its delete event
    /// follows.
    Event {
        /// The event's sequencer, if the notification had one.
        sequencer: Option<String>,
    },
}

impl Origin {
    /// The migration id, for a migration's job.
    pub fn migration(&self) -> Option<&str> {
        match self {
            Origin::Migration(id) => Some(id),
            _ => None,
        }
    }

    /// The event sequencer that orders the job, if any.
    pub fn sequencer(&self) -> Option<&str> {
        match self {
            Origin::Event { sequencer } => sequencer.as_deref(),
            _ => None,
        }
    }
}

/// Whether a job changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Copy or delete.
    #[default]
    Apply,
    /// Compare and report what would be done; change nothing.
    DryRun,
}

impl Mode {
    /// From the wire's `dry_run` flag.
    pub fn from_dry_run(dry_run: bool) -> Self {
        if dry_run { Mode::DryRun } else { Mode::Apply }
    }

    /// A dry run.
    pub fn is_dry_run(self) -> bool {
        self == Mode::DryRun
    }
}

/// What a listing or an event already said, so a copy can save requests.
/// Hints only: what the servers answer is what counts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hints {
    /// The source's size as listed (or as the event said): a small object
    /// is read with one GET instead of HEAD + GET.
    pub size: Option<u64>,
    /// The source's ETag as listed: a copy within one endpoint can be one
    /// CopyObject conditioned on it, with no HEAD.
    pub etag: Option<String>,
    /// Nothing can be at the destination yet (a bucket the migration
    /// created, first delivery): no destination HEAD. Only a migration's
    /// jobs carry it, and [`CopyJob::for_delivery`] drops it on redelivery.
    pub destination_empty: bool,
}

/// A validated copy job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyJob {
    /// Source object.
    pub src: ObjectRef,
    /// Source version, if pinned.
    pub src_version: Option<String>,
    /// Destination object.
    pub dst: ObjectRef,
    /// Where it came from.
    pub origin: Origin,
    /// Copy, or only compare.
    pub mode: Mode,
    /// What the listing or event said about the source.
    pub hints: Hints,
    /// An earlier attempt (a batch that handed this object off) may have
    /// written the destination since then (ms since the epoch). Accounting
    /// only.
    pub attempted_since_ms: Option<i64>,
}

impl CopyJob {
    /// A copy of `src` to `dst` with no hints.
    pub fn new(src: ObjectRef, dst: ObjectRef, origin: Origin) -> Self {
        Self {
            src,
            src_version: None,
            dst,
            origin,
            mode: Mode::Apply,
            hints: Hints::default(),
            attempted_since_ms: None,
        }
    }

    /// The job as delivery number `delivered` runs it. The listing's hint
    /// "nothing is at the destination yet" (skip the destination's HEAD)
    /// holds on the first delivery only: an earlier delivery may have
    /// written the object, so a redelivery compares again.
    #[must_use]
    pub fn for_delivery(mut self, delivered: u64) -> Self {
        if delivered > 1 {
            self.hints.destination_empty = false;
        }
        self
    }

    /// A source gone by now is skipped rather than failed (event sync).
    pub fn skips_missing_source(&self) -> bool {
        matches!(self.origin, Origin::Event { .. })
    }
}

/// A validated delete job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteJob {
    /// Object to delete.
    pub dst: ObjectRef,
    /// The source object, when known.
    pub src: Option<ObjectRef>,
    /// Where it came from.
    pub origin: Origin,
    /// Delete only if `src` is gone.
    pub if_source_absent: bool,
    /// Delete, or only decide.
    pub mode: Mode,
}

/// A validated migrate job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateJob {
    /// The wire form, checked: endpoints exist, id (if any) and patterns valid.
    pub spec: s3rf_wire::MigrateJob,
}

/// A validated verification job (`s3rf-agent verify`): endpoints exist,
/// id and bucket names are valid; a page job names its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyJob {
    /// The wire form, checked.
    pub spec: s3rf_wire::VerifyJob,
}

/// A validated bucket or listing scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope(pub s3rf_wire::MigrationScope);

/// A validated listing job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListJob {
    /// Bucket pair and settings.
    pub scope: Scope,
    /// Which side.
    pub side: crate::migration::Side,
    /// Page number.
    pub page: u64,
    /// Continuation token of this page.
    pub continuation_token: Option<String>,
    /// Versioned listing: the (key, version id) this page starts after.
    pub version_marker: Option<(String, String)>,
    /// The prefix of a split listing, under the scope's; `None` for the
    /// bucket's first listing, which lists the scope's prefix.
    pub prefix: Option<String>,
    /// `/` levels still split into parallel listings; 0 lists flat.
    pub split: u32,
}

/// One object of a batch, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchObject {
    /// Source key, also the destination key.
    pub key: String,
    /// Size as listed.
    pub size: u64,
    /// ETag as listed.
    pub etag: Option<String>,
}

/// A validated batch job: small objects of one listing, copied one after
/// another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchJob {
    /// Bucket pair and settings.
    pub scope: Scope,
    /// The objects, 1 to [`MAX_BATCH_OBJECTS`], keys distinct.
    pub objects: Vec<BatchObject>,
}

impl BatchJob {
    /// The copy job of one object, as delivery number `delivered` of the
    /// batch runs it: what a listing publishes for an object it does not
    /// batch ([`CopyJob::for_delivery`]).
    pub fn copy_job(&self, obj: &BatchObject, delivered: u64) -> CopyJob {
        let s = &self.scope.0;
        CopyJob {
            src: ObjectRef {
                endpoint: s.src.clone(),
                bucket: s.bucket.clone(),
                key: obj.key.clone(),
            },
            src_version: None,
            dst: ObjectRef {
                endpoint: s.dst.clone(),
                bucket: s.dst_bucket.clone(),
                key: obj.key.clone(),
            },
            origin: Origin::Migration(s.migration.clone()),
            mode: Mode::from_dry_run(s.dry_run),
            hints: Hints {
                size: Some(obj.size),
                etag: obj.etag.clone(),
                destination_empty: s.dst_bucket_new,
            },
            attempted_since_ms: None,
        }
        .for_delivery(delivered)
    }
}

/// One version of a key, oldest first in a [`VersionsJob`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Source version id.
    pub id: String,
    /// A delete marker.
    pub delete_marker: bool,
    /// Size (0 for a delete marker).
    pub size: u64,
    /// ETag, unquoted.
    pub etag: Option<String>,
}

/// Most versions a versions job may carry (a listing page's worth).
pub const MAX_JOB_VERSIONS: usize = 1000;

/// A validated versions job: the versions of one key of a versioned
/// migration, copied oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionsJob {
    /// Bucket pair and settings (`versions` set).
    pub scope: Scope,
    /// Source key.
    pub key: String,
    /// The key's versions oldest first, when the listing saw them all;
    /// `None`: the job lists them.
    pub versions: Option<Vec<Version>>,
}

impl VersionsJob {
    /// The copy of source version `v` to the same key (or `dst_key`), as
    /// delivery `delivered` runs it: a version is always written, never
    /// compared with the destination's latest (two versions may hold the
    /// same bytes), and records its source version id.
    pub fn copy_job(&self, v: &Version, dst_key: &str) -> CopyJob {
        let s = &self.scope.0;
        CopyJob {
            src: ObjectRef {
                endpoint: s.src.clone(),
                bucket: s.bucket.clone(),
                key: self.key.clone(),
            },
            src_version: Some(v.id.clone()),
            dst: ObjectRef {
                endpoint: s.dst.clone(),
                bucket: s.dst_bucket.clone(),
                key: dst_key.to_owned(),
            },
            origin: Origin::Migration(s.migration.clone()),
            mode: Mode::from_dry_run(s.dry_run),
            hints: Hints {
                size: Some(v.size),
                etag: v.etag.clone(),
                destination_empty: true,
            },
            attempted_since_ms: None,
        }
    }
}

/// The wire copy job a migration listing publishes for one listed object.
pub fn listed_copy(
    scope: &s3rf_wire::MigrationScope,
    key: &str,
    size: u64,
    etag: Option<&str>,
) -> s3rf_wire::CopyJob {
    s3rf_wire::CopyJob {
        src: s3rf_wire::SourceObject {
            endpoint: scope.src.clone(),
            bucket: scope.bucket.clone(),
            key: key.to_owned(),
            version_id: None,
        },
        dst: s3rf_wire::DestinationLocation {
            endpoint: scope.dst.clone(),
            bucket: scope.dst_bucket.clone(),
            key: None,
        },
        migration: Some(scope.migration.clone()),
        dry_run: scope.dry_run,
        sequencer: None,
        skip_if_source_missing: false,
        listed_size: Some(size),
        listed_etag: etag.map(str::to_owned),
        dst_bucket_new: scope.dst_bucket_new,
        attempted_since_ms: None,
    }
}

/// Any job an agent executes: an object job (the executor's), a batch of
/// them, or a control job that plans a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Copy one object.
    Copy(CopyJob),
    /// Delete one object.
    Delete(DeleteJob),
    /// Copy a batch of small objects.
    Batch(BatchJob),
    /// Copy the missing versions of one key.
    Versions(VersionsJob),
    /// Plan part of a migration.
    Control(ControlJob),
}

impl Job {
    /// The object job, for a copy or delete.
    pub fn object(&self) -> Option<ObjectJob<'_>> {
        match self {
            Job::Copy(c) => Some(ObjectJob::Copy(c)),
            Job::Delete(d) => Some(ObjectJob::Delete(d)),
            Job::Batch(_) | Job::Versions(_) | Job::Control(_) => None,
        }
    }
}

/// A job that plans a migration: it publishes other jobs and touches
/// buckets and listings, never objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlJob {
    /// Start a migration.
    Migrate(MigrateJob),
    /// Settle one destination bucket.
    Bucket(Scope),
    /// List one page.
    List(ListJob),
    /// Plan a verification, or compare one page of it.
    Verify(VerifyJob),
}

/// A job on one object, the only kind the executor runs.
#[derive(Debug, Clone, Copy)]
pub enum ObjectJob<'a> {
    /// Copy.
    Copy(&'a CopyJob),
    /// Delete.
    Delete(&'a DeleteJob),
}

impl<'a> ObjectJob<'a> {
    /// The event sequencer that orders it, the object it writes and the
    /// object it mirrors, if any.
    pub fn ordering(self) -> (Option<&'a str>, &'a ObjectRef, Option<&'a ObjectRef>) {
        match self {
            ObjectJob::Copy(c) => (c.origin.sequencer(), &c.dst, Some(&c.src)),
            ObjectJob::Delete(d) => (d.origin.sequencer(), &d.dst, d.src.as_ref()),
        }
    }
}
