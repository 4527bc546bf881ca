//! The pull loop: one per job kind. It takes a concurrency permit *before*
//! pulling, so the agent never holds more jobs than it can start, and maps each
//! job's result to ack, delayed nak or dead letter.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use crate::context::{Delivery, Shared};
use crate::executor::Outcome;
use crate::failure::Failure;
use crate::jetstream::dead_letter_message;
use crate::job::{ControlJob, Job, ObjectJob};
use crate::names::JobKind;
use crate::object::object_record;
use crate::outcome::{Action, Disposition, decide};
use crate::{batch, control, object, verifying};

/// How long one pull waits for jobs before asking again.
const PULL_EXPIRY: Duration = Duration::from_secs(5);

/// Pulls `kind` jobs from `consumer` until `stop` is cancelled.
pub async fn pull_loop(
    shared: Arc<Shared>,
    kind: JobKind,
    consumer: PullConsumer,
    concurrency: usize,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut pauses = shared.pauses.clone();
    loop {
        let first = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            () = stop.cancelled() => return,
        };
        // `pause --all`: pull nothing; the jobs stay queued.
        if !crate::pausing::wait_unless_all_paused(&mut pauses, &stop).await {
            return;
        }
        let mut held = vec![first];
        while held.len() < concurrency {
            match permits.clone().try_acquire_owned() {
                Ok(p) => held.push(p),
                Err(_) => break,
            }
        }
        let batch = consumer
            .fetch()
            .max_messages(held.len())
            .expires(PULL_EXPIRY)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                warn!(%kind, error = %e, "cannot pull jobs; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = stop.cancelled() => return,
                }
            }
        };
        loop {
            let next = tokio::select! {
                m = batch.next() => m,
                () = stop.cancelled() => return,
            };
            let msg = match next {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    // Missed heartbeats and similar arrive as errors; the
                    // batch goes on or ends, the loop does not.
                    debug!(%kind, error = %e, "pull error");
                    continue;
                }
            };
            let Some(permit) = held.pop() else {
                // More messages than requested cannot happen; give it back.
                let _ = msg.ack_with(AckKind::Nak(None)).await;
                continue;
            };
            shared.mark_busy();
            let s = shared.clone();
            shared.tracker.spawn(async move {
                let mut slot = permit;
                handle(&s, kind, msg, &mut slot).await;
                s.mark_busy();
                drop(slot);
            });
        }
    }
}

async fn handle(
    shared: &Shared,
    kind: JobKind,
    msg: jetstream::Message,
    slot: &mut OwnedSemaphorePermit,
) {
    let (seq, delivered, published) = match msg.info() {
        Ok(i) => (
            i.stream_sequence,
            u64::try_from(i.delivered).unwrap_or(1),
            i.published,
        ),
        Err(e) => {
            warn!(%kind, error = %e, "message without JetStream metadata; ignoring it");
            return;
        }
    };
    let stores = shared.executor.stores();
    let job = match Job::parse(kind, &msg.payload, |name| stores.contains(name)) {
        Ok(Job::Copy(c)) => Job::Copy(c.for_delivery(delivered)),
        Ok(job) => job,
        Err(e) => {
            let span = info_span!("job", job = seq, %kind, delivered);
            dead_letter_message(
                &shared.js,
                &shared.names,
                kind,
                &msg,
                seq,
                delivered,
                &e.to_string(),
            )
            .instrument(span)
            .await;
            return;
        }
    };
    let span = match &job {
        Job::Copy(c) => info_span!("job", job = seq, %kind, delivered,
            endpoint = %c.dst.endpoint, bucket = %c.dst.bucket, key = %c.dst.key,
            src_endpoint = %c.src.endpoint, src_bucket = %c.src.bucket, src_key = %c.src.key,
            migration = c.origin.migration()),
        Job::Delete(d) => info_span!("job", job = seq, %kind, delivered,
            endpoint = %d.dst.endpoint, bucket = %d.dst.bucket, key = %d.dst.key,
            migration = d.origin.migration()),
        Job::Control(ControlJob::Migrate(m)) => info_span!("job", job = seq, %kind, delivered,
            endpoint = %m.spec.src, dst_endpoint = %m.spec.dst, migration = m.spec.id.as_deref()),
        Job::Control(ControlJob::Bucket(b)) => info_span!("job", job = seq, %kind, delivered,
            endpoint = %b.0.dst, bucket = %b.0.dst_bucket, migration = %b.0.migration),
        Job::Control(ControlJob::List(l)) => info_span!("job", job = seq, %kind, delivered,
            endpoint = %l.scope.0.src, bucket = %l.scope.0.bucket, page = l.page,
            migration = %l.scope.0.migration),
        Job::Control(ControlJob::Verify(v)) => info_span!("job", job = seq, %kind, delivered,
            endpoint = %v.spec.src, dst_endpoint = %v.spec.dst, verification = v.spec.id.as_deref(),
            bucket = v.spec.page.as_ref().map(|p| p.bucket.as_str()),
            page = v.spec.page.as_ref().map(|p| p.number)),
        Job::Batch(b) => info_span!("job", job = seq, %kind, delivered,
            endpoint = %b.scope.0.dst, bucket = %b.scope.0.dst_bucket,
            src_endpoint = %b.scope.0.src, src_bucket = %b.scope.0.bucket,
            objects = b.objects.len(), migration = %b.scope.0.migration),
        Job::Versions(v) => info_span!("job", job = seq, %kind, delivered,
            endpoint = %v.scope.0.dst, bucket = %v.scope.0.dst_bucket,
            src_endpoint = %v.scope.0.src, src_bucket = %v.scope.0.bucket, key = %v.key,
            migration = %v.scope.0.migration),
    };
    let held = shared.pauses.borrow().holding(job.pausable());
    if let Some(scope) = held {
        park(shared, kind, &msg, seq, &scope).instrument(span).await;
        return;
    }
    let published_ms =
        i64::try_from(published.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MIN);
    let delivery = Delivery {
        seq,
        delivered,
        published_ms,
    };
    run_job(shared, kind, msg, job, delivery, slot)
        .instrument(span)
        .await;
}

/// The ledger failure of a dead-lettered migration job that has one: an
/// object job's, or a versioned key's.
fn failure_record(job: &Job) -> Option<(String, String, crate::migration::ObjectOutcome, u64)> {
    if let Job::Versions(v) = job {
        let s = &v.scope.0;
        let entity =
            crate::migration::object_entity(&s.bucket, crate::migration::Side::Source, &v.key);
        return Some((
            s.migration.clone(),
            entity,
            crate::migration::ObjectOutcome::CopyFailed,
            0,
        ));
    }
    job.object().and_then(|o| object_record(o, None))
}

/// Parks a job a pause holds; acks it once the parked copy is stored.
async fn park(
    shared: &Shared,
    kind: JobKind,
    msg: &jetstream::Message,
    seq: u64,
    scope: &crate::pause::PauseScope,
) {
    match crate::pausing::park(&shared.js, &shared.names, kind, msg, seq, scope).await {
        Ok(()) => {
            crate::metrics::job(kind.token(), "parked");
            debug!(pause = %scope.describe(), "parked until resumed");
            if let Err(e) = msg.double_ack().await {
                debug!(error = %e, "ack of a parked job not confirmed; a redelivery parks it again");
            }
        }
        Err(e) => {
            warn!(error = %e, "cannot park a paused job; it is returned to the queue");
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
        }
    }
}

/// Hands `job` to its handler. Object, batch and control handlers have one
/// shape: `handle(shared, job, delivery, slot)`, each with its own error.
async fn execute(
    shared: &Shared,
    job: &Job,
    delivery: Delivery,
    slot: &mut OwnedSemaphorePermit,
) -> Result<Option<Outcome>, Failure> {
    match job {
        Job::Copy(c) => object::handle(shared, ObjectJob::Copy(c), delivery, slot).await,
        Job::Delete(d) => object::handle(shared, ObjectJob::Delete(d), delivery, slot).await,
        Job::Batch(b) => Ok(batch::handle(shared, b, delivery, slot).await?),
        Job::Versions(v) => Ok(crate::versioning::handle(shared, v, delivery, slot).await?),
        Job::Control(ControlJob::Verify(v)) => {
            Ok(verifying::handle(shared, v, delivery, slot).await?)
        }
        Job::Control(c) => Ok(control::handle(shared, c, delivery, slot).await?),
    }
}

async fn run_job(
    shared: &Shared,
    kind: JobKind,
    msg: jetstream::Message,
    job: Job,
    delivery: Delivery,
    slot: &mut OwnedSemaphorePermit,
) {
    let msg = Arc::new(msg);
    // Long jobs must not be redelivered while they still run.
    let progress = {
        let msg = msg.clone();
        let every = (shared.nats.ack_wait / 3).max(Duration::from_millis(200));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                if let Err(e) = msg.ack_with(AckKind::Progress).await {
                    debug!(error = %e, "progress ack failed");
                }
            }
        })
    };
    let is_copy = kind == JobKind::Copy;
    if is_copy {
        crate::metrics::in_flight(1.0);
    }
    let started = std::time::Instant::now();
    let Delivery { seq, delivered, .. } = delivery;
    let result = execute(shared, &job, delivery, slot).await;
    progress.abort();
    if is_copy {
        crate::metrics::in_flight(-1.0);
        crate::metrics::copy_duration(started.elapsed());
    }
    let e = match result {
        Ok(outcome) => {
            crate::metrics::job(kind.token(), "ok");
            if let Some(Outcome::Copied { bytes, .. }) = outcome {
                crate::metrics::copied(bytes);
            }
            if let Err(e) = msg.double_ack().await {
                // The effect is durable; a redelivery finds it and skips.
                warn!(error = %e, "ack not confirmed; the job may run again and will find the work done");
            }
            return;
        }
        Err(e) => e,
    };
    let action = decide(
        e.disposition(),
        delivered,
        u64::from(shared.nats.max_deliver),
        shared.copy.retry_base_delay,
        shared.copy.retry_max_delay,
    );
    match action {
        Action::Nak(delay) => {
            crate::metrics::job(
                kind.token(),
                if delay.is_zero() { "released" } else { "retry" },
            );
            if delay.is_zero() {
                debug!(error = %e, "released");
            } else {
                warn!(error = %e, retry_in = ?delay, "attempt failed; will retry");
            }
            if let Err(ne) = msg.ack_with(AckKind::Nak(Some(delay))).await {
                debug!(error = %ne, "nak failed; ack_wait will redeliver");
            }
        }
        Action::DeadLetter => {
            crate::metrics::job(kind.token(), "dead_letter");
            let reason = if delivered >= u64::from(shared.nats.max_deliver)
                && e.disposition() == Disposition::Retry
            {
                format!("{e} (gave up after {delivered} deliveries)")
            } else {
                e.to_string()
            };
            if let Some((m, entity, o, bytes)) = failure_record(&job)
                && let Err(le) = shared.ledger.record_outcome(&m, &entity, o, bytes).await
            {
                warn!(error = %le, "cannot record the failure in the migration ledger; retrying the job");
                let _ = msg
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                    .await;
                return;
            }
            // A multipart upload kept for resuming is given up with the job.
            if let Job::Copy(c) = &job {
                shared.executor.abandon(c).await;
            }
            dead_letter_message(
                &shared.js,
                &shared.names,
                kind,
                &msg,
                seq,
                delivered,
                &reason,
            )
            .await;
        }
    }
}
