//! The migration ledger: JetStream storage of migration specs, events and tallies.
//!
//! - Events go to the Limits stream `<PREFIX>_LEDGER` on
//!   `<prefix>.ledger.<migration>.<entity>.<event>`, published with
//!   `Nats-Expected-Last-Subject-Sequence: 0` scoped to `…<entity>.*`, so each
//!   entity (bucket, page, object) gets at most one event however often its job
//!   is redelivered.
//! - Specs and tallies live in the KV bucket `<prefix>-migrations` under
//!   `<id>.spec` and `<id>.tally`. A tally is folded from the ledger with a
//!   sequence watermark and written with compare-and-swap, so any agent may fold
//!   and no event is counted twice or lost.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
    context::PublishErrorKind,
    kv,
    stream::{self, LastRawMessageErrorKind, RetentionPolicy, StorageType},
};
use bytes::Bytes;
use futures::StreamExt;

use crate::jetstream::{QueueError, publish_failed, publish_stored};
use crate::migration::{LedgerEvent, ObjectOutcome, Tally};
use crate::names::Names;

/// Ledger events folded per compare-and-swap.
const FOLD_CHUNK: usize = 5000;

/// Whether an event was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Stored now.
    New,
    /// The entity already had an event; nothing stored.
    Already,
}

/// How a spec write went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecWrite {
    /// Stored now.
    Created,
    /// An identical spec was already stored (a redelivered migrate job).
    Same,
    /// A different spec is stored under this id.
    Different,
}

fn err(what: &'static str, name: &str, e: impl std::fmt::Display) -> QueueError {
    QueueError::Setup {
        what,
        name: name.to_owned(),
        detail: e.to_string(),
    }
}

/// Access to the ledger stream and the migrations KV bucket.
#[derive(Debug, Clone)]
pub struct Ledger {
    js: jetstream::Context,
    names: Names,
    kv: kv::Store,
}

impl Ledger {
    /// Creates (or updates) the ledger stream and KV bucket.
    pub async fn open(
        js: &jetstream::Context,
        names: &Names,
        replicas: usize,
    ) -> Result<Self, QueueError> {
        let cfg = stream::Config {
            name: names.ledger_stream(),
            subjects: vec![names.ledger_subjects()],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            num_replicas: replicas,
            description: Some(
                "s3rf migration ledger: one event per bucket, page and object".to_owned(),
            ),
            ..Default::default()
        };
        js.create_or_update_stream(cfg)
            .await
            .map_err(|e| err("stream", &names.ledger_stream(), e))?;
        let kv = crate::jetstream::open_kv(
            js,
            &names.migrations_kv(),
            "s3rf migration specs and tallies",
            Duration::ZERO,
            replicas,
        )
        .await?;
        Ok(Self {
            js: js.clone(),
            names: names.clone(),
            kv,
        })
    }

    async fn stream(&self) -> Result<jetstream::stream::Stream, QueueError> {
        let name = self.names.ledger_stream();
        self.js
            .get_stream(&name)
            .await
            .map_err(|e| err("stream", &name, e))
    }

    /// Records `event` for `entity` of `migration` if the entity's latest
    /// event is at sequence `expected_last` (0: the entity has none).
    pub async fn record(
        &self,
        migration: &str,
        entity: &str,
        event: &LedgerEvent,
        expected_last: u64,
    ) -> Result<Recorded, QueueError> {
        let subject = self.names.ledger_subject(migration, entity, event.name());
        let mut headers = HeaderMap::new();
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            expected_last.to_string().as_str(),
        );
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence-Subject",
            self.names.ledger_entity(migration, entity).as_str(),
        );
        let payload = serde_json::to_vec(event).unwrap_or_default();
        match publish_stored(&self.js, &subject, headers, payload).await {
            Ok(_) => Ok(Recorded::New),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(Recorded::Already),
            Err(e) => Err(publish_failed(&subject, &e)),
        }
    }

    /// Records an object's outcome once; a success may replace a recorded
    /// failure (a dead letter that was retried), exactly once.
    pub async fn record_outcome(
        &self,
        migration: &str,
        entity: &str,
        outcome: ObjectOutcome,
        bytes: u64,
    ) -> Result<Recorded, QueueError> {
        let event = |replaces_failure| LedgerEvent::Object {
            outcome,
            bytes,
            replaces_failure,
        };
        if outcome.is_failure() {
            return self.record(migration, entity, &event(false), 0).await;
        }
        self.record_success(migration, entity, outcome.failure_of_side(), event)
            .await
    }

    /// Records a versioned key's outcome once, as [`Self::record_outcome`].
    pub async fn record_versions(
        &self,
        migration: &str,
        entity: &str,
        counts: &crate::migration::VersionCounts,
    ) -> Result<Recorded, QueueError> {
        let event = |replaces_failure| LedgerEvent::Versions {
            counts: counts.clone(),
            replaces_failure,
        };
        self.record_success(migration, entity, ObjectOutcome::CopyFailed, event)
            .await
    }

    /// Records the success `event(false)` once; when the entity holds the
    /// failure `failed` instead, records `event(true)`, which replaces it.
    async fn record_success(
        &self,
        migration: &str,
        entity: &str,
        failed: ObjectOutcome,
        event: impl Fn(bool) -> LedgerEvent,
    ) -> Result<Recorded, QueueError> {
        let first = self.record(migration, entity, &event(false), 0).await?;
        if first == Recorded::New {
            return Ok(first);
        }
        let failure = self.names.ledger_subject(migration, entity, failed.event());
        let stream = self.stream().await?;
        let Ok(failed) = stream.get_last_raw_message_by_subject(&failure).await else {
            return Ok(Recorded::Already);
        };
        self.record(migration, entity, &event(true), failed.sequence)
            .await
    }

    /// The event recorded for `entity` under `name`, if any.
    pub async fn recorded(
        &self,
        migration: &str,
        entity: &str,
        name: &str,
    ) -> Result<Option<LedgerEvent>, QueueError> {
        let subject = self.names.ledger_subject(migration, entity, name);
        let stream = self.stream().await?;
        match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => Ok(serde_json::from_slice(&m.payload).ok()),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(err("ledger event", &subject, e)),
        }
    }

    /// Stores a migration's spec unless one is there.
    pub async fn put_spec(&self, id: &str, spec: &[u8]) -> Result<SpecWrite, QueueError> {
        let key = format!("{id}.spec");
        match self.kv.create(&key, Bytes::copy_from_slice(spec)).await {
            Ok(_) => Ok(SpecWrite::Created),
            Err(_) => match self.kv.get(&key).await {
                Ok(Some(existing)) if existing.as_ref() == spec => Ok(SpecWrite::Same),
                Ok(Some(_)) => Ok(SpecWrite::Different),
                Ok(None) => Err(err("key", &key, "vanished while being created")),
                Err(e) => Err(err("key", &key, e)),
            },
        }
    }

    /// A migration's spec as stored.
    pub async fn spec(&self, id: &str) -> Result<Option<Bytes>, QueueError> {
        let key = format!("{id}.spec");
        self.kv.get(&key).await.map_err(|e| err("key", &key, e))
    }

    /// Every migration id, oldest key order not guaranteed.
    pub async fn migrations(&self) -> Result<Vec<String>, QueueError> {
        let mut keys = match self.kv.keys().await {
            Ok(k) => k,
            Err(e) => return Err(err("key-value bucket", &self.names.migrations_kv(), e)),
        };
        let mut ids = Vec::new();
        while let Some(k) = keys.next().await {
            if let Ok(k) = k
                && let Some(id) = k.strip_suffix(".spec")
            {
                ids.push(id.to_owned());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The stored tally (possibly behind the ledger) and its KV revision.
    async fn stored_tally(&self, id: &str) -> Result<(Tally, u64), QueueError> {
        let key = format!("{id}.tally");
        match self.kv.entry(&key).await.map_err(|e| err("key", &key, e))? {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let t = serde_json::from_slice(&entry.value).unwrap_or_default();
                Ok((t, entry.revision))
            }
            _ => Ok((Tally::default(), 0)),
        }
    }

    /// The stored tally without folding.
    pub async fn tally(&self, id: &str) -> Result<Tally, QueueError> {
        Ok(self.stored_tally(id).await?.0)
    }

    /// Folds new ledger events into the tally and stores it; returns the result.
    pub async fn fold(&self, id: &str) -> Result<Tally, QueueError> {
        loop {
            let (mut tally, revision) = self.stored_tally(id).await?;
            let before = tally.applied_seq;
            let read = self
                .read_events(id, tally.applied_seq + 1, FOLD_CHUNK)
                .await?;
            for (seq, at_ms, event) in &read {
                match event {
                    Some(e) => tally.apply(*seq, *at_ms, e),
                    None => tally.applied_seq = tally.applied_seq.max(*seq),
                }
            }
            if tally.applied_seq == before {
                return Ok(tally);
            }
            let key = format!("{id}.tally");
            let value = Bytes::from(serde_json::to_vec(&tally).unwrap_or_default());
            let written = if revision == 0 {
                self.kv.create(&key, value).await.is_ok()
            } else {
                self.kv.update(&key, value, revision).await.is_ok()
            };
            // A lost race means another agent folded; start from its result.
            if written && read.len() < FOLD_CHUNK {
                return Ok(tally);
            }
        }
    }

    async fn read_events(
        &self,
        id: &str,
        from_seq: u64,
        max: usize,
    ) -> Result<Vec<(u64, u64, Option<LedgerEvent>)>, QueueError> {
        let stream_name = self.names.ledger_stream();
        let stream = self.stream().await?;
        let mut consumer: jetstream::consumer::PullConsumer = stream
            .create_consumer(pull::Config {
                filter_subject: self.names.ledger_migration(id),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: from_seq,
                },
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(|e| err("consumer", &stream_name, e))?;
        let pending = consumer
            .info()
            .await
            .map_err(|e| err("consumer", &stream_name, e))?
            .num_pending;
        let want = usize::try_from(pending).unwrap_or(max).min(max);
        let mut out = Vec::with_capacity(want);
        while out.len() < want {
            let mut batch = consumer
                .fetch()
                .max_messages((want - out.len()).min(1000))
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .map_err(|e| err("consumer", &stream_name, e))?;
            let mut got = 0;
            while let Some(m) = batch.next().await {
                let Ok(m) = m else { continue };
                got += 1;
                let Ok(info) = m.info() else { continue };
                let at_ms =
                    u64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
                let seq = info.stream_sequence;
                // Foreign messages still move the watermark.
                out.push((
                    seq,
                    at_ms,
                    serde_json::from_slice::<LedgerEvent>(&m.payload).ok(),
                ));
            }
            if got == 0 {
                break;
            }
        }
        let _ = stream
            .delete_consumer(consumer.cached_info().name.as_str())
            .await;
        Ok(out)
    }
}
