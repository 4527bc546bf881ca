//! Test environment: a fresh nats-server per test, the shared S3 servers, and
//! the real `s3rf-agent` binary as a child process.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use s3rf_testkit::{NatsServer, S3Kind, S3Server, shared_s3};
use tempfile::TempDir;

pub const MIB: usize = 1024 * 1024;

/// The example filters, built once per test run by `filters/build.sh`
/// into `filters/dist/` (or prebuilt in `$S3RF_TEST_FILTERS`).
pub fn example_filters() -> &'static std::path::Path {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        // Prebuilt (Nix builds them separately): S3RF_TEST_FILTERS=<dir>.
        if let Some(dir) = std::env::var_os("S3RF_TEST_FILTERS") {
            return PathBuf::from(dir);
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dist = root.join("filters/dist");
        let out = Command::new("bash")
            .arg(root.join("filters/build.sh"))
            .arg(&dist)
            .output()
            .expect("run bash filters/build.sh");
        assert!(
            out.status.success(),
            "bash filters/build.sh failed (it needs `rustup target add wasm32-unknown-unknown`):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dist
    })
}

/// Agent settings a test may change.
#[derive(Debug, Clone)]
pub struct AgentOpts {
    pub ack_wait_secs: u64,
    pub max_deliver: u32,
    pub part_size: &'static str,
    pub multipart_threshold: &'static str,
    pub server_side_multipart_threshold: &'static str,
    pub part_concurrency: usize,
    pub shutdown_grace_secs: u64,
    pub retry_base_delay_ms: u64,
    pub buffer_memory: &'static str,
    pub page_size: u32,
    /// `migrate.list_split_depth`.
    pub list_split_depth: u32,
    /// `migrate.max_queued_jobs`.
    pub max_queued_jobs: u64,
    /// Appended to the config verbatim (extra endpoints).
    pub extra_toml: String,
    /// Extra environment for the agent process.
    pub env: Vec<(String, String)>,
    /// Embedded mode: no `[nats] url`, this store directory.
    pub embedded_store: Option<PathBuf>,
    /// `[nats] url` instead of the test's nats-server.
    pub nats_url: Option<String>,
    /// `[nats] replicas`.
    pub replicas: usize,
}

impl Default for AgentOpts {
    fn default() -> Self {
        Self {
            ack_wait_secs: 10,
            max_deliver: 3,
            part_size: "5MiB",
            multipart_threshold: "5MiB",
            server_side_multipart_threshold: "5MiB",
            part_concurrency: 4,
            shutdown_grace_secs: 30,
            retry_base_delay_ms: 100,
            buffer_memory: "64MiB",
            page_size: 1000,
            list_split_depth: 2,
            max_queued_jobs: 20_000,
            extra_toml: String::new(),
            env: Vec::new(),
            embedded_store: None,
            nats_url: None,
            replicas: 1,
        }
    }
}

pub struct TestEnv {
    pub nats: NatsServer,
    pub dir: TempDir,
    pub moto: &'static S3Server,
    pub fs: &'static S3Server,
    pub js: jetstream::Context,
    /// A loopback port nothing listens on: the "store that is down".
    pub down_port: u16,
    /// Replicas of the streams and KV buckets the test opens itself (the
    /// agents' `[nats] replicas`).
    pub replicas: usize,
}

pub struct Agent {
    child: Option<Child>,
    pub log_path: PathBuf,
}

impl TestEnv {
    pub async fn new() -> Self {
        let moto = shared_s3(S3Kind::Moto);
        let fs = shared_s3(S3Kind::S3sFs);
        let nats = NatsServer::start().expect("nats-server");
        let client = nats.connect().await.expect("connect");
        let js = jetstream::new(client.clone());
        Self {
            nats,
            dir: tempfile::tempdir().expect("tempdir"),
            moto,
            fs,
            js,
            down_port: s3rf_testkit::free_port().expect("port"),
            replicas: 1,
        }
    }

    pub fn config_toml(&self, o: &AgentOpts) -> String {
        format!(
            r#"
[nats]
{nats}
ack_wait_secs = {ack_wait}
max_deliver = {max_deliver}
replicas = {replicas}

# moto and moto2 are two endpoint names for one moto server: copies between
# them take the cross-endpoint (streamed) path on the most complete S3 here.
# moto2 signs its payloads; every other endpoint sends UNSIGNED-PAYLOAD.
[endpoints.moto]
url = "{moto}"
path_style = true
access_key_id_env = "T_MOTO_KEY"
secret_access_key_env = "T_MOTO_SECRET"

[endpoints.moto2]
url = "{moto}"
path_style = true
sign_payload = true
access_key_id_env = "T_MOTO_KEY"
secret_access_key_env = "T_MOTO_SECRET"

[endpoints.fs]
url = "{fs}"
path_style = true
access_key_id_env = "T_FS_KEY"
secret_access_key_env = "T_FS_SECRET"

[endpoints.down]
url = "http://127.0.0.1:{down}"
path_style = true
access_key_id_env = "T_FS_KEY"
secret_access_key_env = "T_FS_SECRET"
request_timeout_secs = 5

[copy]
concurrency = 4
part_concurrency = {pc}
part_size = "{ps}"
multipart_threshold = "{mt}"
server_side_multipart_threshold = "{sst}"
buffer_memory = "{bm}"
shutdown_grace_secs = {grace}
retry_base_delay_ms = {retry}
retry_max_delay_secs = 2

[migrate]
page_size = {page}
list_split_depth = {split}
max_queued_jobs = {queued}
tally_interval_ms = 200

{extra}
"#,
            nats = match (&o.embedded_store, &o.nats_url) {
                (Some(dir), _) => format!("store_dir = \"{}\"", dir.display()),
                (None, Some(url)) => format!("url = \"{url}\""),
                (None, None) => format!("url = \"{}\"", self.nats.url()),
            },
            ack_wait = o.ack_wait_secs,
            replicas = o.replicas,
            max_deliver = o.max_deliver,
            moto = self.moto.url(),
            fs = self.fs.url(),
            down = self.down_port,
            pc = o.part_concurrency,
            ps = o.part_size,
            mt = o.multipart_threshold,
            sst = o.server_side_multipart_threshold,
            grace = o.shutdown_grace_secs,
            retry = o.retry_base_delay_ms,
            bm = o.buffer_memory,
            page = o.page_size,
            split = o.list_split_depth,
            queued = o.max_queued_jobs,
            extra = o.extra_toml,
        )
    }

    pub fn write_config(&self, o: &AgentOpts) -> PathBuf {
        let path = self.dir.path().join(format!(
            "agent-{}.toml",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::write(&path, self.config_toml(o)).unwrap();
        path
    }

    pub fn agent_command(&self, config: &PathBuf) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_s3rf-agent"));
        cmd.arg("--config")
            .arg(config)
            .env("T_MOTO_KEY", &self.moto.access_key)
            .env("T_MOTO_SECRET", &self.moto.secret_key)
            .env("T_FS_KEY", &self.fs.access_key)
            .env("T_FS_SECRET", &self.fs.secret_key)
            .env(
                "RUST_LOG",
                std::env::var("S3RF_TEST_LOG")
                    .unwrap_or_else(|_| "s3rf_agent=debug,info".to_owned()),
            )
            .env_remove("S3RF_CONFIG")
            .stdin(Stdio::null());
        cmd
    }

    /// Starts an agent and waits until its consumers exist.
    pub async fn spawn_agent(&self, o: &AgentOpts) -> Agent {
        let agent = self.start_agent(o);
        agent.wait_ready(Duration::from_secs(30)).await;
        agent
    }

    /// Starts an agent without waiting for it.
    pub fn start_agent(&self, o: &AgentOpts) -> Agent {
        let config = self.write_config(o);
        let log_path = self.dir.path().join(format!(
            "agent-{}.log",
            config.file_stem().unwrap().to_string_lossy()
        ));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = s3rf_testkit::spawn_tied(
            self.agent_command(&config)
                .arg("run")
                .envs(o.env.iter().cloned())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        )
        .expect("spawn s3rf-agent");
        Agent {
            child: Some(child),
            log_path,
        }
    }

    pub async fn publish(&self, subject: &str, payload: impl Into<String>) {
        let payload: String = payload.into();
        self.js
            .publish(subject.to_owned(), payload.into_bytes().into())
            .await
            .expect("publish")
            .await
            .expect("puback");
    }

    pub async fn publish_copy(&self, src: (&str, &str, &str), dst: (&str, &str, Option<&str>)) {
        let mut job = serde_json::json!({
            "src": {"endpoint": src.0, "bucket": src.1, "key": src.2},
            "dst": {"endpoint": dst.0, "bucket": dst.1},
        });
        if let Some(k) = dst.2 {
            job["dst"]["key"] = k.into();
        }
        self.publish("s3rf.copy", job.to_string()).await;
    }

    /// Waits until `n` dead letters exist and returns them in order.
    pub async fn dead_letters(&self, n: u64) -> Vec<async_nats::jetstream::message::StreamMessage> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut stream = self.js.get_stream("S3RF_DEAD").await.expect("dead stream");
        loop {
            let info = stream.info().await.expect("info");
            if info.state.messages >= n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} dead letters after 60s",
                info.state.messages
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut out = Vec::new();
        for seq in 1..=n {
            out.push(stream.get_raw_message(seq).await.expect("dead letter"));
        }
        out
    }

    pub async fn dead_letter_count(&self) -> u64 {
        let mut stream = self.js.get_stream("S3RF_DEAD").await.expect("dead stream");
        stream.info().await.expect("info").state.messages
    }

    /// Waits until the job stream is empty (every job acked or terminated).
    pub async fn wait_jobs_done(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut stream = self.js.get_stream("S3RF_JOBS").await.expect("jobs stream");
        loop {
            let info = stream.info().await.expect("info");
            if info.state.messages == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} jobs still pending after 120s",
                info.state.messages
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn jobs_in_stream(&self) -> u64 {
        let mut stream = self.js.get_stream("S3RF_JOBS").await.expect("jobs stream");
        stream.info().await.expect("info").state.messages
    }
}

pub fn header<'a>(m: &'a async_nats::jetstream::message::StreamMessage, name: &str) -> &'a str {
    m.headers
        .get(name)
        .map(|v| v.as_str())
        .unwrap_or_else(|| panic!("dead letter lacks header {name}: {:?}", m.headers))
}

impl Agent {
    /// Waits until the agent logged that it is ready (its consumers exist).
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains("agent ready") {
            assert!(
                Instant::now() < deadline,
                "agent not ready in {timeout:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Log lines (JSON) whose message is `msg`.
    pub fn count_messages(&self, msg: &str) -> usize {
        let needle = format!("\"message\":\"{msg}\"");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    /// Waits until `n` log lines have message `msg` and contain `also`.
    pub async fn wait_message(&self, msg: &str, also: &str, n: usize) {
        let needle = format!("\"message\":\"{msg}\"");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            let seen = log
                .lines()
                .filter(|l| l.contains(&needle) && l.contains(also))
                .count();
            if seen >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{seen} of {n} log lines {msg:?} with {also:?} after 30s; log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the agent process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// VmHWM of the agent process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn signal(&self, sig: i32) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not exit in {timeout:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Prints a fault-suite figure and appends it to `target/fault-summary.txt`,
/// which `.ci/test` prints after the run (libtest captures test output).
pub fn fault_summary(line: &str) {
    use std::io::Write as _;
    println!("{line}");
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fault-summary.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

pub use crate::s3::*;

/// Uploads `body` (over 5 MiB) to `bucket/key` as a two-part multipart
/// upload, split at 5 MiB, with the upload's content type and tags; its
/// ETag is then not an MD5 of the bytes. moto answers the completion with a
/// root element the SDK refuses (CompleteMultipartUploadResponse); a 200 is
/// a completed upload all the same.
pub async fn put_in_two_parts(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: &[u8],
    content_type: Option<&str>,
    tagging: Option<&str>,
) {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    let up = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .set_content_type(content_type.map(str::to_owned))
        .set_tagging(tagging.map(str::to_owned))
        .send()
        .await
        .expect("create upload");
    let id = up.upload_id().expect("upload id");
    let mut parts = Vec::new();
    for (n, chunk) in [&body[..5 * MIB], &body[5 * MIB..]].into_iter().enumerate() {
        let n = i32::try_from(n).unwrap() + 1;
        let p = s3
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(id)
            .part_number(n)
            .body(chunk.to_vec().into())
            .send()
            .await
            .expect("upload part");
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .set_e_tag(p.e_tag().map(str::to_owned))
                .build(),
        );
    }
    let done = s3
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await;
    if let Err(e) = &done {
        assert_eq!(
            e.raw_response().map(|r| r.status().as_u16()),
            Some(200),
            "complete upload: {e:?}"
        );
    }
}
