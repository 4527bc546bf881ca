//! `[migrate]`: listing concurrency, page size, prefix splitting, the
//! queue bound, batching and tally pacing.

use super::*;

/// `[migrate]`
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMigrate {
    /// Listing, bucket and migrate jobs run at once by this agent.
    #[serde(default = "default_list_concurrency")]
    pub list_concurrency: usize,
    /// Keys per listing page (at most 1000, S3's limit).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// `/` levels of a bucket's keys listed as parallel listings, one per
    /// common prefix (0: one listing per bucket).
    #[serde(default = "default_list_split_depth")]
    pub list_split_depth: u32,
    /// A list job waits while this many copy (or delete) jobs wait for an
    /// agent: how far listing runs ahead of copying.
    #[serde(default = "default_max_queued_jobs")]
    pub max_queued_jobs: u64,
    /// Most objects per batch job: a listing publishes objects of at most
    /// `batch_max_size` in batches, one message, ledger event and ack each
    /// (0 or 1: one copy job per object).
    #[serde(default = "default_batch_objects")]
    pub batch_objects: usize,
    /// Objects up to this size go into batch jobs.
    #[serde(default = "default_batch_max_size")]
    pub batch_max_size: ByteSize,
    /// How often this agent folds ledger events into migration tallies.
    #[serde(default = "default_tally_interval_ms")]
    pub tally_interval_ms: u64,
}

impl Default for RawMigrate {
    fn default() -> Self {
        Self {
            list_concurrency: default_list_concurrency(),
            page_size: default_page_size(),
            list_split_depth: default_list_split_depth(),
            max_queued_jobs: default_max_queued_jobs(),
            batch_objects: default_batch_objects(),
            batch_max_size: default_batch_max_size(),
            tally_interval_ms: default_tally_interval_ms(),
        }
    }
}

const fn default_list_concurrency() -> usize {
    32
}

const fn default_page_size() -> u32 {
    1000
}

const fn default_list_split_depth() -> u32 {
    2
}

const fn default_max_queued_jobs() -> u64 {
    20_000
}

/// Largest `migrate.batch_objects`: 200 keys of 1,024 bytes and their
/// fields make a job of about 250 KiB.
const MAX_CONFIG_BATCH_OBJECTS: usize = 200;

const fn default_batch_objects() -> usize {
    100
}

const fn default_batch_max_size() -> ByteSize {
    ByteSize::mib(1)
}

const fn default_tally_interval_ms() -> u64 {
    1000
}

/// Validated `[migrate]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateConfig {
    /// Control jobs at once.
    pub list_concurrency: usize,
    /// Keys per page.
    pub page_size: i32,
    /// `/` levels listed in parallel.
    pub list_split_depth: u32,
    /// Object jobs queued before listing waits.
    pub max_queued_jobs: u64,
    /// Most objects per batch job (below 2: no batches).
    pub batch_objects: usize,
    /// Objects up to this many bytes are batched.
    pub batch_max_size: u64,
    /// Tally fold interval.
    pub tally_interval: Duration,
}

pub(super) fn validate_migrate(m: RawMigrate) -> Result<MigrateConfig, ConfigError> {
    if m.list_concurrency == 0 {
        return Err(invalid("migrate.list_concurrency", "must be at least 1"));
    }
    if !(1..=1000).contains(&m.page_size) {
        return Err(invalid("migrate.page_size", "must be between 1 and 1000"));
    }
    if m.max_queued_jobs == 0 {
        return Err(invalid("migrate.max_queued_jobs", "must be at least 1"));
    }
    if m.list_split_depth > MAX_LIST_SPLIT {
        return Err(invalid(
            "migrate.list_split_depth",
            format!("must be at most {}", MAX_LIST_SPLIT),
        ));
    }
    if m.batch_objects > MAX_CONFIG_BATCH_OBJECTS {
        return Err(invalid(
            "migrate.batch_objects",
            format!(
                "must be at most {MAX_CONFIG_BATCH_OBJECTS}, so that a batch of the longest keys stays well below NATS's default max_payload of 1 MiB (0 or 1 turns batching off)"
            ),
        ));
    }
    Ok(MigrateConfig {
        list_concurrency: m.list_concurrency,
        page_size: i32::try_from(m.page_size).unwrap_or(1000),
        list_split_depth: m.list_split_depth,
        max_queued_jobs: m.max_queued_jobs,
        batch_objects: m.batch_objects,
        batch_max_size: m.batch_max_size.as_u64(),
        tally_interval: Duration::from_millis(m.tally_interval_ms.max(100)),
    })
}
