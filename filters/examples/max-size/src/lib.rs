//! # max-size
//!
//! Skips objects larger than a size. Deletes carry no size and are kept, so
//! that a delete is never held back by this filter.
//!
//! Parameters (`max-size.toml`):
//!
//! ```toml
//! max_bytes = 104857600   # 100 MiB
//! ```

use s3rf_filter::{Decision, Filter, Object};

/// Parameters.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Objects larger than this many bytes are skipped.
    pub max_bytes: u64,
}

/// The filter.
#[derive(Debug)]
pub struct MaxSize(Params);

impl Filter for MaxSize {
    type Params = Params;

    fn new(params: Params) -> Result<Self, String> {
        Ok(Self(params))
    }

    fn decide(&self, obj: &Object<'_>) -> Decision {
        match obj.size {
            Some(size) if size > self.0.max_bytes => Decision::skip(format!(
                "{size} bytes is over max_bytes {}",
                self.0.max_bytes
            )),
            _ => Decision::Keep,
        }
    }
}

s3rf_filter::export_filter!(MaxSize);
