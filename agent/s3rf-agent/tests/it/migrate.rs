//! Whole-store migrations: buckets first, paged listings, exact counts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use s3rf_agent::migration::BucketState;
use s3rf_testkit::{pattern_bytes, unique_bucket};

use crate::harness::*;

/// Fills `bucket` with `n` objects of varied sizes and returns their contents.
pub async fn fill(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    n: usize,
    seed: u64,
) -> BTreeMap<String, Vec<u8>> {
    let mut want = BTreeMap::new();
    for i in 0..n {
        let key = format!("dir{}/obj-{i:04}", i % 3);
        let body = pattern_bytes(
            if i == 0 { 0 } else { 100 + (i * 37) % 3000 },
            seed + i as u64,
        );
        put(s3, bucket, &key, body.clone()).await;
        want.insert(key, body);
    }
    want
}

/// Two agents migrate two buckets (one renamed) from s3s-fs to moto: every
/// object arrives, counts are exact, and no copy job is published before its
/// destination bucket exists.
#[tokio::test(flavor = "multi_thread")]
async fn multi_bucket_migration_with_two_agents_is_exact() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let b1 = make_bucket(&fs, "mig-a").await;
    let b2 = make_bucket(&fs, "mig-b").await;
    let b2_new = unique_bucket("mig-b-new");
    let want1 = fill(&fs, &b1, 23, 1).await;
    let want2 = fill(&fs, &b2, 17, 100).await;
    let opts = AgentOpts {
        page_size: 5,
        ..AgentOpts::default()
    };
    let _a1 = env.spawn_agent(&opts).await;
    let _a2 = env.spawn_agent(&opts).await;

    // Watch every copy and batch job as it is published and check its
    // bucket exists then.
    let client = env.nats.connect().await.unwrap();
    let mut sub = futures::stream::select(
        client.subscribe("s3rf.copy").await.unwrap(),
        client.subscribe("s3rf.batch").await.unwrap(),
    );
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    // (objects in copy jobs, objects in batch jobs)
    let seen = Arc::new(Mutex::new((0usize, 0usize)));
    let watcher = {
        let moto = moto.clone();
        let violations = violations.clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let job: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                let (bucket, batched) = match job["objects"].as_array() {
                    Some(objects) => (&job["scope"]["dst_bucket"], objects.len()),
                    None => (&job["dst"]["bucket"], 0),
                };
                let bucket = bucket.as_str().unwrap().to_owned();
                if moto.head_bucket().bucket(&bucket).send().await.is_err() {
                    violations.lock().unwrap().push(bucket);
                }
                let mut seen = seen.lock().unwrap();
                if batched == 0 {
                    seen.0 += 1;
                } else {
                    seen.1 += batched;
                }
            }
        })
    };

    let job = serde_json::json!({
        "id": "m1", "src": "fs", "dst": "moto",
        "buckets": [b1, b2], "bucket_map": {b2.clone(): b2_new},
    });
    env.publish("s3rf.migrate", job.to_string()).await;
    let t = wait_complete(&env, "m1").await;
    assert_eq!(bucket_contents(&moto, &b1).await, want1);
    assert_eq!(bucket_contents(&moto, &b2_new).await, want2);
    assert_eq!(t.listed, 40, "{t:#?}");
    assert_eq!(t.copied, 40);
    assert_eq!(t.skipped + t.dead_lettered + t.would_copy, 0);
    assert_eq!(
        t.copied_bytes,
        want1
            .values()
            .chain(want2.values())
            .map(|v| v.len() as u64)
            .sum::<u64>()
    );
    assert_eq!(t.buckets_done(), 2);
    assert_eq!(t.buckets[&b1].state, Some(BucketState::Created));
    assert_eq!(
        t.buckets[&b1].source_pages, 7,
        "a split listing: the root page names dir0/ dir1/ dir2/, each of 7 or 8 objects lists in 2 pages of 5"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    watcher.abort();
    let (alone, batched) = *seen.lock().unwrap();
    assert_eq!(alone + batched, 40, "every object's job observed");
    // With copy.concurrency 4 a page is one batch (`migration::batch_size`:
    // an eighth of 4 slots is one): pages of 5, 3 and 2 objects are batches;
    // the second pages of b2's prefixes of 6 objects hold 1, a copy job each.
    assert_eq!(
        (alone, batched),
        (2, 38),
        "small objects go in batches: {alone} alone, {batched} batched"
    );
    assert!(
        violations.lock().unwrap().is_empty(),
        "copy jobs before their bucket: {:?}",
        violations.lock().unwrap()
    );
    env.wait_jobs_done().await;
}

/// A re-run copies nothing and counts everything as skipped; a changed
/// object is copied again.
#[tokio::test(flavor = "multi_thread")]
async fn rerun_skips_everything_then_copies_what_changed() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let b = make_bucket(&fs, "rerun").await;
    let mut want = fill(&fs, &b, 12, 7).await;
    let _agent = env
        .spawn_agent(&AgentOpts {
            page_size: 4,
            ..AgentOpts::default()
        })
        .await;
    let job = |id: &str| {
        serde_json::json!({"id": id, "src": "fs", "dst": "moto", "buckets": [b]}).to_string()
    };
    env.publish("s3rf.migrate", job("r1")).await;
    let first = wait_complete(&env, "r1").await;
    assert_eq!((first.copied, first.skipped), (12, 0));

    env.publish("s3rf.migrate", job("r2")).await;
    let second = wait_complete(&env, "r2").await;
    assert_eq!(
        (second.listed, second.copied, second.skipped),
        (12, 0, 12),
        "{second:#?}"
    );
    assert_eq!(second.buckets[&b].state, Some(BucketState::Existed));

    put(&fs, &b, "dir1/obj-0001", b"changed".to_vec()).await;
    want.insert("dir1/obj-0001".into(), b"changed".to_vec());
    env.publish("s3rf.migrate", job("r3")).await;
    let third = wait_complete(&env, "r3").await;
    assert_eq!((third.copied, third.skipped), (1, 11), "{third:#?}");
    assert_eq!(bucket_contents(&moto, &b).await, want);
}

/// Mirror mode deletes destination objects the source no longer has, within
/// the prefix; dry run counts and changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn mirror_deletes_extraneous_and_dry_run_changes_nothing() {
    let env = TestEnv::new().await;
    let moto = env.moto.client();
    let src = make_bucket(&moto, "mir-src").await;
    let dst = make_bucket(&moto, "mir-dst").await;
    for k in ["p/a", "p/b", "q/outside"] {
        put(&moto, &src, k, k.as_bytes().to_vec()).await;
    }
    for k in ["p/a", "p/stale1", "p/stale2", "q/untouched"] {
        put(&moto, &dst, k, b"old".to_vec()).await;
    }
    let _agent = env
        .spawn_agent(&AgentOpts {
            page_size: 2,
            ..AgentOpts::default()
        })
        .await;

    let dry = serde_json::json!({"id": "dry", "src": "moto", "dst": "moto2", "buckets": [src],
        "bucket_map": {src.clone(): dst.clone()}, "prefix": "p/", "delete_extraneous": true, "dry_run": true});
    env.publish("s3rf.migrate", dry.to_string()).await;
    let t = wait_complete(&env, "dry").await;
    assert_eq!(
        (t.listed, t.would_copy, t.skipped, t.copied),
        (2, 2, 0, 0),
        "{t:#?}"
    );
    assert_eq!(
        (t.mirror_listed, t.would_delete, t.kept, t.deleted),
        (3, 2, 1, 0),
        "{t:#?}"
    );
    let untouched: Vec<String> = bucket_contents(&moto, &dst).await.keys().cloned().collect();
    assert_eq!(untouched, ["p/a", "p/stale1", "p/stale2", "q/untouched"]);

    let absent = unique_bucket("dry-new");
    let dry_new = serde_json::json!({"id": "dry-new", "src": "moto", "dst": "moto2", "buckets": [src],
        "bucket_map": {src.clone(): absent.clone()}, "dry_run": true});
    env.publish("s3rf.migrate", dry_new.to_string()).await;
    let t = wait_complete(&env, "dry-new").await;
    assert_eq!(t.buckets[&src].state, Some(BucketState::WouldCreate));
    assert_eq!(t.would_copy, 3);
    assert!(
        moto.head_bucket().bucket(&absent).send().await.is_err(),
        "dry run created a bucket"
    );

    let real = serde_json::json!({"id": "mirror", "src": "moto", "dst": "moto2", "buckets": [src],
        "bucket_map": {src.clone(): dst.clone()}, "prefix": "p/", "delete_extraneous": true});
    env.publish("s3rf.migrate", real.to_string()).await;
    let t = wait_complete(&env, "mirror").await;
    assert_eq!((t.copied, t.deleted, t.kept), (2, 2, 1), "{t:#?}");
    let after: Vec<String> = bucket_contents(&moto, &dst).await.keys().cloned().collect();
    assert_eq!(after, ["p/a", "p/b", "q/untouched"]);
    assert_eq!(get(&moto, &dst, "p/a").await, b"p/a");
}

/// An agent killed in the middle of a listing: another agent finishes the
/// migration and the counts are still exact.
#[tokio::test(flavor = "multi_thread")]
async fn killed_agent_mid_listing_still_completes_exactly() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let b = make_bucket(&fs, "kill-list").await;
    let want = fill(&fs, &b, 60, 3).await;
    let opts = AgentOpts {
        page_size: 1,
        ack_wait_secs: 2,
        // One flat listing: its pages follow one another.
        list_split_depth: 0,
        ..AgentOpts::default()
    };
    let first = env.spawn_agent(&opts).await;
    env.publish(
        "s3rf.migrate",
        serde_json::json!({"id": "k1", "src": "fs", "dst": "moto", "buckets": [b]}).to_string(),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while first.count_messages("listed page") < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "listing did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.signal(9);
    drop(first);
    let _second = env.spawn_agent(&opts).await;
    let t = wait_complete(&env, "k1").await;
    // Work the killed agent did but never recorded is redone and counted
    // as copied, not as already there (issue #19, F7).
    assert_eq!(
        (t.listed, t.copied, t.skipped, t.dead_lettered),
        (60, 60, 0, 0),
        "{t:#?}"
    );
    assert_eq!(t.buckets[&b].source_pages, 60, "60 one-key pages");
    assert_eq!(bucket_contents(&moto, &b).await, want);
}

/// Listing waits while `max_queued_jobs` copy jobs are queued, and the
/// migration still completes exactly.
#[tokio::test(flavor = "multi_thread")]
async fn listing_pauses_while_enough_jobs_are_queued() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let b = make_bucket(&fs, "backlog").await;
    let want = fill(&fs, &b, 40, 7).await;
    let agent = env
        .spawn_agent(&AgentOpts {
            page_size: 5,
            list_split_depth: 0,
            max_queued_jobs: 3,
            ..AgentOpts::default()
        })
        .await;
    env.publish(
        "s3rf.migrate",
        serde_json::json!({"id": "q1", "src": "fs", "dst": "moto", "buckets": [b]}).to_string(),
    )
    .await;
    let t = wait_complete(&env, "q1").await;
    assert_eq!((t.listed, t.copied, t.dead_lettered), (40, 40, 0), "{t:#?}");
    assert_eq!(t.buckets[&b].source_pages, 8, "40 objects in pages of 5");
    assert_eq!(bucket_contents(&moto, &b).await, want);
    let log = agent.log();
    assert!(
        log.contains("listing paused: enough jobs are queued") && log.contains("\"limit\":3"),
        "{log}"
    );
}

/// A spec reused with different content is refused, naming the id.
#[tokio::test(flavor = "multi_thread")]
async fn conflicting_migration_id_is_dead_lettered() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let b = make_bucket(&fs, "conflict").await;
    let _agent = env.spawn_agent(&AgentOpts::default()).await;
    env.publish(
        "s3rf.migrate",
        serde_json::json!({"id": "c1", "src": "fs", "dst": "moto", "buckets": [b]}).to_string(),
    )
    .await;
    wait_complete(&env, "c1").await;
    env.publish("s3rf.migrate", serde_json::json!({"id": "c1", "src": "fs", "dst": "moto", "buckets": [b], "dry_run": true}).to_string()).await;
    let dead = env.dead_letters(1).await;
    let reason = header(&dead[0], "S3rf-Reason");
    assert!(
        reason.contains("migration c1 already exists with a different spec"),
        "{reason}"
    );
}

/// Without `buckets`, every bucket of the source is migrated except the
/// excluded ones (on a store of its own, so other tests' buckets stay out).
#[tokio::test(flavor = "multi_thread")]
async fn all_buckets_except_excluded() {
    let env = TestEnv::new().await;
    let own = s3rf_testkit::S3Server::start(s3rf_testkit::S3Kind::S3sFs).unwrap();
    let src = own.client();
    let moto = env.moto.client();
    let keep1 = make_bucket(&src, "keep").await;
    let keep2 = make_bucket(&src, "keep").await;
    let tmp = make_bucket(&src, "tmpdata").await;
    for b in [&keep1, &keep2, &tmp] {
        put(&src, b, "k", b.as_bytes().to_vec()).await;
    }
    let opts = AgentOpts {
        extra_toml: format!(
            "[endpoints.own]\nurl = \"{}\"\npath_style = true\naccess_key_id_env = \"T_FS_KEY\"\nsecret_access_key_env = \"T_FS_SECRET\"\n",
            own.url()
        ),
        ..AgentOpts::default()
    };
    let _agent = env.spawn_agent(&opts).await;
    let job = serde_json::json!({"id": "all", "src": "own", "dst": "moto", "exclude_buckets": ["*tmpdata"]});
    env.publish("s3rf.migrate", job.to_string()).await;
    let t = wait_complete(&env, "all").await;
    assert_eq!(t.buckets.keys().cloned().collect::<Vec<_>>(), {
        let mut v = vec![keep1.clone(), keep2.clone()];
        v.sort();
        v
    });
    assert_eq!(t.copied, 2);
    assert_eq!(get(&moto, &keep1, "k").await, keep1.as_bytes());
    assert_eq!(get(&moto, &keep2, "k").await, keep2.as_bytes());
    assert!(
        moto.head_bucket().bucket(&tmp).send().await.is_err(),
        "excluded bucket was created"
    );
}
