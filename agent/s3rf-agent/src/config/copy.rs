//! `[copy]`: concurrency, part sizes and thresholds, buffer memory,
//! read-ahead, shutdown grace, retry pacing and multipart resume records.

use super::*;

/// `[copy]`
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCopy {
    /// Copy jobs run at once by this agent.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Parts in flight for one multipart object.
    #[serde(default = "default_part_concurrency")]
    pub part_concurrency: usize,
    /// Multipart part size (S3 allows 5MiB to 5GiB); raised automatically to keep within 10,000 parts.
    #[serde(default = "default_part_size")]
    pub part_size: ByteSize,
    /// Across endpoints: objects up to this size are a single PUT, larger ones multipart.
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold: ByteSize,
    /// On one endpoint: objects up to this size are one server-side CopyObject
    /// (at most 5GiB), larger ones parallel UploadPartCopy.
    #[serde(default = "default_server_side_multipart_threshold")]
    pub server_side_multipart_threshold: ByteSize,
    /// Upper bound on object bytes buffered in memory by all copies together.
    #[serde(default = "default_buffer_memory")]
    pub buffer_memory: ByteSize,
    /// Across endpoints, an object above 1 MiB copied with one PUT is piped
    /// from its GET into its PUT through a window of this many bytes
    /// (0: read the whole object before the PUT).
    #[serde(default = "default_read_ahead")]
    pub read_ahead: ByteSize,
    /// How long in-flight copies may run after SIGTERM before they are aborted.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// First retry delay; doubles with every delivery.
    #[serde(default = "default_retry_base_delay_ms")]
    pub retry_base_delay_ms: u64,
    /// Longest retry delay.
    #[serde(default = "default_retry_max_delay_secs")]
    pub retry_max_delay_secs: u64,
    /// How long a record of an unfinished multipart copy is kept for a later
    /// delivery to resume it (0: no records; a retry starts over).
    #[serde(default = "default_resume_ttl_secs")]
    pub resume_ttl_secs: u64,
}

impl Default for RawCopy {
    fn default() -> Self {
        Self {
            concurrency: default_concurrency(),
            part_concurrency: default_part_concurrency(),
            part_size: default_part_size(),
            multipart_threshold: default_multipart_threshold(),
            server_side_multipart_threshold: default_server_side_multipart_threshold(),
            buffer_memory: default_buffer_memory(),
            read_ahead: default_read_ahead(),
            shutdown_grace_secs: default_shutdown_grace_secs(),
            retry_base_delay_ms: default_retry_base_delay_ms(),
            retry_max_delay_secs: default_retry_max_delay_secs(),
            resume_ttl_secs: default_resume_ttl_secs(),
        }
    }
}

const fn default_concurrency() -> usize {
    256
}

const fn default_part_concurrency() -> usize {
    4
}

const fn default_part_size() -> ByteSize {
    ByteSize::mib(16)
}

const fn default_multipart_threshold() -> ByteSize {
    ByteSize::mib(16)
}

const fn default_server_side_multipart_threshold() -> ByteSize {
    ByteSize::mib(512)
}

const fn default_buffer_memory() -> ByteSize {
    ByteSize::mib(256)
}

const fn default_read_ahead() -> ByteSize {
    ByteSize::mib(4)
}

const fn default_shutdown_grace_secs() -> u64 {
    30
}

const fn default_retry_base_delay_ms() -> u64 {
    1000
}

const fn default_retry_max_delay_secs() -> u64 {
    60
}

const fn default_resume_ttl_secs() -> u64 {
    7 * 24 * 3600
}

pub(super) fn validate_copy(raw: RawCopy) -> Result<CopyConfig, ConfigError> {
    let part_size = raw.part_size.as_u64();
    let multipart_threshold = raw.multipart_threshold.as_u64();
    let server_side = raw.server_side_multipart_threshold.as_u64();
    let buffer_memory = raw.buffer_memory.as_u64();
    if raw.concurrency == 0 {
        return Err(invalid("copy.concurrency", "must be at least 1"));
    }
    if raw.part_concurrency == 0 {
        return Err(invalid("copy.part_concurrency", "must be at least 1"));
    }
    if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
        return Err(invalid(
            "copy.part_size",
            format!("{} is outside S3's 5MiB..5GiB part limits", raw.part_size),
        ));
    }
    if multipart_threshold > MAX_SINGLE_PUT {
        return Err(invalid(
            "copy.multipart_threshold",
            "must be at most 5GiB, S3's single PUT limit",
        ));
    }
    if server_side > MAX_SINGLE_COPY {
        return Err(invalid(
            "copy.server_side_multipart_threshold",
            "must be at most 5GiB, S3's single CopyObject limit",
        ));
    }
    let biggest_buffer = part_size.max(multipart_threshold);
    if buffer_memory < biggest_buffer {
        return Err(invalid(
            "copy.buffer_memory",
            format!(
                "{} cannot hold one part or one single-PUT object ({}); raise it or lower part_size/multipart_threshold",
                raw.buffer_memory,
                ByteSize::b(biggest_buffer)
            ),
        ));
    }
    if raw.retry_base_delay_ms == 0 {
        return Err(invalid("copy.retry_base_delay_ms", "must be at least 1"));
    }
    if (1..60).contains(&raw.resume_ttl_secs) {
        return Err(invalid(
            "copy.resume_ttl_secs",
            "must be 0 (no resume records) or at least 60",
        ));
    }
    let read_ahead = raw.read_ahead.as_u64();
    if read_ahead > buffer_memory {
        return Err(invalid(
            "copy.read_ahead",
            format!(
                "{} is more than buffer_memory ({}), which holds every window",
                raw.read_ahead, raw.buffer_memory
            ),
        ));
    }
    Ok(CopyConfig {
        concurrency: raw.concurrency,
        part_concurrency: raw.part_concurrency,
        part_size,
        multipart_threshold,
        server_side_multipart_threshold: server_side,
        buffer_memory,
        read_ahead,
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs),
        retry_base_delay: Duration::from_millis(raw.retry_base_delay_ms),
        retry_max_delay: Duration::from_secs(raw.retry_max_delay_secs.max(1)),
        resume_ttl: (raw.resume_ttl_secs > 0).then(|| Duration::from_secs(raw.resume_ttl_secs)),
    })
}
