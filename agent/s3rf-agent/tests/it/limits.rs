//! `[limits]` against real servers: the rate of object jobs and of source
//! bytes an agent achieves over about 10 s, within 15 % of its limit
//! (issue #18). The rate is taken between two counts of objects at the
//! destination, after the first bucketful, so neither start-up nor the
//! one-second burst the bucket allows counts.

use std::time::{Duration, Instant};

use s3rf_testkit::pattern_bytes;

use s3rf_testkit::proxy::FaultProxy;

use crate::faults::proxied_endpoint;
use crate::harness::*;

/// Publishes a copy job for every object of `src` and returns when
/// `from` and when `to` objects had arrived at `dst`.
async fn copy_all_timed(
    env: &TestEnv,
    keys: &[String],
    src: &str,
    dst: &str,
    from: usize,
    to: usize,
) -> Duration {
    let s3 = env.moto.client();
    for k in keys {
        env.publish_copy(("fs", src, k), ("moto", dst, None)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut first = None;
    loop {
        let n = count_objects(&s3, dst).await;
        if first.is_none() && n >= from {
            first = Some(Instant::now());
        }
        if n >= to {
            return first.map(|f| f.elapsed()).unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "only {n} of {to} objects arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `n` objects of `size` bytes copied by an agent with `limits` (a
/// `[limits]` table); returns how long objects `from..n` took, the
/// buckets, and the agent.
async fn limited_copy(
    env: &TestEnv,
    tag: &str,
    n: u64,
    size: usize,
    limits: &str,
    from: usize,
) -> (Duration, String, Agent) {
    let fs = env.fs.client();
    let src = make_bucket(&fs, tag).await;
    let dst = make_bucket(&env.moto.client(), &format!("{tag}-dst")).await;
    let mut keys = Vec::new();
    for i in 0..n {
        let k = format!("k{i:03}");
        put(&fs, &src, &k, pattern_bytes(size, 800 + i)).await;
        keys.push(k);
    }
    let opts = AgentOpts {
        extra_toml: format!("[limits]\n{limits}\n"),
        ..AgentOpts::default()
    };
    let agent = env.spawn_agent(&opts).await;
    let took = copy_all_timed(env, &keys, &src, &dst, from, keys.len()).await;
    (took, dst, agent)
}

/// `objects_per_sec = 20`: 220 copy jobs; from the 30th object to the
/// 220th the agent copies 20 ± 3 objects per second.
#[tokio::test(flavor = "multi_thread")]
async fn object_jobs_per_second_stay_within_the_limit() {
    let env = TestEnv::new().await;
    let (took, _, agent) = limited_copy(&env, "lim-obj", 220, 64, "objects_per_sec = 20", 30).await;
    let rate = 190.0 / took.as_secs_f64();
    fault_summary(&format!(
        "limits: objects_per_sec = 20 achieved {rate:.1}/s over {:.1} s",
        took.as_secs_f64()
    ));
    assert!(
        (17.0..=23.0).contains(&rate),
        "{rate:.1} objects/s against a limit of 20 over {took:?}\n{}",
        agent.log()
    );
    assert_eq!(env.dead_letter_count().await, 0);
}

/// `bytes_per_sec = "4MiB"`: 44 objects of 1 MiB; from the 8th object to
/// the 44th the agent reads 4 MiB ± 15 % per second.
#[tokio::test(flavor = "multi_thread")]
async fn bytes_per_second_stay_within_the_limit() {
    let env = TestEnv::new().await;
    let (took, dst, agent) =
        limited_copy(&env, "lim-bytes", 44, MIB, "bytes_per_sec = \"4MiB\"", 8).await;
    let rate = 36.0 / took.as_secs_f64();
    fault_summary(&format!(
        "limits: bytes_per_sec = 4MiB achieved {rate:.2} MiB/s over {:.1} s",
        took.as_secs_f64()
    ));
    assert!(
        (3.4..=4.6).contains(&rate),
        "{rate:.2} MiB/s against a limit of 4 MiB/s over {took:?}\n{}",
        agent.log()
    );
    for i in (0..44u64).step_by(11) {
        let got = get(&env.moto.client(), &dst, &format!("k{i:03}")).await;
        assert!(got == pattern_bytes(MIB, 800 + i), "k{i:03} differs");
    }
}

/// `n` objects of `size` bytes in a new bucket of s3s-fs, and their keys.
async fn source_objects(env: &TestEnv, tag: &str, n: u64, size: usize) -> (String, Vec<String>) {
    let fs = env.fs.client();
    let src = make_bucket(&fs, tag).await;
    let mut keys = Vec::new();
    for i in 0..n {
        let k = format!("k{i:03}");
        put(&fs, &src, &k, pattern_bytes(size, 900 + i)).await;
        keys.push(k);
    }
    (src, keys)
}

/// `[endpoints.x] max_requests_per_sec = 20` on a source behind a counting
/// proxy: over 10 s the proxy sees 20 ± 3 requests per second.
#[tokio::test(flavor = "multi_thread")]
async fn endpoint_requests_per_second_stay_within_the_limit() {
    let env = TestEnv::new().await;
    let (src, keys) = source_objects(&env, "lim-ep-req", 300, 64).await;
    let dst = make_bucket(&env.moto.client(), "lim-ep-req-dst").await;
    let proxy = FaultProxy::start(&env.fs.url()).unwrap();
    let opts = AgentOpts {
        extra_toml: proxied_endpoint("fsp", &proxy, "T_FS") + "max_requests_per_sec = 20\n",
        ..AgentOpts::default()
    };
    let agent = env.spawn_agent(&opts).await;
    for k in &keys {
        env.publish_copy(("fsp", &src, k), ("moto", &dst, None))
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.seen_total() < 30 {
        assert!(Instant::now() < deadline, "no requests\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (t0, n0) = (Instant::now(), proxy.seen_total());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (took, n1) = (t0.elapsed(), proxy.seen_total());
    let rate = (n1 - n0) as f64 / took.as_secs_f64();
    fault_summary(&format!(
        "limits: endpoint max_requests_per_sec = 20 achieved {rate:.1}/s over {:.1} s",
        took.as_secs_f64()
    ));
    assert!(
        (17.0..=23.0).contains(&rate),
        "{rate:.1} requests/s against a limit of 20\n{}",
        agent.log()
    );
    assert!(
        count_objects(&env.moto.client(), &dst).await < keys.len(),
        "the measurement ran while work remained"
    );
}

/// `[endpoints.x] max_bytes_per_sec = "4MiB"`, once on the source (GET
/// bodies, metered as they are read) and once on the destination (PUT
/// bodies, charged before they are sent): 4 MiB ± 15 % per second each.
#[tokio::test(flavor = "multi_thread")]
async fn endpoint_bytes_per_second_stay_within_the_limit_both_ways() {
    let env = TestEnv::new().await;
    for (side, tag) in [("source", "lim-ep-get"), ("destination", "lim-ep-put")] {
        let (src, keys) = source_objects(&env, tag, 44, MIB).await;
        let dst = make_bucket(&env.moto.client(), &format!("{tag}-dst")).await;
        let (proxy, upstream) = if side == "source" {
            (FaultProxy::start(&env.fs.url()).unwrap(), "T_FS")
        } else {
            (FaultProxy::start(&env.moto.url()).unwrap(), "T_MOTO")
        };
        let opts = AgentOpts {
            extra_toml: proxied_endpoint("lim", &proxy, upstream)
                + "max_bytes_per_sec = \"4MiB\"\n",
            ..AgentOpts::default()
        };
        let agent = env.spawn_agent(&opts).await;
        let (from, to) = if side == "source" {
            (("lim", src.as_str()), ("moto", dst.as_str()))
        } else {
            (("fs", src.as_str()), ("lim", dst.as_str()))
        };
        for k in &keys {
            env.publish_copy((from.0, from.1, k), (to.0, to.1, None))
                .await;
        }
        let s3 = env.moto.client();
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut first = None;
        let took = loop {
            let n = count_objects(&s3, &dst).await;
            if first.is_none() && n >= 8 {
                first = Some(Instant::now());
            }
            if n >= keys.len() {
                break first.map(|f| f.elapsed()).unwrap_or_default();
            }
            assert!(Instant::now() < deadline, "only {n} objects arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let rate = 36.0 / took.as_secs_f64();
        fault_summary(&format!(
            "limits: endpoint max_bytes_per_sec = 4MiB on the {side} achieved {rate:.2} MiB/s over {:.1} s",
            took.as_secs_f64()
        ));
        assert!(
            (3.4..=4.6).contains(&rate),
            "{side}: {rate:.2} MiB/s against a limit of 4 MiB/s\n{}",
            agent.log()
        );
        for i in (0..44u64).step_by(11) {
            let got = get(&s3, &dst, &format!("k{i:03}")).await;
            assert!(
                got == pattern_bytes(MIB, 900 + i),
                "{side}: k{i:03} differs"
            );
        }
    }
}

/// One run of the SlowDown store: `n` small objects from a source that
/// answers 503 SlowDown above 40 requests per second. Returns the share of
/// requests refused after the first 5 s, the agent and its metrics text.
async fn slow_down_run(env: &TestEnv, tag: &str, adaptive: bool) -> (f64, Agent, String, String) {
    let (src, keys) = source_objects(env, tag, 400, 64).await;
    let dst = make_bucket(&env.moto.client(), &format!("{tag}-dst")).await;
    let proxy = FaultProxy::start(&env.fs.url()).unwrap();
    proxy.slow_down_above(Some(40));
    let port = s3rf_testkit::free_port().unwrap();
    let opts = AgentOpts {
        max_deliver: 5,
        extra_toml: proxied_endpoint("slow", &proxy, "T_FS")
            + &format!("adaptive = {adaptive}\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        ..AgentOpts::default()
    };
    let agent = env.spawn_agent(&opts).await;
    for k in &keys {
        env.publish_copy(("slow", &src, k), ("moto", &dst, None))
            .await;
    }
    let started = Instant::now();
    let mut mark = None;
    let s3 = env.moto.client();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if mark.is_none() && started.elapsed() >= Duration::from_secs(5) {
            mark = Some((proxy.seen_total(), proxy.injected_kind("503")));
        }
        let done = count_objects(&s3, &dst).await + env.dead_letter_count().await as usize;
        if done >= keys.len() && mark.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {} settled",
            keys.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (seen0, refused0) = mark.unwrap_or_default();
    let share =
        (proxy.injected_kind("503") - refused0) as f64 / (proxy.seen_total() - seen0).max(1) as f64;
    let metrics = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    })
    .await
    .unwrap();
    (share, agent, metrics, dst)
}

/// A store answering SlowDown above 40 requests/s: with `adaptive` (the
/// default) the agent cuts its level for that endpoint, after the first
/// seconds few requests are refused, and every object arrives with no
/// dead letter; the level is in `/metrics`. With `adaptive = false` the
/// same store refuses a far larger share.
#[tokio::test(flavor = "multi_thread")]
async fn slow_down_lowers_the_endpoint_level_and_the_refusals_stop() {
    let env = TestEnv::new().await;
    let (share, agent, metrics, dst) = slow_down_run(&env, "slow-ad", true).await;
    drop(agent);
    let dead = env.dead_letter_count().await;
    let (blind, _, _, _) = slow_down_run(&env, "slow-fixed", false).await;
    fault_summary(&format!(
        "limits: SlowDown above 40 req/s: {:.1} % of requests refused after the first 5 s with adaptive, {:.1} % without",
        share * 100.0,
        blind * 100.0
    ));
    assert_eq!(dead, 0, "adaptive: nothing dead-lettered");
    assert_eq!(count_objects(&env.moto.client(), &dst).await, 400);
    for i in (0..400u64).step_by(97) {
        let got = get(&env.moto.client(), &dst, &format!("k{i:03}")).await;
        assert!(got == pattern_bytes(64, 900 + i), "k{i:03} differs");
    }
    assert!(share < 0.10, "adaptive: {:.1} % refused", share * 100.0);
    assert!(
        blind > 3.0 * share,
        "adaptive {share:.3} vs fixed {blind:.3}"
    );
    let level = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains("endpoint=\"slow\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let limit = level("s3rf_endpoint_concurrency_limit").expect("concurrency metric");
    let rate = level("s3rf_endpoint_rate_limit").expect("rate metric");
    assert!(
        limit < 1024.0 && rate > 0.0 && rate < 80.0,
        "levels: {limit} in flight, {rate}/s\n{metrics}"
    );
    assert!(level("s3rf_endpoint_throttled_total").unwrap_or(0.0) > 0.0);
}

/// Objects per second arriving in `bucket` over `window`, from a count
/// taken now.
async fn arrival_rate(s3: &aws_sdk_s3::Client, bucket: &str, window: Duration) -> f64 {
    let (t0, n0) = (Instant::now(), count_objects(s3, bucket).await);
    tokio::time::sleep(window).await;
    let n1 = count_objects(s3, bucket).await;
    (n1 - n0) as f64 / t0.elapsed().as_secs_f64()
}

/// A migration's fleet-wide `rate` shared by two agents: 20 objects/s for
/// the fleet (10 each), then `migrate-rate` to 40 while it runs, in effect
/// on both agents within 2 s; each within 15 % over 10 s, and the migration
/// exact once the limit is lifted.
#[tokio::test(flavor = "multi_thread")]
async fn a_migration_rate_is_shared_by_the_fleet_and_changes_while_it_runs() {
    let env = TestEnv::new().await;
    // 1000 objects: about 250 go at 20/s and 500 at 40/s while measured,
    // so both agents have work throughout.
    let (src, keys) = source_objects(&env, "fleet-rate", 1000, 64).await;
    let dst = s3rf_testkit::unique_bucket("fleet-rate-dst");
    let opts = AgentOpts {
        page_size: 100,
        ..AgentOpts::default()
    };
    let config = env.write_config(&opts);
    let a1 = env.spawn_agent(&opts).await;
    let a2 = env.spawn_agent(&opts).await;
    // Each counts the other: a1 at its next beat, a2 at its first.
    a1.wait_message("live agents counted", "\"agents\":2", 1)
        .await;
    a2.wait_message("live agents counted", "\"agents\":2", 1)
        .await;
    let job = serde_json::json!({"id": "r1", "src": "fs", "dst": "moto", "buckets": [src],
        "bucket_map": {src.clone(): dst}, "rate": {"objects_per_sec": 20}});
    env.publish("s3rf.migrate", job.to_string()).await;
    let s3 = env.moto.client();
    let deadline = Instant::now() + Duration::from_secs(60);
    while s3.head_bucket().bucket(&dst).send().await.is_err() || count_objects(&s3, &dst).await < 30
    {
        assert!(Instant::now() < deadline, "the migration did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = arrival_rate(&s3, &dst, Duration::from_secs(10)).await;
    let run = |args: &[&str]| {
        let out = env.agent_command(&config).args(args).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = run(&["migrate-rate", "r1", "--objects-per-sec", "40"]);
    assert!(
        said.contains("r1: 40 objects/s for the fleet, shared by 2 live agent(s)"),
        "{said}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = arrival_rate(&s3, &dst, Duration::from_secs(10)).await;
    fault_summary(&format!(
        "limits: migration rate 20 objects/s on 2 agents achieved {before:.1}/s; after migrate-rate 40: {after:.1}/s"
    ));
    assert!(
        (17.0..=23.0).contains(&before) && (34.0..=46.0).contains(&after),
        "{before:.1}/s against 20, then {after:.1}/s against 40\n{}\n----\n{}",
        a1.log(),
        a2.log()
    );
    let status = run(&["status", "r1"]);
    assert!(
        status.contains("  limit:     40 objects/s for the fleet"),
        "{status}"
    );
    let said = run(&["migrate-rate", "r1"]);
    assert!(said.contains("r1: no rate limit"), "{said}");
    let t = wait_complete_or_explain(&env, "r1", &[&a1, &a2]).await;
    assert_eq!((t.listed, t.copied, t.dead_lettered), (1000, 1000, 0));
    assert_eq!(count_objects(&s3, &dst).await, keys.len());
}
