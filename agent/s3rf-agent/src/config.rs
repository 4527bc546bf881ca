//! The agent's TOML configuration: loading, environment overrides and validation.
//!
//! Loading happens in two steps. [`RawConfig`] is what serde reads from the file
//! (plus `S3RF_<SECTION>__<KEY>` environment overrides, through the `config`
//! crate); [`Config`] is the validated form that the runtime uses. Runtime code
//! never sees a `RawConfig`.
//!
//! Secrets never live in the file: endpoints name the *environment variables*
//! that hold their keys, and NATS credentials are file paths.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

/// Most `/` levels a listing may split into parallel listings.
pub const MAX_LIST_SPLIT: u32 = 16;

/// S3's smallest allowed multipart part (all parts but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest allowed multipart part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// S3's largest single CopyObject.
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;
/// S3's largest single PutObject.
pub const MAX_SINGLE_PUT: u64 = 5 * 1024 * 1024 * 1024;
/// Environment variable that names the config file.
pub const CONFIG_ENV: &str = "S3RF_CONFIG";
/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "S3RF";

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config file {path}: {source}; check the path given with --config or S3RF_CONFIG"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}; fix the file or the S3RF_* environment override")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------
// Raw form, as written in TOML.
// ---------------------------------------------------------------------------

/// The file as written. See README.md, "Configuration reference".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// How to reach NATS JetStream.
    #[serde(default)]
    pub nats: RawNats,
    /// The S3-compatible stores this agent may talk to, by name.
    #[serde(default)]
    pub endpoints: BTreeMap<String, RawEndpoint>,
    /// Copy tuning.
    #[serde(default)]
    pub copy: RawCopy,
    /// Migration tuning.
    #[serde(default)]
    pub migrate: RawMigrate,
    /// Event sync.
    #[serde(default)]
    pub sync: RawSync,
    /// The SQS ingress bridge (`s3rf-agent bridge`).
    #[serde(default)]
    pub bridge: RawBridge,
    /// Prometheus metrics and health endpoints.
    #[serde(default)]
    pub metrics: RawMetrics,
    /// Wasm filters.
    #[serde(default)]
    pub filters: RawFilters,
    /// Logging.
    #[serde(default)]
    pub log: RawLog,
}

/// `[migrate]`
#[derive(Debug, Deserialize)]
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
    4
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

/// `[sync]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    /// How long the last applied event sequencer of an object is remembered.
    #[serde(default = "default_sequencer_ttl_secs")]
    pub sequencer_ttl_secs: u64,
}

impl Default for RawSync {
    fn default() -> Self {
        Self {
            sequencer_ttl_secs: default_sequencer_ttl_secs(),
        }
    }
}

const fn default_sequencer_ttl_secs() -> u64 {
    7 * 24 * 3600
}

/// `[metrics]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Address for `/metrics`, `/healthz` and `/readyz`, e.g. `127.0.0.1:9464`; off when absent.
    #[serde(default)]
    pub listen: Option<String>,
}

/// `[filters]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilters {
    /// Directory of `*.wasm` filters (with optional `<stem>.toml`/`.json`
    /// parameters); no filters when absent.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Fuel (roughly, wasm instructions) one filter may spend per object.
    #[serde(default = "default_filter_fuel")]
    pub fuel: u64,
    /// Wall-clock backstop per filter call, e.g. "100ms".
    #[serde(default = "default_filter_deadline")]
    pub deadline: String,
    /// Linear memory one filter instance may grow to.
    #[serde(default = "default_filter_memory")]
    pub memory: ByteSize,
    /// Largest decision a filter may return, in bytes.
    #[serde(default = "default_filter_max_output_bytes")]
    pub max_output_bytes: u32,
    /// How often the directory is checked for added, changed or removed filters.
    #[serde(default = "default_filter_reload_interval")]
    pub reload_interval: String,
}

impl Default for RawFilters {
    fn default() -> Self {
        Self {
            dir: None,
            fuel: default_filter_fuel(),
            deadline: default_filter_deadline(),
            memory: default_filter_memory(),
            max_output_bytes: default_filter_max_output_bytes(),
            reload_interval: default_filter_reload_interval(),
        }
    }
}

const fn default_filter_fuel() -> u64 {
    10_000_000
}
fn default_filter_deadline() -> String {
    "1s".to_owned()
}
const fn default_filter_memory() -> ByteSize {
    ByteSize::mib(16)
}
const fn default_filter_max_output_bytes() -> u32 {
    4096
}
fn default_filter_reload_interval() -> String {
    "2s".to_owned()
}

/// Validated `[filters]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterConfig {
    /// Filter directory; `None`: no filters.
    pub dir: Option<PathBuf>,
    /// Limits on every call.
    pub limits: FilterLimits,
    /// Directory poll interval.
    pub reload_interval: Duration,
}

/// The bounds on one filter call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterLimits {
    /// Fuel per call.
    pub fuel: u64,
    /// Wall-clock backstop per call.
    pub deadline: Duration,
    /// Linear memory cap per instance, bytes.
    pub memory_bytes: u64,
    /// Largest output, bytes.
    pub max_output_bytes: u32,
}

impl Default for FilterConfig {
    fn default() -> Self {
        let raw = RawFilters::default();
        Self {
            dir: None,
            limits: FilterLimits {
                fuel: raw.fuel,
                deadline: Duration::from_secs(1),
                memory_bytes: raw.memory.as_u64(),
                max_output_bytes: raw.max_output_bytes,
            },
            reload_interval: Duration::from_secs(2),
        }
    }
}

fn validate_filters(raw: RawFilters) -> Result<FilterConfig, ConfigError> {
    let duration = |key: &str, v: &str| {
        humantime::parse_duration(v)
            .map_err(|e| invalid(key, format!("{v:?} is not a duration like \"500ms\": {e}")))
    };
    let deadline = duration("filters.deadline", &raw.deadline)?;
    if deadline < Duration::from_millis(10) {
        return Err(invalid("filters.deadline", "must be at least 10ms"));
    }
    let reload_interval = duration("filters.reload_interval", &raw.reload_interval)?;
    if reload_interval < Duration::from_millis(100) {
        return Err(invalid("filters.reload_interval", "must be at least 100ms"));
    }
    if raw.fuel < 10_000 {
        return Err(invalid("filters.fuel", "must be at least 10000"));
    }
    if raw.memory.as_u64() < 64 * 1024 || raw.memory.as_u64() > 4 * 1024 * 1024 * 1024 {
        return Err(invalid("filters.memory", "must be between 64KiB and 4GiB"));
    }
    if !(64..=1024 * 1024).contains(&raw.max_output_bytes) {
        return Err(invalid(
            "filters.max_output_bytes",
            "must be between 64 and 1048576",
        ));
    }
    Ok(FilterConfig {
        dir: raw.dir,
        limits: FilterLimits {
            fuel: raw.fuel,
            deadline,
            memory_bytes: raw.memory.as_u64(),
            max_output_bytes: raw.max_output_bytes,
        },
        reload_interval,
    })
}

/// `[bridge]`
#[derive(Debug, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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

/// Validated `[sync]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// Sequencer memory.
    pub sequencer_ttl: Duration,
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

/// `[nats]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNats {
    /// Server URL(s), comma separated, e.g. `nats://127.0.0.1:4222`; or
    /// `embedded` (the default): the agent runs its own nats-server on
    /// loopback with its store under `store_dir`.
    #[serde(default = "default_nats_url")]
    pub url: String,
    /// Embedded mode: where the JetStream store lives. Default:
    /// `$STATE_DIRECTORY/nats` under systemd, else `/var/lib/s3rf/nats` for
    /// root, else `$XDG_STATE_HOME/s3rf/nats` (`~/.local/state/s3rf/nats`).
    #[serde(default)]
    pub store_dir: Option<PathBuf>,
    /// Embedded mode: the nats-server binary; found on PATH or next to
    /// s3rf-agent when absent.
    #[serde(default)]
    pub server_bin: Option<PathBuf>,
    /// Namespace for subjects (`<prefix>.copy`) and streams (`<PREFIX>_JOBS`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// A `.creds` file (JWT + nkey seed).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// A file holding an nkey seed.
    #[serde(default)]
    pub nkey_seed_file: Option<PathBuf>,
    /// User name for user/password auth; the password comes from `password_env`.
    #[serde(default)]
    pub user: Option<String>,
    /// Environment variable holding the NATS password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Environment variable holding a NATS token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// CA bundle used to verify the server.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate for mutual TLS.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// Client key for mutual TLS.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// How long a job may run without a progress ack before redelivery.
    #[serde(default = "default_ack_wait_secs")]
    pub ack_wait_secs: u64,
    /// Deliveries before a job is dead-lettered with its last error.
    #[serde(default = "default_max_deliver")]
    pub max_deliver: u32,
    /// Jobs in flight across the whole fleet, per job kind.
    #[serde(default = "default_max_ack_pending")]
    pub max_ack_pending: u32,
    /// Job stream replicas (1 for a single server, 3 for a cluster).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
}

impl Default for RawNats {
    fn default() -> Self {
        Self {
            url: default_nats_url(),
            store_dir: None,
            server_bin: None,
            prefix: default_prefix(),
            credentials_file: None,
            nkey_seed_file: None,
            user: None,
            password_env: None,
            token_env: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            ack_wait_secs: default_ack_wait_secs(),
            max_deliver: default_max_deliver(),
            max_ack_pending: default_max_ack_pending(),
            replicas: default_replicas(),
        }
    }
}

fn default_nats_url() -> String {
    EMBEDDED.to_owned()
}

/// The `[nats] url` that selects embedded mode.
pub const EMBEDDED: &str = "embedded";
fn default_prefix() -> String {
    "s3rf".to_owned()
}
const fn default_ack_wait_secs() -> u64 {
    30
}
const fn default_max_deliver() -> u32 {
    5
}
const fn default_max_ack_pending() -> u32 {
    1000
}
const fn default_replicas() -> usize {
    1
}

/// `[endpoints.<name>]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    /// Base URL, e.g. `http://127.0.0.1:9000`. Absent means AWS's own endpoint for `region`.
    #[serde(default)]
    pub url: Option<String>,
    /// SigV4 region.
    #[serde(default = "default_region")]
    pub region: String,
    /// Address buckets as `url/bucket` instead of `bucket.url`.
    #[serde(default)]
    pub path_style: bool,
    /// Environment variable holding the access key id.
    #[serde(default)]
    pub access_key_id_env: Option<String>,
    /// Environment variable holding the secret access key.
    #[serde(default)]
    pub secret_access_key_env: Option<String>,
    /// Environment variable holding a session token.
    #[serde(default)]
    pub session_token_env: Option<String>,
    /// A profile from the shared AWS config files.
    #[serde(default)]
    pub profile: Option<String>,
    /// When the SDK adds request checksums.
    #[serde(default)]
    pub checksums: ChecksumMode,
    /// SHA-256 the body of every PUT and UploadPart into its signature.
    #[serde(default)]
    pub sign_payload: bool,
    /// `auto`: send Content-MD5 with every write to this endpoint, compare
    /// the ETags it returns, and check reads from it against MD5 ETags.
    /// `off`: for stores that refuse Content-MD5 or whose ETags are not MD5s.
    #[serde(default)]
    pub verify: Verify,
    /// Request timeout for one S3 call, in seconds.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// `s3` or `s3-express` (directory buckets); also detected from `--x-s3` bucket names.
    #[serde(default)]
    pub kind: EndpointKind,
}

/// What kind of store an endpoint is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointKind {
    /// General-purpose S3 or an S3-compatible store.
    #[default]
    S3,
    /// S3 Express One Zone directory buckets.
    S3Express,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}
const fn default_request_timeout_secs() -> u64 {
    300
}

/// Whether s3rf checks the bytes it reads from and writes to an endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verify {
    /// Content-MD5 on writes, ETags compared after writes, reads checked
    /// against plain-MD5 ETags.
    #[default]
    Auto,
    /// No checks (stores that refuse Content-MD5 or have non-MD5 ETags).
    Off,
}

/// When the AWS SDK computes request checksums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumMode {
    /// Only where the operation requires one. Safe for most S3-compatible stores.
    #[default]
    WhenRequired,
    /// Whenever the operation supports one (the SDK default; AWS S3).
    WhenSupported,
}

/// `[copy]`
#[derive(Debug, Deserialize)]
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
    16
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

/// `[log]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `auto` (human on a TTY, JSON otherwise), `text` or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `s3rf_agent=debug`; `RUST_LOG` wins when set.
    #[serde(default)]
    pub level: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON otherwise.
    #[default]
    Auto,
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

// ---------------------------------------------------------------------------
// Validated form.
// ---------------------------------------------------------------------------

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// NATS connection and JetStream settings.
    pub nats: NatsConfig,
    /// Endpoints by name.
    pub endpoints: BTreeMap<String, EndpointConfig>,
    /// Copy tuning.
    pub copy: CopyConfig,
    /// Migration tuning.
    pub migrate: MigrateConfig,
    /// Event sync.
    pub sync: SyncConfig,
    /// SQS bridge.
    pub bridge: BridgeConfig,
    /// Where to serve metrics and health, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Wasm filters.
    pub filters: FilterConfig,
    /// Logging.
    pub log: LogConfig,
}

/// How the agent authenticates to NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsAuth {
    /// No authentication.
    None,
    /// A `.creds` file.
    CredentialsFile(PathBuf),
    /// An nkey seed file.
    NkeySeedFile(PathBuf),
    /// User name plus a password read from an environment variable.
    UserPassword { user: String, password_env: String },
    /// A token read from an environment variable.
    Token { token_env: String },
}

/// Validated `[nats]`.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Server URL(s); `embedded` until the embedded server is resolved.
    pub url: String,
    /// Embedded mode: run (agent) or find (CLI, bridge) a local nats-server.
    pub embedded: Option<EmbeddedNatsConfig>,
    /// Subject and stream namespace.
    pub prefix: String,
    /// Authentication.
    pub auth: NatsAuth,
    /// CA bundle.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// Consumer ack wait.
    pub ack_wait: Duration,
    /// Consumer max deliveries.
    pub max_deliver: u32,
    /// Consumer max ack pending.
    pub max_ack_pending: u32,
    /// Stream replicas.
    pub replicas: usize,
}

/// Validated embedded-mode settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedNatsConfig {
    /// Store directory, when configured (else resolved from the environment).
    pub store_dir: Option<PathBuf>,
    /// nats-server binary, when configured.
    pub server_bin: Option<PathBuf>,
}

/// Where an endpoint's credentials come from.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// Named environment variables.
    Env {
        access_key_id_env: String,
        secret_access_key_env: String,
        session_token_env: Option<String>,
    },
    /// A shared-config profile.
    Profile(String),
    /// The AWS default chain (environment, files, IMDS, ...).
    DefaultChain,
}

impl fmt::Debug for CredentialSource {
    // Only ever names where secrets live, never their values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env {
                access_key_id_env,
                secret_access_key_env,
                ..
            } => write!(f, "env({access_key_id_env}, {secret_access_key_env})"),
            Self::Profile(p) => write!(f, "profile({p})"),
            Self::DefaultChain => f.write_str("default-chain"),
        }
    }
}

/// A validated `[endpoints.<name>]`.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// The name jobs use.
    pub name: String,
    /// Base URL, or `None` for AWS.
    pub url: Option<String>,
    /// SigV4 region.
    pub region: String,
    /// Path-style addressing.
    pub path_style: bool,
    /// Credentials.
    pub credentials: CredentialSource,
    /// Checksum policy.
    pub checksums: ChecksumMode,
    /// Sign request bodies (else `UNSIGNED-PAYLOAD`).
    pub sign_payload: bool,
    /// Integrity checks on this endpoint's reads and writes.
    pub verify: Verify,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Store kind.
    pub kind: EndpointKind,
}

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

/// Validated `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// Filter directive.
    pub level: String,
}

impl Config {
    /// Loads `path`, applies `S3RF_<SECTION>__<KEY>` overrides from the process
    /// environment, and validates the result.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Like [`Config::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_with_env(&text, path, env)
    }

    /// Parses TOML text plus environment overrides; `origin` names it in errors.
    pub fn from_toml_with_env(
        text: &str,
        origin: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let parse_err = |e: config::ConfigError| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        };
        // Only `S3RF_<SECTION>__<KEY>` variables are overrides; S3RF_CONFIG and
        // friends are not config keys.
        let overrides: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| {
                k.strip_prefix(ENV_PREFIX)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .is_some_and(|rest| rest.contains("__"))
            })
            .collect();
        let raw: RawConfig = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(overrides)),
            )
            .build()
            .map_err(parse_err)?
            .try_deserialize()
            .map_err(parse_err)?;
        raw.validate()
    }
}

impl RawConfig {
    /// Checks every value and builds the runtime form.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let nats = validate_nats(self.nats)?;
        let mut endpoints = BTreeMap::new();
        for (name, raw) in self.endpoints {
            let ep = validate_endpoint(&name, raw)?;
            endpoints.insert(name, ep);
        }
        let copy = validate_copy(self.copy)?;
        let m = self.migrate;
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
        let migrate = MigrateConfig {
            list_concurrency: m.list_concurrency,
            page_size: i32::try_from(m.page_size).unwrap_or(1000),
            list_split_depth: m.list_split_depth,
            max_queued_jobs: m.max_queued_jobs,
            batch_objects: m.batch_objects,
            batch_max_size: m.batch_max_size.as_u64(),
            tally_interval: Duration::from_millis(m.tally_interval_ms.max(100)),
        };
        if self.sync.sequencer_ttl_secs < 60 {
            return Err(invalid("sync.sequencer_ttl_secs", "must be at least 60"));
        }
        let sync = SyncConfig {
            sequencer_ttl: Duration::from_secs(self.sync.sequencer_ttl_secs),
        };
        let b = self.bridge;
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
        let bridge = BridgeConfig {
            wait_time_secs: b.wait_time_secs,
            max_messages: b.max_messages,
            queues,
        };
        let metrics_listen = match self.metrics.listen {
            None => None,
            Some(a) => Some(a.parse().map_err(|_| {
                invalid(
                    "metrics.listen",
                    format!("{a:?} is not an address like 127.0.0.1:9464"),
                )
            })?),
        };
        let filters = validate_filters(self.filters)?;
        let log = LogConfig {
            format: self.log.format,
            level: self.log.level.unwrap_or_else(|| "info".to_owned()),
        };
        Ok(Config {
            nats,
            endpoints,
            copy,
            migrate,
            sync,
            bridge,
            metrics_listen,
            filters,
            log,
        })
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The servers of a `[nats] url`: one URL, or several separated by commas
/// (a cluster's seeds). async-nats takes a list as a slice, not as one
/// string, so the list is split and each entry parsed here.
pub fn nats_servers(url: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    url.split(',')
        .map(str::trim)
        .enumerate()
        .map(|(i, entry)| {
            if entry.is_empty() {
                return Err(format!(
                    "entry {} of {url:?} is empty; separate URLs with single commas",
                    i + 1
                ));
            }
            entry.parse::<async_nats::ServerAddr>().map_err(|e| {
                format!(
                    "entry {} ({entry:?}) is not a NATS server URL: {e}; write nats://host:port, several separated by commas",
                    i + 1
                )
            })
        })
        .collect()
}

fn validate_nats(raw: RawNats) -> Result<NatsConfig, ConfigError> {
    if raw.url.trim().is_empty() {
        return Err(invalid(
            "nats.url",
            "must not be empty; leave it out (or set \"embedded\") to run a local nats-server",
        ));
    }
    let embedded = (raw.url.trim() == EMBEDDED).then(|| EmbeddedNatsConfig {
        store_dir: raw.store_dir.clone(),
        server_bin: raw.server_bin.clone(),
    });
    if embedded.is_none() {
        nats_servers(&raw.url).map_err(|why| invalid("nats.url", why))?;
    }
    if embedded.is_none() && (raw.store_dir.is_some() || raw.server_bin.is_some()) {
        return Err(invalid(
            "nats.store_dir",
            "store_dir and server_bin only apply to url = \"embedded\"; remove them or the url",
        ));
    }
    if !is_token(&raw.prefix) {
        return Err(invalid(
            "nats.prefix",
            format!(
                "{:?} must be letters, digits, '-' or '_' (it becomes a subject token and a stream name)",
                raw.prefix
            ),
        ));
    }
    let auth = match (
        raw.credentials_file,
        raw.nkey_seed_file,
        raw.user,
        raw.password_env,
        raw.token_env,
    ) {
        (None, None, None, None, None) => NatsAuth::None,
        (Some(f), None, None, None, None) => NatsAuth::CredentialsFile(f),
        (None, Some(f), None, None, None) => NatsAuth::NkeySeedFile(f),
        (None, None, Some(user), Some(password_env), None) => {
            NatsAuth::UserPassword { user, password_env }
        }
        (None, None, None, None, Some(token_env)) => NatsAuth::Token { token_env },
        (None, None, Some(_), None, None) | (None, None, None, Some(_), None) => {
            return Err(invalid(
                "nats.user",
                "user and password_env go together; set both or neither",
            ));
        }
        _ => {
            return Err(invalid(
                "nats",
                "choose one of credentials_file, nkey_seed_file, user+password_env or token_env",
            ));
        }
    };
    let tls_client = match (raw.tls_cert_file, raw.tls_key_file) {
        (None, None) => None,
        (Some(c), Some(k)) => Some((c, k)),
        _ => {
            return Err(invalid(
                "nats.tls_cert_file",
                "tls_cert_file and tls_key_file go together; set both or neither",
            ));
        }
    };
    if raw.ack_wait_secs == 0 {
        return Err(invalid("nats.ack_wait_secs", "must be at least 1"));
    }
    if raw.max_deliver == 0 {
        return Err(invalid("nats.max_deliver", "must be at least 1"));
    }
    if raw.max_ack_pending == 0 {
        return Err(invalid("nats.max_ack_pending", "must be at least 1"));
    }
    if !(1..=5).contains(&raw.replicas) {
        return Err(invalid("nats.replicas", "must be between 1 and 5"));
    }
    if embedded.is_some() && auth != NatsAuth::None {
        return Err(invalid(
            "nats",
            "the embedded nats-server listens on loopback without authentication; remove the credentials or set url",
        ));
    }
    Ok(NatsConfig {
        url: raw.url,
        embedded,
        prefix: raw.prefix,
        auth,
        tls_ca_file: raw.tls_ca_file,
        tls_client,
        ack_wait: Duration::from_secs(raw.ack_wait_secs),
        max_deliver: raw.max_deliver,
        max_ack_pending: raw.max_ack_pending,
        replicas: raw.replicas,
    })
}

fn validate_endpoint(name: &str, raw: RawEndpoint) -> Result<EndpointConfig, ConfigError> {
    let key = |field: &str| format!("endpoints.{name}.{field}");
    if !is_token(name) {
        return Err(invalid(
            format!("endpoints.{name}"),
            "endpoint names are letters, digits, '-' or '_'",
        ));
    }
    if let Some(url) = &raw.url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(invalid(
            key("url"),
            format!("{url:?} must start with http:// or https://"),
        ));
    }
    if raw.region.trim().is_empty() {
        return Err(invalid(key("region"), "must not be empty"));
    }
    let credentials = match (
        raw.access_key_id_env,
        raw.secret_access_key_env,
        raw.session_token_env,
        raw.profile,
    ) {
        (Some(access_key_id_env), Some(secret_access_key_env), session_token_env, None) => {
            CredentialSource::Env {
                access_key_id_env,
                secret_access_key_env,
                session_token_env,
            }
        }
        (None, None, None, Some(profile)) => CredentialSource::Profile(profile),
        (None, None, None, None) => CredentialSource::DefaultChain,
        (Some(_), Some(_), _, Some(_)) => {
            return Err(invalid(
                key("profile"),
                "use either profile or access_key_id_env/secret_access_key_env, not both",
            ));
        }
        _ => {
            return Err(invalid(
                key("access_key_id_env"),
                "access_key_id_env and secret_access_key_env go together (session_token_env needs both)",
            ));
        }
    };
    if raw.request_timeout_secs == 0 {
        return Err(invalid(key("request_timeout_secs"), "must be at least 1"));
    }
    Ok(EndpointConfig {
        name: name.to_owned(),
        url: raw.url.map(|u| u.trim_end_matches('/').to_owned()),
        region: raw.region,
        path_style: raw.path_style,
        credentials,
        checksums: raw.checksums,
        sign_payload: raw.sign_payload,
        verify: raw.verify,
        request_timeout: Duration::from_secs(raw.request_timeout_secs),
        kind: raw.kind,
    })
}

fn validate_copy(raw: RawCopy) -> Result<CopyConfig, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml: &str, env: &[(&str, &str)], expect: Result<&str, &str>) {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let got = Config::from_toml_with_env(toml, Path::new("test.toml"), env);
        match (got, expect) {
            (Ok(cfg), Ok(want)) => {
                let dbg = format!("{cfg:?}");
                assert!(dbg.contains(want), "{dbg} lacks {want:?}");
            }
            (Err(e), Err(want)) => {
                let msg = e.to_string();
                assert!(msg.contains(want), "{msg:?} lacks {want:?}");
            }
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    const GOOD: &str = r#"
        [nats]
        url = "nats://127.0.0.1:4222"
        [endpoints.a]
        url = "http://127.0.0.1:9000"
        path_style = true
        access_key_id_env = "A_KEY"
        secret_access_key_env = "A_SECRET"
        [endpoints.b]
        url = "http://127.0.0.1:9001"
        profile = "minio"
        checksums = "when_supported"
        [copy]
        part_size = "8MiB"
    "#;

    #[test]
    fn loads_and_validates() {
        check(GOOD, &[], Ok("part_size: 8388608"));
        check(GOOD, &[], Ok("env(A_KEY, A_SECRET)"));
        check(GOOD, &[], Ok("checksums: WhenSupported"));
        check(
            "",
            &[],
            Ok("url: \"embedded\", embedded: Some(EmbeddedNatsConfig { store_dir: None"),
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        check(
            GOOD,
            &[("S3RF_NATS__URL", "nats://10.0.0.1:4222")],
            Ok("nats://10.0.0.1:4222"),
        );
        check(
            GOOD,
            &[("S3RF_COPY__CONCURRENCY", "3")],
            Ok("concurrency: 3"),
        );
        check(
            GOOD,
            &[("S3RF_ENDPOINTS__A__REGION", "eu-west-1")],
            Ok("eu-west-1"),
        );
        // S3RF_CONFIG names the file; it is not a key.
        check(
            GOOD,
            &[("S3RF_CONFIG", "/etc/s3rf/agent.toml")],
            Ok("A_KEY"),
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        check("[nats]\nurll = \"x\"\n", &[], Err("unknown field `urll`"));
        check("[bogus]\n", &[], Err("unknown field `bogus`"));
        check(
            "[endpoints.a]\nurl = \"http://x\"\nsecret = \"s\"\n",
            &[],
            Err("unknown field `secret`"),
        );
    }

    #[test]
    fn nats_urls_are_one_server_or_a_comma_separated_list() {
        let three = "[nats]\nurl = \"nats://h1:4222, nats://h2:4222,nats://h3:4222\"\n";
        check(three, &[], Ok("nats://h1:4222, nats://h2:4222"));
        assert_eq!(
            nats_servers("nats://h1:4222, nats://h2:4222,nats://h3:4222").map(|s| s.len()),
            Ok(3)
        );
        check(
            "[nats]\nurl = \"nats://h1:4222,,nats://h2:4222\"\n",
            &[],
            Err("entry 2 of \"nats://h1:4222,,nats://h2:4222\" is empty"),
        );
        check(
            "[nats]\nurl = \"nats://h1:4222,nats://h2:nope\"\n",
            &[],
            Err("entry 2 (\"nats://h2:nope\") is not a NATS server URL"),
        );
        check("[endpoints.a]\nverify = \"off\"\n", &[], Ok("verify: Off"));
        check(
            "[endpoints.a]\nverify = \"sometimes\"\n",
            &[],
            Err("variant constructor sometimes for key `endpoints.a.verify`"),
        );
    }

    #[test]
    fn rejects_bad_values() {
        check(
            "[endpoints.a]\nurl = \"ftp://x\"\n",
            &[],
            Err("endpoints.a.url"),
        );
        check(
            "[endpoints.a]\naccess_key_id_env = \"K\"\n",
            &[],
            Err("go together"),
        );
        check("[copy]\npart_size = \"1MiB\"\n", &[], Err("copy.part_size"));
        check(
            "[copy]\nbuffer_memory = \"8MiB\"\n",
            &[],
            Err("copy.buffer_memory"),
        );
        check("[nats]\nprefix = \"a.b\"\n", &[], Err("nats.prefix"));
        check(
            "[copy]\nserver_side_multipart_threshold = \"6GiB\"\n",
            &[],
            Err("5GiB"),
        );
        check("[filters]\nfuel = 5\n", &[], Err("filters.fuel"));
        check(
            "[nats]\nurl = \"nats://h:4222\"\nstore_dir = \"/x\"\n",
            &[],
            Err("only apply to url = \"embedded\""),
        );
        check(
            "[nats]\ntoken_env = \"T\"\n",
            &[],
            Err("embedded nats-server listens on loopback without authentication"),
        );
        check(
            "[filters]\ndeadline = \"soon\"\n",
            &[],
            Err("filters.deadline"),
        );
        check("[filters]\nmemory = \"8KiB\"\n", &[], Err("filters.memory"));
        check(
            "[filters]\nreload_interval = \"1ms\"\n",
            &[],
            Err("filters.reload_interval"),
        );
        check(
            "[filters]\ndir = \"/x\"\nmax_output_bytes = 1\n",
            &[],
            Err("filters.max_output_bytes"),
        );
        check(
            "[copy]\nbuffer_memory = \"32MiB\"\nread_ahead = \"64MiB\"\n",
            &[],
            Err("copy.read_ahead"),
        );
        check(
            "[migrate]\nbatch_objects = 201\n",
            &[],
            Err("migrate.batch_objects"),
        );
        check(
            "[migrate]\nbatch_objects = 0\nbatch_max_size = \"64KiB\"\n",
            &[],
            Ok("batch_objects: 0, batch_max_size: 65536"),
        );
    }

    #[test]
    fn shipped_example_config_is_valid() {
        let text = include_str!("../../../systemd/agent.example.toml");
        let cfg = Config::from_toml_with_env(text, Path::new("agent.example.toml"), [])
            .expect("systemd/agent.example.toml must validate");
        assert_eq!(cfg.endpoints.len(), 2);
        assert_eq!(cfg.copy.buffer_memory, 256 * 1024 * 1024);
        assert_eq!(cfg.filters.dir, Some(PathBuf::from("/etc/s3rf/filters")));
        assert_eq!(
            cfg.filters,
            FilterConfig {
                dir: cfg.filters.dir.clone(),
                ..FilterConfig::default()
            }
        );
    }

    #[test]
    fn filter_defaults_match_the_raw_defaults() {
        let validated = validate_filters(RawFilters::default()).expect("defaults validate");
        assert_eq!(validated, FilterConfig::default());
    }

    #[test]
    fn defaults_are_valid() {
        let copy = validate_copy(RawCopy::default()).expect("defaults validate");
        assert_eq!(copy.part_size, 16 * 1024 * 1024);
    }
}
