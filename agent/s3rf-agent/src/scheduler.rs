//! Scheduled re-runs (`"every"` on a migrate job): schedules live in the KV
//! bucket `<prefix>-schedules`, one key per base migration id
//! (`schedule::Schedule`, pure). Every agent looks once a second; when a
//! run is due and the last one is complete (`schedule::Schedule::due`),
//! it publishes the run's migrate job (`Nats-Msg-Id: migrate:<run id>`)
//! and then moves the schedule on with a compare-and-swap on its revision.
//! The CAS is the lease: of the agents that saw the same revision, one
//! wins; the others' publishes of the same run are duplicates JetStream
//! drops. An agent that dies between its publish and its CAS leaves the
//! schedule where it was, so the next agent publishes the same run again
//! (the same id and spec: the migration goes on as one), and the schedule
//! moves on: an agent death does not stop it.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, kv};
use futures::TryStreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::jetstream::{QueueError, kv_err, publish_failed, publish_stored};
use crate::ledger::Ledger;
use crate::names::{JobKind, Names};
use crate::pause::Pauses;
use crate::schedule::{Due, Schedule};

/// How often every agent looks for due runs.
pub const SCHEDULE_TICK: Duration = Duration::from_secs(1);

/// The schedules bucket.
#[derive(Debug, Clone)]
pub struct Scheduler {
    kv: kv::Store,
    bucket: String,
}

impl Scheduler {
    /// Opens (or creates) the bucket.
    pub async fn open(
        js: &jetstream::Context,
        names: &Names,
        replicas: usize,
    ) -> Result<Self, QueueError> {
        let bucket = names.schedules_kv();
        let kv = crate::jetstream::open_kv(
            js,
            &bucket,
            "s3rf: scheduled re-runs of migrations",
            Duration::ZERO,
            replicas,
        )
        .await?;
        Ok(Self { kv, bucket })
    }

    /// Makes `spec` (run 1, started now) a schedule, unless it is one: a
    /// redelivered migrate job must not restart the count.
    pub async fn register(
        &self,
        spec: &s3rf_wire::MigrateJob,
        every_ms: u64,
    ) -> Result<(), QueueError> {
        let s = Schedule::new(spec.clone(), every_ms, crate::clock::now_ms());
        let value = serde_json::to_vec(&s).unwrap_or_default();
        match self.kv.create(s.base(), value.into()).await {
            Ok(_) => {
                info!(migration = %s.base(), every_ms, "migration scheduled");
                Ok(())
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(kv_err(e, &self.bucket)),
        }
    }

    /// The schedule of base id `id`, with its revision.
    pub async fn get(&self, id: &str) -> Result<Option<(Schedule, u64)>, QueueError> {
        let entry = self
            .kv
            .entry(id)
            .await
            .map_err(|e| kv_err(e, &self.bucket))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .and_then(|e| Some((serde_json::from_slice(&e.value).ok()?, e.revision))))
    }

    /// Changes the interval of `id`'s schedule; `false` if it has none.
    pub async fn set_every(&self, id: &str, every_ms: u64) -> Result<bool, QueueError> {
        for _ in 0..8 {
            let Some((mut s, revision)) = self.get(id).await? else {
                return Ok(false);
            };
            s.every_ms = every_ms;
            let value = serde_json::to_vec(&s).unwrap_or_default();
            if self.kv.update(id, value.into(), revision).await.is_ok() {
                return Ok(true);
            }
        }
        Err(kv_err(
            "the schedule kept changing; try again",
            &self.bucket,
        ))
    }

    /// Ends `id`'s schedule (runs already started go on); `false` if it
    /// had none.
    pub async fn stop(&self, id: &str) -> Result<bool, QueueError> {
        if self.get(id).await?.is_none() {
            return Ok(false);
        }
        self.kv
            .purge(id)
            .await
            .map_err(|e| kv_err(e, &self.bucket))?;
        Ok(true)
    }

    /// This agent's part until `stop`: start the runs that are due.
    pub async fn run(
        self,
        js: jetstream::Context,
        names: Names,
        ledger: Ledger,
        pauses: watch::Receiver<Pauses>,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(SCHEDULE_TICK);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            if pauses.borrow().all() {
                continue;
            }
            if let Err(e) = self.start_due(&js, &names, &ledger, &pauses).await {
                debug!(error = %e, "cannot look at schedules now");
            }
        }
    }

    async fn start_due(
        &self,
        js: &jetstream::Context,
        names: &Names,
        ledger: &Ledger,
        pauses: &watch::Receiver<Pauses>,
    ) -> Result<(), QueueError> {
        let keys: Vec<String> = self
            .kv
            .keys()
            .await
            .map_err(|e| kv_err(e, &self.bucket))?
            .try_collect()
            .await
            .map_err(|e| kv_err(e, &self.bucket))?;
        for key in keys {
            let Some((s, revision)) = self.get(&key).await? else {
                continue;
            };
            let now = crate::clock::now_ms();
            if now < s.next_ms() {
                continue;
            }
            let complete = ledger.tally(&s.last_run()).await?.complete();
            let paused = pauses.borrow().holds_migration(s.base());
            let Due::Start { n, id } = s.due(now, complete, paused) else {
                continue;
            };
            let subject = names.job_subject(JobKind::Migrate);
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("migrate:{id}").as_str());
            let payload = serde_json::to_vec(&s.run_spec(n)).unwrap_or_default();
            publish_stored(js, &subject, headers, payload)
                .await
                .map_err(|e| publish_failed(&subject, &e))?;
            let next = serde_json::to_vec(&s.started(n, now)).unwrap_or_default();
            match self.kv.update(&key, next.into(), revision).await {
                Ok(_) => {
                    crate::metrics::scheduled_run(s.base());
                    info!(migration = %s.base(), run = %id, n, "scheduled run started");
                }
                Err(e) => debug!(migration = %s.base(), error = %e,
                    "another agent moved the schedule on first"),
            }
        }
        Ok(())
    }
}
