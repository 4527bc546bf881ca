//! `[sync]`: how long event sequencers are remembered.

use super::*;

/// `[sync]`
#[derive(Debug, PartialEq, Deserialize)]
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

/// Validated `[sync]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// Sequencer memory.
    pub sequencer_ttl: Duration,
}

pub(super) fn validate_sync(raw: RawSync) -> Result<SyncConfig, ConfigError> {
    if raw.sequencer_ttl_secs < 60 {
        return Err(invalid("sync.sequencer_ttl_secs", "must be at least 60"));
    }
    Ok(SyncConfig {
        sequencer_ttl: Duration::from_secs(raw.sequencer_ttl_secs),
    })
}
