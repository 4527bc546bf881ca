//! Scheduled incremental re-runs (issue #18): `"every"` on a migration.

use std::collections::BTreeMap;
use std::time::Duration;

use s3rf_testkit::pattern_bytes;

use crate::harness::*;
use crate::migrate::fill;

/// Every `"run":"…"` of a "scheduled run started" line in `logs`.
fn runs_started(logs: &[String]) -> BTreeMap<String, usize> {
    let mut runs = BTreeMap::new();
    for line in logs.iter().flat_map(|l| l.lines()) {
        if !line.contains("\"message\":\"scheduled run started\"") {
            continue;
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
            && let Some(run) = v["fields"]["run"].as_str().or(v["run"].as_str())
        {
            *runs.entry(run.to_owned()).or_default() += 1;
        }
    }
    runs
}

/// `"every": "5s"` with two agents: runs s1, s1-2 and s1-3 each copy only
/// what changed since the run before; each run is started by one agent,
/// once; `status` shows the schedule; `schedule --stop` ends it and no run
/// starts after.
#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_migration_reruns_only_what_changed() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let b = make_bucket(&fs, "sched").await;
    let mut want = fill(&fs, &b, 10, 3).await;
    let opts = AgentOpts::default();
    let config = env.write_config(&opts);
    let a1 = env.spawn_agent(&opts).await;
    let a2 = env.spawn_agent(&opts).await;
    let job =
        serde_json::json!({"id": "s1", "src": "fs", "dst": "moto", "buckets": [b], "every": "5s"});
    env.publish("s3rf.migrate", job.to_string()).await;

    let t = wait_complete_or_explain(&env, "s1", &[&a1, &a2]).await;
    assert_eq!((t.copied, t.skipped), (10, 0), "run 1: {t:#?}");
    for k in ["new-1", "new-2"] {
        let body = pattern_bytes(77, k.len() as u64);
        put(&fs, &b, k, body.clone()).await;
        want.insert(k.to_owned(), body);
    }
    let t = wait_complete_or_explain(&env, "s1-2", &[&a1, &a2]).await;
    assert_eq!(
        (t.copied, t.skipped),
        (2, 10),
        "run 2 copies the two new: {t:#?}"
    );
    let changed = pattern_bytes(500, 4242);
    put(&fs, &b, "dir0/obj-0000", changed.clone()).await;
    want.insert("dir0/obj-0000".to_owned(), changed);
    let t = wait_complete_or_explain(&env, "s1-3", &[&a1, &a2]).await;
    assert_eq!(
        (t.copied, t.skipped),
        (1, 11),
        "run 3 copies the changed one: {t:#?}"
    );
    assert_eq!(bucket_contents(&moto, &b).await, want);

    let run = |args: &[&str]| {
        let out = env.agent_command(&config).args(args).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status = run(&["status", "s1"]);
    assert!(status.contains("  schedule:  every 5s; run "), "{status}");
    assert!(status.contains("; next at "), "{status}");
    let v: serde_json::Value = serde_json::from_str(&run(&["status", "s1", "--json"])).unwrap();
    assert_eq!(v["schedule"]["every_ms"], 5000);
    assert!(v["schedule"]["runs"].as_u64().unwrap() >= 3, "{v}");
    assert!(
        run(&["schedule", "s1", "--stop"]).contains("s1: schedule ended"),
        "stopped"
    );
    let logs = || vec![a1.log(), a2.log()];
    let started = runs_started(&logs());
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(runs_started(&logs()), started, "no run after --stop");
    assert!(started.len() >= 2, "runs 2 and 3 at least: {started:?}");
    for (n, (id, times)) in started.iter().enumerate() {
        assert_eq!(id, &format!("s1-{}", n + 2), "runs in order: {started:?}");
        assert_eq!(*times, 1, "{id} started by one agent, once");
    }
    assert_eq!(
        run(&["schedule", "s1"]).trim(),
        "migration s1 has no schedule"
    );
    assert_eq!(env.dead_letter_count().await, 0);
}
