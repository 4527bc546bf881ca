//! Reading a verification's results back from `S3RF_VERIFY`: its summary
//! (every page's counts folded) and its differing keys, each once, less
//! the extra keys that a page claimed as the new name of a renamed source
//! object (`verify --filters`).

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
};
use futures::StreamExt;

use super::queue_err;
use crate::jetstream::QueueError;
use crate::migration::entity_hash;
use crate::names::Names;
use crate::verify::{Difference, Kind, VerifyEvent, VerifySummary};

/// Reads every message of `subject` (a filter) in order.
async fn read_all(
    js: &jetstream::Context,
    names: &Names,
    subject: String,
) -> Result<Vec<Vec<u8>>, QueueError> {
    let name = names.verify_stream();
    let stream = js
        .get_stream(&name)
        .await
        .map_err(|e| queue_err("stream", &name, e))?;
    let mut consumer: PullConsumer = stream
        .create_consumer(pull::Config {
            filter_subject: subject,
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(|e| queue_err("consumer", &name, e))?;
    let mut pending = consumer
        .info()
        .await
        .map_err(|e| queue_err("consumer", &name, e))?
        .num_pending;
    let mut out = Vec::new();
    while pending > 0 {
        let want = usize::try_from(pending.min(1000)).unwrap_or(1000);
        let mut batch = consumer
            .fetch()
            .max_messages(want)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .map_err(|e| queue_err("consumer", &name, e))?;
        let mut got = 0u64;
        while let Some(m) = batch.next().await {
            let Ok(m) = m else { continue };
            got += 1;
            out.push(m.payload.to_vec());
        }
        if got == 0 {
            break;
        }
        pending = pending.saturating_sub(got);
    }
    Ok(out)
}

/// A verification's summary from its recorded results.
pub async fn summary(
    js: &jetstream::Context,
    names: &Names,
    id: &str,
) -> Result<VerifySummary, QueueError> {
    let mut s = VerifySummary::default();
    for payload in read_all(js, names, names.verify_results(id)).await? {
        if let Ok(e) = serde_json::from_slice::<VerifyEvent>(&payload) {
            s.apply(&e);
        }
    }
    // Keys the filters renamed source objects to were counted as extra by
    // the pages that listed them; settle that once every page is in.
    if s.counts.renamed > 0 && s.counts.extra > 0 && s.complete() {
        let extras = |ds: &[Difference]| ds.iter().filter(|d| d.kind == Kind::Extra).count() as u64;
        let all = all_differences(js, names, id).await?;
        let recorded = extras(&all);
        let left = extras(&unclaimed(js, names, id, all).await?);
        s.counts.extra = s.counts.extra.saturating_sub(recorded.saturating_sub(left));
    }
    Ok(s)
}

/// Whether a page claimed the destination key of an extra difference:
/// the filters renamed a source object to it.
async fn claimed(
    stream: &jetstream::stream::Stream,
    names: &Names,
    id: &str,
    d: &Difference,
) -> Result<bool, QueueError> {
    use async_nats::jetstream::stream::LastRawMessageErrorKind;
    let subject = names.verify_claim(id, &entity_hash(&[&d.dst_bucket, &d.key]));
    match stream.get_last_raw_message_by_subject(&subject).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(false),
        Err(e) => Err(queue_err("claim", &subject, e)),
    }
}

/// Every recorded difference, each once, in bucket and key order,
/// claimed extras included.
async fn all_differences(
    js: &jetstream::Context,
    names: &Names,
    id: &str,
) -> Result<Vec<Difference>, QueueError> {
    let mut by_key = std::collections::BTreeMap::new();
    for payload in read_all(js, names, names.verify_differences(id)).await? {
        if let Ok(d) = serde_json::from_slice::<Difference>(&payload) {
            by_key.insert((d.bucket.clone(), d.key.clone(), d.dst_key.clone()), d);
        }
    }
    Ok(by_key.into_values().collect())
}

/// A verification's differing keys, each once, in bucket and key order:
/// an extra destination key that the filters renamed a source object to
/// is not a difference.
pub async fn differences(
    js: &jetstream::Context,
    names: &Names,
    id: &str,
) -> Result<Vec<Difference>, QueueError> {
    let all = all_differences(js, names, id).await?;
    unclaimed(js, names, id, all).await
}

/// `all` without the extras a page claimed.
async fn unclaimed(
    js: &jetstream::Context,
    names: &Names,
    id: &str,
    all: Vec<Difference>,
) -> Result<Vec<Difference>, QueueError> {
    if !all.iter().any(|d| d.kind == Kind::Extra) {
        return Ok(all);
    }
    let name = names.verify_stream();
    let stream = js
        .get_stream(&name)
        .await
        .map_err(|e| queue_err("stream", &name, e))?;
    let mut out = Vec::with_capacity(all.len());
    for d in all {
        if d.kind == Kind::Extra && claimed(&stream, names, id, &d).await? {
            continue;
        }
        out.push(d);
    }
    Ok(out)
}
