//! The chain: filters in file-name order, run once per object. It stops at
//! the first skip or error; a rename feeds the new key to the next filter.

use std::sync::Arc;

use super::abi::{self, Decision, ObjectInput};
use super::error::FilterError;
use super::guest::Compiled;

/// One loaded filter version.
#[derive(Debug)]
pub struct Loaded {
    /// File name, e.g. `10-skip-tmp.wasm`; the chain runs in this order.
    pub name: String,
    /// First 12 hex digits of the SHA-256 of the module and its parameters.
    pub version: String,
    /// The compiled module.
    pub compiled: Compiled,
}

impl Loaded {
    /// `name@version`, as decision log lines show it.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// What the chain decided for one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead with this destination (renamed if `renamed`).
    Proceed {
        /// Destination bucket.
        bucket: String,
        /// Destination key.
        key: String,
        /// Whether any filter renamed the object.
        renamed: bool,
    },
    /// A filter skipped the object.
    Skip {
        /// The filter that skipped it.
        filter: String,
        /// Its reason.
        reason: String,
    },
}

/// Filters in order; cheap to share, replaced whole on reload.
#[derive(Debug, Default)]
pub struct Chain {
    filters: Vec<Arc<Loaded>>,
}

impl Chain {
    /// A chain of `filters`, sorted by file name.
    pub fn new(mut filters: Vec<Arc<Loaded>>) -> Self {
        filters.sort_by(|a, b| a.name.cmp(&b.name));
        Self { filters }
    }

    /// Whether the chain has no filters (every object proceeds unchanged).
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// The filters, in order.
    pub fn filters(&self) -> &[Arc<Loaded>] {
        &self.filters
    }

    /// `a.wasm@1234,b.wasm@5678`: which versions decide, for log lines.
    pub fn versions(&self) -> String {
        self.filters
            .iter()
            .map(|f| f.label())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs the chain over `obj`.
    pub fn decide(&self, mut obj: ObjectInput) -> Result<Verdict, FilterError> {
        let mut renamed = false;
        let mut buf = Vec::with_capacity(256);
        for f in &self.filters {
            abi::encode(&obj, &mut buf);
            let decision = f.compiled.decide(&buf).map_err(|e| {
                crate::metrics::filter_decision(&f.name, "error");
                FilterError {
                    filter: f.name.clone(),
                    version: f.version.clone(),
                    violation: e.0,
                }
            })?;
            match decision {
                Decision::Keep => crate::metrics::filter_decision(&f.name, "keep"),
                Decision::Skip(reason) => {
                    crate::metrics::filter_decision(&f.name, "skip");
                    return Ok(Verdict::Skip {
                        filter: f.name.clone(),
                        reason,
                    });
                }
                Decision::Rename { key, bucket } => {
                    crate::metrics::filter_decision(&f.name, "rename");
                    renamed |= key != obj.key || bucket.as_ref().is_some_and(|b| *b != obj.bucket);
                    obj.key = key;
                    if let Some(b) = bucket {
                        obj.bucket = b;
                    }
                }
            }
        }
        Ok(Verdict::Proceed {
            bucket: obj.bucket,
            key: obj.key,
            renamed,
        })
    }
}
