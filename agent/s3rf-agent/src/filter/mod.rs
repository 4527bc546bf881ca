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

pub use s3rf_core::filter_abi as abi;
mod chain;
pub mod dir;
pub mod error;
pub(crate) mod guest;

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

#[cfg(test)]
mod tests {
    use super::guest::Compiled;
    use super::*;
    use crate::config::FilterLimits;
    use std::time::Duration;

    fn limits() -> FilterLimits {
        crate::config::FilterConfig::default().limits
    }

    fn module(filter_body: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module (memory (export "memory") 1)
                 (data (i32.const 64) "\02\07\00\00\00renamed\00\00\00\00")
                 (global $calls (mut i32) (i32.const 0))
                 (func (export "s3rf_abi_version") (result i32) i32.const 1)
                 (func (export "s3rf_alloc") (param i32) (result i32) i32.const 1024)
                 (func (export "s3rf_filter") (param $ptr i32) (param $len i32) (result i64)
                   {filter_body}))"#
        ))
        .unwrap()
    }

    fn input() -> Vec<u8> {
        let mut buf = Vec::new();
        abi::encode(&ObjectInput::default(), &mut buf);
        buf
    }

    /// A loop with fuel to spare is stopped by the wall-clock deadline.
    #[test]
    fn deadline_stops_what_fuel_allows() {
        let l = FilterLimits {
            fuel: u64::MAX / 2,
            deadline: Duration::from_millis(50),
            ..limits()
        };
        let f = Compiled::load(&module("(loop $l (br $l)) (i64.const 0)"), Vec::new(), l).unwrap();
        let started = std::time::Instant::now();
        let err = f.decide(&input()).unwrap_err();
        assert_eq!(err.0, Violation::Deadline(Duration::from_millis(50)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// A module whose initial memory is over the cap cannot start.
    #[test]
    fn initial_memory_over_the_cap_is_refused() {
        let wasm = module("(i64.const 0)");
        let l = FilterLimits {
            memory_bytes: 64 * 1024 - 1,
            ..limits()
        };
        let err = Compiled::load(&wasm, Vec::new(), l).unwrap_err();
        assert_eq!(err, LoadError::Start(Violation::Memory(64 * 1024 - 1)));
    }

    /// A trapped instance is thrown away: the next call gets a fresh one, so
    /// state a trap left behind never leaks into another decision.
    #[test]
    fn trapped_instances_are_replaced() {
        // Traps on its second call in an instance.
        let f = Compiled::load(
            &module(
                "(global.set $calls (i32.add (global.get $calls) (i32.const 1)))
                 (if (i32.eq (global.get $calls) (i32.const 2)) (then unreachable))
                 (i64.const 274877906960)",
            ),
            Vec::new(),
            limits(),
        )
        .unwrap();
        let renamed = Ok(abi::Decision::Rename {
            key: "renamed".to_owned(),
            bucket: None,
        });
        assert_eq!(f.decide(&input()), renamed);
        assert!(f.decide(&input()).is_err());
        assert_eq!(
            f.decide(&input()),
            renamed,
            "a fresh instance after the trap"
        );
    }
}
