//! The tools of a comparison: s3rf in its variants and every peer found on
//! this machine, with their versions and the machine's description.

use std::path::Path;
use std::process::Command;

use crate::peers::Peer;

/// One column of contenders: s3rf in a given shape, or a peer.
pub enum Tool {
    /// `agents` s3rf agents; `shared`: they split the concurrency between
    /// them instead of each taking all of it.
    S3rf {
        agents: usize,
        shared: bool,
        /// `verify = "off"` on both endpoints: what integrity checks cost.
        unverified: bool,
    },
    Peer(Peer),
}

impl Tool {
    pub fn name(&self) -> String {
        match self {
            Self::S3rf {
                unverified: true, ..
            } => "s3rf, 1 agent, verify = off".into(),
            Self::S3rf { agents: 1, .. } => "s3rf, 1 agent".into(),
            Self::S3rf {
                agents,
                shared: false,
                ..
            } => format!("s3rf, {agents} agents"),
            Self::S3rf {
                agents,
                shared: true,
                ..
            } => format!("s3rf, {agents} agents sharing the concurrency"),
            Self::Peer(p) => p.name().into(),
        }
    }

    pub fn key(&self) -> &'static str {
        match self {
            Self::S3rf {
                unverified: true, ..
            } => "s3rf-unverified",
            Self::S3rf { agents: 1, .. } => "s3rf",
            Self::S3rf { shared: false, .. } => "s3rf-2",
            Self::S3rf { shared: true, .. } => "s3rf-2-shared",
            Self::Peer(Peer::Rclone(_)) => "rclone",
            Self::Peer(Peer::Aws(_)) => "aws",
            Self::Peer(Peer::S5cmd(_)) => "s5cmd",
            Self::Peer(Peer::S3sync(_)) => "s3sync",
        }
    }
}

/// The first line `bin arg` prints.
pub fn version(bin: &Path, arg: &str) -> String {
    Command::new(bin)
        .arg(arg)
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

/// "2 cores (CPU), 23 GiB RAM, Linux …".
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|k| k.parse::<u64>().ok())
        .map_or(0, |k| k / 1024 / 1024);
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = version(Path::new("uname"), "-r");
    format!("{cores} cores ({cpu}), {mem} GiB RAM, Linux {kernel}")
}
