//! `[log]`: format and level.

use super::*;

/// `[log]`
#[derive(Debug, PartialEq, Default, Deserialize)]
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

/// Validated `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// Filter directive.
    pub level: String,
}
