//! Validated jobs: the domain form of the wire JSON in `s3rf-wire`.
//!
//! Parsing (`parse.rs`) is pure. It checks shape, field values and that
//! every endpoint a job names exists in this agent's config, so a job naming
//! an unknown endpoint is refused before any connection is made.

use crate::names::JobKind;
pub use crate::settings::MAX_LIST_SPLIT;

mod parse;

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

/// A validated copy job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyJob {
    /// Source object.
    pub src: ObjectRef,
    /// Source version, if pinned.
    pub src_version: Option<String>,
    /// Destination object.
    pub dst: ObjectRef,
    /// Migration id.
    pub migration: Option<String>,
    /// Compare only.
    pub dry_run: bool,
    /// Event sequencer.
    pub sequencer: Option<String>,
    /// A missing source skips instead of failing (event sync).
    pub skip_if_source_missing: bool,
    /// The source's size as listed: a hint for reading small objects with
    /// one GET.
    pub listed_size: Option<u64>,
    /// The source's ETag as listed: a hint for copying within one endpoint
    /// without a HEAD.
    pub listed_etag: Option<String>,
    /// Nothing can be at the destination yet (a bucket the migration created,
    /// first delivery): skip the destination HEAD.
    pub skip_destination_head: bool,
    /// An earlier attempt (a batch that handed this object off) may have
    /// written the destination since then (ms since the epoch).
    pub attempted_since_ms: Option<i64>,
}

impl CopyJob {
    /// The job as delivery number `delivered` runs it. The listing's hint
    /// "nothing is at the destination yet" (skip the destination's HEAD)
    /// holds on the first delivery only: an earlier delivery may have
    /// written the object, so a redelivery compares again.
    #[must_use]
    pub fn for_delivery(mut self, delivered: u64) -> Self {
        if delivered > 1 {
            self.skip_destination_head = false;
        }
        self
    }
}

/// A validated delete job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteJob {
    /// Object to delete.
    pub dst: ObjectRef,
    /// The source object, when known.
    pub src: Option<ObjectRef>,
    /// Event sequencer, when the delete came from an S3 event.
    pub sequencer: Option<String>,
    /// Migration id.
    pub migration: Option<String>,
    /// Delete only if `src` is gone.
    pub if_source_absent: bool,
    /// Decide only.
    pub dry_run: bool,
}

/// A validated migrate job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateJob {
    /// The wire form, checked: endpoints exist, id (if any) and patterns valid.
    pub spec: s3rf_wire::MigrateJob,
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
            migration: Some(s.migration.clone()),
            dry_run: s.dry_run,
            sequencer: None,
            skip_if_source_missing: false,
            listed_size: Some(obj.size),
            listed_etag: obj.etag.clone(),
            skip_destination_head: s.dst_bucket_new,
            attempted_since_ms: None,
        }
        .for_delivery(delivered)
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

/// Any job an agent executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Copy.
    Copy(CopyJob),
    /// Delete.
    Delete(DeleteJob),
    /// Start a migration.
    Migrate(MigrateJob),
    /// Settle one destination bucket.
    Bucket(Scope),
    /// List one page.
    List(ListJob),
    /// Copy a batch of small objects.
    Batch(BatchJob),
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
            ObjectJob::Copy(c) => (c.sequencer.as_deref(), &c.dst, Some(&c.src)),
            ObjectJob::Delete(d) => (d.sequencer.as_deref(), &d.dst, d.src.as_ref()),
        }
    }
}
