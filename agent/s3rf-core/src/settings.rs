//! The validated settings the pure rules read: `[copy]` for planning a
//! copy, a `[[bridge.queues]]` route for mapping an S3 event, and the
//! listing split limit. The agent's `config` module reads and validates
//! them from TOML and re-exports them.

use std::collections::BTreeMap;
use std::time::Duration;

/// Most `/` levels a listing may split into parallel listings.
pub const MAX_LIST_SPLIT: u32 = 16;

/// Validated `[copy]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyConfig {
    /// Copy jobs at once.
    pub concurrency: usize,
    /// Parts in flight per object.
    pub part_concurrency: usize,
    /// Preferred part size in bytes.
    pub part_size: u64,
    /// Cross-endpoint single-PUT limit in bytes.
    pub multipart_threshold: u64,
    /// Same-endpoint single-CopyObject limit in bytes.
    pub server_side_multipart_threshold: u64,
    /// Bytes buffered by all copies together.
    pub buffer_memory: u64,
    /// Read-ahead window of a piped single PUT (0: whole-object buffer).
    pub read_ahead: u64,
    /// Grace period after SIGTERM.
    pub shutdown_grace: Duration,
    /// First retry delay.
    pub retry_base_delay: Duration,
    /// Longest retry delay.
    pub retry_max_delay: Duration,
    /// How long multipart resume records live (`None`: no records).
    pub resume_ttl: Option<Duration>,
}

/// A validated queue route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Queue URL.
    pub queue_url: String,
    /// Endpoint for SQS.
    pub sqs_endpoint: String,
    /// Source endpoint.
    pub src: String,
    /// Destination endpoint.
    pub dst: String,
    /// Bucket renames.
    pub bucket_map: BTreeMap<String, String>,
    /// Key prefix filter.
    pub prefix: Option<String>,
    /// Deletes propagate.
    pub propagate_deletes: bool,
}
