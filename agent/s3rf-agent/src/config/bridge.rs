//! `[bridge]` and `[[bridge.queues]]`: the SQS queues the bridge reads and
//! where their events go.

use super::*;

/// `[bridge]`
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBridge {
    /// SQS long-poll wait, 0-20 seconds.
    #[serde(default = "default_wait_time_secs")]
    pub wait_time_secs: i32,
    /// Messages per receive, 1-10.
    #[serde(default = "default_max_messages")]
    pub max_messages: i32,
    /// The queues to read.
    #[serde(default)]
    pub queues: Vec<RawQueue>,
}

impl Default for RawBridge {
    fn default() -> Self {
        Self {
            wait_time_secs: default_wait_time_secs(),
            max_messages: default_max_messages(),
            queues: Vec::new(),
        }
    }
}

const fn default_wait_time_secs() -> i32 {
    20
}

const fn default_max_messages() -> i32 {
    10
}

/// `[[bridge.queues]]`
#[derive(Debug, PartialEq, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    /// The SQS queue URL.
    pub queue_url: String,
    /// The `[endpoints.*]` entry whose url, region and credentials reach SQS.
    pub sqs_endpoint: String,
    /// Endpoint the events' buckets live on.
    pub src: String,
    /// Destination endpoint.
    pub dst: String,
    /// Destination bucket by source bucket; default: the same name.
    #[serde(default)]
    pub bucket_map: BTreeMap<String, String>,
    /// Only keys with this prefix.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Turn removals into delete jobs.
    #[serde(default = "default_true")]
    pub propagate_deletes: bool,
}

const fn default_true() -> bool {
    true
}

/// Validated `[bridge]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// Long-poll wait.
    pub wait_time_secs: i32,
    /// Messages per receive.
    pub max_messages: i32,
    /// Queues.
    pub queues: Vec<QueueConfig>,
}

pub(super) fn validate_bridge(
    b: RawBridge,
    endpoints: &BTreeMap<String, EndpointConfig>,
) -> Result<BridgeConfig, ConfigError> {
    if !(0..=20).contains(&b.wait_time_secs) {
        return Err(invalid("bridge.wait_time_secs", "must be between 0 and 20"));
    }
    if !(1..=10).contains(&b.max_messages) {
        return Err(invalid("bridge.max_messages", "must be between 1 and 10"));
    }
    let mut queues = Vec::new();
    for (i, q) in b.queues.into_iter().enumerate() {
        for (field, name) in [
            ("sqs_endpoint", &q.sqs_endpoint),
            ("src", &q.src),
            ("dst", &q.dst),
        ] {
            if !endpoints.contains_key(name) {
                return Err(invalid(
                    format!("bridge.queues[{i}].{field}"),
                    format!("endpoint {name:?} is not defined; add [endpoints.{name}]"),
                ));
            }
        }
        if !(q.queue_url.starts_with("http://") || q.queue_url.starts_with("https://")) {
            return Err(invalid(
                format!("bridge.queues[{i}].queue_url"),
                "must be an http(s) SQS queue URL",
            ));
        }
        queues.push(QueueConfig {
            queue_url: q.queue_url,
            sqs_endpoint: q.sqs_endpoint,
            src: q.src,
            dst: q.dst,
            bucket_map: q.bucket_map,
            prefix: q.prefix.filter(|p| !p.is_empty()),
            propagate_deletes: q.propagate_deletes,
        });
    }
    Ok(BridgeConfig {
        wait_time_secs: b.wait_time_secs,
        max_messages: b.max_messages,
        queues,
    })
}
