//! `[limits]` against real servers: the rate of object jobs and of source
//! bytes an agent achieves over about 10 s, within 15 % of its limit
//! (issue #18). The rate is taken between two counts of objects at the
//! destination, after the first bucketful, so neither start-up nor the
//! one-second burst the bucket allows counts.

use std::time::{Duration, Instant};

use s3rf_testkit::pattern_bytes;

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
