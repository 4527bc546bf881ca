//! Batch jobs: the small objects of one migration listing, copied one after
//! another with one message, one ledger event and one ack for all of them.
//!
//! A small object costs more in queue round trips than in S3 work: its job
//! is published, pulled and acked, and its outcome recorded, each a NATS
//! round trip. A batch pays those once.
//!
//! Each object runs exactly as its own copy job would (`BatchJob::copy_job`),
//! so filters, listing hints and comparison behave the same. What a batch
//! cannot finish it hands off:
//!
//! 1. every object is tried once, unless its migration is paused meanwhile
//!    (the objects not started are then handed off, and their copy jobs are
//!    parked); an abort (shutdown) releases the whole batch, recording
//!    nothing;
//! 2. if none succeeded and every failure may pass (a store that is down),
//!    the batch is retried as a whole with backoff while deliveries remain;
//! 3. otherwise the batch records one `Batch` ledger event: the outcomes of
//!    the objects it finished and the keys of those it did not;
//! 4. then it publishes each unfinished object as a copy job of its own, with
//!    the id a listing would give it, which retries and dead-letters on its
//!    own and records its own outcome;
//! 5. then it is acked.
//!
//! **Architecture Invariant:** every object of a batch is counted exactly
//! once, by the batch's event or by its handed-off copy job. The event names
//! the keys it hands off before any is published; a redelivered batch whose
//! event is recorded does no S3 work and republishes exactly those keys
//! (JetStream drops the duplicates).

use tokio::sync::OwnedSemaphorePermit;
use tracing::{Instrument, info, info_span, warn};

use crate::context::{Delivery, Shared};
use crate::executor::{ExecError, Outcome};
use crate::jetstream::QueueError;
use crate::jetstream::{Outgoing, publish_all};
use crate::job::{BatchJob, ObjectJob, listed_copy};
use crate::migration::{self, BatchCounts, LedgerEvent, Side};
use crate::names::JobKind;
use crate::outcome::Disposition;

/// Why a batch did not finish.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Nothing was done and every object may succeed later.
    #[error(
        "all {objects} objects of the batch failed; the first: {first} (the batch is retried as a whole)"
    )]
    AllFailed {
        /// Objects in the batch.
        objects: usize,
        /// The first object's error.
        first: ExecError,
    },
    /// The agent is stopping.
    #[error("stopped before the batch finished; another delivery will copy it")]
    Cancelled,
    /// The ledger or the hand-off could not be written.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl BatchError {
    /// Whether retrying can help.
    pub fn disposition(&self) -> Disposition {
        match self {
            BatchError::AllFailed { first, .. } => first.disposition(),
            BatchError::Cancelled => Disposition::Release,
            BatchError::Queue(_) => Disposition::QueueDown,
        }
    }
}

/// What a finished batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Outcomes of the objects it finished.
    pub counts: BatchCounts,
    /// Objects handed off as copy jobs.
    pub handed_off: usize,
}

/// Runs `batch` (the handler shape of `object::handle`); its report is in
/// the ledger and the logs, so it returns no outcome of its own.
pub(crate) async fn handle(
    shared: &Shared,
    batch: &BatchJob,
    delivery: Delivery,
    slot: &mut OwnedSemaphorePermit,
) -> Result<Option<Outcome>, BatchError> {
    run(shared, batch, delivery, slot).await.map(|_| None)
}

/// Runs `batch`, delivered for the `delivered`th time. Once the S3 work is
/// done, `slot` is traded for a settling slot (see `Shared::settling`).
async fn run(
    shared: &Shared,
    batch: &BatchJob,
    delivery: Delivery,
    slot: &mut OwnedSemaphorePermit,
) -> Result<BatchReport, BatchError> {
    let delivered = delivery.delivered;
    let s = &batch.scope.0;
    let entity = migration::batch_entity(&s.bucket, batch.objects.iter().map(|o| o.key.as_str()));
    if delivered > 1
        && let Some(done) = shared
            .ledger
            .recorded(&s.migration, &entity, migration::BATCH_EVENT)
            .await?
    {
        return finish_recorded(shared, batch, done, delivery.published_ms).await;
    }
    let mut counts = BatchCounts::default();
    let mut failed: Vec<(usize, ExecError)> = Vec::new();
    // Objects not started because the migration was paused meanwhile.
    let mut untried = 0..0;
    for (i, obj) in batch.objects.iter().enumerate() {
        if i > 0 && shared.pauses.borrow().holds_migration(&s.migration) {
            untried = i..batch.objects.len();
            break;
        }
        let job = batch.copy_job(obj, delivered);
        let span = info_span!("object", key = %obj.key);
        match shared
            .executor
            .run(ObjectJob::Copy(&job), &shared.abort)
            .instrument(span)
            .await
        {
            Ok(outcome) => {
                let outcome = outcome.redone(delivered, delivery.published_ms, None);
                if let Outcome::Copied { bytes, .. } = outcome {
                    crate::metrics::copied(bytes);
                }
                let (o, bytes) = outcome.ledger(Side::Source);
                counts.add(o, bytes);
            }
            Err(ExecError::Cancelled) => return Err(BatchError::Cancelled),
            Err(e) => failed.push((i, e)),
        }
    }
    let may_pass = failed
        .iter()
        .all(|(_, e)| e.disposition() == Disposition::Retry);
    if counts.objects() == 0
        && may_pass
        && untried.is_empty()
        && delivered < u64::from(shared.nats.max_deliver)
    {
        if let Some((_, first)) = failed.into_iter().next() {
            return Err(BatchError::AllFailed {
                objects: batch.objects.len(),
                first,
            });
        }
        return Ok(BatchReport::default());
    }
    if let Ok(settling) = shared.settling.clone().acquire_owned().await {
        *slot = settling;
    }
    for (i, e) in &failed {
        warn!(key = %batch.objects[*i].key, error = %e,
            "handing the object off as its own copy job, which retries and dead-letters on its own");
    }
    if !untried.is_empty() {
        info!(
            objects = untried.len(),
            "the migration is paused: handing the objects not started off as copy jobs, which wait for resume"
        );
    }
    let event = LedgerEvent::Batch {
        counts,
        handed_off: failed
            .iter()
            .map(|(i, _)| *i)
            .chain(untried)
            .map(|i| batch.objects[i].key.clone())
            .collect(),
    };
    match shared
        .ledger
        .record(&s.migration, &entity, &event, 0)
        .await?
    {
        crate::ledger::Recorded::New => {
            finish_recorded(shared, batch, event, delivery.published_ms).await
        }
        crate::ledger::Recorded::Already => {
            // Another delivery recorded first: its hand-offs are the ones.
            match shared
                .ledger
                .recorded(&s.migration, &entity, migration::BATCH_EVENT)
                .await?
            {
                Some(done) => finish_recorded(shared, batch, done, delivery.published_ms).await,
                None => Err(BatchError::Queue(QueueError::Setup {
                    what: "ledger event",
                    name: entity,
                    detail: "recorded but not readable; the batch will be retried".to_owned(),
                })),
            }
        }
    }
}

/// Publishes the hand-offs of a recorded batch event; `published_ms`, when
/// the batch was published, is when its attempts may have begun writing.
async fn finish_recorded(
    shared: &Shared,
    batch: &BatchJob,
    event: LedgerEvent,
    published_ms: i64,
) -> Result<BatchReport, BatchError> {
    let LedgerEvent::Batch { counts, handed_off } = event else {
        return Ok(BatchReport::default());
    };
    let s = &batch.scope.0;
    // Handed-off copies compare with the destination: an attempt that
    // failed may still have written.
    let scope = s3rf_wire::MigrationScope {
        dst_bucket_new: false,
        ..s.clone()
    };
    let jobs: Vec<Outgoing> = batch
        .objects
        .iter()
        .filter(|o| handed_off.contains(&o.key))
        .map(|o| {
            let copy = s3rf_wire::CopyJob {
                attempted_since_ms: Some(published_ms),
                ..listed_copy(&scope, &o.key, o.size, o.etag.as_deref())
            };
            Outgoing {
                subject: shared.names.job_subject(JobKind::Copy),
                msg_id: migration::copy_msg_id(&s.migration, &s.bucket, &o.key, o.etag.as_deref()),
                payload: serde_json::to_vec(&copy).unwrap_or_default(),
            }
        })
        .collect();
    let handed = jobs.len();
    publish_all(&shared.js, jobs).await?;
    info!(
        objects = batch.objects.len(),
        copied = counts.copied,
        skipped = counts.skipped,
        filtered = counts.filtered,
        handed_off = handed,
        "batch done"
    );
    Ok(BatchReport {
        counts,
        handed_off: handed,
    })
}
