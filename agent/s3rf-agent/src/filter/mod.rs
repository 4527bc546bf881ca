//! User-supplied Wasm filters: skip objects or rename their destination.
//!
//! Filters are core WebAssembly modules with no imports, speaking the ABI in
//! `filters/ABI.md` ([`abi`]). The chain ([`Chain`]) runs where an object's
//! job is executed — so it applies alike to migration listings, the event
//! bridge and directly published jobs — after the source HEAD, so that it
//! sees size, ETag, content type and metadata.
//!
//! **Architecture Invariant:** a filter cannot crash or hang the agent.
//! Every call runs under fuel, an epoch deadline and a memory cap, and its
//! output is validated; a violation fails that object permanently (dead
//! letter naming the filter and the limit).
//!
//! **Architecture Invariant:** decisions are deterministic across the fleet:
//! the chain runs in file-name order over the same encoded input, and each
//! decision's log line names the filter versions (content hashes) that made it.

pub mod abi;
mod chain;
pub mod dir;
pub mod error;
mod guest;

use std::sync::{Arc, RwLock};

use tracing::{debug, info, warn};

pub use abi::{Kind, ObjectInput};
pub use chain::{Chain, Loaded, Verdict};
pub use dir::{Status, Watcher};
pub use error::{FilterError, LoadError, Violation};

use crate::config::FilterConfig;

/// The chain in use, shared by every job of an agent; swapped whole when the
/// filter directory changes.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    current: Arc<RwLock<Arc<Chain>>>,
}

impl Filters {
    /// Loads the configured directory once and returns the filters with
    /// the watcher that keeps them current (`None` without a directory).
    pub fn start(config: &FilterConfig) -> (Self, Option<Watcher>) {
        let filters = Self::default();
        let Some(dir) = &config.dir else {
            return (filters, None);
        };
        let mut watcher = Watcher::new(dir.clone(), config.limits, filters.clone());
        watcher.refresh();
        if filters.chain().is_empty() {
            info!(dir = %dir.display(), "no filters loaded; drop *.wasm files into the directory to add some");
        }
        (filters, Some(watcher))
    }

    /// The chain as it is now.
    pub fn chain(&self) -> Arc<Chain> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, chain: Chain) {
        let chain = Arc::new(chain);
        match self.current.write() {
            Ok(mut c) => *c = chain,
            Err(poisoned) => *poisoned.into_inner() = chain,
        }
    }

    /// Runs the chain over one object and logs the decision with the filter
    /// versions that made it.
    pub fn decide(&self, obj: ObjectInput) -> Result<Verdict, FilterError> {
        let chain = self.chain();
        if chain.is_empty() {
            return Ok(Verdict::Proceed {
                bucket: obj.bucket,
                key: obj.key,
                renamed: false,
            });
        }
        let verdict = chain.decide(obj);
        match &verdict {
            Ok(Verdict::Skip { filter, reason }) => {
                info!(filters = %chain.versions(), %filter, %reason, "filtered: skipped");
            }
            Ok(Verdict::Proceed {
                bucket,
                key,
                renamed: true,
            }) => {
                info!(filters = %chain.versions(), to_bucket = %bucket, to_key = %key, "filtered: renamed");
            }
            Ok(Verdict::Proceed { .. }) => debug!(filters = %chain.versions(), "filters kept it"),
            Err(e) => warn!(filters = %chain.versions(), error = %e, "filter failed"),
        }
        verdict
    }
}
