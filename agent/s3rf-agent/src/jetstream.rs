//! NATS connection, stream and consumer set-up, and the dead-letter stream.
//!
//! Set-up is idempotent: every agent creates or updates the streams and durable
//! consumers it needs at start-up, so there is no separate provisioning step.

use std::time::Duration;

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    stream::{self, RetentionPolicy, StorageType},
};
use async_nats::{HeaderMap, HeaderValue};
use serde::Deserialize;
use tracing::{error, info, warn};

use crate::config::{NatsAuth, NatsConfig};
use crate::names::{
    HDR_DELIVERIES, HDR_FAILED_AT, HDR_JOB_KIND, HDR_ORIGINAL_MSG_ID, HDR_ORIGINAL_SUBJECT,
    HDR_PAYLOAD_BYTES, HDR_PAYLOAD_SHA256, HDR_REASON, HDR_STREAM_SEQ, JobKind, Names,
};

/// Longest reason kept in a dead-letter header.
const MAX_REASON_CHARS: usize = 2000;

/// NATS and JetStream failures.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(
        "NATS unreachable at {url}: {detail}; check [nats] url and that nats-server is running"
    )]
    Connect { url: String, detail: String },
    #[error("cannot read {what} {path}: {source}")]
    ReadFile {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("environment variable {var} (nats.{field}) is not set; export it before starting")]
    MissingEnv { var: String, field: &'static str },
    #[error(
        "cannot set up JetStream {what} {name}: {detail}; check that the server runs with JetStream enabled (-js) and is version 2.10 or newer"
    )]
    Setup {
        what: &'static str,
        name: String,
        detail: String,
    },
    #[error(
        "JetStream server ignored consumer setting {setting} of {name}; upgrade nats-server to 2.10 or newer"
    )]
    ServerTooOld { name: String, setting: &'static str },
    #[error(
        "cannot publish to {subject}: {detail}; the message stays in the job stream and is retried"
    )]
    Publish { subject: String, detail: String },
}

impl QueueError {
    /// Whether waiting can help: a server not up yet, or a request that
    /// timed out. Unreadable credentials and servers too old cannot.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            QueueError::Connect { .. } | QueueError::Setup { .. } | QueueError::Publish { .. }
        )
    }
}

/// Connects to NATS with the configured authentication and TLS.
pub async fn connect(cfg: &NatsConfig, name: &str) -> Result<async_nats::Client, QueueError> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(10))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => warn!("NATS disconnected; reconnecting"),
                async_nats::Event::Connected => {
                    static EVER: std::sync::atomic::AtomicBool =
                        std::sync::atomic::AtomicBool::new(false);
                    if EVER.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        info!("NATS reconnected");
                        crate::metrics::nats_reconnect();
                    }
                }
                _ => {}
            }
        });
    let env = |var: &str, field: &'static str| {
        std::env::var(var).map_err(|_| QueueError::MissingEnv {
            var: var.to_owned(),
            field,
        })
    };
    match &cfg.auth {
        NatsAuth::None => {}
        NatsAuth::CredentialsFile(path) => {
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|source| QueueError::ReadFile {
                    what: "NATS credentials file",
                    path: path.display().to_string(),
                    source,
                })?;
        }
        NatsAuth::NkeySeedFile(path) => {
            let seed = std::fs::read_to_string(path).map_err(|source| QueueError::ReadFile {
                what: "NATS nkey seed file",
                path: path.display().to_string(),
                source,
            })?;
            opts = opts.nkey(seed.trim().to_owned());
        }
        NatsAuth::UserPassword { user, password_env } => {
            opts = opts.user_and_password(user.clone(), env(password_env, "password_env")?);
        }
        NatsAuth::Token { token_env } => opts = opts.token(env(token_env, "token_env")?),
    }
    if let Some(ca) = &cfg.tls_ca_file {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &cfg.tls_client {
        opts = opts
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    let servers = crate::config::nats_servers(&cfg.url).map_err(|detail| QueueError::Connect {
        url: cfg.url.clone(),
        detail,
    })?;
    opts.connect(servers.as_slice())
        .await
        .map_err(|e| QueueError::Connect {
            url: cfg.url.clone(),
            detail: e.to_string(),
        })
}

fn setup_err(what: &'static str, name: &str, e: impl std::fmt::Display) -> QueueError {
    QueueError::Setup {
        what,
        name: name.to_owned(),
        detail: e.to_string(),
    }
}

/// Creates or updates the job stream, the dead-letter stream, the stream
/// of jobs a pause parked and the stream of verification results.
pub async fn ensure_streams(
    js: &jetstream::Context,
    names: &Names,
    cfg: &NatsConfig,
) -> Result<(), QueueError> {
    let jobs = stream::Config {
        name: names.jobs_stream(),
        subjects: JobKind::ALL.iter().map(|k| names.job_subject(*k)).collect(),
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        num_replicas: cfg.replicas,
        duplicate_window: Duration::from_secs(120),
        description: Some("s3rf jobs (work queue)".to_owned()),
        ..Default::default()
    };
    js.create_or_update_stream(jobs)
        .await
        .map_err(|e| setup_err("stream", &names.jobs_stream(), e))?;
    let dead = stream::Config {
        name: names.dead_stream(),
        subjects: vec![names.dead_subjects()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        num_replicas: cfg.replicas,
        duplicate_window: Duration::from_secs(120),
        description: Some(
            "s3rf dead letters: jobs that cannot succeed, with the reason".to_owned(),
        ),
        ..Default::default()
    };
    js.create_or_update_stream(dead)
        .await
        .map_err(|e| setup_err("stream", &names.dead_stream(), e))?;
    let parked = stream::Config {
        name: names.parked_stream(),
        subjects: vec![names.parked_subjects()],
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        num_replicas: cfg.replicas,
        duplicate_window: Duration::from_secs(120),
        description: Some(
            "s3rf jobs held by a pause, moved back to S3RF_JOBS on resume".to_owned(),
        ),
        ..Default::default()
    };
    js.create_or_update_stream(parked)
        .await
        .map_err(|e| setup_err("stream", &names.parked_stream(), e))?;
    let verify = stream::Config {
        name: names.verify_stream(),
        subjects: vec![names.verify_subjects()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        num_replicas: cfg.replicas,
        max_age: Duration::from_secs(30 * 24 * 3600),
        duplicate_window: Duration::from_secs(120),
        description: Some("s3rf verification results and differing keys (kept 30 days)".to_owned()),
        ..Default::default()
    };
    js.create_or_update_stream(verify)
        .await
        .map_err(|e| setup_err("stream", &names.verify_stream(), e))?;
    Ok(())
}

/// Creates or updates the durable pull consumer for `kind`.
pub async fn ensure_consumer(
    js: &jetstream::Context,
    names: &Names,
    kind: JobKind,
    cfg: &NatsConfig,
) -> Result<PullConsumer, QueueError> {
    let name = names.consumer(kind);
    let stream = js
        .get_stream(names.jobs_stream())
        .await
        .map_err(|e| setup_err("stream", &names.jobs_stream(), e))?;
    let subject = names.job_subject(kind);
    let mut consumer: PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(name.clone()),
            description: Some(format!("s3rf agents taking {kind} jobs")),
            filter_subject: subject.clone(),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: cfg.ack_wait,
            max_deliver: i64::from(cfg.max_deliver),
            max_ack_pending: i64::from(cfg.max_ack_pending),
            ..Default::default()
        })
        .await
        .map_err(|e| setup_err("consumer", &name, e))?;
    let info = consumer
        .info()
        .await
        .map_err(|e| setup_err("consumer", &name, e))?;
    if info.config.filter_subject != subject {
        return Err(QueueError::ServerTooOld {
            name,
            setting: "filter_subject",
        });
    }
    Ok(consumer)
}

/// Makes a string safe as a header value: one line, bounded length.
pub fn header_safe(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    one_line.chars().take(MAX_REASON_CHARS).collect()
}

/// Everything the dead-letter entry records about a failed job.
#[derive(Debug)]
pub struct DeadLetter<'a> {
    /// Job kind.
    pub kind: JobKind,
    /// Subject the job was published on.
    pub subject: &'a str,
    /// Its headers, copied over.
    pub headers: Option<&'a HeaderMap>,
    /// Its payload, kept byte for byte.
    pub payload: &'a [u8],
    /// Sequence in the job stream.
    pub stream_seq: u64,
    /// Deliveries so far.
    pub deliveries: u64,
    /// Why it failed.
    pub reason: &'a str,
}

/// Publishes a dead letter and waits for JetStream to store it. A job too
/// large to fit the server's `max_payload` once the dead-letter headers are
/// added is dead-lettered with its first bytes, its length and its SHA-256
/// (headers `S3rf-Payload-Bytes`, `S3rf-Payload-Sha256`) and without its
/// own headers, so that every job reaches the dead-letter stream.
pub async fn publish_dead_letter(
    js: &jetstream::Context,
    names: &Names,
    dl: DeadLetter<'_>,
) -> Result<(), QueueError> {
    let subject = names.dead_subject(dl.kind);
    let headers = dead_letter_headers(names, &dl, true, None);
    match publish_stored(js, &subject, headers, dl.payload.to_vec()).await {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() != jetstream::context::PublishErrorKind::MaxPayloadExceeded => {
            return Err(publish_failed(&subject, &e));
        }
        Err(_) => {}
    }
    let max_payload = js.client().server_info().max_payload;
    let probe = dead_letter_headers(names, &dl, false, Some(0));
    let keep = max_payload
        .saturating_sub(header_bytes(&probe) + 1024)
        .min(dl.payload.len());
    let headers = dead_letter_headers(names, &dl, false, Some(keep));
    publish_stored(js, &subject, headers, dl.payload[..keep].to_vec())
        .await
        .map_err(|e| publish_failed(&subject, &e))?;
    Ok(())
}

/// A job's own headers to carry along when it is moved (dead-lettered or
/// parked): all of them, with `Nats-Msg-Id` moved to
/// `S3rf-Original-Msg-Id` so that the copy is not dropped as a duplicate.
pub(crate) fn original_headers(orig: Option<&HeaderMap>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (k, values) in orig.into_iter().flat_map(HeaderMap::iter) {
        let name: &str = k.as_ref();
        if name.eq_ignore_ascii_case("Nats-Msg-Id") {
            if let Some(v) = values.first() {
                headers.insert(HDR_ORIGINAL_MSG_ID, v.as_str());
            }
            continue;
        }
        for v in values {
            headers.append(name, v.as_str());
        }
    }
    headers
}

/// The error of a KV bucket operation.
pub(crate) fn kv_err(e: impl std::fmt::Display, bucket: &str) -> QueueError {
    setup_err("key-value bucket", bucket, e)
}

/// Bytes `headers` take on the wire (`NATS/1.0`, `name: value` lines).
fn header_bytes(headers: &HeaderMap) -> usize {
    let lines: usize = headers
        .iter()
        .map(|(k, vs)| {
            let name: &str = k.as_ref();
            vs.iter()
                .map(|v| name.len() + v.as_str().len() + 4)
                .sum::<usize>()
        })
        .sum();
    lines + "NATS/1.0\r\n\r\n".len()
}

/// The headers of a dead letter: the job's own (`copy_original`), then
/// s3rf's. `truncated_to`: the payload keeps only this many bytes.
fn dead_letter_headers(
    names: &Names,
    dl: &DeadLetter<'_>,
    copy_original: bool,
    truncated_to: Option<usize>,
) -> HeaderMap {
    let mut headers = original_headers(dl.headers.filter(|_| copy_original));
    headers.insert(HDR_ORIGINAL_SUBJECT, dl.subject);
    headers.insert(HDR_JOB_KIND, dl.kind.token());
    headers.insert(HDR_DELIVERIES, dl.deliveries.to_string().as_str());
    headers.insert(HDR_STREAM_SEQ, dl.stream_seq.to_string().as_str());
    match truncated_to {
        None => headers.insert(HDR_REASON, header_safe(dl.reason).as_str()),
        Some(keep) => {
            use sha2::Digest as _;
            let sha: String = sha2::Sha256::digest(dl.payload)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            headers.insert(HDR_PAYLOAD_BYTES, dl.payload.len().to_string().as_str());
            headers.insert(HDR_PAYLOAD_SHA256, sha.as_str());
            let note = format!(
                " (the job's {} bytes and its headers do not fit a dead letter: its first {keep} bytes are kept, S3rf-Payload-Sha256 is the whole payload's)",
                dl.payload.len()
            );
            let reason: String = header_safe(dl.reason)
                .chars()
                .take(MAX_REASON_CHARS - note.len())
                .collect();
            headers.insert(HDR_REASON, format!("{reason}{note}").as_str());
        }
    }
    headers.insert(
        HDR_FAILED_AT,
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .as_str(),
    );
    // One dead letter per job, even if two agents race to write it.
    let msg_id = format!("dead-{}-{}", names.jobs_stream(), dl.stream_seq);
    headers.insert("Nats-Msg-Id", HeaderValue::from(msg_id.as_str()));
    headers
}

/// Publishes and waits until JetStream has stored the message (PubAck).
pub async fn publish_stored(
    js: &jetstream::Context,
    subject: &str,
    headers: HeaderMap,
    payload: Vec<u8>,
) -> Result<jetstream::publish::PublishAck, jetstream::context::PublishError> {
    js.publish_with_headers(subject.to_owned(), headers, payload.into())
        .await?
        .await
}

/// The user-facing error of a failed [`publish_stored`].
pub fn publish_failed(subject: &str, e: &jetstream::context::PublishError) -> QueueError {
    QueueError::Publish {
        subject: subject.to_owned(),
        detail: e.to_string(),
    }
}

/// Dead-letters a message and terminates it. If the dead-letter stream cannot
/// take it, the message is nak'd instead so that nothing is lost.
pub async fn dead_letter_message(
    js: &jetstream::Context,
    names: &Names,
    kind: JobKind,
    msg: &jetstream::Message,
    stream_seq: u64,
    deliveries: u64,
    reason: &str,
) {
    let dl = DeadLetter {
        kind,
        subject: msg.subject.as_str(),
        headers: msg.headers.as_ref(),
        payload: &msg.payload,
        stream_seq,
        deliveries,
        reason,
    };
    match publish_dead_letter(js, names, dl).await {
        Ok(()) => {
            error!(reason, deliveries, "dead-lettered");
            crate::metrics::dead_letter(kind.token());
            if let Err(e) = msg.ack_with(AckKind::Term).await {
                warn!(error = %e, "could not terminate the dead-lettered job; it may be delivered once more");
            }
        }
        Err(e) => {
            error!(error = %e, reason, "cannot dead-letter the job; it will be retried");
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                .await;
        }
    }
}

#[derive(Debug, Deserialize)]
struct MaxDeliveriesAdvisory {
    stream: String,
    consumer: String,
    stream_seq: u64,
    deliveries: u64,
}

/// Safety net for agents that died on a job's last delivery: when JetStream
/// gives up on a job (max deliveries reached without an outcome), move it to
/// the dead-letter stream and remove it from the work queue.
pub async fn watch_max_deliveries(
    client: async_nats::Client,
    js: jetstream::Context,
    names: Names,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut sub = match client.subscribe(names.max_deliveries_advisory()).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot subscribe to max-deliveries advisories; jobs of agents that die on their last try stay in the job stream");
            return;
        }
    };
    use futures::StreamExt;
    loop {
        let msg = tokio::select! {
            m = sub.next() => match m { Some(m) => m, None => return },
            () = stop.cancelled() => return,
        };
        let Ok(adv) = serde_json::from_slice::<MaxDeliveriesAdvisory>(&msg.payload) else {
            continue;
        };
        let Some(kind) = names.kind_of_consumer(&adv.consumer) else {
            continue;
        };
        let Ok(stream) = js.get_stream(&adv.stream).await else {
            continue;
        };
        let Ok(raw) = stream.get_raw_message(adv.stream_seq).await else {
            // Already handled: dead-lettered and terminated by its agent.
            continue;
        };
        let reason = format!(
            "gave up after {} deliveries without an outcome: the agents handling it stopped or timed out; check agent logs",
            adv.deliveries
        );
        let dl = DeadLetter {
            kind,
            subject: raw.subject.as_str(),
            headers: Some(&raw.headers),
            payload: &raw.payload,
            stream_seq: adv.stream_seq,
            deliveries: adv.deliveries,
            reason: &reason,
        };
        match publish_dead_letter(&js, &names, dl).await {
            Ok(()) => {
                let _ = stream.delete_message(adv.stream_seq).await;
                info!(
                    job = adv.stream_seq,
                    "moved an abandoned job to the dead-letter stream"
                );
            }
            Err(e) => {
                warn!(error = %e, job = adv.stream_seq, "cannot move an abandoned job to the dead-letter stream")
            }
        }
    }
}

/// Opens the KV bucket `bucket`, creating it (history 1, file storage,
/// `replicas`, entries kept for `max_age`, zero for ever) if it is not
/// there yet.
pub async fn open_kv(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<jetstream::kv::Store, QueueError> {
    if let Ok(kv) = js.get_key_value(bucket).await {
        return Ok(kv);
    }
    js.create_key_value(jetstream::kv::Config {
        bucket: bucket.to_owned(),
        description: description.to_owned(),
        history: 1,
        max_age,
        num_replicas: replicas,
        storage: StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| QueueError::Setup {
        what: "key-value bucket",
        name: bucket.to_owned(),
        detail: e.to_string(),
    })
}

/// A job to publish with its dedup id.
pub(crate) struct Outgoing {
    /// Job subject.
    pub subject: String,
    /// `Nats-Msg-Id`.
    pub msg_id: String,
    /// JSON.
    pub payload: Vec<u8>,
}

/// Publishes all, then waits for every PubAck.
pub(crate) async fn publish_all(
    js: &jetstream::Context,
    jobs: Vec<Outgoing>,
) -> Result<(), QueueError> {
    let mut acks = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", job.msg_id.as_str());
        let subject = job.subject.clone();
        let ack = js
            .publish_with_headers(job.subject, headers, job.payload.into())
            .await
            .map_err(|e| QueueError::Publish {
                subject: subject.clone(),
                detail: e.to_string(),
            })?;
        acks.push((subject, ack));
    }
    for (subject, ack) in acks {
        ack.await.map_err(|e| QueueError::Publish {
            subject,
            detail: e.to_string(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_one_bounded_line() {
        assert_eq!(header_safe("a\r\nb\tc"), "a  b c");
        assert_eq!(header_safe(&"x".repeat(5000)).len(), MAX_REASON_CHARS);
    }
}
