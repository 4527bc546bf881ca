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

mod bridge;
mod copy;
mod endpoint;
mod filters;
mod limits;
mod log;
mod migrate;
mod nats;
#[cfg(test)]
mod readme;
mod sync;

pub use bridge::{BridgeConfig, RawBridge, RawQueue};
pub use copy::RawCopy;
pub use endpoint::{ChecksumMode, EndpointConfig, EndpointKind, RawEndpoint, Verify};
pub use filters::{FilterConfig, FilterLimits, RawFilters};
pub use limits::{LimitsConfig, RawLimits};
pub use log::{LogConfig, LogFormat, RawLog};
pub use migrate::{MigrateConfig, RawMigrate};
pub use nats::{
    CredentialSource, EMBEDDED, EmbeddedNatsConfig, NatsAuth, NatsConfig, RawNats, nats_servers,
};
pub use s3rf_core::settings::{CopyConfig, MAX_LIST_SPLIT, QueueConfig};
pub use sync::{RawSync, SyncConfig};

use bridge::validate_bridge;
use copy::validate_copy;
use endpoint::validate_endpoint;
use filters::validate_filters;
use limits::validate_limits;
use migrate::validate_migrate;
use nats::validate_nats;
use sync::validate_sync;

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

/// The file as written. See README.md, "Configuration reference".
#[derive(Debug, PartialEq, Deserialize)]
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
    /// Rate limits.
    #[serde(default)]
    pub limits: RawLimits,
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

/// `[metrics]`
#[derive(Debug, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Address for `/metrics`, `/healthz` and `/readyz`, e.g. `127.0.0.1:9464`; off when absent.
    #[serde(default)]
    pub listen: Option<String>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// NATS connection and JetStream settings.
    pub nats: NatsConfig,
    /// Endpoints by name.
    pub endpoints: BTreeMap<String, EndpointConfig>,
    /// Copy tuning.
    pub copy: CopyConfig,
    /// Rate limits.
    pub limits: LimitsConfig,
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
        let limits = validate_limits(self.limits)?;
        let migrate = validate_migrate(self.migrate)?;
        let sync = validate_sync(self.sync)?;
        let bridge = validate_bridge(self.bridge, &endpoints)?;
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
            limits,
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
            "[limits]\nobjects_per_sec = 0\n",
            &[],
            Err("limits.objects_per_sec"),
        );
        check(
            "[limits]\nbytes_per_sec = \"512B\"\n",
            &[],
            Err("limits.bytes_per_sec"),
        );
        check(
            "[limits]\nbytes_per_sec = \"50MiB\"\nobjects_per_sec = 200\n",
            &[],
            Ok(
                "limits: LimitsConfig { bytes_per_sec: Some(52428800), objects_per_sec: Some(200) }",
            ),
        );
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
        let text = include_str!("../../../../systemd/agent.example.toml");
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
