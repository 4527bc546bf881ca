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
