//! The KV side of resume records: opening the `<prefix>-uploads` bucket,
//! loading, listing and removing records, and the [`Recorder`] that writes
//! a running copy's parts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::TryStreamExt;
use tracing::{debug, warn};

use super::{CHUNK, PartDone, Record, chunk_key, chunk_of, contiguous, dst_token};
use crate::clock::now_ms_signed;
use crate::jetstream::QueueError;
use crate::job::ObjectRef;
use crate::names::Names;

/// How long a part waits for its record to be written before it moves on
/// anyway (the record is an optimisation; the part itself is durable).
const RECORD_WAIT: Duration = Duration::from_secs(10);

fn err(e: impl std::fmt::Display, name: &str) -> QueueError {
    QueueError::Setup {
        what: "key-value bucket",
        name: name.to_owned(),
        detail: e.to_string(),
    }
}

/// The record store.
#[derive(Debug, Clone)]
pub struct Uploads {
    kv: kv::Store,
    /// A record written within this long belongs to a copy that is running.
    liveness: Duration,
}

impl Uploads {
    /// Opens (or creates) the bucket with entries kept for `ttl`. A record
    /// not rewritten for `liveness` belongs to no running copy.
    pub async fn open(
        js: &jetstream::Context,
        names: &Names,
        replicas: usize,
        ttl: Duration,
        liveness: Duration,
    ) -> Result<Self, QueueError> {
        let kv = crate::jetstream::open_kv(
            js,
            &names.uploads_kv(),
            "s3rf: multipart copies in progress, for resuming them",
            ttl,
            replicas,
        )
        .await?;
        Ok(Self { kv, liveness })
    }

    /// The bucket if an agent created it (for read-only views).
    pub async fn existing(
        js: &jetstream::Context,
        names: &Names,
        liveness: Duration,
    ) -> Option<Self> {
        let kv = js.get_key_value(names.uploads_kv()).await.ok()?;
        Some(Self { kv, liveness })
    }

    /// Whether a record written at `updated_ms` belongs to a running copy.
    pub fn is_live(&self, record: &Record) -> bool {
        let age = now_ms_signed().saturating_sub(record.updated_ms);
        u128::try_from(age).unwrap_or(0) < self.liveness.as_millis()
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, QueueError> {
        let entry = self.kv.entry(key).await.map_err(|e| err(e, key))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        match serde_json::from_slice(&entry.value) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                warn!(key, error = %e, "ignoring an unreadable multipart resume record");
                Ok(None)
            }
        }
    }

    /// The record under `key` and its recorded parts.
    pub async fn load(
        &self,
        key: &str,
    ) -> Result<Option<(Record, BTreeMap<i32, PartDone>)>, QueueError> {
        let Some(record) = self.get_json::<Record>(key).await? else {
            return Ok(None);
        };
        let mut parts = BTreeMap::new();
        let chunks = (record.shape.parts_total.max(1) - 1) / CHUNK;
        for c in 0..=chunks {
            if let Some(chunk) = self
                .get_json::<BTreeMap<i32, PartDone>>(&chunk_key(key, c))
                .await?
            {
                parts.extend(chunk);
            }
        }
        Ok(Some((record, parts)))
    }

    /// Removes the record under `key` with its parts.
    pub async fn remove(&self, key: &str, record: &Record) {
        let chunks = (record.shape.parts_total.max(1) - 1) / CHUNK;
        for k in (0..=chunks)
            .map(|c| chunk_key(key, c))
            .chain(std::iter::once(key.to_owned()))
        {
            if let Err(e) = self.kv.purge(&k).await {
                debug!(key = k, error = %e, "cannot remove a resume record; it expires");
            }
        }
    }

    /// Record keys matching `filter` (a key pattern with `*`).
    async fn keys(&self, filter: &str) -> Result<Vec<String>, QueueError> {
        let subjects = format!("{}{filter}", self.kv.prefix);
        let mut info = self
            .kv
            .stream
            .info_with_subjects(&subjects)
            .await
            .map_err(|e| err(e, &subjects))?;
        let mut keys = Vec::new();
        while let Some((subject, _)) = info.try_next().await.map_err(|e| err(e, &subjects))? {
            if let Some(key) = subject.strip_prefix(&self.kv.prefix) {
                keys.push(key.to_owned());
            }
        }
        Ok(keys)
    }

    /// Every record of a copy to `dst`, with its key.
    pub async fn for_destination(
        &self,
        dst: &ObjectRef,
    ) -> Result<Vec<(String, Record)>, QueueError> {
        self.records(&format!("{}.*", dst_token(dst))).await
    }

    /// Every record, with its key (for `status`).
    pub async fn all(&self) -> Result<Vec<(String, Record)>, QueueError> {
        self.records("*.*").await
    }

    async fn records(&self, filter: &str) -> Result<Vec<(String, Record)>, QueueError> {
        let mut out = Vec::new();
        for key in self.keys(filter).await? {
            if let Some(r) = self.get_json::<Record>(&key).await? {
                out.push((key, r));
            }
        }
        Ok(out)
    }

    /// Starts recording a copy: writes `record` (a new upload) and returns
    /// the recorder its parts report to. `done` are parts an earlier
    /// delivery finished.
    pub async fn begin(
        &self,
        key: String,
        mut record: Record,
        done: BTreeMap<i32, PartDone>,
    ) -> Recorder {
        record.parts_done = u32::try_from(done.len()).unwrap_or(u32::MAX);
        record.updated_ms = now_ms_signed();
        match serde_json::to_vec(&record) {
            Ok(v) => {
                if let Err(e) = self.kv.put(&key, Bytes::from(v)).await {
                    warn!(error = %e, "cannot record the multipart upload; a redelivery would start over");
                }
            }
            Err(e) => warn!(error = %e, "cannot encode the multipart record"),
        }
        let mut chunks: BTreeMap<i32, BTreeMap<i32, PartDone>> = BTreeMap::new();
        for (n, p) in done {
            chunks.entry(chunk_of(n)).or_default().insert(n, p);
        }
        let inner = Arc::new(Inner {
            kv: self.kv.clone(),
            key,
            state: Mutex::new(State {
                record,
                chunks,
                dirty: BTreeSet::new(),
                states: BTreeMap::new(),
                generation: 0,
            }),
            wake: tokio::sync::Notify::new(),
            written: tokio::sync::watch::Sender::new(0),
        });
        let heartbeat = (self.liveness / 4).max(Duration::from_millis(200));
        let task = tokio::spawn(writer(inner.clone(), heartbeat));
        Recorder { inner, task }
    }
}

struct State {
    record: Record,
    /// Recorded parts by chunk.
    chunks: BTreeMap<i32, BTreeMap<i32, PartDone>>,
    /// Chunks changed since the last write.
    dirty: BTreeSet<i32>,
    /// MD5 state after each part not yet folded into the record.
    states: BTreeMap<i32, String>,
    /// Changes made; the writer reports how many it wrote.
    generation: u64,
}

struct Inner {
    kv: kv::Store,
    key: String,
    state: Mutex<State>,
    wake: tokio::sync::Notify,
    written: tokio::sync::watch::Sender<u64>,
}

impl Inner {
    /// Writes what changed: chunks first, then the record that counts them.
    async fn write(&self) {
        let (generation, chunks, record) = {
            let Ok(mut s) = self.state.lock() else { return };
            let dirty = std::mem::take(&mut s.dirty);
            let chunks: Vec<(i32, Vec<u8>)> = dirty
                .into_iter()
                .filter_map(|c| {
                    let parts = s.chunks.get(&c)?;
                    Some((c, serde_json::to_vec(parts).ok()?))
                })
                .collect();
            let all: BTreeMap<i32, PartDone> = s
                .chunks
                .values()
                .flat_map(|c| c.iter().map(|(n, p)| (*n, p.clone())))
                .collect();
            let k = contiguous(&all);
            if let Some(state) = s.states.get(&k).cloned() {
                s.record.hashed_through = k;
                s.record.md5_state = Some(state);
                s.states.retain(|n, _| *n > k);
            }
            s.record.parts_done = u32::try_from(all.len()).unwrap_or(u32::MAX);
            s.record.updated_ms = now_ms_signed();
            (s.generation, chunks, serde_json::to_vec(&s.record).ok())
        };
        for (c, value) in chunks {
            if let Err(e) = self
                .kv
                .put(chunk_key(&self.key, c), Bytes::from(value))
                .await
            {
                warn!(error = %e, "cannot record finished parts; a redelivery may send them again");
            }
        }
        if let Some(value) = record
            && let Err(e) = self.kv.put(&self.key, Bytes::from(value)).await
        {
            warn!(error = %e, "cannot update the multipart record");
        }
        self.written.send_modify(|g| *g = (*g).max(generation));
    }
}

/// Writes a copy's record as its parts finish, many parts per write, and
/// rewrites it now and then while the copy runs so others see it is live.
async fn writer(inner: Arc<Inner>, heartbeat: Duration) {
    loop {
        let _ = tokio::time::timeout(heartbeat, inner.wake.notified()).await;
        inner.write().await;
    }
}

/// Records the parts of one running copy.
pub struct Recorder {
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("key", &self.inner.key)
            .finish_non_exhaustive()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    /// The record's key.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// The record as last changed.
    pub fn record(&self) -> Option<Record> {
        self.inner.state.lock().ok().map(|s| s.record.clone())
    }

    /// Records part `number` as done (with the MD5 state after it, when
    /// the copy hashes the whole object) and waits until that is written.
    pub async fn part_done(&self, number: i32, part: PartDone, md5_state: Option<String>) {
        let generation = {
            let Ok(mut s) = self.inner.state.lock() else {
                return;
            };
            s.chunks
                .entry(chunk_of(number))
                .or_default()
                .insert(number, part);
            s.dirty.insert(chunk_of(number));
            if let Some(state) = md5_state {
                s.states.insert(number, state);
            }
            s.generation += 1;
            s.generation
        };
        self.inner.wake.notify_one();
        let mut rx = self.inner.written.subscribe();
        let _ = tokio::time::timeout(RECORD_WAIT, rx.wait_for(|g| *g >= generation)).await;
    }

    /// Writes anything not yet written (before the copy leaves the upload
    /// for a redelivery).
    pub async fn flush(&self) {
        let _ = tokio::time::timeout(RECORD_WAIT, self.inner.write()).await;
    }
}
