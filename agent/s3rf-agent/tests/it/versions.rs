//! Versioned migrations on moto, which implements versioning: every version
//! of every key, oldest first, delete markers in place, each version with
//! its own attributes and tags; re-runs copy only what the destination
//! lacks; an unversioned destination bucket is refused.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use s3rf_agent::migration::BucketState;
use s3rf_testkit::proxy::{FaultProxy, Op};
use s3rf_testkit::{pattern_bytes, unique_bucket};

use crate::faults::proxied_endpoint;
use crate::harness::*;

/// One entry of a key's history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A delete marker.
    Marker,
    /// An object version: its source version id, bytes, content type and
    /// tag value.
    Object {
        source_id: String,
        body: Vec<u8>,
        content_type: String,
        tag: String,
    },
}

async fn versioned_bucket(s3: &aws_sdk_s3::Client, tag: &str) -> String {
    let b = make_bucket(s3, tag).await;
    s3.put_bucket_versioning()
        .bucket(&b)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("enable versioning");
    b
}

async fn put_version(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    n: usize,
) -> Entry {
    let content_type = format!("text/v{n}");
    let tag = format!("v{n}");
    let out = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type(&content_type)
        .tagging(format!("version={tag}"))
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    Entry::Object {
        source_id: out.version_id().expect("a version id").to_owned(),
        body,
        content_type,
        tag,
    }
}

/// A version written as a two-part multipart upload (5 MiB + 1 MiB).
async fn put_multipart_version(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Entry {
    let body = pattern_bytes(6 * MIB + 17, 42);
    put_in_two_parts(
        s3,
        bucket,
        key,
        &body,
        Some("text/multipart"),
        Some("version=mp"),
    )
    .await;
    let head = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("head");
    assert!(
        head.e_tag().is_some_and(|e| e.contains("-2")),
        "a multipart ETag: {:?}",
        head.e_tag()
    );
    Entry::Object {
        source_id: head.version_id().expect("a version id").to_owned(),
        body,
        content_type: "text/multipart".to_owned(),
        tag: "mp".to_owned(),
    }
}

/// A delete marker. moto lists all versions before all markers and dates
/// them to the second, so its listing orders a marker only by its
/// second: the writes around one are a second apart.
async fn delete_version(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Entry {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = s3
        .delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("delete");
    assert_eq!(out.delete_marker(), Some(true));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    Entry::Marker
}

/// `key`'s history at `bucket`, oldest first, each object version read
/// back: bytes, recorded source version, content type and tag. The object
/// versions' order is the listing's; moto lists all delete markers after
/// them and dates everything to the second, so where the markers go is
/// read from the order of the writes through `proxy`.
async fn history(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    proxy: &FaultProxy,
) -> Vec<Entry> {
    let out = s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(key)
        .send()
        .await
        .expect("list versions");
    assert_eq!(out.is_truncated(), Some(false));
    let mut objects: Vec<String> = out
        .versions()
        .iter()
        .filter(|v| v.key() == Some(key))
        .map(|v| v.version_id().unwrap().to_owned())
        .collect();
    objects.reverse();
    let markers = out
        .delete_markers()
        .iter()
        .filter(|m| m.key() == Some(key))
        .count();
    let path = format!("/{bucket}/{key}");
    let writes: Vec<bool> = proxy
        .requests()
        .into_iter()
        .filter(|(_, p)| *p == path)
        .filter_map(|(op, _)| match op {
            Op::PutObject | Op::CopyObject | Op::CompleteMultipartUpload => Some(false),
            Op::DeleteObject => Some(true),
            _ => None,
        })
        .collect();
    assert_eq!(
        (
            writes.iter().filter(|m| !**m).count(),
            writes.iter().filter(|m| **m).count()
        ),
        (objects.len(), markers),
        "one write through the proxy per version of {key}: {writes:?}"
    );
    let mut objects = objects.into_iter();
    let all: Vec<(String, bool)> = writes
        .into_iter()
        .map(|marker| {
            if marker {
                (String::new(), true)
            } else {
                (objects.next().unwrap_or_default(), false)
            }
        })
        .collect();
    let mut entries = Vec::new();
    for (id, marker) in all {
        if marker {
            entries.push(Entry::Marker);
            continue;
        }
        let got = s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .version_id(&id)
            .send()
            .await
            .expect("get version");
        let source_id = got
            .metadata()
            .and_then(|m| m.get("s3rf-source-version-id"))
            .cloned()
            .unwrap_or_else(|| format!("(none: destination version {id})"));
        let content_type = got.content_type().unwrap_or("").to_owned();
        let body = got.body.collect().await.unwrap().to_vec();
        let tags = s3
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .version_id(&id)
            .send()
            .await
            .expect("get tags");
        let tag = tags
            .tag_set()
            .iter()
            .find(|t| t.key() == "version")
            .map(|t| t.value().to_owned())
            .unwrap_or_default();
        entries.push(Entry::Object {
            source_id,
            body,
            content_type,
            tag,
        });
    }
    entries
}

fn describe(h: &[Entry]) -> Vec<String> {
    h.iter()
        .map(|e| match e {
            Entry::Marker => "marker".to_owned(),
            Entry::Object {
                source_id,
                body,
                content_type,
                tag,
            } => format!("{source_id} {} bytes {content_type} {tag}", body.len()),
        })
        .collect()
}

async fn migrate(env: &TestEnv, id: &str, src: &str, dst: &str) -> s3rf_agent::migration::Tally {
    let job = serde_json::json!({
        "id": id, "src": "moto", "dst": "vdst", "buckets": [src],
        "bucket_map": {src: dst}, "versions": true,
    });
    env.publish("s3rf.migrate", job.to_string()).await;
    wait_complete(env, id).await
}

/// 3 keys × 4 versions (a delete marker in the middle of one, a multipart
/// version in another, two versions with the same bytes in the third),
/// listed 5 entries a page so two keys run over a page boundary, migrated
/// by two agents across endpoints. Then a re-run with nothing to do, one
/// new version and a re-run that copies exactly it, and an unversioned
/// destination refused.
#[tokio::test(flavor = "multi_thread")]
async fn every_version_migrates_in_order_and_reruns_copy_only_what_is_new() {
    let env = TestEnv::new().await;
    let s3 = env.moto.client();
    let src = versioned_bucket(&s3, "ver-src").await;
    let dst = unique_bucket("ver-dst");
    let mut want: Vec<(&str, Vec<Entry>)> = Vec::new();
    let a = vec![
        put_version(&s3, &src, "a", pattern_bytes(100, 1), 1).await,
        put_version(&s3, &src, "a", pattern_bytes(200, 2), 2).await,
        delete_version(&s3, &src, "a").await,
        put_version(&s3, &src, "a", pattern_bytes(300, 3), 3).await,
    ];
    want.push(("a", a));
    let b = vec![
        put_version(&s3, &src, "b/x", pattern_bytes(10, 4), 1).await,
        put_multipart_version(&s3, &src, "b/x").await,
        put_version(&s3, &src, "b/x", pattern_bytes(0, 5), 3).await,
        put_version(&s3, &src, "b/x", pattern_bytes(4096, 6), 4).await,
    ];
    want.push(("b/x", b));
    let same = pattern_bytes(777, 7);
    let c = vec![
        put_version(&s3, &src, "c", pattern_bytes(50, 8), 1).await,
        put_version(&s3, &src, "c", same.clone(), 2).await,
        put_version(&s3, &src, "c", same, 3).await,
        put_version(&s3, &src, "c", pattern_bytes(60, 9), 4).await,
    ];
    want.push(("c", c));

    // The destination endpoint goes through a proxy that logs the writes.
    let proxy = FaultProxy::start(&env.moto.url()).expect("proxy");
    let opts = AgentOpts {
        page_size: 5,
        extra_toml: proxied_endpoint("vdst", &proxy, "T_MOTO"),
        ..AgentOpts::default()
    };
    let a1 = env.spawn_agent(&opts).await;
    let a2 = env.spawn_agent(&opts).await;

    let t = wait_complete_or_explain_versions(&env, "v1", &src, &dst, &[&a1, &a2]).await;
    assert_eq!(
        (t.listed, t.copied, t.markers, t.skipped, t.dead_lettered),
        (3, 11, 1, 0, 0),
        "3 keys, 11 versions and 1 delete marker: {t:#?}"
    );
    assert!(t.versions);
    assert_eq!(t.buckets[&src].state, Some(BucketState::Created));
    // moto's answer has a root element the SDK refuses; its body says.
    let versioning = match s3.get_bucket_versioning().bucket(&dst).send().await {
        Ok(v) => v.status().map(|s| s.as_str().to_owned()),
        Err(e) => e
            .raw_response()
            .and_then(|r| r.body().bytes())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .filter(|b| b.contains("<Status>Enabled</Status>"))
            .map(|_| "Enabled".to_owned()),
    };
    assert_eq!(
        versioning.as_deref(),
        Some("Enabled"),
        "versioning on {dst}"
    );
    for (key, history_want) in &want {
        let got = history(&s3, &dst, key, &proxy).await;
        assert_eq!(
            describe(&got),
            describe(history_want),
            "history of {key}, oldest first"
        );
        assert_eq!(&got, history_want, "bytes of {key}'s versions");
    }
    let logs = a1.log() + &a2.log();
    assert!(
        logs.contains("listed versions page"),
        "the versioned listing ran"
    );

    // Nothing new: nothing copied.
    let t = migrate(&env, "v2", &src, &dst).await;
    assert_eq!(
        (t.listed, t.copied, t.markers, t.skipped, t.dead_lettered),
        (3, 0, 0, 12, 0),
        "{t:#?}"
    );

    // One new version: exactly it.
    let v5 = put_version(&s3, &src, "a", pattern_bytes(500, 10), 5).await;
    want[0].1.push(v5);
    let t = migrate(&env, "v3", &src, &dst).await;
    assert_eq!(
        (t.listed, t.copied, t.markers, t.skipped, t.dead_lettered),
        (3, 1, 0, 12, 0),
        "{t:#?}"
    );
    assert_eq!(
        describe(&history(&s3, &dst, "a", &proxy).await),
        describe(&want[0].1)
    );

    // An unversioned destination bucket is refused, with what to do.
    let plain = make_bucket(&s3, "ver-plain").await;
    let t = migrate(&env, "v4", &src, &plain).await;
    assert_eq!(t.buckets[&src].state, Some(BucketState::Failed));
    let reason = t.buckets[&src].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("is not versioned") && reason.contains("put-bucket-versioning"),
        "{reason}"
    );
    assert_eq!(t.copied, 0);
    let held = s3
        .list_object_versions()
        .bucket(&plain)
        .send()
        .await
        .unwrap();
    assert!(held.versions().is_empty(), "nothing written to it");
}

async fn wait_complete_or_explain_versions(
    env: &TestEnv,
    id: &str,
    src: &str,
    dst: &str,
    agents: &[&Agent],
) -> s3rf_agent::migration::Tally {
    let job = serde_json::json!({
        "id": id, "src": "moto", "dst": "vdst", "buckets": [src],
        "bucket_map": {src: dst}, "versions": true,
    });
    env.publish("s3rf.migrate", job.to_string()).await;
    wait_complete_or_explain(env, id, agents).await
}
