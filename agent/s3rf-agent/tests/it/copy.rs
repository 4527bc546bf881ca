//! Copies that succeed: sizes around the thresholds, attributes, tags, special
//! keys, and re-runs that skip.

use std::collections::HashMap;

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use s3rf_testkit::pattern_bytes;

use crate::harness::*;

const SIZES: &[(&str, usize)] = &[
    ("empty", 0),
    ("one-byte", 1),
    ("at-threshold", 5 * MIB),
    ("threshold-plus-one", 5 * MIB + 1),
    ("three-parts-short-last", 12 * MIB),
];

/// Between two vendors: s3s-fs → moto and moto → s3s-fs, every size class.
#[tokio::test(flavor = "multi_thread")]
async fn cross_vendor_copies_are_byte_exact_at_every_size() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let fs_bucket = make_bucket(&fs, "xv-fs").await;
    let moto_bucket = make_bucket(&moto, "xv-moto").await;
    let agent = env.spawn_agent(&AgentOpts::default()).await;
    for (i, (name, size)) in SIZES.iter().enumerate() {
        let body = pattern_bytes(*size, i as u64 + 1);
        put(&fs, &fs_bucket, &format!("from-fs/{name}"), body.clone()).await;
        put(&moto, &moto_bucket, &format!("from-moto/{name}"), body).await;
        env.publish_copy(
            ("fs", &fs_bucket, &format!("from-fs/{name}")),
            ("moto", &moto_bucket, None),
        )
        .await;
        env.publish_copy(
            ("moto", &moto_bucket, &format!("from-moto/{name}")),
            ("fs", &fs_bucket, None),
        )
        .await;
    }
    env.wait_jobs_done().await;
    for (i, (name, size)) in SIZES.iter().enumerate() {
        let want = pattern_bytes(*size, i as u64 + 1);
        let at_moto = get(&moto, &moto_bucket, &format!("from-fs/{name}")).await;
        assert!(
            at_moto == want,
            "{name}: fs → moto differs ({} bytes)",
            at_moto.len()
        );
        let at_fs = get(&fs, &fs_bucket, &format!("from-moto/{name}")).await;
        assert!(
            at_fs == want,
            "{name}: moto → fs differs ({} bytes)",
            at_fs.len()
        );
    }
    // Above the threshold the streamed multipart path ran, and cleaned up.
    assert_eq!(
        agent.count_messages("copied"),
        2 * SIZES.len(),
        "{}",
        agent.log()
    );
    assert_eq!(agent.count_messages("skipped: identical"), 0);
    assert!(agent.log().contains("\"method\":\"streamed_multipart\""));
    assert!(agent.log().contains("\"method\":\"put\""));
    // The 5 MiB single PUTs (above 1 MiB) were piped from their GET through
    // the read-ahead window, both ways.
    assert_eq!(
        agent.count_messages("piping the GET into the PUT"),
        2,
        "{}",
        agent.log()
    );
    assert_eq!(
        open_uploads(&moto, &moto_bucket).await,
        Vec::<String>::new()
    );
    assert_eq!(env.dead_letter_count().await, 0, "{}", agent.log());
}

async fn put_with_attributes(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: Vec<u8>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .content_type("image/x-test")
        .content_encoding("identity")
        .content_disposition("attachment; filename=\"x y.bin\"")
        .content_language("de-CH")
        .cache_control("max-age=3600, private")
        .expires(DateTime::from_secs(2_000_000_000))
        .metadata("owner", "team-a")
        .metadata("note", "hello world")
        .tagging("class=gold&project=s3rf%20tests")
        .send()
        .await
        .expect("put with attributes");
}

async fn assert_attributes(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) {
    let h = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("head");
    assert_eq!(h.content_type(), Some("image/x-test"), "{key}");
    assert_eq!(h.content_encoding(), Some("identity"), "{key}");
    assert_eq!(
        h.content_disposition(),
        Some("attachment; filename=\"x y.bin\""),
        "{key}"
    );
    assert_eq!(h.content_language(), Some("de-CH"), "{key}");
    assert_eq!(h.cache_control(), Some("max-age=3600, private"), "{key}");
    let expires = h.expires_string().unwrap_or_default();
    assert!(expires.contains("2033"), "{key}: expires {expires:?}");
    let meta = h.metadata().cloned().unwrap_or_default();
    assert_eq!(
        meta.get("owner").map(String::as_str),
        Some("team-a"),
        "{key}: {meta:?}"
    );
    assert_eq!(
        meta.get("note").map(String::as_str),
        Some("hello world"),
        "{key}: {meta:?}"
    );
    let tags: HashMap<String, String> = s3
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("tags")
        .tag_set()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    assert_eq!(
        tags.get("class").map(String::as_str),
        Some("gold"),
        "{key}: {tags:?}"
    );
    assert_eq!(
        tags.get("project").map(String::as_str),
        Some("s3rf tests"),
        "{key}: {tags:?}"
    );
}

/// Attributes and tags survive every method: CopyObject and UploadPartCopy on
/// one endpoint, PUT and streamed multipart across endpoints (moto → moto2).
#[tokio::test(flavor = "multi_thread")]
async fn attributes_and_tags_survive_every_method() {
    let env = TestEnv::new().await;
    let moto = env.moto.client();
    let src = make_bucket(&moto, "attr-src").await;
    let dst = make_bucket(&moto, "attr-dst").await;
    put_with_attributes(&moto, &src, "small", pattern_bytes(1000, 7)).await;
    put_with_attributes(&moto, &src, "large", pattern_bytes(11 * MIB, 8)).await;
    let agent = env.spawn_agent(&AgentOpts::default()).await;
    for key in ["small", "large"] {
        env.publish_copy(
            ("moto", &src, key),
            ("moto", &dst, Some(&format!("same/{key}"))),
        )
        .await;
        env.publish_copy(
            ("moto", &src, key),
            ("moto2", &dst, Some(&format!("cross/{key}"))),
        )
        .await;
    }
    env.wait_jobs_done().await;
    let log = agent.log();
    for method in [
        "server_side_copy",
        "server_side_multipart",
        "put",
        "streamed_multipart",
    ] {
        assert!(
            log.contains(&format!("\"method\":\"{method}\"")),
            "{method} not used:\n{log}"
        );
    }
    for key in ["same/small", "same/large", "cross/small", "cross/large"] {
        assert_attributes(&moto, &dst, key).await;
    }
    assert_eq!(
        get(&moto, &dst, "same/large").await,
        pattern_bytes(11 * MIB, 8)
    );
    assert_eq!(
        get(&moto, &dst, "cross/large").await,
        pattern_bytes(11 * MIB, 8)
    );
    assert_eq!(open_uploads(&moto, &dst).await, Vec::<String>::new());
}

/// Listing hints (`listed_size`, `dst_bucket_new`): a small object across
/// endpoints is read with one GET whose headers stand in for the HEAD, and
/// still arrives with every attribute and tag; an untagged one gets none; one
/// that grew past the single-PUT limit since it was listed is copied in
/// parts; `dst_bucket_new` skips the destination HEAD on a first delivery
/// (an identical object is overwritten, not compared), and without it the
/// same copy is skipped as identical.
#[tokio::test(flavor = "multi_thread")]
async fn listing_hints_read_small_objects_once_and_lose_nothing() {
    let env = TestEnv::new().await;
    let moto = env.moto.client();
    let src = make_bucket(&moto, "hint-src").await;
    let dst = make_bucket(&moto, "hint-dst").await;
    put_with_attributes(&moto, &src, "tagged", pattern_bytes(1000, 21)).await;
    put(&moto, &src, "plain", pattern_bytes(2000, 22)).await;
    put(&moto, &src, "grown", pattern_bytes(7 * MIB, 23)).await;
    put(&moto, &src, "existing", pattern_bytes(3000, 24)).await;
    put(&moto, &dst, "existing", pattern_bytes(3000, 24)).await;
    let agent = env.spawn_agent(&AgentOpts::default()).await;
    let job = |key: &str, listed: u64, new_bucket: bool| {
        serde_json::json!({
            "src": {"endpoint": "moto", "bucket": src, "key": key},
            "dst": {"endpoint": "moto2", "bucket": dst},
            "listed_size": listed,
            "dst_bucket_new": new_bucket,
            // The hints are a migration listing's; only its jobs carry them.
            "migration": "m-hints",
        })
        .to_string()
    };
    for (key, listed) in [("tagged", 1000), ("plain", 2000), ("grown", 1000)] {
        env.publish("s3rf.copy", job(key, listed, false)).await;
    }
    env.publish("s3rf.copy", job("existing", 3000, true)).await;
    // Within one endpoint into a new bucket: one CopyObject as listed, or,
    // when the listed ETag is stale, the usual path.
    let etag = moto
        .head_object()
        .bucket(&src)
        .key("tagged")
        .send()
        .await
        .expect("head")
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned();
    // A listing without ETags (s3s-fs) gives an unconditional CopyObject.
    for (to, listed_etag) in [
        ("as-listed", Some(etag.as_str())),
        ("stale", Some("0123456789abcdef")),
        ("unlisted-etag", None),
    ] {
        let same = serde_json::json!({
            "src": {"endpoint": "moto", "bucket": src, "key": "tagged"},
            "dst": {"endpoint": "moto", "bucket": dst, "key": to},
            "listed_size": 1000,
            "listed_etag": listed_etag,
            "dst_bucket_new": true,
            "migration": "m-hints",
        });
        env.publish("s3rf.copy", same.to_string()).await;
    }
    env.wait_jobs_done().await;
    env.publish("s3rf.copy", job("existing", 3000, false)).await;
    env.wait_jobs_done().await;

    assert_attributes(&moto, &dst, "tagged").await;
    for to in ["as-listed", "stale", "unlisted-etag"] {
        assert_attributes(&moto, &dst, to).await;
        assert_eq!(get(&moto, &dst, to).await, pattern_bytes(1000, 21), "{to}");
    }
    assert_eq!(get(&moto, &dst, "tagged").await, pattern_bytes(1000, 21));
    assert_eq!(get(&moto, &dst, "plain").await, pattern_bytes(2000, 22));
    let plain_tags = moto
        .get_object_tagging()
        .bucket(&dst)
        .key("plain")
        .send()
        .await
        .expect("tags");
    assert!(plain_tags.tag_set().is_empty(), "{plain_tags:?}");
    assert_eq!(get(&moto, &dst, "grown").await, pattern_bytes(7 * MIB, 23));
    assert_eq!(open_uploads(&moto, &dst).await, Vec::<String>::new());
    let log = agent.log();
    let lines = |key: &str, what: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("\"src_key\":\"{key}\"")) && l.contains(what))
            .count()
    };
    let copied_in_parts = "\"message\":\"copied\",\"method\":\"streamed_multipart\"";
    assert_eq!(lines("grown", copied_in_parts), 1, "{log}");
    assert_eq!(lines("existing", "\"message\":\"copied\""), 1, "{log}");
    assert_eq!(lines("existing", "skipped: identical"), 1, "{log}");
    let fell_back = |key: &str| {
        log.lines()
            .filter(|l| {
                l.contains(&format!("\"key\":\"{key}\""))
                    && l.contains("copy as listed did not apply")
            })
            .count()
    };
    // moto ignores x-amz-copy-source-if-match, so a stale ETag may copy the
    // current object directly or fall back; either way the bytes and
    // attributes above are the source's as it is now.
    assert_eq!(fell_back("as-listed"), 0, "{log}");
    assert_eq!(fell_back("unlisted-etag"), 0, "{log}");
    let copied_server_side = "\"message\":\"copied\",\"method\":\"server_side_copy\"";
    assert_eq!(lines("tagged", copied_server_side), 3, "{log}");
    assert_eq!(env.dead_letter_count().await, 0);
}

/// Keys that break naive copy-source handling. On moto, because s3s-fs stores
/// `+` as a space.
#[tokio::test(flavor = "multi_thread")]
async fn special_keys_round_trip() {
    let env = TestEnv::new().await;
    let moto = env.moto.client();
    let src = make_bucket(&moto, "keys-src").await;
    let dst = make_bucket(&moto, "keys-dst").await;
    let long = format!(
        "{}/{}/{}/end",
        "a".repeat(250),
        "b".repeat(250),
        "ü".repeat(120)
    );
    let keys = vec![
        "with space.txt".to_owned(),
        "plus+sign".to_owned(),
        "percent%20literal%".to_owned(),
        "ünïcødé/日本語/emoji-✓".to_owned(),
        "q?x=1&y=#frag".to_owned(),
        "dir//double/slash".to_owned(),
        long,
    ];
    for (i, k) in keys.iter().enumerate() {
        put(&moto, &src, k, pattern_bytes(100 + i, i as u64)).await;
    }
    let _agent = env.spawn_agent(&AgentOpts::default()).await;
    for k in &keys {
        env.publish_copy(("moto", &src, k), ("moto", &dst, None))
            .await; // CopyObject
        env.publish_copy(("moto", &src, k), ("moto2", &dst, Some(&format!("x/{k}"))))
            .await; // GET+PUT
    }
    env.wait_jobs_done().await;
    assert_eq!(env.dead_letter_count().await, 0);
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            get(&moto, &dst, k).await,
            pattern_bytes(100 + i, i as u64),
            "{k}"
        );
        assert_eq!(
            get(&moto, &dst, &format!("x/{k}")).await,
            pattern_bytes(100 + i, i as u64),
            "x/{k}"
        );
    }
}

/// A second run finds identical objects and copies nothing, for single-part
/// and multipart copies alike; a changed source is copied again.
#[tokio::test(flavor = "multi_thread")]
async fn rerun_skips_identical_and_recopies_changed() {
    let env = TestEnv::new().await;
    let moto = env.moto.client();
    let fs = env.fs.client();
    let src = make_bucket(&fs, "rerun-src").await;
    let dst = make_bucket(&moto, "rerun-dst").await;
    put(&fs, &src, "small", pattern_bytes(10, 1)).await;
    put(&fs, &src, "big", pattern_bytes(7 * MIB, 2)).await;
    let agent = env.spawn_agent(&AgentOpts::default()).await;
    for k in ["small", "big"] {
        env.publish_copy(("fs", &src, k), ("moto", &dst, None))
            .await;
    }
    env.wait_jobs_done().await;
    assert_eq!(agent.count_messages("copied"), 2);
    let first = moto
        .head_object()
        .bucket(&dst)
        .key("big")
        .send()
        .await
        .unwrap();

    for k in ["small", "big"] {
        env.publish_copy(("fs", &src, k), ("moto", &dst, None))
            .await;
    }
    env.wait_jobs_done().await;
    assert_eq!(
        agent.count_messages("skipped: identical"),
        2,
        "{}",
        agent.log()
    );
    assert_eq!(agent.count_messages("copied"), 2);
    let second = moto
        .head_object()
        .bucket(&dst)
        .key("big")
        .send()
        .await
        .unwrap();
    assert_eq!(first.e_tag(), second.e_tag());
    assert_eq!(first.last_modified(), second.last_modified());

    put(&fs, &src, "small", pattern_bytes(10, 99)).await; // same size, new bytes
    env.publish_copy(("fs", &src, "small"), ("moto", &dst, None))
        .await;
    env.wait_jobs_done().await;
    assert_eq!(agent.count_messages("copied"), 3);
    assert_eq!(get(&moto, &dst, "small").await, pattern_bytes(10, 99));
}

/// Delete jobs remove the object; deleting what is gone succeeds too.
#[tokio::test(flavor = "multi_thread")]
async fn delete_jobs_are_idempotent() {
    let env = TestEnv::new().await;
    let moto = env.moto.client();
    let b = make_bucket(&moto, "del").await;
    put(&moto, &b, "doomed key+1", b"x".to_vec()).await;
    let agent = env.spawn_agent(&AgentOpts::default()).await;
    for _ in 0..2 {
        let job =
            serde_json::json!({"dst": {"endpoint": "moto", "bucket": b, "key": "doomed key+1"}});
        env.publish("s3rf.delete", job.to_string()).await;
    }
    env.wait_jobs_done().await;
    assert!(!exists(&moto, &b, "doomed key+1").await);
    assert_eq!(agent.count_messages("deleted"), 2);
    assert_eq!(env.dead_letter_count().await, 0);
}

/// Tags on a source whose destination cannot hold them are reported, not lost silently.
#[tokio::test(flavor = "multi_thread")]
async fn dropped_tags_are_logged() {
    let env = TestEnv::new().await;
    let moto = env.moto.client();
    let fs = env.fs.client();
    let src = make_bucket(&moto, "tag-src").await;
    let dst = make_bucket(&fs, "tag-dst").await;
    moto.put_object()
        .bucket(&src)
        .key("k")
        .body(ByteStream::from(b"tagged".to_vec()))
        .tagging("a=b")
        .send()
        .await
        .unwrap();
    let agent = env.spawn_agent(&AgentOpts::default()).await;
    env.publish_copy(("moto", &src, "k"), ("fs", &dst, None))
        .await;
    env.wait_jobs_done().await;
    assert_eq!(get(&fs, &dst, "k").await, b"tagged");
    assert!(
        agent.log().contains("cannot hold object tags"),
        "{}",
        agent.log()
    );
}
