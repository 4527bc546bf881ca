//! The fleet as each agent sees it: heartbeats in the KV bucket
//! `<prefix>-agents` (an entry per running agent, expiring 15 s after its
//! last beat) and migration rates in `<prefix>-rates` (`m.<id>`, written
//! by the migrate job from its `rate`, changed by `s3rf-agent
//! migrate-rate`). From both, every agent keeps its share of each rate
//! (`rate::share`, pure) in the executor's `RateBook`: a changed rate
//! reaches every agent through a KV watch at once, a changed number of
//! agents at the next count, every [`BEAT`].

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::{StreamExt, TryStreamExt};
use s3rf_wire::Rate;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::executor::RateBook;
use crate::jetstream::{QueueError, kv_err};
use crate::names::Names;
use crate::rate::share;

/// How often an agent beats and recounts the fleet.
pub const BEAT: Duration = Duration::from_secs(5);
/// How long a heartbeat counts.
pub const BEAT_TTL: Duration = Duration::from_secs(15);

fn rate_key(id: &str) -> String {
    format!("m.{id}")
}

/// The agents and rates buckets.
#[derive(Debug, Clone)]
pub struct Fleet {
    agents: kv::Store,
    rates: kv::Store,
    names: Names,
}

impl Fleet {
    /// Opens (or creates) both buckets.
    pub async fn open(
        js: &jetstream::Context,
        names: &Names,
        replicas: usize,
    ) -> Result<Self, QueueError> {
        let agents = crate::jetstream::open_kv(
            js,
            &names.agents_kv(),
            "s3rf: live agents (heartbeats)",
            BEAT_TTL,
            replicas,
        )
        .await?;
        let rates = crate::jetstream::open_kv(
            js,
            &names.rates_kv(),
            "s3rf: fleet-wide rate of each migration",
            Duration::ZERO,
            replicas,
        )
        .await?;
        Ok(Self {
            agents,
            rates,
            names: names.clone(),
        })
    }

    /// Sets migration `id`'s rate, unless it has one (a redelivered
    /// migrate job must not undo a `migrate-rate`).
    pub async fn init_rate(&self, id: &str, rate: &Rate) -> Result<(), QueueError> {
        let value = serde_json::to_vec(rate).unwrap_or_default();
        match self.rates.create(rate_key(id), value.into()).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(kv_err(e, &self.names.rates_kv())),
        }
    }

    /// Sets (or, with an unlimited rate, removes) migration `id`'s rate.
    pub async fn set_rate(&self, id: &str, rate: &Rate) -> Result<(), QueueError> {
        let bucket = self.names.rates_kv();
        if *rate == Rate::default() {
            self.rates
                .purge(rate_key(id))
                .await
                .map_err(|e| kv_err(e, &bucket))
        } else {
            let value = serde_json::to_vec(rate).unwrap_or_default();
            self.rates
                .put(rate_key(id), value.into())
                .await
                .map(|_| ())
                .map_err(|e| kv_err(e, &bucket))
        }
    }

    /// Migration `id`'s rate, if it has one.
    pub async fn rate(&self, id: &str) -> Result<Option<Rate>, QueueError> {
        let v = self
            .rates
            .get(rate_key(id))
            .await
            .map_err(|e| kv_err(e, &self.names.rates_kv()))?;
        Ok(v.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Agents whose heartbeat is fresh.
    pub async fn live_agents(&self) -> Result<usize, QueueError> {
        let keys = self
            .agents
            .keys()
            .await
            .map_err(|e| kv_err(e, &self.names.agents_kv()))?;
        let keys: Vec<String> = keys
            .try_collect()
            .await
            .map_err(|e| kv_err(e, &self.names.agents_kv()))?;
        Ok(keys.len())
    }

    /// This agent's part until `stop`: beat, count the fleet, follow the
    /// rates, and keep `book` at this agent's shares. The heartbeat is
    /// removed when it stops, so the others stop counting it at once.
    pub async fn run(self, book: RateBook, stop: CancellationToken) {
        let me = format!(
            "a-{:016x}",
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        );
        let mut rates: BTreeMap<String, Rate> = BTreeMap::new();
        let mut agents = 1usize;
        let mut tick = tokio::time::interval(BEAT);
        let mut watch = None;
        loop {
            if watch.is_none() {
                match self.rates.watch_with_history(">").await {
                    Ok(w) => watch = Some(w),
                    Err(e) => warn!(error = %e, "cannot watch migration rates; retrying"),
                }
            }
            tokio::select! {
                _ = tick.tick() => {
                    let beat = self.agents.put(&me, me.clone().into_bytes().into()).await;
                    if let Err(e) = beat {
                        warn!(error = %e, "cannot write this agent's heartbeat; retrying");
                    }
                    match self.live_agents().await {
                        Ok(n) if n != agents => {
                            info!(agents = n, "live agents counted");
                            crate::metrics::live_agents(n);
                            agents = n;
                        }
                        Ok(n) => {
                            crate::metrics::live_agents(n);
                            continue;
                        }
                        Err(_) => continue,
                    }
                }
                entry = async {
                    match watch.as_mut() {
                        Some(w) => w.next().await,
                        None => std::future::pending().await,
                    }
                } => match entry {
                    Some(Ok(e)) => {
                        let Some(id) = e.key.strip_prefix("m.") else { continue };
                        match e.operation {
                            kv::Operation::Put => match serde_json::from_slice::<Rate>(&e.value) {
                                Ok(r) => {
                                    info!(migration = %id, rate = %crate::rate::describe(&r), "migration rate");
                                    rates.insert(id.to_owned(), r);
                                }
                                Err(err) => warn!(migration = %id, error = %err, "ignoring an unreadable rate"),
                            },
                            kv::Operation::Delete | kv::Operation::Purge => {
                                rates.remove(id);
                            }
                        }
                    }
                    Some(Err(e)) => {
                        warn!(error = %e, "watching migration rates failed; watching again");
                        watch = None;
                        continue;
                    }
                    None => {
                        watch = None;
                        continue;
                    }
                },
                () = stop.cancelled() => {
                    let _ = self.agents.purge(&me).await;
                    return;
                }
            }
            let shares: HashMap<String, _> = rates
                .iter()
                .map(|(id, r)| (id.clone(), share(r, agents)))
                .collect();
            for (id, s) in &shares {
                crate::metrics::rate_share(id, s);
            }
            book.set(shares);
        }
    }
}
