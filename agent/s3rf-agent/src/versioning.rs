//! `versions` jobs: the versions of one key of a versioned migration, copied
//! oldest first, one after another, delete markers replayed in place.
//!
//! 1. The key's source versions: from the job (its listing saw them all)
//!    or listed now.
//! 2. Where its history goes: the key, or where the filters send its
//!    newest version.
//! 3. What the destination has: its versions of that key, newest first,
//!    until the newest one that records a source version
//!    (`versions::Walk`, one HEAD per object version passed). On a first
//!    delivery into a bucket the migration created there is nothing to
//!    walk.
//! 4. Each missing version in order: a copy pinned to the version (it
//!    records `s3rf-source-version-id`), or a delete marker. The next
//!    starts only once the previous one's write has returned, so the
//!    destination's history is always a prefix of the source's.
//! 5. One ledger event for the key, then the ack.
//!
//! **Architecture Invariant:** one job per key per migration run (a listing
//! hands each key to one job, see `versions::page_keys`), and its versions
//! are written one at a time in source order. A redelivery, on any agent,
//! walks the destination again and goes on after the last version written,
//! so no version is written out of order or twice in a row.

use tokio::sync::OwnedSemaphorePermit;
use tracing::{Instrument, info, info_span};

use crate::context::{Delivery, Shared};
use crate::executor::{ExecError, Outcome};
use crate::jetstream::QueueError;
use crate::job::{ObjectJob, ObjectRef, Version, VersionsJob};
use crate::migration::VersionCounts;
use crate::migration::{self, Side};
use crate::outcome::Disposition;
use crate::versions::Walk;

/// Why a versions job did not finish.
#[derive(Debug, thiserror::Error)]
pub enum VersionsError {
    /// S3 failed; the job is retried and goes on where it stopped.
    #[error("{0} (the key's remaining versions are retried in order)")]
    Exec(#[from] ExecError),
    /// The ledger could not be written.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The migration was paused between two versions.
    #[error("the migration is paused; the key's remaining versions wait for resume")]
    Paused,
}

impl VersionsError {
    /// Whether retrying can help.
    pub fn disposition(&self) -> Disposition {
        match self {
            VersionsError::Exec(e) => e.disposition(),
            VersionsError::Queue(_) => Disposition::QueueDown,
            // Released, the job is delivered again and parked.
            VersionsError::Paused => Disposition::Release,
        }
    }
}

/// Runs a versions job (the handler shape of `object::handle`); its report
/// is in the ledger and the logs.
pub(crate) async fn handle(
    shared: &Shared,
    job: &VersionsJob,
    delivery: Delivery,
    _slot: &mut OwnedSemaphorePermit,
) -> Result<Option<Outcome>, VersionsError> {
    let s = &job.scope.0;
    let entity = migration::object_entity(&s.bucket, Side::Source, &job.key);
    if delivery.delivered > 1
        && shared
            .ledger
            .recorded(&s.migration, &entity, migration::VERSIONS_EVENT)
            .await?
            .is_some()
    {
        return Ok(None);
    }
    let source = match &job.versions {
        Some(v) => v.clone(),
        None => {
            let mut v = shared
                .executor
                .key_versions(&s.src, &s.bucket, &job.key)
                .await?;
            v.reverse();
            v
        }
    };
    let counts = copy_missing(shared, job, &source, delivery.delivered).await?;
    shared
        .ledger
        .record_versions(&s.migration, &entity, &counts)
        .await?;
    crate::metrics::versions(&counts);
    info!(
        versions = source.len(),
        copied = counts.copied,
        markers = counts.markers,
        present = counts.present,
        filtered = counts.filtered,
        vanished = counts.vanished,
        "versions done"
    );
    Ok(None)
}

/// Copies the versions of `source` (oldest first) the destination lacks.
async fn copy_missing(
    shared: &Shared,
    job: &VersionsJob,
    source: &[Version],
    delivered: u64,
) -> Result<VersionCounts, VersionsError> {
    let s = &job.scope.0;
    let mut counts = VersionCounts::default();
    let newest = source.iter().rev().find(|v| !v.delete_marker);
    let dst = match newest {
        Some(v) => {
            let copy = job.copy_job(v, &job.key);
            match shared.executor.filtered_destination(&copy).await {
                Ok(dst) => dst,
                // Gone since it was listed: its versions say what is left.
                Err(e) if e.is_not_found() && !matches!(e, ExecError::NoSuchBucket(_)) => {
                    Some(copy.dst)
                }
                Err(e) => return Err(e.into()),
            }
        }
        None => Some(ObjectRef {
            endpoint: s.dst.clone(),
            bucket: s.dst_bucket.clone(),
            key: job.key.clone(),
        }),
    };
    let Some(dst) = dst else {
        // The filters skip the key: every version and marker with it.
        for v in source {
            counts.filtered += 1;
            counts.filtered_bytes += v.size;
        }
        info!("skipped by the filters: every version");
        return Ok(counts);
    };
    let first = if s.dst_bucket_new && delivered == 1 {
        0
    } else {
        first_missing(shared, &dst, source).await?
    };
    for v in &source[..first] {
        counts.present += 1;
        counts.present_bytes += v.size;
    }
    for (i, v) in source.iter().enumerate().skip(first) {
        if i > first && shared.pauses.borrow().holds_migration(&s.migration) {
            return Err(VersionsError::Paused);
        }
        let span = info_span!("version", version = %v.id, delete_marker = v.delete_marker);
        copy_one(shared, job, v, &dst, &mut counts)
            .instrument(span)
            .await?;
    }
    Ok(counts)
}

/// Writes one version (or delete marker) and counts it.
async fn copy_one(
    shared: &Shared,
    job: &VersionsJob,
    v: &Version,
    dst: &ObjectRef,
    counts: &mut VersionCounts,
) -> Result<(), VersionsError> {
    if v.delete_marker {
        if job.scope.0.dry_run {
            counts.would_mark += 1;
        } else {
            shared.executor.put_delete_marker(dst).await?;
            info!("delete marker written");
            counts.markers += 1;
        }
        return Ok(());
    }
    let copy = job.copy_job(v, &job.key);
    match shared
        .executor
        .run(ObjectJob::Copy(&copy), &shared.abort)
        .await
    {
        Ok(Outcome::Copied { bytes, .. }) => {
            crate::metrics::copied(bytes);
            counts.copied += 1;
            counts.copied_bytes += bytes;
        }
        Ok(Outcome::WouldCopy { bytes }) => {
            counts.would_copy += 1;
            counts.would_copy_bytes += bytes;
        }
        Ok(Outcome::Filtered { bytes, .. }) => {
            counts.filtered += 1;
            counts.filtered_bytes += bytes;
        }
        Ok(other) => {
            // A pinned version is always written; anything else is present.
            let (_, bytes) = other.ledger(Side::Source);
            counts.present += 1;
            counts.present_bytes += bytes;
        }
        Err(e) if e.is_not_found() && !matches!(e, ExecError::NoSuchBucket(_)) => {
            if shared.executor.version_exists(&copy.src, &v.id).await? {
                return Err(e.into());
            }
            info!("version deleted at the source since it was listed; passed over");
            counts.vanished += 1;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// The index of the first version of `source` that `dst` lacks.
async fn first_missing(
    shared: &Shared,
    dst: &ObjectRef,
    source: &[Version],
) -> Result<usize, VersionsError> {
    let held = shared
        .executor
        .key_versions(&dst.endpoint, &dst.bucket, &dst.key)
        .await?;
    let mut walk = Walk::new(source);
    for d in &held {
        if d.delete_marker {
            walk.marker();
            continue;
        }
        let recorded = shared.executor.recorded_source_version(dst, &d.id).await?;
        if let Some(i) = walk.object(recorded.as_deref()) {
            return Ok(i);
        }
    }
    Ok(walk.end())
}
