//! Continuous sync: real S3 event notifications (moto delivers them into its
//! own SQS), recorded AWS-shaped fixtures, ordering, and NATS outages.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use s3rf_testkit::{pattern_bytes, unique_bucket};

use crate::harness::*;

const ACCOUNT: &str = "123456789012";

pub struct Bridge {
    child: Child,
    log: std::path::PathBuf,
}

impl Bridge {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Sync {
    pub src: String,
    pub dst: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub opts: AgentOpts,
}

/// A source bucket, a destination bucket, a queue with a redrive policy to a
/// dead-letter queue, and a config routing the queue from moto to moto2.
pub async fn setup(env: &TestEnv, notify: bool) -> Sync {
    let moto = env.moto.client();
    let sqs = env.moto.sqs_client();
    let src = make_bucket(&moto, "sync-src").await;
    let dst = make_bucket(&moto, "sync-dst").await;
    let qname = unique_bucket("q");
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{qname}-dlq"))
        .send()
        .await
        .unwrap();
    let dlq_url = dlq.queue_url().unwrap().to_owned();
    let redrive = serde_json::json!({
        "deadLetterTargetArn": format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{qname}-dlq"),
        "maxReceiveCount": "2",
    });
    let q = sqs
        .create_queue()
        .queue_name(&qname)
        .attributes(QueueAttributeName::VisibilityTimeout, "2")
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .unwrap();
    let queue_url = q.queue_url().unwrap().to_owned();
    if notify {
        moto.put_bucket_notification_configuration()
            .bucket(&src)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(
                        QueueConfiguration::builder()
                            .queue_arn(format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{qname}"))
                            .events(Event::from("s3:ObjectCreated:*"))
                            .events(Event::from("s3:ObjectRemoved:*"))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let opts = AgentOpts {
        extra_toml: format!(
            r#"
[bridge]
wait_time_secs = 1

[[bridge.queues]]
queue_url = "{queue_url}"
sqs_endpoint = "moto"
src = "moto"
dst = "moto2"
bucket_map = {{ "{src}" = "{dst}" }}
"#
        ),
        ..AgentOpts::default()
    };
    Sync {
        src,
        dst,
        queue_url,
        dlq_url,
        opts,
    }
}

pub fn spawn_bridge(env: &TestEnv, opts: &AgentOpts) -> Bridge {
    let config = env.write_config(opts);
    let log = env.dir.path().join(format!(
        "bridge-{}.log",
        config.file_stem().unwrap().to_string_lossy()
    ));
    let file = std::fs::File::create(&log).unwrap();
    let child = s3rf_testkit::spawn_tied(
        env.agent_command(&config)
            .arg("bridge")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null()),
    )
    .unwrap();
    Bridge { child, log }
}

pub async fn wait_converged(
    s3: &aws_sdk_s3::Client,
    src: &str,
    dst: &str,
) -> BTreeMap<String, Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let a = bucket_contents(s3, src).await;
        let b = bucket_contents(s3, dst).await;
        if a == b {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "destination did not converge:\nsource {:?}\ndest   {:?}",
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Real notifications: puts, an overwrite, a server-side copy, a multipart
/// upload and deletes, with awkward keys; the destination converges exactly.
#[tokio::test(flavor = "multi_thread")]
async fn real_notifications_converge() {
    let env = TestEnv::new().await;
    let moto = env.moto.client();
    let s = setup(&env, true).await;
    let _agent = env.spawn_agent(&s.opts).await;
    let bridge = spawn_bridge(&env, &s.opts);
    let keys = [
        "plain.txt",
        "with space.txt",
        "plus+sign",
        "dir/sub/file",
        "ünïcødé ✓/x",
    ];
    for (i, k) in keys.iter().enumerate() {
        put(&moto, &s.src, k, pattern_bytes(100 + i, i as u64)).await;
    }
    put(&moto, &s.src, "plain.txt", b"overwritten".to_vec()).await;
    moto.copy_object()
        .bucket(&s.src)
        .key("copied+again")
        .copy_source(format!("{}/dir/sub/file", s.src))
        .send()
        .await
        .unwrap();
    let big = pattern_bytes(5 * MIB + 1000, 51);
    put_in_two_parts(&moto, &s.src, "big multipart", &big, None, None).await;
    moto.delete_object()
        .bucket(&s.src)
        .key("with space.txt")
        .send()
        .await
        .unwrap();
    let converged = wait_converged(&moto, &s.src, &s.dst).await;
    assert_eq!(converged.len(), 6, "{:?}", converged.keys());
    assert_eq!(converged["plain.txt"], b"overwritten");
    assert!(!converged.contains_key("with space.txt"));
    assert!(converged.contains_key("plus+sign"));
    assert!(converged.contains_key("ünïcødé ✓/x"));
    assert_eq!(converged["big multipart"].len(), 5 * MIB + 1000);
    assert!(bridge.log().contains("bridge ready"));
}

async fn send(sqs: &aws_sdk_sqs::Client, url: &str, body: &str) {
    sqs.send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .unwrap();
}

fn record(name: &str, bucket: &str, key: &str, seq: &str) -> serde_json::Value {
    serde_json::json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventName": name,
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 3, "eTag": "x", "sequencer": seq}}
    })
}

fn records(recs: &[serde_json::Value]) -> String {
    serde_json::json!({"Records": recs}).to_string()
}

pub async fn queue_empty(sqs: &aws_sdk_sqs::Client, url: &str) -> bool {
    let a = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let attrs = a.attributes().unwrap();
    attrs[&QueueAttributeName::ApproximateNumberOfMessages] == "0"
        && attrs[&QueueAttributeName::ApproximateNumberOfMessagesNotVisible] == "0"
}

async fn wait_until<F, Fut>(what: &str, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// AWS-shaped fixtures with sequencers: a late create after a delete does not
/// resurrect, reversed creates and duplicates apply once, TestEvent is
/// acknowledged, EventBridge and SNS shapes work, garbage goes to the SQS DLQ.
#[tokio::test(flavor = "multi_thread")]
async fn recorded_fixtures_ordering_and_shapes() {
    let env = TestEnv::new().await;
    let moto = env.moto.client();
    let sqs = env.moto.sqs_client();
    let s = setup(&env, false).await;
    let agent = env.spawn_agent(&s.opts).await;
    let bridge = spawn_bridge(&env, &s.opts);

    // Delete, then a late create of an older sequencer: stays deleted.
    put(&moto, &s.dst, "gone", b"old".to_vec()).await;
    send(
        &sqs,
        &s.queue_url,
        &records(&[record("ObjectRemoved:Delete", &s.src, "gone", "00000B")]),
    )
    .await;
    wait_until("the delete", || async {
        !exists(&moto, &s.dst, "gone").await
    })
    .await;
    put(&moto, &s.src, "gone", b"back".to_vec()).await; // the source has it again...
    send(
        &sqs,
        &s.queue_url,
        &records(&[record("ObjectCreated:Put", &s.src, "gone", "00000A")]),
    )
    .await;
    wait_until("the stale create", || async {
        agent.count_messages("skipped: stale event (a newer one was applied)") >= 1
    })
    .await;
    assert!(
        !exists(&moto, &s.dst, "gone").await,
        "an older create resurrected the object"
    );

    // Two creates reversed, and a duplicate: one copy, one stale skip.
    put(&moto, &s.src, "rev", b"v2".to_vec()).await;
    let newer = records(&[record("ObjectCreated:Put", &s.src, "rev", "0000D1")]);
    send(&sqs, &s.queue_url, &newer).await;
    send(&sqs, &s.queue_url, &newer).await;
    wait_until("the newer create", || async {
        exists(&moto, &s.dst, "rev").await
    })
    .await;
    send(
        &sqs,
        &s.queue_url,
        &records(&[record("ObjectCreated:Put", &s.src, "rev", "0000C9")]),
    )
    .await;
    wait_until("the reversed create", || async {
        agent.count_messages("skipped: stale event (a newer one was applied)") >= 2
    })
    .await;
    assert_eq!(get(&moto, &s.dst, "rev").await, b"v2");

    // TestEvent, SNS-wrapped and EventBridge shapes.
    send(&sqs, &s.queue_url, r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-23T00:00:00.000Z","Bucket":"x"}"#).await;
    put(&moto, &s.src, "via sns", b"sns".to_vec()).await;
    let inner = records(&[record("ObjectCreated:Put", &s.src, "via+sns", "0000E1")]);
    send(
        &sqs,
        &s.queue_url,
        &serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": inner})
            .to_string(),
    )
    .await;
    put(&moto, &s.src, "via eb+", b"eb".to_vec()).await;
    let eb = serde_json::json!({"version": "0", "detail-type": "Object Created", "source": "aws.s3",
        "detail": {"bucket": {"name": s.src}, "object": {"key": "via eb+", "size": 2, "sequencer": "0000E2"}, "reason": "PutObject"}});
    send(&sqs, &s.queue_url, &eb.to_string()).await;
    wait_until("SNS and EventBridge events", || async {
        exists(&moto, &s.dst, "via sns").await && exists(&moto, &s.dst, "via eb+").await
    })
    .await;

    // Garbage is left for the redrive policy and reaches the SQS dead-letter queue.
    send(&sqs, &s.queue_url, "this is not an event").await;
    wait_until("garbage in the SQS DLQ", || async {
        sqs.receive_message()
            .queue_url(&s.dlq_url)
            .send()
            .await
            .unwrap()
            .messages()
            .iter()
            .any(|m| m.body() == Some("this is not an event"))
    })
    .await;
    wait_until("the queue to drain", || async {
        queue_empty(&sqs, &s.queue_url).await
    })
    .await;
    let log = bridge.log();
    assert_eq!(
        log.matches("not an S3 event notification").count(),
        1,
        "logged once:\n{log}"
    );
    assert_eq!(env.dead_letter_count().await, 0);
}

/// NATS down while events arrive: the bridge leaves them in SQS and publishes
/// them once NATS is back; nothing is lost.
#[tokio::test(flavor = "multi_thread")]
async fn nats_outage_loses_no_event() {
    let mut env = TestEnv::new().await;
    let moto = env.moto.client();
    let s = setup(&env, true).await;
    let _agent = env.spawn_agent(&s.opts).await;
    let bridge = spawn_bridge(&env, &s.opts);
    put(&moto, &s.src, "before", b"1".to_vec()).await;
    wait_converged(&moto, &s.src, &s.dst).await;
    env.nats.stop();
    for i in 0..5 {
        put(&moto, &s.src, &format!("during/{i}"), vec![b'x'; i + 1]).await;
    }
    // Keep NATS down until the bridge has given up on a publish (the
    // JetStream ack times out after 5 s): a fixed sleep raced that timeout.
    wait_until("the bridge to leave a message in SQS", || async {
        bridge
            .log()
            .contains("the SQS message stays and is retried")
    })
    .await;
    assert!(!exists(&moto, &s.dst, "during/0").await);
    env.nats.restart().unwrap();
    let converged = wait_converged(&moto, &s.src, &s.dst).await;
    assert_eq!(converged.len(), 6);
}

/// SIGTERM stops the bridge's polling and it exits 0; a bridge without queues
/// refuses to start with a clear error.
#[tokio::test(flavor = "multi_thread")]
async fn bridge_stops_on_sigterm() {
    let env = TestEnv::new().await;
    let s = setup(&env, false).await;
    let mut bridge = spawn_bridge(&env, &s.opts);
    wait_until("bridge ready", || async {
        bridge.log().contains("bridge ready")
    })
    .await;
    let status = std::process::Command::new("kill")
        .args(["-15", &bridge.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(s) = bridge.child.try_wait().unwrap() {
            break s.code();
        }
        assert!(
            Instant::now() < deadline,
            "bridge did not stop:\n{}",
            bridge.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code, Some(0), "{}", bridge.log());
    assert!(bridge.log().contains("bridge stopped"));

    let config = env.write_config(&AgentOpts::default());
    let out = env.agent_command(&config).arg("bridge").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [[bridge.queues]] configured"));
}
