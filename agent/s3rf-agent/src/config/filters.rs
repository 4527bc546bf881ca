//! `[filters]`: the filter directory and the limits of each filter call.

use super::*;

/// `[filters]`
#[derive(Debug, PartialEq, Deserialize)]
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

pub(super) fn validate_filters(raw: RawFilters) -> Result<FilterConfig, ConfigError> {
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
