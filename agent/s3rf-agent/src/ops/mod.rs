//! Operator commands behind the CLI: publish jobs, read migration status,
//! inspect and retry dead letters. They read the same config as the agent and
//! talk only to NATS; S3 is the agents' business.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::StreamMessage};
use serde::Serialize;

use crate::config::Config;
use crate::jetstream::{self as js_setup, QueueError};
use crate::ledger::Ledger;
use crate::migration::{self, Tally};
use crate::names::{
    HDR_DELIVERIES, HDR_FAILED_AT, HDR_JOB_KIND, HDR_ORIGINAL_SUBJECT, HDR_REASON, JobKind, Names,
};
use crate::pause::{PauseScope, Pauses};
use crate::pausing::{PauseStore, Paused};

mod verify;

/// Why an operator command failed; each is one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Embedded(#[from] crate::embedded::EmbeddedError),
    #[error("no migration {0}; `s3rf-agent status` lists them")]
    NoMigration(String),
    #[error("no dead letter {0}; `s3rf-agent dlq list` lists them")]
    NoDeadLetter(u64),
    #[error("unknown endpoint {0}: it is not defined in the config; add [endpoints.{0}]")]
    UnknownEndpoint(String),
    #[error("{0}")]
    Invalid(String),
}

/// A connected operator session.
#[derive(Debug)]
pub struct Operator {
    client: async_nats::Client,
    js: jetstream::Context,
    names: Names,
    ledger: Ledger,
    config: Config,
}

/// A migration's state in words.
pub fn state_of(t: &Tally) -> &'static str {
    if t.complete() {
        if t.dead_lettered > 0 {
            "complete (with dead letters)"
        } else {
            "complete"
        }
    } else if !t.planned {
        "starting"
    } else if !t.listing_finished() {
        "listing"
    } else {
        "copying"
    }
}

/// Objects per second and bytes per second since the first event.
pub fn rates(t: &Tally, now_ms: u64) -> (f64, f64) {
    let end = if t.complete() {
        t.last_event_ms
    } else {
        now_ms
    };
    let secs = (end.saturating_sub(t.first_event_ms) as f64 / 1000.0).max(0.001);
    let objects = (t.source_outcomes + t.destination_outcomes) as f64;
    (objects / secs, (t.copied_bytes as f64) / secs)
}

fn check_scope(scope: &PauseScope) -> Result<(), OpsError> {
    match scope {
        PauseScope::Migration(id) => {
            migration::validate_id(id).map_err(|e| OpsError::Invalid(e.to_string()))
        }
        PauseScope::All | PauseScope::Sync => Ok(()),
    }
}

/// A dead letter as shown to operators.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterView {
    /// Sequence in the dead-letter stream.
    pub seq: u64,
    /// Where the job was published.
    pub subject: String,
    /// Why it failed.
    pub reason: String,
    /// Deliveries before it was dead-lettered.
    pub deliveries: String,
    /// When.
    pub failed_at: String,
    /// Its migration, if any.
    pub migration: Option<String>,
    /// The job as published.
    pub job: String,
}

fn header(m: &StreamMessage, name: &str) -> String {
    m.headers
        .get(name)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default()
}

fn migration_of(payload: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    v.get("migration")
        .or_else(|| v.get("scope").and_then(|s| s.get("migration")))
        .or_else(|| v.get("id"))
        .and_then(|m| m.as_str())
        .map(str::to_owned)
}

/// Which dead letters a retry or purge applies to.
#[derive(Debug, Clone)]
pub enum Selection {
    /// One, by sequence.
    One(u64),
    /// All, optionally of one migration.
    All {
        /// Only this migration's.
        migration: Option<String>,
    },
}

/// `ENDPOINT:BUCKET/KEY` as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Endpoint name.
    pub endpoint: String,
    /// Bucket.
    pub bucket: String,
    /// Key, possibly empty.
    pub key: String,
}

impl std::str::FromStr for Location {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (endpoint, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected ENDPOINT:BUCKET/KEY"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if endpoint.is_empty() || bucket.is_empty() {
            return Err(format!("{s:?}: expected ENDPOINT:BUCKET/KEY"));
        }
        Ok(Location {
            endpoint: endpoint.to_owned(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }
}

/// A multipart copy in progress, as `s3rf-agent uploads` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UploadView {
    /// ENDPOINT:BUCKET/KEY written.
    pub dst: String,
    /// ENDPOINT:BUCKET/KEY read.
    pub src: String,
    /// The destination's upload id.
    pub upload_id: String,
    /// Parts stored and checked.
    pub parts_done: u32,
    /// Parts in all.
    pub parts_total: i32,
    /// Object size in bytes.
    pub size: u64,
    /// Whether an agent is working on it now (its record is fresh);
    /// otherwise it waits for a redelivery to resume it.
    pub running: bool,
    /// When the upload began (ms since the epoch).
    pub started_ms: i64,
    /// When an agent last recorded progress (ms since the epoch).
    pub updated_ms: i64,
}

impl Operator {
    /// Connects and makes sure the streams exist (so publishing works before
    /// any agent has started).
    pub async fn connect(mut config: Config) -> Result<Self, OpsError> {
        crate::embedded::resolve_client_url(&mut config.nats)?;
        let names = Names::new(&config.nats.prefix);
        let client = js_setup::connect(&config.nats, "s3rf-cli").await?;
        let js = jetstream::new(client.clone());
        js_setup::ensure_streams(&js, &names, &config.nats).await?;
        let ledger = Ledger::open(&js, &names, config.nats.replicas).await?;
        Ok(Self {
            client,
            js,
            names,
            ledger,
            config,
        })
    }

    fn check_endpoint(&self, name: &str) -> Result<(), OpsError> {
        if self.config.endpoints.contains_key(name) {
            Ok(())
        } else {
            Err(OpsError::UnknownEndpoint(name.to_owned()))
        }
    }

    async fn publish(
        &self,
        kind: JobKind,
        msg_id: Option<&str>,
        payload: Vec<u8>,
    ) -> Result<u64, OpsError> {
        let subject = self.names.job_subject(kind);
        let mut headers = HeaderMap::new();
        if let Some(id) = msg_id {
            headers.insert("Nats-Msg-Id", id);
        }
        let ack = js_setup::publish_stored(&self.js, &subject, headers, payload)
            .await
            .map_err(|e| js_setup::publish_failed(&subject, &e))?;
        Ok(ack.sequence)
    }

    /// Publishes a migrate job; returns its id.
    pub async fn migrate(&self, mut spec: s3rf_wire::MigrateJob) -> Result<String, OpsError> {
        self.check_endpoint(&spec.src)?;
        self.check_endpoint(&spec.dst)?;
        let id = match &spec.id {
            Some(id) => {
                migration::validate_id(id).map_err(|e| OpsError::Invalid(e.to_string()))?;
                id.clone()
            }
            None => migration::generate_id(std::time::SystemTime::now()),
        };
        spec.id = Some(id.clone());
        let payload = serde_json::to_vec(&spec).unwrap_or_default();
        self.publish(JobKind::Migrate, Some(&format!("migrate:{id}")), payload)
            .await?;
        Ok(id)
    }

    /// Publishes a copy job; returns its stream sequence.
    pub async fn copy(&self, src: &Location, dst: &Location) -> Result<u64, OpsError> {
        self.check_endpoint(&src.endpoint)?;
        self.check_endpoint(&dst.endpoint)?;
        if src.key.is_empty() {
            return Err(OpsError::Invalid(format!(
                "source {}:{} names no key; write ENDPOINT:BUCKET/KEY",
                src.endpoint, src.bucket
            )));
        }
        let job = s3rf_wire::CopyJob {
            src: s3rf_wire::SourceObject {
                endpoint: src.endpoint.clone(),
                bucket: src.bucket.clone(),
                key: src.key.clone(),
                version_id: None,
            },
            dst: s3rf_wire::DestinationLocation {
                endpoint: dst.endpoint.clone(),
                bucket: dst.bucket.clone(),
                key: (!dst.key.is_empty()).then(|| dst.key.clone()),
            },
            migration: None,
            dry_run: false,
            sequencer: None,
            skip_if_source_missing: false,
            attempted_since_ms: None,
            listed_size: None,
            listed_etag: None,
            dst_bucket_new: false,
        };
        self.publish(
            JobKind::Copy,
            None,
            serde_json::to_vec(&job).unwrap_or_default(),
        )
        .await
    }

    /// Publishes a delete job; returns its stream sequence.
    pub async fn delete(&self, dst: &Location) -> Result<u64, OpsError> {
        self.check_endpoint(&dst.endpoint)?;
        if dst.key.is_empty() {
            return Err(OpsError::Invalid(format!(
                "{}:{} names no key; write ENDPOINT:BUCKET/KEY",
                dst.endpoint, dst.bucket
            )));
        }
        let job = s3rf_wire::DeleteJob {
            dst: s3rf_wire::DestinationObject {
                endpoint: dst.endpoint.clone(),
                bucket: dst.bucket.clone(),
                key: dst.key.clone(),
            },
            src: None,
            sequencer: None,
            migration: None,
            if_source_absent: false,
            dry_run: false,
        };
        self.publish(
            JobKind::Delete,
            None,
            serde_json::to_vec(&job).unwrap_or_default(),
        )
        .await
    }

    /// Pauses `scope`. A migration must exist to be paused.
    pub async fn pause(&self, scope: &PauseScope) -> Result<Paused, OpsError> {
        check_scope(scope)?;
        if let PauseScope::Migration(id) = scope
            && self.ledger.spec(id).await?.is_none()
        {
            return Err(OpsError::NoMigration(id.clone()));
        }
        Ok(self
            .pause_store()
            .await?
            .pause(scope, crate::clock::now_ms())
            .await?)
    }

    /// Ends `scope`'s pause; returns when it began (`None`: it was not
    /// paused) and how many jobs it had parked, which agents now move back.
    pub async fn resume(&self, scope: &PauseScope) -> Result<(Option<u64>, u64), OpsError> {
        check_scope(scope)?;
        let since = self.pause_store().await?.resume(scope).await?;
        let parked = self.parked().await?.get(scope).copied().unwrap_or(0);
        Ok((since, parked))
    }

    /// Sets migration `id`'s fleet-wide rate (an empty one removes it);
    /// returns how many agents are live to share it.
    pub async fn set_rate(&self, id: &str, rate: &s3rf_wire::Rate) -> Result<usize, OpsError> {
        check_scope(&PauseScope::Migration(id.to_owned()))?;
        crate::rate::validate(rate).map_err(|e| OpsError::Invalid(e.to_string()))?;
        if self.ledger.spec(id).await?.is_none() {
            return Err(OpsError::NoMigration(id.to_owned()));
        }
        let fleet = self.fleet().await?;
        fleet.set_rate(id, rate).await?;
        Ok(fleet.live_agents().await?)
    }

    /// Migration `id`'s fleet-wide rate, if it has one.
    pub async fn rate(&self, id: &str) -> Result<Option<s3rf_wire::Rate>, OpsError> {
        Ok(self.fleet().await?.rate(id).await?)
    }

    /// Migration `id`'s schedule, if it has one.
    pub async fn schedule(&self, id: &str) -> Result<Option<crate::schedule::Schedule>, OpsError> {
        Ok(self.scheduler().await?.get(id).await?.map(|(s, _)| s))
    }

    /// Changes the interval of `id`'s schedule.
    pub async fn set_every(&self, id: &str, every: &str) -> Result<(), OpsError> {
        let ms =
            crate::schedule::parse_every(every).map_err(|e| OpsError::Invalid(e.to_string()))?;
        if self.scheduler().await?.set_every(id, ms).await? {
            Ok(())
        } else {
            Err(OpsError::Invalid(format!(
                "migration {id} has no schedule; start one with `s3rf-agent migrate --every …`"
            )))
        }
    }

    /// Ends `id`'s schedule; `false` if it had none.
    pub async fn stop_schedule(&self, id: &str) -> Result<bool, OpsError> {
        Ok(self.scheduler().await?.stop(id).await?)
    }

    async fn scheduler(&self) -> Result<crate::scheduler::Scheduler, OpsError> {
        Ok(
            crate::scheduler::Scheduler::open(&self.js, &self.names, self.config.nats.replicas)
                .await?,
        )
    }

    async fn fleet(&self) -> Result<crate::fleet::Fleet, OpsError> {
        Ok(crate::fleet::Fleet::open(&self.js, &self.names, self.config.nats.replicas).await?)
    }

    /// The pauses in force.
    pub async fn pauses(&self) -> Result<Pauses, OpsError> {
        Ok(self.pause_store().await?.load().await?)
    }

    /// Jobs parked per pause.
    pub async fn parked(&self) -> Result<std::collections::BTreeMap<PauseScope, u64>, OpsError> {
        Ok(crate::pausing::parked_counts(&self.js, &self.names).await?)
    }

    async fn pause_store(&self) -> Result<PauseStore, OpsError> {
        Ok(PauseStore::open(&self.js, &self.names, self.config.nats.replicas).await?)
    }

    /// Every migration id.
    pub async fn migrations(&self) -> Result<Vec<String>, OpsError> {
        Ok(self.ledger.migrations().await?)
    }

    /// A migration's spec (JSON) and up-to-date tally.
    pub async fn status(&self, id: &str) -> Result<(serde_json::Value, Tally), OpsError> {
        let Some(spec) = self.ledger.spec(id).await? else {
            return Err(OpsError::NoMigration(id.to_owned()));
        };
        let spec = serde_json::from_slice(&spec).unwrap_or(serde_json::Value::Null);
        Ok((spec, self.ledger.fold(id).await?))
    }

    /// Multipart copies in progress (or left for a redelivery), oldest first.
    pub async fn uploads(&self) -> Result<Vec<UploadView>, OpsError> {
        let liveness = crate::resume::liveness(self.config.nats.ack_wait);
        let Some(uploads) = crate::resume::Uploads::existing(&self.js, &self.names, liveness).await
        else {
            return Ok(Vec::new());
        };
        let mut views: Vec<UploadView> = uploads
            .all()
            .await?
            .into_iter()
            .map(|(_, r)| UploadView {
                running: uploads.is_live(&r),
                dst: r.dst.join("/").replacen('/', ":", 1),
                src: r.src.join("/").replacen('/', ":", 1),
                upload_id: r.upload_id,
                parts_done: r.parts_done,
                parts_total: r.shape.parts_total,
                size: r.shape.size,
                started_ms: r.started_ms,
                updated_ms: r.updated_ms,
            })
            .collect();
        views.sort_by_key(|v| v.started_ms);
        Ok(views)
    }

    /// Waits until the migration's spec exists (the migrate job ran).
    pub async fn wait_started(&self, id: &str, timeout: Duration) -> Result<(), OpsError> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.ledger.spec(id).await?.is_none() {
            if tokio::time::Instant::now() > deadline {
                return Err(OpsError::Invalid(format!(
                    "migration {id} was published but no agent started it within {}s; is an s3rf-agent running against this NATS?",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    async fn dead_stream(&self) -> Result<jetstream::stream::Stream, OpsError> {
        let name = self.names.dead_stream();
        self.js.get_stream(&name).await.map_err(|e| {
            OpsError::Queue(QueueError::Setup {
                what: "stream",
                name,
                detail: e.to_string(),
            })
        })
    }

    fn view(m: &StreamMessage) -> DeadLetterView {
        DeadLetterView {
            seq: m.sequence,
            subject: header(m, HDR_ORIGINAL_SUBJECT),
            reason: header(m, HDR_REASON),
            deliveries: header(m, HDR_DELIVERIES),
            failed_at: header(m, HDR_FAILED_AT),
            migration: migration_of(&m.payload),
            job: String::from_utf8_lossy(&m.payload).into_owned(),
        }
    }

    /// Dead letters, oldest first, optionally of one migration.
    pub async fn dead_letters(
        &self,
        migration: Option<&str>,
    ) -> Result<Vec<(DeadLetterView, StreamMessage)>, OpsError> {
        let mut stream = self.dead_stream().await?;
        let info = stream
            .info()
            .await
            .map_err(|e| OpsError::Invalid(format!("cannot read the dead-letter stream: {e}")))?;
        let mut out = Vec::new();
        if info.state.messages == 0 {
            return Ok(out);
        }
        for seq in info.state.first_sequence..=info.state.last_sequence {
            let Ok(m) = stream.get_raw_message(seq).await else {
                continue;
            };
            let v = Self::view(&m);
            if migration.is_none() || v.migration.as_deref() == migration {
                out.push((v, m));
            }
        }
        Ok(out)
    }

    /// One dead letter.
    pub async fn dead_letter(&self, seq: u64) -> Result<DeadLetterView, OpsError> {
        let stream = self.dead_stream().await?;
        let m = stream
            .get_raw_message(seq)
            .await
            .map_err(|_| OpsError::NoDeadLetter(seq))?;
        Ok(Self::view(&m))
    }

    async fn selected(
        &self,
        sel: &Selection,
    ) -> Result<Vec<(DeadLetterView, StreamMessage)>, OpsError> {
        match sel {
            Selection::One(seq) => {
                let stream = self.dead_stream().await?;
                let m = stream
                    .get_raw_message(*seq)
                    .await
                    .map_err(|_| OpsError::NoDeadLetter(*seq))?;
                Ok(vec![(Self::view(&m), m)])
            }
            Selection::All { migration } => self.dead_letters(migration.as_deref()).await,
        }
    }

    /// Republishes dead letters to their original subjects and removes them.
    pub async fn retry(&self, sel: &Selection) -> Result<usize, OpsError> {
        let stream = self.dead_stream().await?;
        let mut n = 0;
        for (view, m) in self.selected(sel).await? {
            let kind = JobKind::ALL
                .into_iter()
                .find(|k| self.names.job_subject(*k) == view.subject)
                .or_else(|| {
                    let k = header(&m, HDR_JOB_KIND);
                    JobKind::ALL.into_iter().find(|x| x.token() == k)
                })
                .ok_or_else(|| {
                    OpsError::Invalid(format!(
                        "dead letter {} has no job subject of this prefix ({:?}); inspect it with `dlq show {}`",
                        view.seq, view.subject, view.seq
                    ))
                })?;
            self.publish(kind, None, m.payload.to_vec()).await?;
            let _ = stream.delete_message(view.seq).await;
            n += 1;
        }
        Ok(n)
    }

    /// Removes dead letters.
    pub async fn purge(&self, sel: &Selection) -> Result<usize, OpsError> {
        let stream = self.dead_stream().await?;
        let mut n = 0;
        for (view, _) in self.selected(sel).await? {
            if stream.delete_message(view.seq).await.is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Flushes pending publishes before exit.
    pub async fn close(self) {
        let _ = self.client.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        let l: Location = "a:photos/2024/x y.jpg".parse().unwrap();
        assert_eq!(
            l,
            Location {
                endpoint: "a".into(),
                bucket: "photos".into(),
                key: "2024/x y.jpg".into()
            }
        );
        let b: Location = "b:photos-copy".parse().unwrap();
        assert_eq!(b.key, "");
        assert!("photos/x".parse::<Location>().is_err());
        assert!(":b/x".parse::<Location>().is_err());
    }

    #[test]
    fn migration_is_found_in_every_job_shape() {
        assert_eq!(
            migration_of(br#"{"migration":"m1"}"#).as_deref(),
            Some("m1")
        );
        assert_eq!(
            migration_of(br#"{"scope":{"migration":"m2"}}"#).as_deref(),
            Some("m2")
        );
        assert_eq!(
            migration_of(br#"{"id":"m3","src":"a"}"#).as_deref(),
            Some("m3")
        );
        assert_eq!(migration_of(b"not json"), None);
    }

    #[test]
    fn states_and_rates() {
        let mut t = Tally::default();
        assert_eq!(state_of(&t), "starting");
        t.planned = true;
        t.buckets.insert("x".into(), Default::default());
        assert_eq!(state_of(&t), "listing");
        t.first_event_ms = 1000;
        t.copied = 10;
        t.source_outcomes = 10;
        t.copied_bytes = 2000;
        let (objects, bytes) = rates(&t, 3000);
        assert!((objects - 5.0).abs() < 1e-9 && (bytes - 1000.0).abs() < 1e-9);
    }
}
