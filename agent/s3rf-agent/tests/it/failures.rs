//! Jobs that cannot succeed end in the dead-letter stream with the reason.

use crate::harness::*;

/// Permanent failures are dead-lettered on the first delivery, with the
/// original payload and headers that say why.
#[tokio::test(flavor = "multi_thread")]
async fn permanent_failures_are_dead_lettered_at_once() {
    let env = TestEnv::new().await;
    let moto = env.moto.client();
    let src = make_bucket(&moto, "perm-src").await;
    put(&moto, &src, "present", b"x".to_vec()).await;
    let agent = env.spawn_agent(&AgentOpts::default()).await;

    let cases: Vec<(String, &str)> = vec![
        (
            format!(
                r#"{{"src":{{"endpoint":"moto","bucket":"{src}","key":"absent"}},"dst":{{"endpoint":"moto2","bucket":"{src}"}}}}"#
            ),
            "NoSuchKey",
        ),
        (
            format!(
                r#"{{"src":{{"endpoint":"moto","bucket":"{src}","key":"present"}},"dst":{{"endpoint":"moto2","bucket":"no-such-bucket-{src}"}}}}"#
            ),
            "NoSuchBucket: bucket no-such-bucket-",
        ),
        (
            format!(
                r#"{{"src":{{"endpoint":"moto","bucket":"{src}","key":"present"}},"dst":{{"endpoint":"c","bucket":"x"}}}}"#
            ),
            "unknown endpoint c",
        ),
        (
            "{\"src\": {\"endpoint\": \"moto\", ".to_owned(),
            "malformed copy job",
        ),
        (
            format!(
                r#"{{"src":{{"endpoint":"moto","bucket":"{src}","key":"present","url":"http://169.254.169.254/"}},"dst":{{"endpoint":"moto","bucket":"x"}}}}"#
            ),
            "unknown field `url`",
        ),
        (
            format!(
                r#"{{"src":{{"endpoint":"moto","bucket":"{src}","key":"present"}},"dst":{{"endpoint":"moto2","bucket":"{src}"}},"migration":"m1","sequencer":"0A"}}"#
            ),
            "comes from a migration or from an S3 event, not both",
        ),
    ];
    for (payload, _) in &cases {
        env.publish("s3rf.copy", payload.clone()).await;
    }
    let dead = env.dead_letters(cases.len() as u64).await;
    env.wait_jobs_done().await;
    for (payload, want) in &cases {
        let d = dead
            .iter()
            .find(|d| d.payload.as_ref() == payload.as_bytes())
            .unwrap_or_else(|| panic!("no dead letter keeps payload {payload}"));
        let reason = header(d, "S3rf-Reason");
        assert!(reason.contains(want), "reason {reason:?} lacks {want:?}");
        assert_eq!(header(d, "S3rf-Deliveries"), "1", "{reason}");
        assert_eq!(header(d, "S3rf-Original-Subject"), "s3rf.copy");
        assert_eq!(d.subject.as_str(), "s3rf.dead.copy");
    }
    let nsb = dead
        .iter()
        .find(|d| header(d, "S3rf-Reason").contains("NoSuchBucket"))
        .unwrap();
    assert_eq!(
        header(nsb, "S3rf-Reason"),
        format!(
            "NoSuchBucket: bucket no-such-bucket-{src} does not exist on endpoint moto2; create it or fix the job"
        )
    );
    assert!(
        !agent.log().contains("169.254"),
        "a job URL reached the agent's network code"
    );
}

/// A malformed job just under NATS's 1 MiB `max_payload` no longer fits
/// once the dead-letter headers are added. It still reaches the dead-letter
/// stream, with its first bytes, its length and its SHA-256, and leaves the
/// job stream (issue #19, F4: before, its dead letter failed for ever and
/// the job stayed in S3RF_JOBS).
#[tokio::test(flavor = "multi_thread")]
async fn a_job_too_large_for_a_whole_dead_letter_is_dead_lettered_truncated() {
    use sha2::Digest as _;
    let env = TestEnv::new().await;
    let agent = env.spawn_agent(&AgentOpts::default()).await;
    let payload = format!("{{\"src\": \"{}\"}}", "A".repeat(1_048_500));
    assert!(payload.len() > 1_048_500 && payload.len() < 1_048_576);
    env.publish("s3rf.copy", payload.clone()).await;
    let dead = env.dead_letters(1).await;
    env.wait_jobs_done().await;
    let d = &dead[0];
    let reason = header(d, "S3rf-Reason");
    assert!(reason.contains("malformed copy job"), "{reason}");
    assert!(reason.contains("do not fit a dead letter"), "{reason}");
    assert_eq!(header(d, "S3rf-Payload-Bytes"), payload.len().to_string());
    let sha: String = sha2::Sha256::digest(payload.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(header(d, "S3rf-Payload-Sha256"), sha);
    assert!(
        d.payload.len() > 1_000_000,
        "kept {} bytes",
        d.payload.len()
    );
    assert!(payload.as_bytes().starts_with(&d.payload));
    assert_eq!(env.jobs_in_stream().await, 0, "{}", agent.log());
}

/// A store that is down is retried with backoff, then dead-lettered with the
/// last error after max_deliver attempts.
#[tokio::test(flavor = "multi_thread")]
async fn store_down_is_retried_then_dead_lettered() {
    let env = TestEnv::new().await;
    let moto = env.moto.client();
    let dst = make_bucket(&moto, "down-dst").await;
    let opts = AgentOpts {
        max_deliver: 3,
        ..AgentOpts::default()
    };
    let agent = env.spawn_agent(&opts).await;
    env.publish_copy(("down", "any", "k"), ("moto", &dst, None))
        .await;
    let dead = env.dead_letters(1).await;
    let reason = header(&dead[0], "S3rf-Reason");
    assert!(reason.contains("endpoint down"), "{reason}");
    assert!(reason.contains("gave up after 3 deliveries"), "{reason}");
    assert_eq!(header(&dead[0], "S3rf-Deliveries"), "3");
    // Two retries were paced, not immediate.
    assert_eq!(
        agent.count_messages("attempt failed; will retry"),
        2,
        "{}",
        agent.log()
    );
    env.wait_jobs_done().await;
    // Secrets never reach logs or dead letters.
    for secret in [&env.fs.secret_key, &env.moto.secret_key] {
        assert!(!agent.log().contains(secret.as_str()));
        assert!(!format!("{:?}", dead[0].headers).contains(secret.as_str()));
    }
}

/// A batch job as a listing publishes it.
fn batch_job(migration: &str, src: (&str, &str), dst: (&str, &str), keys: &[&str]) -> String {
    let objects: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| serde_json::json!({"key": k, "size": 5}))
        .collect();
    serde_json::json!({
        "scope": {"migration": migration, "src": src.0, "bucket": src.1, "dst": dst.0, "dst_bucket": dst.1},
        "objects": objects,
    })
    .to_string()
}

/// An object a batch cannot copy is handed off as its own copy job, which
/// dead-letters with the reason; the rest are copied and counted once, even
/// when the same batch arrives twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_hands_off_what_it_cannot_copy() {
    let env = TestEnv::new().await;
    let moto = env.moto.client();
    let src = make_bucket(&moto, "batch-src").await;
    let dst = make_bucket(&moto, "batch-dst").await;
    put(&moto, &src, "a", b"alpha".to_vec()).await;
    put(&moto, &src, "b/c", b"bravo".to_vec()).await;
    let agent = env.spawn_agent(&AgentOpts::default()).await;
    let job = batch_job("hb", ("moto", &src), ("moto2", &dst), &["a", "gone", "b/c"]);
    env.publish("s3rf.batch", job.clone()).await;
    let dead = env.dead_letters(1).await;
    env.wait_jobs_done().await;
    assert_eq!(get(&moto, &dst, "a").await, b"alpha");
    assert_eq!(get(&moto, &dst, "b/c").await, b"bravo");
    assert!(!exists(&moto, &dst, "gone").await);
    let d = &dead[0];
    assert_eq!(
        d.subject.as_str(),
        "s3rf.dead.copy",
        "the object, not the batch"
    );
    let reason = header(d, "S3rf-Reason");
    assert!(reason.contains("NoSuchKey"), "{reason}");
    let copy: serde_json::Value = serde_json::from_slice(&d.payload).unwrap();
    assert_eq!(copy["src"]["key"], "gone");
    assert_eq!(copy["migration"], "hb");
    assert_eq!(
        agent.count_messages(
            "handing the object off as its own copy job, which retries and dead-letters on its own"
        ),
        1
    );

    // The same batch again: it finds its event recorded, counts nothing
    // twice and hands off the same copy job, which JetStream drops.
    env.publish("s3rf.batch", job).await;
    agent
        .wait_message("batch done", "\"handed_off\":1", 2)
        .await;
    env.wait_jobs_done().await;
    assert_eq!(
        env.dead_letter_count().await,
        1,
        "one dead letter per object"
    );
    let t = ledger(&env).await.fold("hb").await.expect("fold");
    assert_eq!(
        (
            t.copied,
            t.copied_bytes,
            t.skipped,
            t.dead_lettered,
            t.source_outcomes
        ),
        (2, 10, 0, 1, 3),
        "{t:#?}"
    );
}

/// A batch whose store is down is retried whole with backoff; on its last
/// delivery its objects are handed off and each is dead-lettered on its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_against_a_store_that_is_down_is_retried_then_handed_off() {
    let env = TestEnv::new().await;
    let moto = env.moto.client();
    let dst = make_bucket(&moto, "batch-down").await;
    let agent = env
        .spawn_agent(&AgentOpts {
            max_deliver: 3,
            ..AgentOpts::default()
        })
        .await;
    env.publish(
        "s3rf.batch",
        batch_job("hd", ("down", "any"), ("moto", &dst), &["k1", "k2"]),
    )
    .await;
    let dead = env.dead_letters(2).await;
    env.wait_jobs_done().await;
    let mut keys = Vec::new();
    for d in &dead {
        assert_eq!(d.subject.as_str(), "s3rf.dead.copy");
        let reason = header(d, "S3rf-Reason");
        assert!(reason.contains("endpoint down"), "{reason}");
        assert!(reason.contains("gave up after 3 deliveries"), "{reason}");
        let copy: serde_json::Value = serde_json::from_slice(&d.payload).unwrap();
        keys.push(copy["src"]["key"].as_str().unwrap().to_owned());
    }
    keys.sort();
    assert_eq!(keys, ["k1", "k2"]);
    let log = agent.log();
    let whole = log
        .lines()
        .filter(|l| l.contains("attempt failed; will retry") && l.contains("retried as a whole"))
        .count();
    assert_eq!(whole, 2, "two paced retries of the whole batch:\n{log}");
    assert_eq!(env.dead_letter_count().await, 2);
    let t = ledger(&env).await.fold("hd").await.expect("fold");
    assert_eq!(
        (t.dead_lettered, t.source_outcomes, t.copied),
        (2, 2, 0),
        "{t:#?}"
    );
}

/// Hostile payloads, fifty on every job subject: random bytes, deep
/// nesting, huge strings, control characters, unknown endpoints, bucket
/// names that look like URLs, wrong types, truncated and empty JSON. Every
/// one ends in the dead-letter stream with a one-line reason, the agent
/// stays up, the job stream empties, and no secret appears in the log or a
/// dead letter.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_payloads_on_every_subject_are_dead_lettered() {
    let env = TestEnv::new().await;
    let mut agent = env.spawn_agent(&AgentOpts::default()).await;
    let subjects = [
        "s3rf.copy",
        "s3rf.delete",
        "s3rf.migrate",
        "s3rf.bucket",
        "s3rf.list",
        "s3rf.batch",
    ];
    let mut rng = fastrand::Rng::with_seed(19);
    let mut published = 0u64;
    for subject in subjects {
        for i in 0..50 {
            let payload: Vec<u8> = match i % 10 {
                0 => (0..rng.usize(0..400)).map(|_| rng.u8(..)).collect(),
                1 => format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
                2 => serde_json::json!({
                    "src": {"endpoint": "moto", "bucket": "b", "key": "K".repeat(200_000)},
                    "dst": {"endpoint": "moto2", "bucket": "b"},
                    "migration": "m".repeat(100_000),
                })
                .to_string()
                .into_bytes(),
                3 => serde_json::json!({
                    "src": {"endpoint": "moto\u{0}", "bucket": "b\u{7}", "key": "k\n\r"},
                    "dst": {"endpoint": "moto2\u{1b}[31m", "bucket": "x"},
                })
                .to_string()
                .into_bytes(),
                4 => serde_json::json!({
                    "src": {"endpoint": "evil", "bucket": "b", "key": "k"},
                    "dst": {"endpoint": "elsewhere", "bucket": "b"},
                    "scope": {"migration": "m1", "src": "evil", "dst": "moto",
                              "bucket": "b", "dst_bucket": "b"},
                })
                .to_string()
                .into_bytes(),
                5 => serde_json::json!({
                    "src": {"endpoint": "moto", "bucket": "http://169.254.169.254/latest", "key": "k"},
                    "dst": {"endpoint": "moto2", "bucket": "https://evil.example/x"},
                    "scope": {"migration": "m1", "src": "moto", "dst": "moto2",
                              "bucket": "http://169.254.169.254/", "dst_bucket": "x"},
                })
                .to_string()
                .into_bytes(),
                6 => br#"{"src": 5, "dst": [], "scope": "x", "objects": {}}"#.to_vec(),
                7 => Vec::new(),
                8 => b"null".to_vec(),
                _ => br#"{"src": {"endpoint": "moto", "bucket": "#.to_vec(),
            };
            env.js
                .publish(subject.to_owned(), payload.into())
                .await
                .expect("publish")
                .await
                .expect("puback");
            published += 1;
        }
    }
    let dead = env.dead_letters(published).await;
    env.wait_jobs_done().await;
    assert_eq!(dead.len() as u64, published);
    let secret = &env.moto.secret_key;
    for d in &dead {
        let reason = header(d, "S3rf-Reason");
        assert!(!reason.is_empty() && !reason.contains('\n'), "{reason:?}");
        assert!(!reason.contains(secret.as_str()));
    }
    assert!(agent.is_running(), "the agent died:\n{}", agent.log());
    assert_eq!(env.jobs_in_stream().await, 0);
    let log = agent.log();
    assert!(!log.contains(secret.as_str()), "a secret reached the log");
    assert!(
        !log.contains("169.254"),
        "a job URL reached the agent's network code"
    );
    fault_summary(&format!(
        "hostile payloads: {published} published on 6 subjects, {} dead-lettered with a reason, agent alive",
        dead.len()
    ));
}
