//! `s3rf-agent bridge`: S3 event notifications from SQS become copy and delete
//! jobs on JetStream.
//!
//! **Architecture Invariant:** an SQS message is deleted only after every job
//! derived from it has been stored by JetStream (PubAck). Anything else —
//! NATS down, a publish error, shutdown — leaves the message in SQS, where it
//! becomes visible again. Messages that are not S3 events are never deleted:
//! the queue's redrive policy moves them to its dead-letter queue.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use tracing::{debug, info, warn};

use crate::config::{Config, QueueConfig};
use crate::events::{self, Body, Mapped};
use crate::jetstream::{self as js_setup, QueueError};
use crate::names::{JobKind, Names};
use crate::shutdown::{self, Shutdown};
use crate::store::{self, StoreError};

/// Why the bridge could not run.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Embedded(#[from] crate::embedded::EmbeddedError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no [[bridge.queues]] configured; add one (see README, Continuous sync)")]
    NoQueues,
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("sqs_endpoint {0} is not defined; add [endpoints.{0}]")]
    UnknownEndpoint(String),
}

/// Counters of one queue loop, for logs.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    received: u64,
    published: u64,
    deleted: u64,
    skipped_events: u64,
    test_events: u64,
    not_events: u64,
}

/// Runs the bridge until SIGTERM/SIGINT.
pub async fn run(mut config: Config) -> Result<(), BridgeError> {
    crate::embedded::resolve_client_url(&mut config.nats)?;
    if config.bridge.queues.is_empty() {
        return Err(BridgeError::NoQueues);
    }
    let shutdown = Shutdown::default();
    shutdown::install(shutdown.clone(), config.copy.shutdown_grace)
        .map_err(BridgeError::Signals)?;
    let names = Names::new(&config.nats.prefix);
    let client = js_setup::connect(&config.nats, "s3rf-bridge").await?;
    let js = jetstream::new(client.clone());
    js_setup::ensure_streams(&js, &names, &config.nats).await?;
    let mut loops = Vec::new();
    for queue in &config.bridge.queues {
        let endpoint = config
            .endpoints
            .get(&queue.sqs_endpoint)
            .ok_or_else(|| BridgeError::UnknownEndpoint(queue.sqs_endpoint.clone()))?;
        let sqs = store::sqs_client(endpoint).await?;
        loops.push(tokio::spawn(queue_loop(
            queue.clone(),
            sqs,
            js.clone(),
            names.clone(),
            config.bridge.wait_time_secs,
            config.bridge.max_messages,
            shutdown.stop.clone(),
        )));
    }
    if let Some(listen) = config.metrics_listen {
        tokio::spawn(crate::health::serve(
            listen,
            crate::metrics::install(),
            crate::health::Readiness {
                client: client.clone(),
                set_up: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            },
            shutdown.stop.clone(),
        ));
    }
    info!(queues = loops.len(), "bridge ready");
    crate::shutdown::notify_ready(shutdown.stop.clone());
    for l in loops {
        let _ = l.await;
    }
    let _ = client.flush().await;
    info!("bridge stopped");
    Ok(())
}

async fn queue_loop(
    queue: QueueConfig,
    sqs: aws_sdk_sqs::Client,
    js: jetstream::Context,
    names: Names,
    wait_time_secs: i32,
    max_messages: i32,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut counts = Counts::default();
    let mut failures = 0u32;
    loop {
        let receive = sqs
            .receive_message()
            .queue_url(&queue.queue_url)
            .max_number_of_messages(max_messages)
            .wait_time_seconds(wait_time_secs)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send();
        // Dropping a receive in flight is safe: its messages become visible again.
        let out = tokio::select! {
            r = receive => r,
            () = stop.cancelled() => break,
        };
        let messages = match out {
            Ok(o) => {
                failures = 0;
                o.messages.unwrap_or_default()
            }
            Err(e) => {
                failures += 1;
                let delay = Duration::from_millis(500 * u64::from(failures.min(10)));
                warn!(queue = %queue.queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(&e),
                    "cannot receive from SQS; check [bridge.queues] queue_url and the sqs_endpoint credentials (retrying)");
                tokio::select! {
                    () = tokio::time::sleep(delay) => continue,
                    () = stop.cancelled() => break,
                }
            }
        };
        for msg in messages {
            counts.received += 1;
            crate::metrics::sqs("received");
            // In-flight messages finish even during shutdown: publishing is quick.
            handle_message(&queue, &sqs, &js, &names, &msg, &mut counts).await;
        }
        debug!(queue = %queue.queue_url, ?counts, "bridge counts");
    }
    info!(queue = %queue.queue_url, received = counts.received, published = counts.published,
        deleted = counts.deleted, skipped = counts.skipped_events, test_events = counts.test_events,
        not_events = counts.not_events, "queue loop stopped");
}

async fn delete(sqs: &aws_sdk_sqs::Client, queue: &QueueConfig, msg: &Message) -> bool {
    let Some(handle) = msg.receipt_handle() else {
        return false;
    };
    match sqs
        .delete_message()
        .queue_url(&queue.queue_url)
        .receipt_handle(handle)
        .send()
        .await
    {
        Ok(_) => {
            crate::metrics::sqs("deleted");
            true
        }
        Err(e) => {
            // The jobs are stored; a redelivered message republishes them and
            // JetStream drops the duplicates.
            warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "cannot delete the SQS message; it will be seen again");
            false
        }
    }
}

async fn handle_message(
    queue: &QueueConfig,
    sqs: &aws_sdk_sqs::Client,
    js: &jetstream::Context,
    names: &Names,
    msg: &Message,
    counts: &mut Counts,
) {
    let id = msg.message_id().unwrap_or("?");
    let body = msg.body().unwrap_or("");
    let receive_count: u32 = msg
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let events = match events::parse_body(body) {
        Body::TestEvent => {
            counts.test_events += 1;
            debug!(message = id, "s3:TestEvent acknowledged");
            if delete(sqs, queue, msg).await {
                counts.deleted += 1;
            }
            return;
        }
        Body::NotAnEvent(reason) => {
            counts.not_events += 1;
            if receive_count <= 1 {
                warn!(message = id, reason, queue = %queue.queue_url,
                    "not an S3 event notification; leaving it for the queue's redrive policy (its dead-letter queue)");
            }
            return;
        }
        Body::Events(events) => events,
    };
    let mut acks = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        let (mapped, msg_id) = events::map_event(ev, queue, &format!("{id}-{i}"));
        let (kind, payload) = match mapped {
            Mapped::Copy(job) => (JobKind::Copy, serde_json::to_vec(&job)),
            Mapped::Delete(job) => (JobKind::Delete, serde_json::to_vec(&job)),
            Mapped::Skip(why) => {
                counts.skipped_events += 1;
                crate::metrics::sqs("skipped");
                debug!(event = %ev.name, bucket = %ev.bucket, key = %ev.key, why, "event skipped");
                continue;
            }
        };
        let subject = names.job_subject(kind);
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id.as_str());
        let published = js
            .publish_with_headers(subject, headers, payload.unwrap_or_default().into())
            .await;
        match published {
            Ok(ack) => acks.push((ev, ack)),
            Err(e) => {
                warn!(error = %e, message = id, "cannot publish to NATS; the SQS message stays and is retried");
                return;
            }
        }
    }
    for (ev, ack) in acks {
        if let Err(e) = ack.await {
            warn!(error = %e, message = id, bucket = %ev.bucket, key = %ev.key,
                "JetStream did not store the job; the SQS message stays and is retried");
            return;
        }
        counts.published += 1;
        crate::metrics::sqs("published");
        debug!(event = %ev.name, bucket = %ev.bucket, key = %ev.key, "event published");
    }
    if delete(sqs, queue, msg).await {
        counts.deleted += 1;
    }
}
