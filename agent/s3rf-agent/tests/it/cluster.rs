//! A 3-node JetStream cluster with replicated streams: agents started
//! together against a fresh cluster, and a node lost mid-migration.

use std::time::{Duration, Instant};

use s3rf_testkit::{NatsCluster, pattern_bytes};

use crate::harness::*;
use crate::migrate::fill;

/// A test environment whose agents and own client use `cluster`, with
/// every stream and KV bucket replicated 3 times.
async fn on_cluster(cluster: &NatsCluster) -> TestEnv {
    let mut env = TestEnv::new().await;
    env.js = async_nats::jetstream::new(cluster.connect().await.expect("connect to the cluster"));
    env.replicas = 3;
    env
}

async fn jobs_stream(env: &TestEnv) -> async_nats::jetstream::stream::Info {
    env.js
        .get_stream("S3RF_JOBS")
        .await
        .expect("jobs stream")
        .info()
        .await
        .expect("info")
        .clone()
}

fn cluster_opts(cluster: &NatsCluster) -> AgentOpts {
    AgentOpts {
        nats_url: Some(cluster.urls()),
        replicas: 3,
        ack_wait_secs: 5,
        max_deliver: 5,
        page_size: 10,
        ..AgentOpts::default()
    }
}

/// Two agents started at the same moment against a fresh cluster both
/// create the same replicated streams (which nats-server can answer with
/// timeouts, #3677); they retry until set up, then migrate exactly
/// (issue #19, F3).
#[tokio::test(flavor = "multi_thread")]
async fn agents_started_together_against_a_fresh_cluster_both_set_up() {
    let cluster = NatsCluster::start(3).expect("3-node cluster");
    let env = on_cluster(&cluster).await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let b = make_bucket(&fs, "cl-start").await;
    let mut want = fill(&fs, &b, 30, 200).await;
    let big = pattern_bytes(12 * MIB, 201);
    put(&fs, &b, "big", big.clone()).await;
    want.insert("big".to_owned(), big);
    let opts = cluster_opts(&cluster);
    let a = env.start_agent(&opts);
    let c = env.start_agent(&opts);
    a.wait_ready(Duration::from_secs(90)).await;
    c.wait_ready(Duration::from_secs(90)).await;
    env.publish(
        "s3rf.migrate",
        serde_json::json!({"id": "cl1", "src": "fs", "dst": "moto", "buckets": [b]}).to_string(),
    )
    .await;
    let t = wait_complete(&env, "cl1").await;
    assert_eq!(
        (t.listed, t.copied, t.skipped, t.dead_lettered),
        (31, 31, 0, 0),
        "{t:#?}"
    );
    assert_eq!(bucket_contents(&moto, &b).await, want);
    assert_eq!(jobs_stream(&env).await.config.num_replicas, 3);
    assert_eq!(env.dead_letter_count().await, 0);
}

/// The node leading the job stream is SIGKILLed mid-migration and comes
/// back later: the migration completes with exact counts, every object
/// byte-exact, no dead letter and no upload left open.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_mid_migration_loses_nothing() {
    let mut cluster = NatsCluster::start(3).expect("3-node cluster");
    let env = on_cluster(&cluster).await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let b = make_bucket(&fs, "cl-loss").await;
    let mut want = fill(&fs, &b, 80, 300).await;
    for i in 0..2 {
        let big = pattern_bytes(11 * MIB, 310 + i);
        put(&fs, &b, &format!("big-{i}"), big.clone()).await;
        want.insert(format!("big-{i}"), big);
    }
    let opts = AgentOpts {
        list_split_depth: 0,
        page_size: 5,
        ..cluster_opts(&cluster)
    };
    let a = env.spawn_agent(&opts).await;
    let c = env.spawn_agent(&opts).await;
    env.publish(
        "s3rf.migrate",
        serde_json::json!({"id": "cl2", "src": "fs", "dst": "moto", "buckets": [b]}).to_string(),
    )
    .await;
    let ledger = ledger(&env).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let copied_before = loop {
        let t = ledger.fold("cl2").await.expect("fold");
        if t.copied >= 10 {
            break t.copied;
        }
        assert!(Instant::now() < deadline, "no progress: {t:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let leader = jobs_stream(&env)
        .await
        .cluster
        .and_then(|c| c.leader)
        .expect("the job stream has a leader");
    let node: usize = leader.trim_start_matches('n').parse().expect("node name");
    cluster.kill(node);
    fault_summary(&format!(
        "cluster: node n{node} (leading S3RF_JOBS) SIGKILLed after {copied_before} of 82 objects, restarted 3 s later"
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.restart(node).expect("restart the node");
    let t = wait_complete_or_explain(&env, "cl2", &[&a, &c]).await;
    assert_eq!(
        (t.listed, t.copied, t.skipped, t.dead_lettered),
        (82, 82, 0, 0),
        "{t:#?}\n{}\n{}",
        a.log(),
        c.log()
    );
    assert_eq!(bucket_contents(&moto, &b).await, want);
    assert_eq!(open_uploads(&moto, &b).await, Vec::<String>::new());
    assert_eq!(env.dead_letter_count().await, 0);
}
