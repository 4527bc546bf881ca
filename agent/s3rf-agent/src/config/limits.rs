//! `[limits]`: how fast this agent may go, in object jobs and in bytes read
//! from sources per second (like rclone's `--tpslimit` and `--bwlimit`).

use super::*;

/// `[limits]`
#[derive(Debug, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Bytes read from sources per second by all copies together (a size
    /// such as `50MiB`); unlimited when absent.
    #[serde(default)]
    pub bytes_per_sec: Option<ByteSize>,
    /// Object jobs (copies and deletes) started per second; unlimited when
    /// absent.
    #[serde(default)]
    pub objects_per_sec: Option<u32>,
}

/// Validated `[limits]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Bytes per second, if limited.
    pub bytes_per_sec: Option<u64>,
    /// Object jobs per second, if limited.
    pub objects_per_sec: Option<u32>,
}

/// The smallest byte rate: the limiter counts KiB.
const MIN_BYTES_PER_SEC: u64 = 1024;

pub(super) fn validate_limits(raw: RawLimits) -> Result<LimitsConfig, ConfigError> {
    let bytes_per_sec = raw.bytes_per_sec.map(|b| b.as_u64());
    if bytes_per_sec.is_some_and(|b| b < MIN_BYTES_PER_SEC) {
        return Err(invalid(
            "limits.bytes_per_sec",
            "must be at least 1KiB; leave it out for no limit",
        ));
    }
    if raw.objects_per_sec == Some(0) {
        return Err(invalid(
            "limits.objects_per_sec",
            "must be at least 1; leave it out for no limit",
        ));
    }
    Ok(LimitsConfig {
        bytes_per_sec,
        objects_per_sec: raw.objects_per_sec,
    })
}
