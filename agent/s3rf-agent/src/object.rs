//! The handler of object jobs (copy and delete): event ordering by
//! sequencer, the executor, the reconcile of a copy a newer event
//! overtook, then the settling permit and the migration ledger record.

use tokio::sync::OwnedSemaphorePermit;
use tracing::info;

use crate::context::{Delivery, Shared};
use crate::executor::Outcome;
use crate::failure::Failure;
use crate::job::ObjectJob;
use crate::migration::{self, ObjectOutcome, Side};
use crate::ordering::{self, Claim};

/// The ledger entity and outcome of an object job's result, if it belongs to a migration.
pub(crate) fn object_record(
    job: ObjectJob<'_>,
    outcome: Option<&Outcome>,
) -> Option<(String, String, ObjectOutcome, u64)> {
    let (migration, side, entity) = match job {
        ObjectJob::Copy(c) => (
            c.origin.migration()?.to_owned(),
            Side::Source,
            migration::object_entity(&c.src.bucket, Side::Source, &c.src.key),
        ),
        ObjectJob::Delete(d) => (
            d.origin.migration()?.to_owned(),
            Side::Destination,
            migration::object_entity(
                d.src.as_ref().map_or(&d.dst.bucket, |s| &s.bucket),
                Side::Destination,
                &d.dst.key,
            ),
        ),
    };
    let failed = match side {
        Side::Source => ObjectOutcome::CopyFailed,
        Side::Destination => ObjectOutcome::DeleteFailed,
    };
    let (outcome, bytes) = outcome.map_or((failed, 0), |o| o.ledger(side));
    Some((migration, entity, outcome, bytes))
}

/// Runs a copy or delete job, in event order when it carries a sequencer.
async fn run_object_job(shared: &Shared, job: ObjectJob<'_>) -> Result<Outcome, Failure> {
    let (sequencer, dst, src) = job.ordering();
    let Some(mine) = sequencer else {
        return shared
            .executor
            .run(job, &shared.abort)
            .await
            .map_err(Failure::Exec);
    };
    let key = ordering::key_of(&dst.endpoint, &dst.bucket, &dst.key);
    if shared
        .sequencers
        .claim(&key, mine)
        .await
        .map_err(Failure::Ledger)?
        == Claim::Stale
    {
        info!(
            sequencer = mine,
            "skipped: stale event (a newer one was applied)"
        );
        return Ok(Outcome::Skipped {
            reason: crate::plan::SkipReason::Stale,
            bytes: 0,
            dst_modified_ms: None,
        });
    }
    let outcome = shared
        .executor
        .run(job, &shared.abort)
        .await
        .map_err(Failure::Exec)?;
    // A newer event may have acted while we wrote; make the destination match
    // the source as it is now.
    if let Some(src) = src
        && shared
            .sequencers
            .superseded(&key, mine)
            .await
            .map_err(Failure::Ledger)?
    {
        info!(
            sequencer = mine,
            "a newer event arrived meanwhile; reconciling with the source"
        );
        shared
            .executor
            .reconcile(src, dst, &shared.abort)
            .await
            .map_err(Failure::Exec)?;
    }
    Ok(outcome)
}

/// Runs an object job, then trades its pull slot for a settling one and
/// records its outcome in the migration ledger.
pub(crate) async fn handle(
    shared: &Shared,
    object: ObjectJob<'_>,
    delivery: Delivery,
    slot: &mut OwnedSemaphorePermit,
) -> Result<Option<Outcome>, Failure> {
    let since = match object {
        ObjectJob::Copy(c) => c.attempted_since_ms,
        ObjectJob::Delete(_) => None,
    };
    let outcome = run_object_job(shared, object).await?.redone(
        delivery.delivered,
        delivery.published_ms,
        since,
    );
    // The S3 work is done: trade the pull slot for a settling one,
    // so the next job starts while this one is recorded and acked.
    if let Ok(settling) = shared.settling.clone().acquire_owned().await {
        *slot = settling;
    }
    if let Some((m, entity, o, bytes)) = object_record(object, Some(&outcome)) {
        shared
            .ledger
            .record_outcome(&m, &entity, o, bytes)
            .await
            .map_err(Failure::Ledger)?;
    }
    Ok(Some(outcome))
}
