//! What every job handler of an agent shares: the JetStream context, the
//! executor, settings, the ledger and sequencers, the pauses in force, the
//! settling permits and
//! the shutdown token ([`Shared`]), and which delivery of a job is running
//! ([`Delivery`]). The pull loop (`worker.rs`) and the handlers
//! (`object.rs`, `batch.rs`, `control/`) all take it; none depends on
//! another for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{CopyConfig, MigrateConfig, NatsConfig};
use crate::executor::Executor;
use crate::ledger::Ledger;
use crate::names::Names;
use crate::ordering::Sequencers;

/// Shared by every worker of an agent.
#[derive(Debug)]
pub struct Shared {
    /// JetStream context.
    pub js: jetstream::Context,
    /// Subject and stream names.
    pub names: Names,
    /// Executes jobs.
    pub executor: Executor,
    /// NATS settings (ack wait, max deliver).
    pub nats: NatsConfig,
    /// Copy settings (retry pacing).
    pub copy: CopyConfig,
    /// Migration settings.
    pub migrate: MigrateConfig,
    /// Migration ledger.
    pub ledger: Ledger,
    /// Per-object event sequencers.
    pub sequencers: Sequencers,
    /// Agent heartbeats and migration rates.
    pub fleet: crate::fleet::Fleet,
    /// Migration schedules.
    pub scheduler: crate::scheduler::Scheduler,
    /// The pauses in force, kept current by `pausing::PauseStore::follow`.
    pub pauses: tokio::sync::watch::Receiver<crate::pause::Pauses>,
    /// Object jobs whose S3 work is done and whose ledger record and ack are
    /// in flight (`copy.concurrency` at most): the job gives its pull slot
    /// back for this one, so bookkeeping does not hold S3 concurrency.
    pub settling: Arc<Semaphore>,
    /// Cancelled to abort jobs in flight (grace period over).
    pub abort: CancellationToken,
    /// Tracks jobs in flight.
    pub tracker: TaskTracker,
    /// Milliseconds since `started` at which the agent last had work.
    pub last_busy_ms: AtomicU64,
    /// Reference point for `last_busy_ms`.
    pub started: Instant,
}

impl Shared {
    pub(crate) fn mark_busy(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_busy_ms.store(ms, Ordering::Relaxed);
    }

    /// How long the agent has had no job in flight; zero while it has one.
    pub fn idle_for(&self) -> Duration {
        if !self.tracker.is_empty() {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_busy_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

/// Which delivery of which job this is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivery {
    /// Sequence in the job stream.
    pub seq: u64,
    /// How many times it was delivered, this time included.
    pub delivered: u64,
    /// When it was published (ms since the epoch, the NATS server's clock).
    pub published_ms: i64,
}
