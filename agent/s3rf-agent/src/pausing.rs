//! Pause and resume: the pauses in force (KV bucket `<prefix>-pauses`),
//! each agent's live view of them, and the jobs they hold.
//!
//! - `s3rf-agent pause` writes a key (`all`, `sync`, `m.<id>`) with the time
//!   it began; `resume` deletes it. Every agent follows the bucket with a KV
//!   watch, so a pause reaches running agents within milliseconds, and an
//!   agent that starts later reads it before it pulls its first job.
//! - A pause of everything stops every pull loop: the jobs stay queued in
//!   the job stream, untouched, and jobs in flight finish.
//! - A job that one pause holds (a migration's, or an event's) shares its
//!   subject and consumer with jobs that are not held, so it cannot be left
//!   in the job stream: JetStream would redeliver it, and every redelivery
//!   counts toward `max_deliver`. It is *parked* instead: published unchanged
//!   to `<prefix>.parked.<key>.<kind>` in the `S3RF_PARKED` stream, then
//!   acked. A batch checks between its objects and hands the rest off.
//! - When the pause ends, agents move its parked jobs back to their job
//!   subjects through one durable consumer per pause (`unpark-<key>`), each
//!   publish confirmed before the parked copy is acked. A job parked just
//!   after a resume is found by the next sweep, every few seconds.
//!
//! **Invariant:** a held job is acked only after JetStream has stored its
//! parked copy, and a parked copy only after its job is stored again, so a
//! pause loses nothing. Publishes carry `park:<seq>` / `unpark:<seq>` ids so
//! that a repeat after a lost ack is dropped as a duplicate.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, PullConsumer, pull},
    kv,
};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::jetstream::{QueueError, kv_err, publish_failed, publish_stored};
use crate::names::{HDR_ORIGINAL_SUBJECT, HDR_PARKED_AT, JobKind, Names};
use crate::pause::{PauseScope, Pauses, parked_scope};

/// How often every agent looks for parked jobs whose pause has ended (a
/// resume is acted on at once; this catches jobs parked just after it).
pub const UNPARK_SWEEP: Duration = Duration::from_secs(3);

/// Parked jobs moved back per fetch.
const UNPARK_BATCH: usize = 256;

/// The value of a pause key.
#[derive(Debug, Serialize, Deserialize)]
struct PauseRecord {
    /// When the pause began, ms since the epoch.
    since_ms: u64,
}

/// What `pause` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paused {
    /// Paused now, at this time.
    Now(u64),
    /// It already was, since this time.
    Already(u64),
}

/// The pauses bucket.
#[derive(Debug, Clone)]
pub struct PauseStore {
    kv: kv::Store,
    bucket: String,
}

impl PauseStore {
    /// Opens (or creates) the bucket; pauses never expire.
    pub async fn open(
        js: &jetstream::Context,
        names: &Names,
        replicas: usize,
    ) -> Result<Self, QueueError> {
        let bucket = names.pauses_kv();
        let kv = crate::jetstream::open_kv(
            js,
            &bucket,
            "s3rf: pauses in force (all, sync, m.<migration>)",
            Duration::ZERO,
            replicas,
        )
        .await?;
        Ok(Self { kv, bucket })
    }

    /// Pauses `scope` from `now_ms`, unless it already is.
    pub async fn pause(&self, scope: &PauseScope, now_ms: u64) -> Result<Paused, QueueError> {
        let value = serde_json::to_vec(&PauseRecord { since_ms: now_ms }).unwrap_or_default();
        match self.kv.create(scope.key(), value.into()).await {
            Ok(_) => Ok(Paused::Now(now_ms)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let since = self.since(scope).await?.unwrap_or(now_ms);
                Ok(Paused::Already(since))
            }
            Err(e) => Err(kv_err(e, &self.bucket)),
        }
    }

    /// Ends `scope`'s pause; returns when it began, or `None` if it was not
    /// paused.
    pub async fn resume(&self, scope: &PauseScope) -> Result<Option<u64>, QueueError> {
        let since = self.since(scope).await?;
        if since.is_some() {
            self.kv
                .delete(scope.key())
                .await
                .map_err(|e| kv_err(e, &self.bucket))?;
        }
        Ok(since)
    }

    async fn since(&self, scope: &PauseScope) -> Result<Option<u64>, QueueError> {
        let v = self
            .kv
            .get(scope.key())
            .await
            .map_err(|e| kv_err(e, &self.bucket))?;
        Ok(v.map(|b| record_since(&b, 0)))
    }

    /// Every pause in force.
    pub async fn load(&self) -> Result<Pauses, QueueError> {
        let mut pauses = Pauses::default();
        let keys: Vec<String> = match self.kv.keys().await {
            Ok(k) => k.try_collect().await.map_err(|e| kv_err(e, &self.bucket))?,
            Err(e) => return Err(kv_err(e, &self.bucket)),
        };
        for key in keys {
            let Some(scope) = PauseScope::from_key(&key) else {
                continue;
            };
            if let Some(v) = self
                .kv
                .get(&key)
                .await
                .map_err(|e| kv_err(e, &self.bucket))?
            {
                pauses.insert(scope, record_since(&v, 0));
            }
        }
        Ok(pauses)
    }

    /// Keeps `tx` equal to the bucket until `stop`: a KV watch that replays
    /// each key's last value, then follows changes; re-opened after an error.
    pub async fn follow(self, tx: watch::Sender<Pauses>, stop: CancellationToken) {
        loop {
            match self.kv.watch_with_history(">").await {
                Ok(mut entries) => loop {
                    let next = tokio::select! {
                        e = entries.next() => e,
                        () = stop.cancelled() => return,
                    };
                    match next {
                        Some(Ok(entry)) => apply(&tx, &entry),
                        Some(Err(e)) => {
                            warn!(error = %e, "watching pauses failed; watching again");
                            break;
                        }
                        None => break,
                    }
                },
                Err(e) => warn!(error = %e, "cannot watch pauses; retrying"),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

fn record_since(value: &[u8], fallback: u64) -> u64 {
    serde_json::from_slice::<PauseRecord>(value).map_or(fallback, |r| r.since_ms)
}

fn apply(tx: &watch::Sender<Pauses>, entry: &kv::Entry) {
    let Some(scope) = PauseScope::from_key(&entry.key) else {
        return;
    };
    match entry.operation {
        kv::Operation::Put => {
            let created =
                u64::try_from(entry.created.unix_timestamp_nanos() / 1_000_000).unwrap_or_default();
            let since = record_since(&entry.value, created);
            tx.send_if_modified(|p| {
                if p.since(&scope).is_some() {
                    return false;
                }
                info!(pause = %scope.describe(), "paused");
                p.insert(scope.clone(), since);
                true
            });
        }
        kv::Operation::Delete | kv::Operation::Purge => {
            tx.send_if_modified(|p| {
                if p.since(&scope).is_none() {
                    return false;
                }
                info!(pause = %scope.describe(), "resumed");
                p.remove(&scope);
                true
            });
        }
    }
    crate::metrics::pauses(&tx.borrow());
}

/// Waits while everything is paused; returns `false` if `stop` came first.
pub async fn wait_unless_all_paused(
    pauses: &mut watch::Receiver<Pauses>,
    stop: &CancellationToken,
) -> bool {
    loop {
        if !pauses.borrow_and_update().all() {
            return true;
        }
        tokio::select! {
            changed = pauses.changed() => if changed.is_err() { return true },
            () = stop.cancelled() => return false,
        }
    }
}

/// Moves a job that `scope` holds to the parked stream. The caller acks the
/// job once this returns `Ok`.
pub async fn park(
    js: &jetstream::Context,
    names: &Names,
    kind: JobKind,
    msg: &jetstream::Message,
    seq: u64,
    scope: &PauseScope,
) -> Result<(), QueueError> {
    let subject = names.parked_subject(&scope.key(), kind);
    let mut headers = crate::jetstream::original_headers(msg.headers.as_ref());
    headers.insert(HDR_ORIGINAL_SUBJECT, msg.subject.as_str());
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    headers.insert(HDR_PARKED_AT, now.as_str());
    headers.insert("Nats-Msg-Id", format!("park:{seq}").as_str());
    publish_stored(js, &subject, headers, msg.payload.to_vec())
        .await
        .map_err(|e| publish_failed(&subject, &e))?;
    Ok(())
}

/// Parked jobs per pause scope.
pub async fn parked_counts(
    js: &jetstream::Context,
    names: &Names,
) -> Result<BTreeMap<PauseScope, u64>, QueueError> {
    let stream_name = names.parked_stream();
    let stream = js
        .get_stream(&stream_name)
        .await
        .map_err(|e| kv_err(e, &stream_name))?;
    let mut counts = BTreeMap::new();
    let mut subjects = stream
        .info_with_subjects(names.parked_subjects())
        .await
        .map_err(|e| kv_err(e, &stream_name))?;
    while let Some((subject, n)) = subjects
        .try_next()
        .await
        .map_err(|e| kv_err(e, &stream_name))?
    {
        if let Some(scope) = parked_scope(names.prefix(), &subject) {
            *counts.entry(scope).or_default() += n as u64;
        }
    }
    Ok(counts)
}

/// Every agent's sweep: moves back the parked jobs of pauses that have
/// ended, at once when a pause ends and every [`UNPARK_SWEEP`] otherwise.
/// Nothing moves while everything is paused.
pub async fn unpark_loop(
    js: jetstream::Context,
    names: Names,
    mut pauses: watch::Receiver<Pauses>,
    stop: CancellationToken,
) {
    loop {
        let now = pauses.borrow_and_update().clone();
        if !now.all() {
            match parked_counts(&js, &names).await {
                Ok(counts) => {
                    for (scope, n) in counts {
                        if n == 0 || now.since(&scope).is_some() {
                            continue;
                        }
                        match unpark(&js, &names, &scope, &pauses, &stop).await {
                            Ok(moved) if moved > 0 => {
                                info!(pause = %scope.describe(), moved, "parked jobs moved back to the queue");
                            }
                            Ok(_) => {}
                            Err(e) => warn!(pause = %scope.describe(), error = %e,
                                "cannot move parked jobs back yet; retrying"),
                        }
                    }
                }
                Err(e) => debug!(error = %e, "cannot count parked jobs"),
            }
        }
        tokio::select! {
            _ = pauses.changed() => {}
            () = tokio::time::sleep(UNPARK_SWEEP) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Moves `scope`'s parked jobs back to their job subjects until none is
/// left or the scope is paused again.
async fn unpark(
    js: &jetstream::Context,
    names: &Names,
    scope: &PauseScope,
    pauses: &watch::Receiver<Pauses>,
    stop: &CancellationToken,
) -> Result<u64, QueueError> {
    let stream_name = names.parked_stream();
    let name = scope.unpark_consumer();
    let stream = js
        .get_stream(&stream_name)
        .await
        .map_err(|e| kv_err(e, &stream_name))?;
    let consumer: PullConsumer = stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                description: Some(format!("s3rf: moves {} back", scope.describe())),
                filter_subject: names.parked_scope(&scope.key()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                inactive_threshold: Duration::from_secs(300),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| QueueError::Setup {
            what: "consumer",
            name: name.clone(),
            detail: e.to_string(),
        })?;
    let mut moved = 0u64;
    loop {
        let held = {
            let p = pauses.borrow();
            p.all() || p.since(scope).is_some()
        };
        if held || stop.is_cancelled() {
            return Ok(moved);
        }
        let mut batch = consumer
            .fetch()
            .max_messages(UNPARK_BATCH)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| QueueError::Setup {
                what: "consumer",
                name: name.clone(),
                detail: e.to_string(),
            })?;
        let mut pending = Vec::new();
        while let Some(m) = batch.next().await {
            let Ok(m) = m else { continue };
            let Ok(info) = m.info() else { continue };
            let seq = info.stream_sequence;
            let kind = m
                .subject
                .rsplit('.')
                .next()
                .and_then(|t| JobKind::ALL.into_iter().find(|k| k.token() == t));
            let Some(kind) = kind else {
                // Not s3rf's: leave it for an operator to look at.
                let _ = m.ack_with(AckKind::Term).await;
                warn!(subject = %m.subject, "a parked message names no job kind; dropped from the parked stream");
                continue;
            };
            let subject = names.job_subject(kind);
            let mut headers = HeaderMap::new();
            if let Some(orig) = &m.headers {
                for (k, values) in orig.iter() {
                    let n: &str = k.as_ref();
                    if [HDR_ORIGINAL_SUBJECT, HDR_PARKED_AT, "Nats-Msg-Id"]
                        .iter()
                        .any(|h| n.eq_ignore_ascii_case(h))
                    {
                        continue;
                    }
                    for v in values {
                        headers.append(n, v.as_str());
                    }
                }
            }
            headers.insert("Nats-Msg-Id", format!("unpark:{seq}").as_str());
            let ack = js
                .publish_with_headers(subject.clone(), headers, m.payload.clone())
                .await
                .map_err(|e| publish_failed(&subject, &e))?;
            pending.push((m, subject, ack));
        }
        if pending.is_empty() {
            return Ok(moved);
        }
        for (m, subject, ack) in pending {
            ack.await.map_err(|e| publish_failed(&subject, &e))?;
            if let Err(e) = m.double_ack().await {
                debug!(error = %e, "ack of a moved parked job not confirmed; a repeat is dropped as a duplicate");
            }
            moved += 1;
            crate::metrics::unparked();
        }
    }
}
