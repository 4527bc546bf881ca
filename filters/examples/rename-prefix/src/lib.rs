//! # rename-prefix
//!
//! Replaces one key prefix with another, and optionally writes into another
//! destination bucket. Keys without the prefix are kept as they are.
//!
//! Parameters (`rename-prefix.toml`):
//!
//! ```toml
//! from = "raw/"
//! to = "archive/raw/"
//! # bucket = "archive"   # optional: another destination bucket
//! ```

use s3rf_filter::{Decision, Filter, Object};

/// Parameters.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Prefix to replace.
    pub from: String,
    /// Replacement.
    pub to: String,
    /// Destination bucket for renamed keys; the job's bucket when absent.
    #[serde(default)]
    pub bucket: Option<String>,
}

/// The filter.
#[derive(Debug)]
pub struct RenamePrefix(Params);

impl Filter for RenamePrefix {
    type Params = Params;

    fn new(params: Params) -> Result<Self, String> {
        if params.from == params.to && params.bucket.is_none() {
            return Err("from and to are equal; nothing would change".to_owned());
        }
        Ok(Self(params))
    }

    fn decide(&self, obj: &Object<'_>) -> Decision {
        let Some(rest) = obj.key.strip_prefix(self.0.from.as_str()) else {
            return Decision::Keep;
        };
        let key = format!("{}{rest}", self.0.to);
        match &self.0.bucket {
            Some(b) => Decision::rename_in(b.clone(), key),
            None => Decision::rename(key),
        }
    }
}

s3rf_filter::export_filter!(RenamePrefix);
