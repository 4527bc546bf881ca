//! The operator CLI against a real NATS and agent.

use std::process::Output;

use s3rf_testkit::pattern_bytes;

use crate::harness::*;

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `migrate --wait` publishes, shows progress until complete, exits 0; `status`
/// then shows the migration, also as JSON.
#[tokio::test(flavor = "multi_thread")]
async fn migrate_wait_and_status() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let b = make_bucket(&fs, "cli-mig").await;
    for i in 0..9 {
        put(&fs, &b, &format!("k{i}"), pattern_bytes(500 + i, i as u64)).await;
    }
    let opts = AgentOpts {
        page_size: 4,
        ..AgentOpts::default()
    };
    let config = env.write_config(&opts);
    let _agent = env.spawn_agent(&opts).await;
    let cli = |args: &[&str]| {
        let mut c = env.agent_command(&config);
        c.args(args);
        c.output().unwrap()
    };
    let out = tokio::task::spawn_blocking({
        let mut c = env.agent_command(&config);
        c.args([
            "migrate", "--src", "fs", "--dst", "moto", "--bucket", &b, "--id", "cli1", "--wait",
        ]);
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("cli1\n"), "{stdout}");
    assert!(
        stdout.contains("migration cli1 complete: listed 9, copied 9, skipped 0"),
        "{stdout}"
    );
    for i in 0..9 {
        assert_eq!(
            get(&moto, &b, &format!("k{i}")).await,
            pattern_bytes(500 + i, i as u64)
        );
    }

    let out = cli(&["status"]);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("cli1  complete  buckets 1/1  listed 9, copied 9"),
        "{stdout}"
    );
    let out = cli(&["status", "cli1", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tally"]["copied"], 9);
    assert_eq!(v["state"], "complete");
    let out = cli(&["status", "cli1"]);
    assert!(
        text(&out).0.contains(&format!(
            "bucket {b} -> {b}: created, 9 objects in 3 pages, listed"
        )),
        "{}",
        text(&out).0
    );

    let out = cli(&["status", "m9"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr.trim(),
        "error: no migration m9; `s3rf-agent status` lists them"
    );
}

/// A dead letter retried after its cause is fixed: the object arrives, the
/// dead-letter stream empties, and the migration's counts move from
/// dead-lettered to copied.
#[tokio::test(flavor = "multi_thread")]
async fn dlq_retry_round_trip() {
    let env = TestEnv::new().await;
    let moto = env.moto.client();
    let src = make_bucket(&moto, "dlq-src").await;
    let dst = make_bucket(&moto, "dlq-dst").await;
    let config = env.write_config(&AgentOpts::default());
    let _agent = env.spawn_agent(&AgentOpts::default()).await;
    let job = serde_json::json!({
        "src": {"endpoint": "moto", "bucket": src, "key": "late"},
        "dst": {"endpoint": "moto2", "bucket": dst},
        "migration": "mretry",
    });
    env.publish("s3rf.copy", job.to_string()).await;
    let dead = env.dead_letters(1).await;
    assert!(header(&dead[0], "S3rf-Reason").contains("NoSuchKey"));
    let ledger = ledger(&env).await;
    assert_eq!(ledger.fold("mretry").await.unwrap().dead_lettered, 1);

    let cli = |args: &[&str]| {
        let mut c = env.agent_command(&config);
        c.args(args);
        c.output().unwrap()
    };
    let out = cli(&["dlq", "list", "--migration", "mretry"]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("s3rf.copy  deliveries 1"), "{stdout}");
    assert!(stdout.contains("NoSuchKey"), "{stdout}");
    let out = cli(&["dlq", "list", "--migration", "other"]);
    assert_eq!(text(&out).0.trim(), "no dead letters");
    let out = cli(&["dlq", "show", &dead[0].sequence.to_string()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["migration"], "mretry");

    put(&moto, &src, "late", b"now here".to_vec()).await;
    let out = cli(&["dlq", "retry", "--all", "--migration", "mretry"]);
    assert_eq!(text(&out).0.trim(), "retried 1 dead letter(s)");
    env.wait_jobs_done().await;
    assert_eq!(get(&moto, &dst, "late").await, b"now here");
    assert_eq!(text(&cli(&["dlq", "list"])).0.trim(), "no dead letters");
    let t = ledger.fold("mretry").await.unwrap();
    assert_eq!((t.dead_lettered, t.copied), (0, 1), "{t:#?}");

    // purge removes without republishing
    env.publish("s3rf.copy", job.to_string().replace("late", "never"))
        .await;
    while env.dead_letter_count().await == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let listed: serde_json::Value =
        serde_json::from_slice(&cli(&["dlq", "list", "--json"]).stdout).unwrap();
    let seq = listed[0]["seq"].as_u64().unwrap().to_string();
    assert!(listed[0]["job"].as_str().unwrap().contains("never"));
    assert_eq!(
        text(&cli(&["dlq", "purge", &seq])).0.trim(),
        "purged 1 dead letter(s)"
    );
    assert_eq!(text(&cli(&["dlq", "list"])).0.trim(), "no dead letters");
}

/// `copy` and `delete` publish single-object jobs; a NATS that is down is one
/// clear line.
#[tokio::test(flavor = "multi_thread")]
async fn copy_delete_and_unreachable_nats() {
    let mut env = TestEnv::new().await;
    let moto = env.moto.client();
    let b = make_bucket(&moto, "cli-cp").await;
    put(&moto, &b, "a b", b"x".to_vec()).await;
    let config = env.write_config(&AgentOpts::default());
    let _agent = env.spawn_agent(&AgentOpts::default()).await;
    let cli = |env: &TestEnv, args: &[&str]| {
        let mut c = env.agent_command(&config);
        c.args(args);
        c.output().unwrap()
    };
    let out = cli(
        &env,
        &[
            "copy",
            &format!("moto:{b}/a b"),
            &format!("moto2:{b}/copied"),
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    env.wait_jobs_done().await;
    assert_eq!(get(&moto, &b, "copied").await, b"x");
    let out = cli(&env, &["delete", &format!("moto:{b}/a b")]);
    assert!(out.status.success());
    env.wait_jobs_done().await;
    assert!(!exists(&moto, &b, "a b").await);
    let out = cli(&env, &["copy", &format!("nope:{b}/a"), "moto:x"]);
    assert_eq!(
        text(&out).1.trim(),
        "error: unknown endpoint nope: it is not defined in the config; add [endpoints.nope]"
    );

    let url = env.nats.url();
    env.nats.stop();
    let out = cli(&env, &["status"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.starts_with(&format!("error: NATS unreachable at {url}")),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
