//! Pause and resume (issue #18): a paused migration, paused event sync and
//! a pause of everything start no new job on any agent, including one
//! started during the pause, lose nothing, and finish exactly on resume.
//! Each test prints its pause latency: from `pause` returning to the last
//! object a job already in flight wrote.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use s3rf_testkit::pattern_bytes;

use crate::harness::*;
use crate::migrate::fill;
use crate::sync::{queue_empty, setup, spawn_bridge, wait_converged};

/// How long a pause is watched for new writes.
const QUIET: Duration = Duration::from_secs(12);
/// Jobs in flight when the pause came may still write for this long.
const SETTLE: Duration = Duration::from_secs(2);

fn cli(env: &TestEnv, config: &PathBuf, args: &[&str]) -> (Output, String, String) {
    let out = env.agent_command(config).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

fn cli_ok(env: &TestEnv, config: &PathBuf, args: &[&str]) -> String {
    let (out, stdout, stderr) = cli(env, config, args);
    assert!(out.status.success(), "{args:?}: {stdout}\n{stderr}");
    stdout
}

/// Watches `bucket` for [`QUIET`] from `since` and returns the object count
/// and when it last changed (measured from `since`).
async fn watch_quiet(s3: &aws_sdk_s3::Client, bucket: &str, since: Instant) -> (usize, Duration) {
    let mut last = count_objects(s3, bucket).await;
    let mut changed = Duration::ZERO;
    while since.elapsed() < QUIET {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = count_objects(s3, bucket).await;
        if n != last {
            last = n;
            changed = since.elapsed();
        }
    }
    (last, changed)
}

/// A migration paused after its first objects: no object arrives for 10 s
/// while two agents run (one started during the pause), `status` says
/// paused with the jobs parked; after `resume` it completes exactly, each
/// object counted once.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_migration_starts_nothing_until_resumed() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let b = make_bucket(&fs, "pause-mig").await;
    let want = fill(&fs, &b, 120, 7).await;
    let opts = AgentOpts {
        page_size: 10,
        extra_toml: "[limits]\nobjects_per_sec = 10\n".to_owned(),
        ..AgentOpts::default()
    };
    let config = env.write_config(&opts);
    let a1 = env.spawn_agent(&opts).await;
    let (out, _, stderr) = cli(&env, &config, &["pause", "p1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr.trim(),
        "error: no migration p1; `s3rf-agent status` lists them"
    );
    let job = serde_json::json!({"id": "p1", "src": "fs", "dst": "moto", "buckets": [b]});
    env.publish("s3rf.migrate", job.to_string()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_objects(&moto, &b).await < 20 {
        assert!(Instant::now() < deadline, "the migration did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = cli_ok(&env, &config, &["pause", "p1"]);
    let paused = Instant::now();
    assert!(out.starts_with("paused migration p1 at "), "{out}");
    let a2 = env.spawn_agent(&opts).await;
    let (held, changed) = watch_quiet(&moto, &b, paused).await;
    fault_summary(&format!(
        "pause: migration paused with {held}/120 copied; last write {:.2} s after `pause`, then none for {:.1} s (2 agents)",
        changed.as_secs_f64(),
        (QUIET - changed).as_secs_f64()
    ));
    assert!(
        changed <= SETTLE && held < 120,
        "objects arrived {changed:?} after the pause ({held} of 120)\n{}\n----\n{}",
        a1.log(),
        a2.log()
    );
    let status = cli_ok(&env, &config, &["status", "p1"]);
    assert!(status.starts_with("migration p1: paused\n"), "{status}");
    assert!(status.contains("  paused:    since "), "{status}");
    let v: serde_json::Value =
        serde_json::from_str(&cli_ok(&env, &config, &["status", "p1", "--json"])).unwrap();
    assert_eq!(v["state"], "paused");
    assert_eq!(v["paused"]["scope"], "m.p1");
    let parked = v["paused"]["parked"].as_u64().unwrap();
    assert!(parked > 0, "the held jobs are parked: {v}");
    let list = cli_ok(&env, &config, &["status"]);
    assert!(list.contains("p1  paused  "), "{list}");
    assert_eq!(
        cli_ok(&env, &config, &["pause", "p1"])
            .split(", since")
            .next(),
        Some("migration p1 was already paused")
    );

    let out = cli_ok(&env, &config, &["resume", "p1"]);
    assert!(
        out.starts_with("resumed migration p1 (paused since ")
            && out.contains(&format!("its {parked} parked jobs go back")),
        "{out}"
    );
    let t = wait_complete_or_explain(&env, "p1", &[&a1, &a2]).await;
    assert_eq!(bucket_contents(&moto, &b).await, want);
    assert_eq!((t.listed, t.copied), (120, 120), "{t:#?}");
    assert_eq!(t.skipped + t.dead_lettered + t.filtered, 0, "{t:#?}");
    let v: serde_json::Value =
        serde_json::from_str(&cli_ok(&env, &config, &["status", "p1", "--json"])).unwrap();
    assert_eq!(v["state"], "complete");
    assert_eq!(v["paused"], serde_json::Value::Null);
    assert_eq!(
        cli_ok(&env, &config, &["resume", "p1"]).trim(),
        "migration p1 was not paused"
    );
    env.wait_jobs_done().await;
}

/// `pause --sync` while S3 events arrive: the bridge keeps reading (SQS
/// drains, nothing redrives), the events' jobs wait parked, a hand-published
/// copy still runs; after `resume --sync` the destination converges.
#[tokio::test(flavor = "multi_thread")]
async fn paused_sync_keeps_reading_events_and_applies_them_on_resume() {
    let env = TestEnv::new().await;
    let moto = env.moto.client();
    let sqs = env.moto.sqs_client();
    let s = setup(&env, true).await;
    let config = env.write_config(&s.opts);
    let agent = env.spawn_agent(&s.opts).await;
    let bridge = spawn_bridge(&env, &s.opts);
    put(&moto, &s.src, "before", b"first".to_vec()).await;
    wait_converged(&moto, &s.src, &s.dst).await;

    let out = cli_ok(&env, &config, &["pause", "--sync"]);
    assert!(out.starts_with("paused event sync at "), "{out}");
    let paused = Instant::now();
    for i in 0..5u64 {
        put(&moto, &s.src, &format!("during-{i}"), pattern_bytes(300, i)).await;
    }
    moto.delete_object()
        .bucket(&s.src)
        .key("before")
        .send()
        .await
        .unwrap();
    // A job published by hand is not event sync: it runs.
    let side = make_bucket(&moto, "pause-direct").await;
    put(&moto, &side, "direct", b"by hand".to_vec()).await;
    env.publish_copy(("moto", &side, "direct"), ("moto2", &s.dst, Some("direct")))
        .await;

    let (n, changed) = watch_quiet(&moto, &s.dst, paused).await;
    assert_eq!(
        bucket_contents(&moto, &s.dst)
            .await
            .keys()
            .collect::<Vec<_>>(),
        ["before", "direct"],
        "only the hand-published copy ran during the pause\n{}",
        agent.log()
    );
    fault_summary(&format!(
        "pause: event sync paused; destination settled {:.2} s after `pause` at {n} objects (the hand-published copy), then none for {:.1} s",
        changed.as_secs_f64(),
        (QUIET - changed).as_secs_f64()
    ));
    assert!(
        queue_empty(&sqs, &s.queue_url).await && queue_empty(&sqs, &s.dlq_url).await,
        "the bridge kept reading: SQS holds nothing and redrove nothing\n{}",
        bridge.log()
    );
    let list = cli_ok(&env, &config, &["status"]);
    assert!(
        list.starts_with("paused: event sync since ") && list.contains(", 6 jobs parked"),
        "five puts and a delete wait: {list}"
    );

    // The hand-published copy is not the source's; take it away so that the
    // destination can equal the source.
    moto.delete_object()
        .bucket(&s.dst)
        .key("direct")
        .send()
        .await
        .unwrap();
    let out = cli_ok(&env, &config, &["resume", "--sync"]);
    assert!(out.contains("its 6 parked jobs go back"), "{out}");
    let converged = wait_converged(&moto, &s.src, &s.dst).await;
    assert_eq!(converged.len(), 5, "{:?}", converged.keys());
    assert!(!converged.contains_key("before"));
    for i in 0..5u64 {
        assert_eq!(converged[&format!("during-{i}")], pattern_bytes(300, i));
    }
    assert_eq!(env.dead_letter_count().await, 0);
}

/// `pause --all`: no agent pulls; the jobs stay queued (in the job stream,
/// or parked if a pull already waiting took one); `resume --all` runs them.
#[tokio::test(flavor = "multi_thread")]
async fn pause_all_leaves_every_job_queued_until_resumed() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let src = make_bucket(&fs, "pause-all").await;
    let dst = make_bucket(&moto, "pause-all-dst").await;
    for i in 0..3u64 {
        put(&fs, &src, &format!("k{i}"), pattern_bytes(1000, 40 + i)).await;
    }
    let opts = AgentOpts::default();
    let config = env.write_config(&opts);
    let agent = env.spawn_agent(&opts).await;
    let out = cli_ok(&env, &config, &["pause", "--all"]);
    assert!(out.starts_with("paused all work at "), "{out}");
    let paused = Instant::now();
    for i in 0..3u64 {
        env.publish_copy(("fs", &src, &format!("k{i}")), ("moto", &dst, None))
            .await;
    }
    let (n, _) = watch_quiet(&moto, &dst, paused).await;
    assert_eq!(n, 0, "copied during a pause of all work\n{}", agent.log());
    // A pull already waiting on the server when the pause came may be
    // handed a job; that one is parked. The rest stay in the job stream.
    let queued = env.jobs_in_stream().await;
    let list = cli_ok(&env, &config, &["status"]);
    assert!(
        list.starts_with("paused: all work since ")
            && list.contains(&format!(", {} jobs parked", 3 - queued)),
        "{queued} queued: {list}"
    );
    cli_ok(&env, &config, &["resume", "--all"]);
    env.wait_jobs_done().await;
    for i in 0..3u64 {
        assert_eq!(
            get(&moto, &dst, &format!("k{i}")).await,
            pattern_bytes(1000, 40 + i)
        );
    }
}
