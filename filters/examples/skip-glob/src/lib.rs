//! # skip-glob
//!
//! Skips objects whose destination key matches any of the glob patterns in
//! its parameters: `*` within a path segment, `**` across segments, `?`,
//! `[a-z]`. Use it to leave out temporary and scratch files.
//!
//! Parameters (`skip-glob.toml`):
//!
//! ```toml
//! patterns = ["**.tmp", "**/_temporary/**"]
//! ```

use s3rf_filter::{Decision, Filter, Object, glob};

/// Parameters.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Keys matching any of these are skipped.
    pub patterns: Vec<String>,
}

/// The filter.
#[derive(Debug)]
pub struct SkipGlob(Params);

impl Filter for SkipGlob {
    type Params = Params;

    fn new(params: Params) -> Result<Self, String> {
        if params.patterns.is_empty() {
            return Err("patterns is empty; list at least one glob".to_owned());
        }
        Ok(Self(params))
    }

    fn decide(&self, obj: &Object<'_>) -> Decision {
        match self.0.patterns.iter().find(|p| glob::matches(p, obj.key)) {
            Some(p) => Decision::skip(format!("key matches {p}")),
            None => Decision::Keep,
        }
    }
}

s3rf_filter::export_filter!(SkipGlob);
