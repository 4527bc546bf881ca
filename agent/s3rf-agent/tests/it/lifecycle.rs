//! Agents that die, stop or take long: nothing is lost, nothing dangles.

use std::time::{Duration, Instant};

use s3rf_testkit::pattern_bytes;

use crate::harness::*;

const BIG: usize = 60 * MIB;

async fn wait_for_upload(moto: &aws_sdk_s3::Client, bucket: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while open_uploads(moto, bucket).await.is_empty() {
        assert!(Instant::now() < deadline, "no multipart upload started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A big object on moto and an empty destination bucket, copied from endpoint
/// `moto` to `moto2` so the streamed multipart path runs.
struct BigCopy {
    moto: aws_sdk_s3::Client,
    src: String,
    dst: String,
    size: usize,
    seed: u64,
}

async fn big_copy(env: &TestEnv, tag: &str, size: usize, seed: u64) -> BigCopy {
    let moto = env.moto.client();
    let src = make_bucket(&moto, &format!("{tag}-src")).await;
    let dst = make_bucket(&moto, &format!("{tag}-dst")).await;
    put(&moto, &src, "big", pattern_bytes(size, seed)).await;
    BigCopy {
        moto,
        src,
        dst,
        size,
        seed,
    }
}

impl BigCopy {
    async fn publish(&self, env: &TestEnv) {
        env.publish_copy(("moto", &self.src, "big"), ("moto2", &self.dst, None))
            .await;
    }

    async fn arrived_whole(&self) -> bool {
        get(&self.moto, &self.dst, "big").await == pattern_bytes(self.size, self.seed)
    }
}

/// SIGKILL in the middle of a multipart copy: a second agent gets the job by
/// redelivery and completes the object. moto cannot list the parts of a
/// recorded upload (its ListParts answer has a root element the SDK
/// rejects), so the second agent aborts the upload and starts over rather
/// than resume it; resuming is tested on s3s-fs in `faults`.
#[tokio::test(flavor = "multi_thread")]
async fn killed_agent_mid_multipart_is_completed_by_another() {
    let env = TestEnv::new().await;
    let c = big_copy(&env, "kill", BIG, 42).await;
    let (moto, dst) = (&c.moto, &c.dst);
    let opts = AgentOpts {
        ack_wait_secs: 2,
        part_concurrency: 1,
        ..AgentOpts::default()
    };
    let mut first = env.spawn_agent(&opts).await;
    c.publish(&env).await;
    wait_for_upload(moto, dst).await;
    first.signal(9);
    first.wait_exit(Duration::from_secs(10)).await;
    assert!(
        !exists(moto, dst, "big").await,
        "the copy finished before the kill; make it slower"
    );

    let second = env.spawn_agent(&opts).await;
    env.wait_jobs_done().await;
    assert!(c.arrived_whole().await, "object not whole");
    assert_eq!(open_uploads(moto, dst).await, Vec::<String>::new());
    // Killed after its record was written, the upload is found by its
    // record, whose parts moto cannot list; killed between creating the
    // upload and recording it, the upload is found as stale. Either way it
    // is aborted and the copy starts over.
    let log = second.log();
    assert!(
        log.contains(
            "cannot read the parts of the recorded upload; starting the copy over instead of resuming it"
        ) || log.contains("aborted a stale multipart upload"),
        "{log}"
    );
    assert_eq!(env.dead_letter_count().await, 0);
}

/// SIGTERM lets the copy in flight finish within the grace period, then the
/// agent exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_copies_then_exits_zero() {
    let env = TestEnv::new().await;
    let c = big_copy(&env, "term", BIG, 5).await;
    let (moto, dst) = (&c.moto, &c.dst);
    let opts = AgentOpts {
        part_concurrency: 1,
        shutdown_grace_secs: 120,
        ..AgentOpts::default()
    };
    let mut agent = env.spawn_agent(&opts).await;
    c.publish(&env).await;
    wait_for_upload(moto, dst).await;
    agent.signal(15);
    let status = agent.wait_exit(Duration::from_secs(120)).await;
    assert_eq!(status.code(), Some(0), "{}", agent.log());
    assert!(c.arrived_whole().await);
    assert_eq!(env.jobs_in_stream().await, 0, "job not acked before exit");
}

/// Past the grace period the copy is stopped: its upload is kept for the
/// next delivery to resume, the job goes back to the queue, and the agent
/// still exits 0. The next agent finishes the copy and no upload is left.
#[tokio::test(flavor = "multi_thread")]
async fn grace_expiry_keeps_the_upload_and_returns_the_job() {
    let env = TestEnv::new().await;
    let c = big_copy(&env, "grace", BIG, 6).await;
    let (moto, dst) = (&c.moto, &c.dst);
    let opts = AgentOpts {
        part_concurrency: 1,
        shutdown_grace_secs: 0,
        ..AgentOpts::default()
    };
    let mut agent = env.spawn_agent(&opts).await;
    c.publish(&env).await;
    wait_for_upload(moto, dst).await;
    agent.signal(15);
    let status = agent.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(0), "{}", agent.log());
    assert!(!exists(moto, dst, "big").await);
    let kept = open_uploads(moto, dst).await;
    assert!(
        kept.len() == 1 && kept[0].starts_with("big:"),
        "the upload is kept for resuming: {kept:?}"
    );
    assert!(
        agent
            .log()
            .contains("multipart upload kept for the next delivery to resume"),
        "{}",
        agent.log()
    );
    assert_eq!(env.jobs_in_stream().await, 1, "the job must stay queued");
    assert_eq!(env.dead_letter_count().await, 0);

    // A new agent picks the job up at once (it was nak'd, not left to time out).
    let _next = env.spawn_agent(&AgentOpts::default()).await;
    env.wait_jobs_done().await;
    assert!(c.arrived_whole().await);
    assert_eq!(open_uploads(moto, dst).await, Vec::<String>::new());
}

/// A copy that runs longer than ack_wait is kept alive by progress acks and is
/// delivered only once.
#[tokio::test(flavor = "multi_thread")]
async fn long_copy_sends_progress_and_is_not_redelivered() {
    let env = TestEnv::new().await;
    let c = big_copy(&env, "long", 2 * BIG, 9).await;
    let opts = AgentOpts {
        ack_wait_secs: 1,
        part_concurrency: 1,
        ..AgentOpts::default()
    };
    let agent = env.spawn_agent(&opts).await;
    let started = Instant::now();
    c.publish(&env).await;
    env.wait_jobs_done().await;
    let took = started.elapsed();
    assert!(
        took > Duration::from_millis(1500),
        "copy took only {took:?}; it must outlast ack_wait for this test to mean anything"
    );
    assert_eq!(
        agent.count_messages("copy planned"),
        1,
        "redelivered:\n{}",
        agent.log()
    );
    assert!(c.arrived_whole().await);
}

/// `config check` accepts a good file and names an unknown key in a bad one.
#[tokio::test(flavor = "multi_thread")]
async fn config_check_reports_unknown_keys() {
    let env = TestEnv::new().await;
    let good = env.write_config(&AgentOpts::default());
    let out = env
        .agent_command(&good)
        .args(["config", "check"])
        .arg(&good)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok: "), "{stdout}");
    assert!(
        stdout.contains("env(T_MOTO_KEY, T_MOTO_SECRET)"),
        "{stdout}"
    );

    let bad = env.dir.path().join("bad.toml");
    std::fs::write(&bad, "[copy]\nconcurency = 3\n").unwrap();
    let out = env
        .agent_command(&bad)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("unknown field `concurency`"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
}

/// A second signal ends the agent at once, without waiting for the grace period.
#[tokio::test(flavor = "multi_thread")]
async fn second_signal_exits_at_once() {
    let env = TestEnv::new().await;
    let c = big_copy(&env, "sig2", BIG, 11).await;
    let (moto, dst) = (&c.moto, &c.dst);
    let opts = AgentOpts {
        part_concurrency: 1,
        shutdown_grace_secs: 600,
        ..AgentOpts::default()
    };
    let mut agent = env.spawn_agent(&opts).await;
    c.publish(&env).await;
    wait_for_upload(moto, dst).await;
    agent.signal(15);
    tokio::time::sleep(Duration::from_millis(100)).await;
    agent.signal(2);
    let status = agent.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(130), "{}", agent.log());
}

/// `--exit-when-idle` ends an agent with no work, with exit code 0.
#[tokio::test(flavor = "multi_thread")]
async fn exit_when_idle_stops_an_idle_agent() {
    let env = TestEnv::new().await;
    let config = env.write_config(&AgentOpts::default());
    let started = Instant::now();
    let out = env
        .agent_command(&config)
        .args(["run", "--exit-when-idle", "1s"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exit-when-idle"));
}

/// Secrets can come as systemd credentials (`LoadCredential=`): a key that is
/// not in the environment is read from `$CREDENTIALS_DIRECTORY/<VAR>`; with
/// neither, the agent refuses to start and says both ways.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_from_systemd_credentials() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let src = make_bucket(&fs, "cred-src").await;
    let dst = make_bucket(&moto, "cred-dst").await;
    put(&fs, &src, "k", pattern_bytes(1000, 3)).await;
    let creds = env.dir.path().join("credentials");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(
        creds.join("T_FS_SECRET"),
        format!("{}\n", env.fs.secret_key),
    )
    .unwrap();
    let config = env.write_config(&AgentOpts::default());
    // The CLI creates the streams and publishes the job.
    let out = env
        .agent_command(&config)
        .args(["copy", &format!("fs:{src}/k"), &format!("moto:{dst}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env
        .agent_command(&config)
        .env_remove("T_FS_SECRET")
        .env("CREDENTIALS_DIRECTORY", &creds)
        .args(["run", "--exit-when-idle", "2s"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(get(&moto, &dst, "k").await, pattern_bytes(1000, 3));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&env.fs.secret_key));

    let out = env
        .agent_command(&config)
        .env_remove("T_FS_SECRET")
        .args(["run"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: endpoint down: environment variable T_FS_SECRET (endpoints.down.secret_access_key_env) is not set and no systemd credential T_FS_SECRET exists; export it, or pass it with LoadCredential=T_FS_SECRET:FILE"),
        "{stderr}"
    );
}

/// Object bytes in memory stay within `buffer_memory`: a 60 MiB streamed copy
/// with a 16 MiB budget keeps the agent's peak RSS near budget + constant.
#[tokio::test(flavor = "multi_thread")]
async fn peak_memory_stays_within_the_buffer_bound() {
    let env = TestEnv::new().await;
    let c = big_copy(&env, "mem", BIG, 12).await;
    let mut opts = AgentOpts {
        part_concurrency: 8,
        ..AgentOpts::default()
    };
    opts.buffer_memory = "16MiB";
    let agent = env.spawn_agent(&opts).await;
    let idle_hwm = agent.peak_rss_kib();
    c.publish(&env).await;
    env.wait_jobs_done().await;
    assert!(c.arrived_whole().await);
    let hwm = agent.peak_rss_kib();
    let growth_mib = (hwm.saturating_sub(idle_hwm)) / 1024;
    eprintln!("idle peak {idle_hwm} KiB, after copy {hwm} KiB, growth {growth_mib} MiB");
    // 16 MiB of parts plus HTTP and SDK buffers (measured 22 MiB with
    // jemalloc returning freed pages at once; 14-19 MiB with glibc and a
    // fixed mmap threshold, 20-38 MiB with either allocator's defaults); a
    // copy that buffered the object would grow by 60 MiB or more.
    assert!(
        growth_mib < 16 + 12,
        "peak RSS grew {growth_mib} MiB (idle {idle_hwm} KiB, peak {hwm} KiB)"
    );
}

pub(crate) fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Under a stand-in systemd notify socket the agent says READY, pings the
/// watchdog and says STOPPING on SIGTERM, then exits 0; `/metrics` counts the
/// copy and `/readyz` answers 200.
#[tokio::test(flavor = "multi_thread")]
async fn sd_notify_metrics_and_health() {
    let env = TestEnv::new().await;
    let moto = env.moto.client();
    let b = make_bucket(&moto, "metrics").await;
    put(&moto, &b, "k", vec![7u8; 1234]).await;
    let sock_path = env.dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = s3rf_testkit::free_port().unwrap();
    let opts = AgentOpts {
        extra_toml: format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        env: vec![
            ("NOTIFY_SOCKET".into(), sock_path.display().to_string()),
            ("WATCHDOG_USEC".into(), "400000".into()),
        ],
        ..AgentOpts::default()
    };
    let mut agent = env.spawn_agent(&opts).await;
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !(seen.iter().any(|m: &String| m == "READY=1") && seen.iter().any(|m| m == "WATCHDOG=1"))
    {
        let n = sock.recv(&mut buf).expect("notify message");
        seen.push(String::from_utf8_lossy(&buf[..n]).trim().to_owned());
    }
    assert_eq!(seen[0], "READY=1", "{seen:?}");

    env.publish_copy(("moto", &b, "k"), ("moto2", &b, Some("copied")))
        .await;
    env.wait_jobs_done().await;
    let (status, body) = tokio::task::spawn_blocking(move || http_get(port, "/metrics"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"s3rf_jobs_total{kind="copy",outcome="ok"} 1"#),
        "{body}"
    );
    assert!(body.contains("s3rf_copied_bytes_total 1234"), "{body}");
    assert!(
        body.contains("s3rf_copy_duration_seconds_count 1"),
        "{body}"
    );
    assert_eq!(
        tokio::task::spawn_blocking(move || http_get(port, "/readyz"))
            .await
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        tokio::task::spawn_blocking(move || http_get(port, "/healthz"))
            .await
            .unwrap()
            .0,
        200
    );

    agent.signal(15);
    loop {
        let n = sock.recv(&mut buf).expect("STOPPING");
        if String::from_utf8_lossy(&buf[..n]).trim() == "STOPPING=1" {
            break;
        }
    }
    let status = agent.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0));
}

/// `[nats] url` may list several servers, a cluster's seeds: the agent
/// connects through one that answers (issue #19, F1; before, the whole list
/// was parsed as one address and refused). An agent whose only server is
/// down waits for it, logging each retry, and takes jobs once it is back
/// (F3; before, the first set-up error ended the agent).
#[tokio::test(flavor = "multi_thread")]
async fn a_server_list_connects_and_an_agent_waits_for_nats_to_come_up() {
    let mut env = TestEnv::new().await;
    let moto = env.moto.client();
    let b = make_bucket(&moto, "seeds").await;
    put(&moto, &b, "k", b"seeded".to_vec()).await;
    let list = AgentOpts {
        nats_url: Some(format!(
            "nats://127.0.0.1:{}, {}",
            env.down_port,
            env.nats.url()
        )),
        ..AgentOpts::default()
    };
    let agent = env.spawn_agent(&list).await;
    env.publish_copy(("moto", &b, "k"), ("moto2", &b, Some("via-list")))
        .await;
    env.wait_jobs_done().await;
    assert_eq!(get(&moto, &b, "via-list").await, b"seeded");
    drop(agent);

    env.nats.stop();
    let waiting = env.start_agent(&AgentOpts::default());
    waiting
        .wait_message("JetStream set-up failed; retrying", "NATS unreachable", 2)
        .await;
    assert!(!waiting.log().contains("agent ready"));
    env.nats.restart().expect("restart nats-server");
    waiting.wait_ready(Duration::from_secs(60)).await;
    let client = env.nats.connect().await.expect("connect");
    env.js = async_nats::jetstream::new(client);
    env.publish_copy(("moto", &b, "k"), ("moto2", &b, Some("after-wait")))
        .await;
    env.wait_jobs_done().await;
    assert_eq!(get(&moto, &b, "after-wait").await, b"seeded");
}

/// Uploads another copy of the same key is resuming are not "stale": a copy
/// leaves alone an upload whose resume record was written just now (its
/// agent is working on it) and aborts one whose record is old (its agent is
/// gone), removing that record too.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_aborts_only_uploads_no_running_copy_owns() {
    use s3rf_agent::resume::{self, Record, Shape};
    let env = TestEnv::new().await;
    let c = big_copy(&env, "owned", 12 * MIB, 77).await;
    let (moto, dst) = (&c.moto, &c.dst);
    let agent = env.spawn_agent(&AgentOpts::default()).await;
    let kv = env
        .js
        .get_key_value("s3rf-uploads")
        .await
        .expect("uploads kv");
    let obj = |endpoint: &str, bucket: &str| s3rf_agent::job::ObjectRef {
        endpoint: endpoint.to_owned(),
        bucket: bucket.to_owned(),
        key: "big".to_owned(),
    };
    let mut ids = Vec::new();
    let mut keys = Vec::new();
    for (etag, age_ms) in [("older-source-1", 0), ("older-source-2", 3_600_000)] {
        let id = moto
            .create_multipart_upload()
            .bucket(dst)
            .key("big")
            .send()
            .await
            .expect("create")
            .upload_id()
            .expect("id")
            .to_owned();
        let key = resume::key_of(&obj("moto2", dst), &obj("moto", &c.src), None, etag);
        let record = Record {
            upload_id: id.clone(),
            dst: ["moto2".into(), dst.clone(), "big".into()],
            src: ["moto".into(), c.src.clone(), "big".into()],
            src_version: None,
            src_etag: etag.into(),
            shape: Shape {
                size: 12 * MIB as u64,
                part_size: 5 * MIB as u64,
                parts_total: 3,
                server_side: false,
            },
            started_ms: s3rf_agent::clock::now_ms_signed() - age_ms,
            updated_ms: s3rf_agent::clock::now_ms_signed() - age_ms,
            parts_done: 0,
            hashed_through: 0,
            md5_state: None,
        };
        kv.put(&key, serde_json::to_vec(&record).unwrap().into())
            .await
            .expect("put record");
        ids.push(id);
        keys.push(key);
    }
    c.publish(&env).await;
    env.wait_jobs_done().await;
    assert!(c.arrived_whole().await, "{}", agent.log());
    assert_eq!(
        open_uploads(moto, dst).await,
        vec![format!("big:{}", ids[0])],
        "only the upload of the running copy stays\n{}",
        agent.log()
    );
    assert!(kv.get(&keys[0]).await.expect("get").is_some());
    assert!(
        kv.get(&keys[1]).await.expect("get").is_none(),
        "the old record is removed"
    );
    moto.abort_multipart_upload()
        .bucket(dst)
        .key("big")
        .upload_id(&ids[0])
        .send()
        .await
        .expect("abort");
}
