//! The filter directory: which files make up the chain, loading them, and
//! picking up changes without a restart.
//!
//! Every `*.wasm` is a filter; `<stem>.toml` or `<stem>.json` beside it holds
//! its parameters (TOML is converted to JSON, so guests parse one format). A
//! file that fails to load is reported once and ignored, and the previous
//! good version of that filter stays in use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Filters;
use super::chain::{Chain, Loaded};
use super::error::LoadError;
use super::guest::Compiled;
use crate::config::FilterLimits;

/// A filter file and its parameter file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File name, e.g. `20-partition.wasm`.
    pub name: String,
    /// Path of the module.
    pub wasm: PathBuf,
    /// Path of `<stem>.toml` or `<stem>.json`, if present.
    pub params: Option<PathBuf>,
}

/// Lists the filters in `dir`, in chain order.
pub fn scan(dir: &Path) -> Result<Vec<Entry>, LoadError> {
    let io = |e: std::io::Error| LoadError::Io {
        path: dir.to_owned(),
        detail: e.to_string(),
    };
    let mut entries = Vec::new();
    for item in std::fs::read_dir(dir).map_err(io)? {
        let path = item.map_err(io)?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("wasm") || !path.is_file() {
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let params = ["toml", "json"]
            .iter()
            .map(|ext| path.with_extension(ext))
            .find(|p| p.is_file());
        entries.push(Entry {
            name,
            wasm: path,
            params,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Reads a parameter file as JSON bytes.
pub fn read_params(path: &Path) -> Result<Vec<u8>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::Io {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    let bad = |detail: String| LoadError::Params {
        path: path.to_owned(),
        detail,
    };
    let value: serde_json::Value = if path.extension().and_then(|e| e.to_str()) == Some("toml") {
        toml::from_str(&text).map_err(|e| bad(e.to_string().trim().to_owned()))?
    } else {
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?
    };
    serde_json::to_vec(&value).map_err(|e| bad(e.to_string()))
}

/// Reads, hashes, compiles and starts one filter.
pub fn load(entry: &Entry, limits: FilterLimits) -> Result<Loaded, LoadError> {
    let wasm = std::fs::read(&entry.wasm).map_err(|e| LoadError::Io {
        path: entry.wasm.clone(),
        detail: e.to_string(),
    })?;
    let params = match &entry.params {
        Some(p) => read_params(p)?,
        None => Vec::new(),
    };
    let mut hash = Sha256::new();
    hash.update(&wasm);
    hash.update([0]);
    hash.update(&params);
    let version: String = hash
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    let compiled = Compiled::load(&wasm, params, limits)?;
    Ok(Loaded {
        name: entry.name.clone(),
        version,
        compiled,
    })
}

/// When a file last changed, as far as a poll can tell.
type Stamp = Vec<(u64, Option<SystemTime>)>;

fn stamp(entry: &Entry) -> Stamp {
    std::iter::once(&entry.wasm)
        .chain(entry.params.as_ref())
        .map(|p| match std::fs::metadata(p) {
            Ok(m) => (m.len(), m.modified().ok()),
            Err(_) => (0, None),
        })
        .collect()
}

/// What the watcher knows of one file.
#[derive(Debug)]
struct Known {
    stamp: Stamp,
    good: Option<Arc<Loaded>>,
    error: Option<String>,
}

/// One filter's state, for `filter list`.
#[derive(Debug, Clone)]
pub struct Status {
    /// File name.
    pub name: String,
    /// Version in use, if any.
    pub version: Option<String>,
    /// Why the current file was refused, if it was.
    pub error: Option<String>,
}

/// Keeps a [`Filters`] in step with a directory.
#[derive(Debug)]
pub struct Watcher {
    dir: PathBuf,
    limits: FilterLimits,
    filters: Filters,
    known: BTreeMap<String, Known>,
    dir_error: Option<String>,
}

impl Watcher {
    /// A watcher of `dir` feeding `filters`. Call [`Watcher::refresh`] once
    /// before serving, so that the first chain is complete.
    pub fn new(dir: PathBuf, limits: FilterLimits, filters: Filters) -> Self {
        Self {
            dir,
            limits,
            filters,
            known: BTreeMap::new(),
            dir_error: None,
        }
    }

    /// Re-reads the directory; loads what is new or changed. Returns whether
    /// the chain changed.
    pub fn refresh(&mut self) -> bool {
        let entries = match scan(&self.dir) {
            Ok(e) => {
                self.dir_error = None;
                e
            }
            Err(e) => {
                let text = e.to_string();
                if self.dir_error.as_ref() != Some(&text) {
                    warn!(error = %text, "cannot read the filter directory; the current filters stay in use");
                    self.dir_error = Some(text);
                }
                return false;
            }
        };
        let mut changed = false;
        let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
        let before = self.known.len();
        self.known.retain(|name, k| {
            let keep = names.contains(name);
            if !keep && k.good.is_some() {
                info!(filter = %name, "filter removed");
            }
            keep
        });
        changed |= self.known.len() != before;
        for entry in &entries {
            let stamp = stamp(entry);
            if self
                .known
                .get(&entry.name)
                .is_some_and(|k| k.stamp == stamp)
            {
                continue;
            }
            let previous = self.known.remove(&entry.name);
            let good = previous.and_then(|k| k.good);
            match load(entry, self.limits) {
                Ok(loaded) => {
                    if good.as_ref().is_some_and(|g| g.version == loaded.version) {
                        self.known.insert(
                            entry.name.clone(),
                            Known {
                                stamp,
                                good,
                                error: None,
                            },
                        );
                        continue;
                    }
                    info!(filter = %entry.name, version = %loaded.version, "filter loaded");
                    self.known.insert(
                        entry.name.clone(),
                        Known {
                            stamp,
                            good: Some(Arc::new(loaded)),
                            error: None,
                        },
                    );
                    changed = true;
                }
                Err(e) => {
                    match &good {
                        Some(g) => {
                            warn!(filter = %entry.name, error = %e, version = %g.version, "filter refused; its previous version stays in use")
                        }
                        None => {
                            warn!(filter = %entry.name, error = %e, "filter refused; it is not in the chain")
                        }
                    }
                    self.known.insert(
                        entry.name.clone(),
                        Known {
                            stamp,
                            good,
                            error: Some(e.to_string()),
                        },
                    );
                }
            }
        }
        if changed {
            let chain = Chain::new(self.known.values().filter_map(|k| k.good.clone()).collect());
            info!(filters = %chain.versions(), "filter chain in use");
            self.filters.replace(chain);
        }
        changed
    }

    /// Each file's state.
    pub fn status(&self) -> Vec<Status> {
        self.known
            .iter()
            .map(|(name, k)| Status {
                name: name.clone(),
                version: k.good.as_ref().map(|g| g.version.clone()),
                error: k.error.clone(),
            })
            .collect()
    }

    /// Polls the directory every `interval` until `stop`.
    pub async fn run(mut self, interval: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            // Compiling is CPU work; keep it off the async workers.
            self = match tokio::task::spawn_blocking(move || {
                self.refresh();
                self
            })
            .await
            {
                Ok(w) => w,
                Err(e) => {
                    warn!(error = %e, "filter reload task failed; reloading stops");
                    return;
                }
            };
        }
    }
}
