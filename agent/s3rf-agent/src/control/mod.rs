//! Migration control jobs: `migrate` selects buckets and publishes one bucket
//! job each; `bucket` settles the destination bucket and only then starts its
//! listing; `list` waits while enough object jobs are queued, lists one page,
//! records it, publishes the jobs of the pages it leads to (the next page and,
//! when splitting, one listing per common prefix) and then one object job per
//! object.
//!
//! **Architecture Invariant:** no object job of a bucket is published before
//! that bucket's create has succeeded: listing jobs are published only by the
//! bucket job, after `ensure_bucket` returned.
//!
//! Every published job carries a `Nats-Msg-Id` derived from its content, so a
//! redelivered control job republishes the same jobs and JetStream drops the
//! duplicates; outcomes are recorded once per entity in the ledger.

use std::time::Duration;

use async_nats::jetstream;
use serde::Serialize;
use tracing::{debug, info};

use tokio::sync::OwnedSemaphorePermit;

use crate::context::{Delivery, Shared};
use crate::executor::{ExecError, Executor, Outcome};
use crate::jetstream::{Outgoing, QueueError, publish_all};
use crate::job::{ControlJob, ListJob, MigrateJob, Scope};
use crate::ledger::{Ledger, SpecWrite};
use crate::migration::{self, BucketState, LedgerEvent, Side};
use crate::names::{JobKind, Names};
use crate::outcome::Disposition;

/// Why a control job failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(
        "migration {0} already exists with a different spec; publish it with a new id (or omit id)"
    )]
    SpecConflict(String),
    #[error("{0}")]
    Spec(String),
}

impl ControlError {
    /// Whether retrying can help.
    pub fn disposition(&self) -> Disposition {
        match self {
            ControlError::Exec(e) => e.disposition(),
            ControlError::Queue(_) => Disposition::QueueDown,
            ControlError::SpecConflict(_) | ControlError::Spec(_) => Disposition::DeadLetter,
        }
    }
}

/// What control jobs need.
#[derive(Debug)]
pub struct Control<'a> {
    /// JetStream, to publish jobs.
    pub js: &'a jetstream::Context,
    /// Names.
    pub names: &'a Names,
    /// The ledger.
    pub ledger: &'a Ledger,
    /// Migration rates.
    pub fleet: &'a crate::fleet::Fleet,
    /// Migration schedules.
    pub scheduler: &'a crate::scheduler::Scheduler,
    /// S3 access.
    pub executor: &'a Executor,
    /// Keys per listing page.
    pub page_size: i32,
    /// `/` levels a bucket's listing splits into parallel listings.
    pub list_split: u32,
    /// A list job waits while this many object jobs wait for an agent.
    pub max_queued_jobs: u64,
    /// Most objects per batch job (below 2: no batches).
    pub batch_objects: usize,
    /// Objects up to this many bytes are batched.
    pub batch_max_size: u64,
    /// This agent's `copy.concurrency`: a page makes at least this many
    /// batches when it has enough small objects.
    pub copy_concurrency: usize,
    /// Cancelled when jobs in flight must stop (shutdown grace over).
    pub abort: &'a tokio_util::sync::CancellationToken,
}

/// Which listing a list job continues, and its page.
/// Runs a control job (the handler shape of `object::handle`). Control
/// jobs hold their pull slot throughout and return no outcome.
pub(crate) async fn handle(
    shared: &Shared,
    job: &ControlJob,
    delivery: Delivery,
    _slot: &mut OwnedSemaphorePermit,
) -> Result<Option<Outcome>, ControlError> {
    let control = Control::of(shared);
    match job {
        ControlJob::Migrate(m) => control.migrate(m, &default_id(delivery)).await,
        ControlJob::Bucket(b) => control.bucket(b).await,
        ControlJob::List(l) => control.list(l).await,
        // The worker hands verification jobs to `verifying`.
        ControlJob::Verify(_) => Err(ControlError::Spec(
            "a verification job reached the migration handler; this is a bug of s3rf".to_owned(),
        )),
    }
    .map(|()| None)
}

/// The id of a migration published without one: from its message (publish
/// time and stream sequence), so a redelivered migrate job keeps its id.
fn default_id(delivery: Delivery) -> String {
    let at = u64::try_from(delivery.published_ms)
        .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms))
        .unwrap_or(std::time::UNIX_EPOCH);
    // 2026-12-03T04:45:12Z → 20261203-044512
    let stamp: String = humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter_map(|c| match c {
            '-' | ':' | 'Z' => None,
            'T' => Some('-'),
            c => Some(c),
        })
        .collect();
    format!("m-{stamp}-{}", delivery.seq)
}

struct Listing {
    /// `None`: the bucket's first listing; else the split prefix.
    prefix: Option<String>,
    /// `/` levels still to split.
    split: u32,
    /// Page number within the listing.
    page: u64,
}

impl<'a> Control<'a> {
    /// The control context of `shared`'s agent.
    fn of(shared: &'a Shared) -> Self {
        Control {
            js: &shared.js,
            names: &shared.names,
            ledger: &shared.ledger,
            fleet: &shared.fleet,
            scheduler: &shared.scheduler,
            executor: &shared.executor,
            page_size: shared.migrate.page_size,
            list_split: shared.migrate.list_split_depth,
            max_queued_jobs: shared.migrate.max_queued_jobs,
            batch_objects: shared.migrate.batch_objects,
            batch_max_size: shared.migrate.batch_max_size,
            copy_concurrency: shared.copy.concurrency,
            abort: &shared.abort,
        }
    }

    fn outgoing(&self, kind: JobKind, msg_id: String, job: &impl Serialize) -> Outgoing {
        Outgoing {
            subject: self.names.job_subject(kind),
            msg_id,
            payload: serde_json::to_vec(job).unwrap_or_default(),
        }
    }

    async fn publish_all(&self, jobs: Vec<Outgoing>) -> Result<(), QueueError> {
        publish_all(self.js, jobs).await
    }

    /// `migrate`: record the spec and plan, publish bucket jobs.
    pub async fn migrate(&self, job: &MigrateJob, default_id: &str) -> Result<(), ControlError> {
        let mut spec = job.spec.clone();
        let id = spec.id.get_or_insert_with(|| default_id.to_owned()).clone();
        let spec_json = serde_json::to_vec(&spec).unwrap_or_default();
        if self.ledger.put_spec(&id, &spec_json).await? == SpecWrite::Different {
            return Err(ControlError::SpecConflict(id));
        }
        if let Some(rate) = &spec.rate {
            self.fleet.init_rate(&id, rate).await?;
        }
        if let Some(every) = &spec.every {
            let ms = crate::schedule::parse_every(every)
                .map_err(|e| ControlError::Spec(e.to_string()))?;
            self.scheduler.register(&spec, ms).await?;
        }
        let available = match &spec.buckets {
            Some(_) => Vec::new(),
            None => self.executor.list_buckets(&spec.src).await?,
        };
        let pairs = migration::select_buckets(
            &available,
            spec.buckets.as_deref(),
            &spec.exclude_buckets,
            &spec.bucket_map,
        )
        .map_err(|e| ControlError::Spec(e.to_string()))?;
        self.ledger
            .record(
                &id,
                "plan",
                &LedgerEvent::Planned {
                    buckets: pairs.clone(),
                    mirror: spec.delete_extraneous,
                    dry_run: spec.dry_run,
                    versions: spec.versions,
                },
                0,
            )
            .await?;
        let jobs = pairs
            .iter()
            .map(|(src_bucket, dst_bucket)| {
                let scope = s3rf_wire::MigrationScope {
                    migration: id.clone(),
                    src: spec.src.clone(),
                    dst: spec.dst.clone(),
                    bucket: src_bucket.clone(),
                    dst_bucket: dst_bucket.clone(),
                    prefix: spec.prefix.clone(),
                    delete_extraneous: spec.delete_extraneous,
                    dry_run: spec.dry_run,
                    dst_bucket_new: false,
                    versions: spec.versions,
                };
                let msg_id = format!("{id}:bucket:{}", migration::bucket_entity(src_bucket));
                self.outgoing(JobKind::Bucket, msg_id, &scope)
            })
            .collect();
        self.publish_all(jobs).await?;
        info!(migration = %id, buckets = pairs.len(), "migration started");
        Ok(())
    }

    /// The job of one listing page: of the bucket's first listing
    /// (`prefix` `None`) or of the split listing of `prefix`.
    fn list_job(
        &self,
        scope: &Scope,
        side: Side,
        listing: Listing,
        token: Option<String>,
        version_marker: Option<(String, String)>,
    ) -> Outgoing {
        let s = &scope.0;
        let msg_id = format!(
            "{}:list:{}",
            s.migration,
            migration::page_entity(&s.bucket, side, listing.prefix.as_deref(), listing.page)
        );
        let job = s3rf_wire::ListJob {
            scope: s.clone(),
            side: match side {
                Side::Source => s3rf_wire::ListSide::Source,
                Side::Destination => s3rf_wire::ListSide::Destination,
            },
            page: listing.page,
            continuation_token: token,
            version_marker: version_marker
                .map(|(key, version_id)| s3rf_wire::VersionMarker { key, version_id }),
            prefix: listing.prefix,
            split: listing.split,
        };
        self.outgoing(JobKind::List, msg_id, &job)
    }

    /// `bucket`: create the destination bucket if needed, then start listing.
    pub async fn bucket(&self, scope: &Scope) -> Result<(), ControlError> {
        let s = &scope.0;
        let entity = migration::bucket_entity(&s.bucket);
        let state = match self
            .executor
            .ensure_bucket(&s.dst, &s.dst_bucket, s.dry_run, s.versions)
            .await
        {
            Ok(state) => state,
            Err(e) if e.disposition() == Disposition::DeadLetter => {
                let event = LedgerEvent::Bucket {
                    bucket: s.bucket.clone(),
                    state: BucketState::Failed,
                    reason: Some(e.to_string()),
                };
                self.ledger.record(&s.migration, &entity, &event, 0).await?;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        // Copies into a bucket this migration created have nothing to
        // compare with on their first delivery.
        let listing = Scope(s3rf_wire::MigrationScope {
            dst_bucket_new: state == BucketState::Created,
            ..s.clone()
        });
        // A versioned listing is not split: its parallelism is one job
        // per key.
        let first = || Listing {
            prefix: None,
            split: if s.versions { 0 } else { self.list_split },
            page: 0,
        };
        let mut jobs = vec![self.list_job(&listing, Side::Source, first(), None, None)];
        if s.delete_extraneous && state != BucketState::WouldCreate {
            jobs.push(self.list_job(&listing, Side::Destination, first(), None, None));
        }
        // Listing starts only now that the bucket exists.
        self.publish_all(jobs).await?;
        let event = LedgerEvent::Bucket {
            bucket: s.bucket.clone(),
            state,
            reason: None,
        };
        self.ledger.record(&s.migration, &entity, &event, 0).await?;
        info!(bucket = %s.dst_bucket, endpoint = %s.dst, ?state, "bucket ready; listing started");
        Ok(())
    }

    /// Jobs of `kind` waiting for an agent. `None` when the count cannot be
    /// read (waiting is then skipped: pacing, not correctness).
    async fn pending(&self, kind: JobKind) -> Option<u64> {
        let consumer: Result<jetstream::consumer::PullConsumer, _> = self
            .js
            .get_consumer_from_stream(self.names.consumer(kind), self.names.jobs_stream())
            .await;
        match consumer {
            Ok(c) => Some(c.cached_info().num_pending),
            Err(e) => {
                debug!(error = %e, "cannot read the job backlog; listing without waiting");
                None
            }
        }
    }

    /// Objects waiting for an agent on `side`: copy jobs plus batch jobs
    /// counted at a full page's batch size (delete jobs for the destination).
    async fn queued(&self, side: Side) -> Option<u64> {
        match side {
            Side::Destination => self.pending(JobKind::Delete).await,
            Side::Source => {
                let copies =
                    self.pending(JobKind::Copy).await? + self.pending(JobKind::Versions).await?;
                if self.batch_objects < 2 {
                    return Some(copies);
                }
                let per_batch = migration::batch_size(
                    usize::try_from(self.page_size).unwrap_or(1000),
                    self.batch_objects,
                    self.copy_concurrency,
                );
                let batches = self.pending(JobKind::Batch).await?;
                Some(copies + batches * per_batch as u64)
            }
        }
    }

    /// Backpressure: waits while `max_queued_jobs` or more objects of
    /// `side` wait for an agent, so listing runs ahead of copying by a
    /// bounded amount.
    async fn wait_for_room(&self, side: Side) -> Result<(), ControlError> {
        let mut paused = false;
        while let Some(queued) = self.queued(side).await {
            if queued < self.max_queued_jobs {
                break;
            }
            if !paused {
                info!(
                    queued,
                    limit = self.max_queued_jobs,
                    "listing paused: enough jobs are queued (migrate.max_queued_jobs)"
                );
                paused = true;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
                () = self.abort.cancelled() => return Err(ExecError::Cancelled.into()),
            }
        }
        Ok(())
    }

    /// The jobs of a source page's objects: batches of the small ones
    /// (`migration::plan_batches`), a copy job for each of the others.
    fn source_jobs(
        &self,
        s: &s3rf_wire::MigrationScope,
        objects: &[crate::executor::Listed],
    ) -> Vec<Outgoing> {
        let sizes: Vec<u64> = objects.iter().map(|o| o.size).collect();
        let (alone, batches) = migration::plan_batches(
            &sizes,
            self.batch_max_size,
            self.batch_objects,
            self.copy_concurrency,
        );
        let mut jobs = Vec::with_capacity(alone.len() + batches.len());
        for batch in batches {
            let objects: Vec<s3rf_wire::BatchObject> = batch
                .iter()
                .map(|&i| s3rf_wire::BatchObject {
                    key: objects[i].key.clone(),
                    size: objects[i].size,
                    etag: objects[i].etag.clone(),
                })
                .collect();
            let entity = migration::batch_entity(&s.bucket, objects.iter().map(|o| o.key.as_str()));
            let job = s3rf_wire::BatchJob {
                scope: s.clone(),
                objects,
            };
            jobs.push(self.outgoing(
                JobKind::Batch,
                format!("{}:batch:{entity}", s.migration),
                &job,
            ));
        }
        for i in alone {
            let obj = &objects[i];
            let copy = crate::job::listed_copy(s, &obj.key, obj.size, obj.etag.as_deref());
            let msg_id =
                migration::copy_msg_id(&s.migration, &s.bucket, &obj.key, obj.etag.as_deref());
            jobs.push(self.outgoing(JobKind::Copy, msg_id, &copy));
        }
        jobs
    }

    /// `list`: one page. Its ledger event first, then the jobs of the
    /// listings it leads to (the next page, and with a split one listing per
    /// common prefix), then this page's object jobs.
    pub async fn list(&self, job: &ListJob) -> Result<(), ControlError> {
        let s = &job.scope.0;
        if s.versions && job.side == Side::Source {
            return self.list_versions(job).await;
        }
        let (endpoint, bucket) = match job.side {
            Side::Source => (&s.src, &s.bucket),
            Side::Destination => (&s.dst, &s.dst_bucket),
        };
        self.wait_for_room(job.side).await?;
        let started = std::time::Instant::now();
        let prefix = job.prefix.as_deref().or(s.prefix.as_deref());
        let page = self
            .executor
            .list_page(
                endpoint,
                bucket,
                prefix,
                job.continuation_token.as_deref(),
                self.page_size,
                (job.split > 0).then_some("/"),
            )
            .await?;
        let list_ms = started.elapsed().as_millis();
        let objects = page.objects.len() as u64;
        let last = page.next.is_none();
        let listings = page.prefixes.len() as u64;
        let bytes = page.objects.iter().map(|o| o.size).sum::<u64>();
        // Recorded before any page it announces is published, so a page's
        // event never precedes its announcer's and the fold's count
        // (`pages == 1 + followups`) is exact. A redelivery finds it recorded.
        let event = LedgerEvent::Page {
            bucket: s.bucket.clone(),
            side: job.side,
            page: job.page,
            objects,
            bytes,
            last,
            listings,
        };
        self.ledger
            .record(
                &s.migration,
                &migration::page_entity(&s.bucket, job.side, job.prefix.as_deref(), job.page),
                &event,
                0,
            )
            .await?;
        // List ahead: other list workers (of this or other agents) list the
        // next page and the split prefixes while this page's jobs are
        // published, so listing never waits for publishing. A redelivery of
        // this job republishes them under the same ids, which JetStream drops.
        let mut ahead = Vec::with_capacity(page.prefixes.len() + 1);
        if let Some(token) = page.next {
            let next = Listing {
                prefix: job.prefix.clone(),
                split: job.split,
                page: job.page + 1,
            };
            ahead.push(self.list_job(&job.scope, job.side, next, Some(token), None));
        }
        for p in page.prefixes {
            let child = Listing {
                prefix: Some(p),
                split: job.split.saturating_sub(1),
                page: 0,
            };
            ahead.push(self.list_job(&job.scope, job.side, child, None, None));
        }
        self.publish_all(ahead).await?;
        let jobs = match job.side {
            Side::Source => self.source_jobs(s, &page.objects),
            Side::Destination => page
                .objects
                .iter()
                .map(|obj| {
                    let delete = s3rf_wire::DeleteJob {
                        dst: s3rf_wire::DestinationObject {
                            endpoint: s.dst.clone(),
                            bucket: s.dst_bucket.clone(),
                            key: obj.key.clone(),
                        },
                        src: Some(s3rf_wire::SourceObject {
                            endpoint: s.src.clone(),
                            bucket: s.bucket.clone(),
                            key: obj.key.clone(),
                            version_id: None,
                        }),
                        sequencer: None,
                        migration: Some(s.migration.clone()),
                        if_source_absent: true,
                        dry_run: s.dry_run,
                    };
                    let entity = migration::object_entity(&s.bucket, Side::Destination, &obj.key);
                    self.outgoing(
                        JobKind::Delete,
                        format!("{}:delete:{entity}", s.migration),
                        &delete,
                    )
                })
                .collect(),
        };
        self.publish_all(jobs).await?;
        info!(
            migration = %s.migration,
            bucket = %bucket,
            endpoint = %endpoint,
            prefix = job.prefix.as_deref(),
            page = job.page,
            objects,
            listings,
            last,
            list_ms,
            total_ms = started.elapsed().as_millis(),
            "listed page"
        );
        Ok(())
    }
}

mod versions;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_migration_without_an_id_is_named_for_its_message() {
        let delivery = |published_ms| Delivery {
            seq: 42,
            delivered: 3,
            published_ms,
        };
        // 2026-12-03T04:45:12.345Z
        assert_eq!(
            default_id(delivery(1_796_273_112_345)),
            "m-20261203-044512-42"
        );
        assert_eq!(default_id(delivery(-5)), "m-19700101-000000-42");
    }
}
