//! `s3rf-agent run`: the daemon. Connects, sets up streams and consumers, runs
//! one pull loop per job kind, and shuts down cleanly.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use tokio_util::task::TaskTracker;
use tracing::info;

use crate::config::Config;
use crate::context::Shared;
use crate::executor::Executor;
use crate::fleet::Fleet;
use crate::jetstream::{self as js_setup, QueueError};
use crate::ledger::Ledger;
use crate::names::{JobKind, Names};
use crate::ordering::Sequencers;
use crate::pausing::PauseStore;
use crate::resume::Uploads;
use crate::scheduler::Scheduler;
use crate::shutdown::{self, Shutdown};
use crate::store::{StoreError, Stores};
use crate::worker::pull_loop;

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Embedded(#[from] crate::embedded::EmbeddedError),
}

/// Options of `s3rf-agent run` beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Exit 0 after this long with no job in flight and none arriving.
    pub exit_when_idle: Option<Duration>,
}

/// Runs the agent until a signal (or idleness) stops it.
pub async fn run(mut config: Config, opts: RunOptions) -> Result<(), AgentError> {
    // Embedded mode: our own nats-server, started on this (the main) thread
    // so that the kernel stops it if the agent dies; stopped when `run` ends.
    let mut embedded = match &config.nats.embedded {
        Some(e) => {
            let server = crate::embedded::EmbeddedNats::start(e)?;
            config.nats.url = server.url.clone();
            Some(server)
        }
        None => None,
    };
    let metrics_handle = config
        .metrics_listen
        .and_then(|_| crate::metrics::install());
    let shutdown = Shutdown::default();
    shutdown::install(shutdown.clone(), config.copy.shutdown_grace).map_err(AgentError::Signals)?;
    let names = Names::new(&config.nats.prefix);
    let stores = Stores::build(&config.endpoints).await?;
    // Load filters before taking jobs, so that the first job sees the whole chain.
    let filter_config = config.filters.clone();
    let (filters, watcher) =
        tokio::task::spawn_blocking(move || crate::filter::Filters::start(&filter_config))
            .await
            .unwrap_or_else(|e| {
                // Loading cannot panic by design; if it did, run without
                // filters rather than not at all, and say so.
                tracing::error!(error = %e, "loading filters failed; running without filters");
                Default::default()
            });
    let SetUp {
        client,
        js,
        consumers,
        ledger,
        sequencers,
        uploads,
        pauses,
        paused,
        fleet,
        scheduler,
    } = set_up_retrying(&config, &names, &shutdown.stop).await?;
    let mut executor = Executor::new(stores, config.copy.clone())
        .with_filters(filters)
        .with_limits(&config.limits);
    if let Some(uploads) = uploads {
        executor = executor.with_resume(uploads);
    }
    let rating = tokio::spawn(
        fleet
            .clone()
            .run(executor.rates().clone(), shutdown.stop.clone()),
    );
    crate::metrics::pauses(&paused);
    let (pauses_tx, pauses_rx) = tokio::sync::watch::channel(paused);
    let following = tokio::spawn(pauses.follow(pauses_tx, shutdown.stop.clone()));
    let scheduling = tokio::spawn(scheduler.clone().run(
        js.clone(),
        names.clone(),
        ledger.clone(),
        pauses_rx.clone(),
        shutdown.stop.clone(),
    ));
    let unparking = tokio::spawn(crate::pausing::unpark_loop(
        js.clone(),
        names.clone(),
        pauses_rx.clone(),
        shutdown.stop.clone(),
    ));
    let shared = Arc::new(Shared {
        js: js.clone(),
        names: names.clone(),
        executor,
        nats: config.nats.clone(),
        copy: config.copy.clone(),
        migrate: config.migrate.clone(),
        ledger: ledger.clone(),
        sequencers,
        pauses: pauses_rx,
        fleet,
        scheduler,
        settling: Arc::new(tokio::sync::Semaphore::new(config.copy.concurrency)),
        abort: shutdown.abort.clone(),
        tracker: TaskTracker::new(),
        last_busy_ms: AtomicU64::new(0),
        started: Instant::now(),
    });
    if let Some(watcher) = watcher {
        tokio::spawn(watcher.run(config.filters.reload_interval, shutdown.stop.clone()));
    }
    let set_up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    if let Some(listen) = config.metrics_listen {
        tokio::spawn(crate::health::serve(
            listen,
            metrics_handle,
            crate::health::Readiness {
                client: client.clone(),
                set_up: set_up.clone(),
            },
            shutdown.abort.clone(),
        ));
    }
    info!(
        nats = %config.nats.url,
        stream = %names.jobs_stream(),
        endpoints = config.endpoints.len(),
        concurrency = config.copy.concurrency,
        "agent ready"
    );
    shutdown::notify_ready(shutdown.stop.clone());
    let advisories = tokio::spawn(js_setup::watch_max_deliveries(
        client.clone(),
        js.clone(),
        names.clone(),
        shutdown.stop.clone(),
    ));
    let tally = tokio::spawn(tally_loop(
        ledger,
        config.migrate.tally_interval,
        shutdown.stop.clone(),
    ));
    let mut loops = Vec::new();
    for (kind, consumer) in consumers {
        let concurrency = match kind {
            JobKind::Copy | JobKind::Delete | JobKind::Batch | JobKind::Versions => {
                config.copy.concurrency
            }
            JobKind::Migrate | JobKind::Bucket | JobKind::List | JobKind::Verify => {
                config.migrate.list_concurrency
            }
        };
        loops.push(tokio::spawn(pull_loop(
            shared.clone(),
            kind,
            consumer,
            concurrency,
            shutdown.stop.clone(),
        )));
    }
    if let Some(idle) = opts.exit_when_idle {
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let grace = config.copy.shutdown_grace;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                if shared.idle_for() >= idle {
                    info!(
                        idle_secs = idle.as_secs(),
                        "no work; exiting as asked by --exit-when-idle"
                    );
                    shutdown.begin(grace);
                    return;
                }
            }
        });
    }
    for l in loops {
        let _ = l.await;
    }
    let _ = advisories.await;
    let _ = tally.await;
    let _ = following.await;
    let _ = unparking.await;
    let _ = rating.await;
    let _ = scheduling.await;
    shared.tracker.close();
    shared.tracker.wait().await;
    // Acks and naks are fire-and-forget publishes; make sure they left.
    let _ = client.flush().await;
    drop(client);
    if let Some(server) = embedded.as_mut() {
        server.stop();
    }
    info!("agent stopped");
    Ok(())
}

/// What the agent needs from NATS before it takes jobs.
struct SetUp {
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    consumers: Vec<(JobKind, async_nats::jetstream::consumer::PullConsumer)>,
    ledger: Ledger,
    sequencers: Sequencers,
    uploads: Option<Uploads>,
    pauses: PauseStore,
    paused: crate::pause::Pauses,
    fleet: Fleet,
    scheduler: Scheduler,
}

/// Connects and creates (or updates) every stream, consumer and KV bucket.
async fn set_up(config: &Config, names: &Names) -> Result<SetUp, QueueError> {
    let client = js_setup::connect(&config.nats, "s3rf-agent").await?;
    let js = async_nats::jetstream::new(client.clone());
    js_setup::ensure_streams(&js, names, &config.nats).await?;
    let mut consumers = Vec::new();
    for kind in JobKind::ALL {
        consumers.push((
            kind,
            js_setup::ensure_consumer(&js, names, kind, &config.nats).await?,
        ));
    }
    let ledger = Ledger::open(&js, names, config.nats.replicas).await?;
    let sequencers =
        Sequencers::open(&js, names, config.nats.replicas, config.sync.sequencer_ttl).await?;
    let uploads = match config.copy.resume_ttl {
        Some(ttl) => Some(
            Uploads::open(
                &js,
                names,
                config.nats.replicas,
                ttl,
                crate::resume::liveness(config.nats.ack_wait),
            )
            .await?,
        ),
        None => None,
    };
    // Read the pauses before the first pull, so that an agent started
    // during a pause honours it from its first job.
    let pauses = PauseStore::open(&js, names, config.nats.replicas).await?;
    let paused = pauses.load().await?;
    let fleet = Fleet::open(&js, names, config.nats.replicas).await?;
    let scheduler = Scheduler::open(&js, names, config.nats.replicas).await?;
    Ok(SetUp {
        client,
        js,
        consumers,
        ledger,
        sequencers,
        uploads,
        pauses,
        paused,
        fleet,
        scheduler,
    })
}

/// Longest wait between two set-up attempts.
const SET_UP_MAX_DELAY: Duration = Duration::from_secs(30);

/// The wait before set-up attempt `attempt + 1`: doubling from 250 ms up to
/// [`SET_UP_MAX_DELAY`], with up to half of it added at random so that
/// agents started together do not retry together.
fn set_up_delay(attempt: u32, jitter: f64) -> Duration {
    let base = Duration::from_millis(250)
        .saturating_mul(1 << attempt.min(10))
        .min(SET_UP_MAX_DELAY);
    base.mul_f64(1.0 + jitter.clamp(0.0, 1.0) / 2.0)
}

/// [`set_up`] until it succeeds: a NATS that is not up yet, or a cluster
/// whose servers time out when several agents create the same replicated
/// stream at once (nats-server #3677), is waited for; each retry is logged
/// once with its reason. Settings the server ignores, or unreadable
/// credentials, stop the agent at once. A stop signal ends the wait.
async fn set_up_retrying(
    config: &Config,
    names: &Names,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<SetUp, QueueError> {
    let mut attempt = 0u32;
    loop {
        let e = match set_up(config, names).await {
            Ok(done) => return Ok(done),
            Err(e) if !e.is_transient() => return Err(e),
            Err(e) => e,
        };
        let jitter = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as f64
            / u64::MAX as f64;
        let delay = set_up_delay(attempt, jitter);
        attempt += 1;
        tracing::warn!(
            attempt,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error = %e,
            "JetStream set-up failed; retrying"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return Err(e),
        }
    }
}

/// Folds ledger events into the tallies of unfinished migrations, and says so
/// when one completes. Every agent does this; compare-and-swap keeps it exact.
async fn tally_loop(ledger: Ledger, every: Duration, stop: tokio_util::sync::CancellationToken) {
    let mut finished: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let Ok(ids) = ledger.migrations().await else {
            continue;
        };
        for id in ids {
            if finished.contains(&id) {
                continue;
            }
            match ledger.tally(&id).await {
                Ok(t) if t.complete() => {
                    finished.insert(id);
                    continue;
                }
                Ok(_) => {}
                Err(_) => continue,
            }
            match ledger.fold(&id).await {
                Ok(t) if t.complete() => {
                    info!(
                        migration = %id,
                        listed = t.listed,
                        copied = t.copied,
                        skipped = t.skipped,
                        dead_lettered = t.dead_lettered,
                        deleted = t.deleted,
                        "migration complete"
                    );
                    finished.insert(id);
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(migration = %id, error = %e, "tally fold failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_up_retries_back_off_with_jitter_up_to_a_cap() {
        #[rustfmt::skip]
        let table = [
            (0, 0.0, 250), (0, 1.0, 375), (1, 0.0, 500), (3, 0.5, 2500),
            (7, 0.0, 30_000), (40, 1.0, 45_000),
        ];
        for (attempt, jitter, want_ms) in table {
            assert_eq!(
                set_up_delay(attempt, jitter),
                Duration::from_millis(want_ms),
                "attempt {attempt} jitter {jitter}"
            );
        }
    }
}
