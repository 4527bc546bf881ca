//! S3 faults injected by the testkit's proxy: lost responses, errors and
//! resets around multipart uploads. Each case ends byte-exact, with no
//! dead letter and no upload left open.

use s3rf_testkit::pattern_bytes;
use s3rf_testkit::proxy::{Fault, FaultProxy, Op, Rule};

use crate::harness::*;

/// `[endpoints.<name>]` reaching a server through `proxy`.
pub fn proxied_endpoint(name: &str, proxy: &FaultProxy, key_env: &str) -> String {
    format!(
        r#"
[endpoints.{name}]
url = "{url}"
path_style = true
access_key_id_env = "{key_env}_KEY"
secret_access_key_env = "{key_env}_SECRET"
request_timeout_secs = 20
"#,
        url = proxy.url()
    )
}

/// The server completes the upload but its response is lost; the SDK's
/// retry is refused for an upload that no longer exists (s3s-fs answers
/// 403). The copy is confirmed by a HEAD instead of dead-lettering a
/// complete, correct object (issue #19, F6).
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_complete_response_is_confirmed_not_dead_lettered() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let src = make_bucket(&fs, "lostc-src").await;
    let dst = make_bucket(&fs, "lostc-dst").await;
    put(&fs, &src, "big", pattern_bytes(12 * MIB, 101)).await;
    let proxy = FaultProxy::start(&env.fs.url()).expect("proxy");
    proxy.add(Rule::first(
        Op::CompleteMultipartUpload,
        Fault::LoseResponse,
        1,
    ));
    let opts = AgentOpts {
        extra_toml: proxied_endpoint("fsx", &proxy, "T_FS"),
        ..AgentOpts::default()
    };
    let agent = env.spawn_agent(&opts).await;
    env.publish_copy(("fs", &src, "big"), ("fsx", &dst, None))
        .await;
    env.wait_jobs_done().await;
    assert_eq!(proxy.injected(Op::CompleteMultipartUpload), 1);
    assert!(
        proxy.seen(Op::CompleteMultipartUpload) >= 2,
        "the SDK retried the completion"
    );
    assert!(get(&fs, &dst, "big").await == pattern_bytes(12 * MIB, 101));
    assert_eq!(env.dead_letter_count().await, 0, "{}", agent.log());
    assert_eq!(
        agent.count_messages("completion confirmed by HEAD after a failed response"),
        1,
        "{}",
        agent.log()
    );
}

/// The server creates the upload but its response is lost, so the SDK's
/// retry creates a second one. The copy completes with the second, and the
/// first is aborted instead of staying open for ever (issue #19, F5; moto
/// lists uploads).
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_create_response_leaves_no_upload_open() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let src = make_bucket(&fs, "lostcr-src").await;
    let dst = make_bucket(&moto, "lostcr-dst").await;
    put(&fs, &src, "big", pattern_bytes(11 * MIB, 102)).await;
    let proxy = FaultProxy::start(&env.moto.url()).expect("proxy");
    proxy.add(Rule::first(
        Op::CreateMultipartUpload,
        Fault::LoseResponse,
        1,
    ));
    let opts = AgentOpts {
        extra_toml: proxied_endpoint("motox", &proxy, "T_MOTO"),
        ..AgentOpts::default()
    };
    let agent = env.spawn_agent(&opts).await;
    env.publish_copy(("fs", &src, "big"), ("motox", &dst, None))
        .await;
    env.wait_jobs_done().await;
    assert_eq!(proxy.injected(Op::CreateMultipartUpload), 1);
    assert_eq!(proxy.seen(Op::CreateMultipartUpload), 2, "the SDK retried");
    assert!(get(&moto, &dst, "big").await == pattern_bytes(11 * MIB, 102));
    assert_eq!(open_uploads(&moto, &dst).await, Vec::<String>::new());
    assert_eq!(env.dead_letter_count().await, 0, "{}", agent.log());
}

/// The README's bound: peak RSS at most `buffer_memory` (64 MiB in the
/// tests) plus about 30 MiB; a margin for the debug build's allocations.
fn assert_within_memory_bound(agents: &[&Agent]) {
    for a in agents {
        let peak_mib = a.peak_rss_kib() / 1024;
        assert!(
            peak_mib < 64 + 45,
            "peak RSS {peak_mib} MiB with buffer_memory = 64MiB"
        );
    }
}

/// An agent dies after its PUT took effect but before it heard back, so
/// the batch is redelivered to another agent, which finds the object
/// already identical. It was copied by this migration, so the tally says
/// copied, not skipped, and counts its bytes (issue #19, F7).
#[tokio::test(flavor = "multi_thread")]
async fn work_redone_after_an_agent_dies_counts_as_copied() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let b = make_bucket(&fs, "redone").await;
    let sizes = [3000usize, 2000, 1000];
    for (i, size) in sizes.iter().enumerate() {
        put(
            &fs,
            &b,
            &format!("k{i}"),
            pattern_bytes(*size, 110 + i as u64),
        )
        .await;
    }
    let proxy = FaultProxy::start(&env.fs.url()).expect("proxy");
    proxy.add(Rule::first(
        Op::PutObject,
        Fault::DelayResponse(std::time::Duration::from_secs(60)),
        1,
    ));
    let opts = AgentOpts {
        ack_wait_secs: 2,
        extra_toml: proxied_endpoint("fsx", &proxy, "T_FS"),
        ..AgentOpts::default()
    };
    let dst = format!("{b}-copy");
    let first = env.spawn_agent(&opts).await;
    env.publish(
        "s3rf.migrate",
        serde_json::json!({"id": "redone1", "src": "fs", "dst": "fsx", "buckets": [b],
            "bucket_map": {&b: &dst}})
        .to_string(),
    )
    .await;
    // The first PUT has reached the store; its answer is held back.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while proxy.injected(Op::PutObject) == 0 || !exists(&fs, &dst, "k0").await {
        assert!(std::time::Instant::now() < deadline, "{}", first.log());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    first.signal(9);
    drop(first);
    let second = env.spawn_agent(&opts).await;
    let t = wait_complete(&env, "redone1").await;
    assert_eq!(
        (t.listed, t.copied, t.skipped, t.dead_lettered),
        (3, 3, 0, 0),
        "{t:#?}\n{}",
        second.log()
    );
    assert_eq!(t.copied_bytes, 6000);
    for (i, size) in sizes.iter().enumerate() {
        assert!(get(&fs, &dst, &format!("k{i}")).await == pattern_bytes(*size, 110 + i as u64));
    }
    // k0's PUT was held; k1 and k2 may have been written and not recorded
    // too, depending on how far the first agent got.
    assert!(
        second.count_messages("counted as copied: an earlier delivery of this job wrote it") >= 1,
        "{}",
        second.log()
    );
}

/// A whole migration through two stores that misbehave on about one
/// request in seven (503 SlowDown, 500, resets, lost responses, delays, truncated and
/// bit-flipped bodies; seeded, so a failure can be replayed): every object
/// arrives byte-exact, the counts are exact, nothing is dead-lettered and no
/// upload stays open.
#[tokio::test(flavor = "multi_thread")]
async fn a_migration_through_faulty_stores_is_exact() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let b = make_bucket(&fs, "chaos").await;
    let mut want = crate::migrate::fill(&fs, &b, 60, 400).await;
    for i in 0..2 {
        let big = pattern_bytes(11 * MIB, 410 + i);
        put(&fs, &b, &format!("big-{i}"), big.clone()).await;
        want.insert(format!("big-{i}"), big);
    }
    let src = FaultProxy::start(&env.fs.url()).expect("proxy");
    let dst = FaultProxy::start(&env.moto.url()).expect("proxy");
    src.chaos(150, 1);
    dst.chaos(150, 2);
    let opts = AgentOpts {
        max_deliver: 10,
        list_split_depth: 0,
        page_size: 10,
        extra_toml: format!(
            "{}{}",
            proxied_endpoint("fsx", &src, "T_FS"),
            proxied_endpoint("motox", &dst, "T_MOTO")
        ),
        ..AgentOpts::default()
    };
    let a = env.spawn_agent(&opts).await;
    let c = env.spawn_agent(&opts).await;
    env.publish(
        "s3rf.migrate",
        serde_json::json!({"id": "chaos1", "src": "fsx", "dst": "motox", "buckets": [b]})
            .to_string(),
    )
    .await;
    let t = wait_complete(&env, "chaos1").await;
    fault_summary(&format!(
        "faulty stores: {} objects byte-exact, faults injected: source {} ({}), destination {} ({})",
        want.len(),
        src.injected_total(),
        src.injected_summary(),
        dst.injected_total(),
        dst.injected_summary()
    ));
    assert_eq!(
        (t.listed, t.copied, t.skipped, t.dead_lettered),
        (62, 62, 0, 0),
        "{t:#?}\n{}\n{}",
        a.log(),
        c.log()
    );
    let deleted = a.count_messages(
        "the destination kept bytes it refused or that did not match; deleting them",
    ) + c.count_messages(
        "the destination kept bytes it refused or that did not match; deleting them",
    ) + a
        .count_messages("the destination stored other bytes than were sent; deleting them")
        + c.count_messages("the destination stored other bytes than were sent; deleting them");
    fault_summary(&format!(
        "faulty stores: corrupt writes caught and deleted: {deleted}"
    ));
    assert_eq!(bucket_contents(&moto, &b).await, want);
    assert_eq!(open_uploads(&moto, &b).await, Vec::<String>::new());
    assert_eq!(env.dead_letter_count().await, 0);
    assert_within_memory_bound(&[&a, &c]);
    assert!(src.injected_total() >= 3, "{}", src.injected_summary());
    assert!(dst.injected_total() >= 5, "{}", dst.injected_summary());
}

/// Agents SIGKILLed one after another during a migration with multipart
/// objects, a fresh agent started for each: the migration completes with
/// exact counts, byte-exact, and no upload left open. The destination is
/// slowed (a delay on every PUT and part) so that kills land mid-copy.
#[tokio::test(flavor = "multi_thread")]
async fn agents_killed_again_and_again_lose_nothing() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let b = make_bucket(&fs, "killloop").await;
    let mut want = crate::migrate::fill(&fs, &b, 40, 500).await;
    for i in 0..3 {
        let big = pattern_bytes(21 * MIB, 510 + i);
        put(&fs, &b, &format!("big-{i}"), big.clone()).await;
        want.insert(format!("big-{i}"), big);
    }
    let slow = FaultProxy::start(&env.moto.url()).expect("proxy");
    let delay = |ms| Fault::Delay(std::time::Duration::from_millis(ms));
    slow.add(Rule::always(Op::UploadPart, delay(400)));
    slow.add(Rule::always(Op::PutObject, delay(150)));
    let opts = AgentOpts {
        ack_wait_secs: 3,
        max_deliver: 20,
        part_concurrency: 2,
        list_split_depth: 0,
        page_size: 5,
        extra_toml: proxied_endpoint("motox", &slow, "T_MOTO"),
        ..AgentOpts::default()
    };
    let mut agents = vec![env.spawn_agent(&opts).await, env.spawn_agent(&opts).await];
    env.publish(
        "s3rf.migrate",
        serde_json::json!({"id": "kills1", "src": "fs", "dst": "motox", "buckets": [b]})
            .to_string(),
    )
    .await;
    let ledger = ledger(&env).await;
    let mut rng = fastrand::Rng::with_seed(9);
    let mut kills = 0;
    while kills < 6 {
        tokio::time::sleep(std::time::Duration::from_millis(500 + rng.u64(0..1000))).await;
        if ledger.fold("kills1").await.expect("fold").complete() {
            break;
        }
        let victim = rng.usize(0..agents.len());
        agents[victim].signal(9);
        agents.remove(victim);
        kills += 1;
        agents.push(env.spawn_agent(&opts).await);
    }
    let t = wait_complete(&env, "kills1").await;
    fault_summary(&format!(
        "kill loop: {kills} agents SIGKILLed, {} objects byte-exact, {} parts uploaded for 15",
        want.len(),
        slow.seen(Op::UploadPart)
    ));
    assert!(kills >= 4, "the migration finished before most kills");

    assert_eq!(
        (t.listed, t.copied, t.skipped, t.dead_lettered),
        (43, 43, 0, 0),
        "{t:#?}"
    );
    assert_eq!(bucket_contents(&moto, &b).await, want);
    assert_eq!(open_uploads(&moto, &b).await, Vec::<String>::new());
    assert_eq!(env.dead_letter_count().await, 0);
}

/// A migration within one store (server-side CopyObject and UploadPartCopy,
/// tags copied by the store) through a proxy that misbehaves on about one
/// request in seven: exact counts, byte-exact, tags intact, no dead letter,
/// no upload left open.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_side_migration_through_a_faulty_store_is_exact() {
    let env = TestEnv::new().await;
    let moto = env.moto.client();
    let b = make_bucket(&moto, "chaos-ss").await;
    let mut want = std::collections::BTreeMap::new();
    for i in 0..30u64 {
        let body = pattern_bytes(100 + (i as usize * 53) % 2000, 600 + i);
        moto.put_object()
            .bucket(&b)
            .key(format!("k{i:02}"))
            .tagging(format!("n={i}"))
            .body(body.clone().into())
            .send()
            .await
            .expect("put");
        want.insert(format!("k{i:02}"), body);
    }
    for i in 0..2u64 {
        let big = pattern_bytes(11 * MIB, 650 + i);
        put(&moto, &b, &format!("big-{i}"), big.clone()).await;
        want.insert(format!("big-{i}"), big);
    }
    let proxy = FaultProxy::start(&env.moto.url()).expect("proxy");
    proxy.chaos(150, 3);
    let opts = AgentOpts {
        max_deliver: 10,
        list_split_depth: 0,
        page_size: 10,
        extra_toml: proxied_endpoint("motox", &proxy, "T_MOTO"),
        ..AgentOpts::default()
    };
    let a = env.spawn_agent(&opts).await;
    let dst = format!("{b}-copy");
    env.publish(
        "s3rf.migrate",
        serde_json::json!({"id": "chaos2", "src": "motox", "dst": "motox", "buckets": [b],
            "bucket_map": {&b: &dst}})
        .to_string(),
    )
    .await;
    let t = wait_complete_or_explain(&env, "chaos2", &[&a]).await;
    fault_summary(&format!(
        "faulty store, server-side: {} objects byte-exact, faults injected: {} ({})",
        want.len(),
        proxy.injected_total(),
        proxy.injected_summary()
    ));
    assert_eq!(
        (t.listed, t.copied, t.skipped, t.dead_lettered),
        (32, 32, 0, 0),
        "{t:#?}"
    );
    assert_eq!(bucket_contents(&moto, &dst).await, want);
    for i in [0u64, 7, 29] {
        let tags = moto
            .get_object_tagging()
            .bucket(&dst)
            .key(format!("k{i:02}"))
            .send()
            .await
            .expect("tags");
        let got: Vec<(String, String)> = tags
            .tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect();
        assert_eq!(got, vec![("n".to_owned(), i.to_string())], "k{i:02}");
    }
    assert_eq!(open_uploads(&moto, &dst).await, Vec::<String>::new());
    assert_eq!(env.dead_letter_count().await, 0);
    assert_within_memory_bound(&[&a]);
    assert!(proxy.injected_total() >= 5, "{}", proxy.injected_summary());
}

/// A 200 MiB multipart copy SIGKILLed about halfway: the next agent finds
/// the resume record, checks it against ListParts and uploads only the
/// missing parts, so at most `part_concurrency` of the parts the first agent
/// sent are sent again (counted at the proxy). The source's ETag is its MD5,
/// so the whole-object read check continues from the recorded MD5 state.
/// `uploads` shows the copy while it waits; afterwards the object is
/// byte-exact, the upload is gone and so is the record.
#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_multipart_copy_killed_halfway_resumes_where_it_stopped() {
    killed_halfway_resumes(false, false).await;
}

/// The same for a copy within one endpoint (UploadPartCopy).
#[tokio::test(flavor = "multi_thread")]
async fn a_server_side_multipart_copy_killed_halfway_resumes_where_it_stopped() {
    killed_halfway_resumes(true, false).await;
}

/// A record whose MD5 state covers none of its parts (as when the parts
/// were recorded out of order just before the kill): the next agent reads
/// the recorded parts again to hash them, checks each against the MD5 the
/// record holds, and still sends none of them again.
#[tokio::test(flavor = "multi_thread")]
async fn recorded_parts_past_the_hashed_prefix_are_read_again_not_sent() {
    killed_halfway_resumes(false, true).await;
}

/// Rewrites the one resume record so that no part is in its MD5 state.
async fn forget_md5_state(env: &TestEnv) {
    use futures::TryStreamExt;
    let kv = env
        .js
        .get_key_value("s3rf-uploads")
        .await
        .expect("uploads kv");
    let keys: Vec<String> = kv
        .keys()
        .await
        .expect("keys")
        .try_collect()
        .await
        .expect("keys");
    let header = keys
        .iter()
        .find(|k| k.split('.').count() == 2)
        .expect("a record");
    let value = kv.get(header).await.expect("get").expect("a record");
    let mut record: serde_json::Value = serde_json::from_slice(&value).expect("json");
    record["hashed_through"] = 0.into();
    record
        .as_object_mut()
        .expect("an object")
        .remove("md5_state");
    kv.put(header, serde_json::to_vec(&record).unwrap().into())
        .await
        .expect("put");
}

/// s3s-fs is the destination: moto 5.2 answers ListParts with a root
/// element the SDK rejects, so it cannot resume (that fallback, starting
/// over, is what the kill loop above exercises).
async fn killed_halfway_resumes(server_side: bool, drop_md5_state: bool) {
    const PARTS: u64 = 25;
    const PART_CONCURRENCY: u64 = 4;
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let b = make_bucket(&fs, "resume").await;
    let body = pattern_bytes(200 * MIB, 901);
    put(&fs, &b, "big", body.clone()).await;
    let proxy = FaultProxy::start(&env.fs.url()).expect("proxy");
    let op = if server_side {
        Op::UploadPartCopy
    } else {
        Op::UploadPart
    };
    proxy.add(Rule::always(
        op,
        Fault::DelayResponse(std::time::Duration::from_millis(300)),
    ));
    let opts = AgentOpts {
        ack_wait_secs: 3,
        max_deliver: 5,
        part_size: "8MiB",
        multipart_threshold: "8MiB",
        server_side_multipart_threshold: "8MiB",
        part_concurrency: PART_CONCURRENCY as usize,
        extra_toml: proxied_endpoint("fsx", &proxy, "T_FS"),
        ..AgentOpts::default()
    };
    let config = env.write_config(&opts);
    let first = env.spawn_agent(&opts).await;
    let dst = format!("{b}-copy");
    let src = if server_side { "fsx" } else { "fs" };
    env.publish(
        "s3rf.migrate",
        serde_json::json!({"id": "resume1", "src": src, "dst": "fsx", "buckets": [b],
            "bucket_map": {&b: &dst}})
        .to_string(),
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while proxy.seen(op) < PARTS / 2 {
        assert!(std::time::Instant::now() < deadline, "{}", first.log());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    first.signal(9);
    drop(first);
    let sent_before = proxy.seen(op);
    // The record shows the copy, its parts done and total.
    let out = tokio::task::spawn_blocking({
        let mut c = env.agent_command(&config);
        c.args(["uploads", "--json"]);
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let rows = listed.as_array().expect("a list");
    assert_eq!(rows.len(), 1, "{listed:#}");
    let done = rows[0]["parts_done"].as_u64().expect("parts_done");
    let upload_id = rows[0]["upload_id"].as_str().expect("upload_id").to_owned();
    assert_eq!(rows[0]["parts_total"], PARTS, "{listed:#}");
    assert_eq!(rows[0]["dst"], format!("fsx:{dst}/big"), "{listed:#}");
    assert!(
        done >= 1 && done + PART_CONCURRENCY >= sent_before,
        "{done} parts recorded of {sent_before} sent: {listed:#}"
    );
    assert!(!env.fs.upload_files(&upload_id).is_empty());
    if drop_md5_state {
        forget_md5_state(&env).await;
    }
    let second = env.spawn_agent(&opts).await;
    let t = wait_complete(&env, "resume1").await;
    let sent = proxy.seen(op);
    fault_summary(&format!(
        "resume ({}): a {PARTS}-part copy killed after {sent_before} requests ({done} parts \
         recorded) finished with {sent} in all (at most {} allowed)",
        match (server_side, drop_md5_state) {
            (true, _) => "UploadPartCopy",
            (false, false) => "UploadPart",
            (false, true) => "UploadPart, recorded parts read again for the MD5",
        },
        PARTS + PART_CONCURRENCY
    ));
    assert_eq!(
        (t.copied, t.dead_lettered),
        (1, 0),
        "{t:#?}\n{}",
        second.log()
    );
    assert_eq!(
        second.count_messages("resuming a multipart copy an earlier delivery began"),
        1,
        "{}",
        second.log()
    );
    assert!(
        sent <= PARTS + PART_CONCURRENCY,
        "{sent} part requests for {PARTS} parts: finished parts were sent again\n{}",
        second.log()
    );
    assert!(
        get(&fs, &dst, "big").await == body,
        "the copy is not byte-exact"
    );
    assert_eq!(env.fs.upload_files(&upload_id), Vec::<String>::new());
    let out = tokio::task::spawn_blocking({
        let mut c = env.agent_command(&config);
        c.args(["uploads"]);
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no multipart copies in progress\n"
    );
}
