//! `s3rf-agent verify` (issue #18): an independent comparison of a
//! destination with its source, run by the fleet page by page.

use std::process::Output;
use std::time::{Duration, Instant};

use futures::StreamExt;
use s3rf_testkit::pattern_bytes;

use crate::harness::*;
use crate::migrate::fill;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn verify(env: &TestEnv, config: &std::path::PathBuf, args: &[&str]) -> Output {
    let mut c = env.agent_command(config);
    c.arg("verify").args(args);
    c.output().unwrap()
}

/// A migration verifies clean, including an object copied in parts (its
/// ETag differs; the recorded source ETag settles it). Then one object is
/// changed, one deleted and one added at the destination behind s3rf's
/// back: each is reported, exactly, and listed; `--repair` fixes them and
/// the next verification is clean.
#[tokio::test(flavor = "multi_thread")]
async fn tampering_is_found_exactly_then_repaired() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let b = make_bucket(&fs, "ver").await;
    let dst = format!("{b}-copy");
    let mut want = fill(&fs, &b, 40, 11).await;
    put(&fs, &b, "big", pattern_bytes(12 * MIB, 5)).await;
    want.insert("big".to_owned(), pattern_bytes(12 * MIB, 5));
    let opts = AgentOpts {
        page_size: 7,
        ..AgentOpts::default()
    };
    let config = env.write_config(&opts);
    let agent = env.spawn_agent(&opts).await;
    let job = serde_json::json!({"id": "vm", "src": "fs", "dst": "fs", "buckets": [b],
        "bucket_map": {b.clone(): dst}});
    env.publish("s3rf.migrate", job.to_string()).await;
    wait_complete_or_explain(&env, "vm", &[&agent]).await;

    let map = format!("{b}={dst}");
    let base = [
        "--src", "fs", "--dst", "fs", "--bucket", &b, "--map", &map, "--wait",
    ];
    let out = verify(&env, &config, &[&["v1"][..], &base[..]].concat());
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}\n{}", agent.log());
    assert!(said.contains("  matching:   41 (0 by size only"), "{said}");
    assert!(
        said.contains("verification v1: everything matches"),
        "{said}"
    );
    assert!(
        said.contains("  pages:      6 in 1 bucket(s)"),
        "41 keys in pages of 7: {said}"
    );

    // Behind s3rf's back: same size, other bytes; gone; added.
    let changed = "dir1/obj-0004";
    let len = want[changed].len();
    put(&fs, &dst, changed, pattern_bytes(len, 999)).await;
    fs.delete_object()
        .bucket(&dst)
        .key("dir2/obj-0005")
        .send()
        .await
        .unwrap();
    put(&fs, &dst, "zz-extra", b"not at the source".to_vec()).await;
    let out = verify(&env, &config, &[&["v2"][..], &base[..]].concat());
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    for line in [
        "  matching:   39 ",
        "  missing:    1 ",
        "  different:  1\n",
        "  extra:      1 ",
        "verification v2: 3 differences",
    ] {
        assert!(said.contains(line), "{line:?} in:\n{said}");
    }
    let out = verify(&env, &config, &["v2", "--list"]);
    let listed = text(&out);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(
        lines,
        [
            format!("different  {b}/{changed} -> {dst}/{changed} (checksum)"),
            format!("missing    {b}/dir2/obj-0005 -> {dst}/dir2/obj-0005"),
            format!("extra      {b}/zz-extra -> {dst}/zz-extra"),
        ],
        "{listed}"
    );
    let out = verify(&env, &config, &["v2", "--repair"]);
    assert!(
        text(&out).contains("v2: published 2 copy and 1 delete jobs"),
        "{}",
        text(&out)
    );
    env.wait_jobs_done().await;
    let out = verify(&env, &config, &[&["v3"][..], &base[..]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(bucket_contents(&fs, &dst).await, want);
    assert_eq!(env.dead_letter_count().await, 0);
}

/// Objects whose ETags cannot be compared (uploaded in parts by another
/// tool, no recorded source ETag) match by size only; `--deep` reads both
/// and tells a true copy from one with other bytes of the same size.
#[tokio::test(flavor = "multi_thread")]
async fn deep_reads_what_checksums_cannot_settle() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let b = make_bucket(&fs, "deep").await;
    let dst = make_bucket(&fs, "deep-dst").await;
    let same = pattern_bytes(5 * MIB + 1000, 1);
    let other = pattern_bytes(5 * MIB + 1000, 2);
    put(&fs, &b, "same", same.clone()).await;
    put(&fs, &b, "other", same.clone()).await;
    put_in_two_parts(&fs, &dst, "same", &same, None, None).await;
    put_in_two_parts(&fs, &dst, "other", &other, None, None).await;
    let opts = AgentOpts::default();
    let config = env.write_config(&opts);
    let _agent = env.spawn_agent(&opts).await;
    let map = format!("{b}={dst}");
    let args = [
        "--src", "fs", "--dst", "fs", "--bucket", &b, "--map", &map, "--wait",
    ];
    let out = verify(&env, &config, &[&["d1"][..], &args[..]].concat());
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("  matching:   2 (2 by size only"), "{said}");
    let out = verify(&env, &config, &[&["d2", "--deep"][..], &args[..]].concat());
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("  matching:   1 (0 by size only"), "{said}");
    assert!(said.contains("  different:  1\n"), "{said}");
    assert!(
        said.contains("  read:       2 objects on both sides"),
        "{said}"
    );
    let listed = text(&verify(&env, &config, &["d2", "--list"]));
    assert_eq!(
        listed.trim(),
        format!("different  {b}/other -> {dst}/other (bytes)")
    );
}

/// `verify --filters` sees the destination as a migration through the
/// same filters made it: a skipped object is left out on both sides (a
/// stale copy at the destination is not extra), a renamed one is compared
/// under its new name, and that name, listed by another page (pages of
/// 2), is not extra. Without `--filters` the same pair reports the renames
/// as missing and extra. Tampering with renamed objects is reported under
/// their new names and repaired through the filters.
#[tokio::test(flavor = "multi_thread")]
async fn filters_are_applied_as_the_migration_applied_them() {
    use crate::filters::{filter_dir, filters_toml, install};
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let b = make_bucket(&fs, "vflt").await;
    let dst = format!("{b}-copy");
    let dir = filter_dir(&env, "verify-filters");
    install(&dir, "skip-glob", "10-skip-glob.wasm");
    std::fs::write(dir.join("10-skip-glob.toml"), "patterns = [\"**.tmp\"]\n").unwrap();
    install(&dir, "rename-prefix", "20-rename-prefix.wasm");
    std::fs::write(
        dir.join("20-rename-prefix.toml"),
        "from = \"raw/\"\nto = \"archive/raw/\"\n",
    )
    .unwrap();
    let body = |i: u64| pattern_bytes(300, i);
    for (i, key) in ["keep/a", "keep/b", "raw/r1", "raw/r2", "tmp/x.tmp"]
        .iter()
        .enumerate()
    {
        put(&fs, &b, key, body(i as u64)).await;
    }
    let port = s3rf_testkit::free_port().unwrap();
    let opts = AgentOpts {
        page_size: 2,
        extra_toml: filters_toml(&dir) + &format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        ..AgentOpts::default()
    };
    let config = env.write_config(&opts);
    let agent = env.spawn_agent(&opts).await;
    let job = serde_json::json!({"id": "fm", "src": "fs", "dst": "fs", "buckets": [b],
        "bucket_map": {b.clone(): dst}});
    env.publish("s3rf.migrate", job.to_string()).await;
    wait_complete_or_explain(&env, "fm", &[&agent]).await;
    // A copy of the skipped object from before the filter existed.
    put(&fs, &dst, "tmp/x.tmp", body(9)).await;

    let map = format!("{b}={dst}");
    let base = [
        "--src", "fs", "--dst", "fs", "--bucket", &b, "--map", &map, "--wait",
    ];
    let with = |id: &'static str| [&[id, "--filters"][..], &base[..]].concat();
    let out = verify(&env, &config, &with("f1"));
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}\n{}", agent.log());
    for line in [
        "  matching:   4 (0 by size only",
        "  extra:      0 ",
        "  filters:    1 skipped (left out on both sides), 2 compared under a new name",
        "verification f1: everything matches",
    ] {
        assert!(said.contains(line), "{line:?} in:\n{said}");
    }
    // Without the filters, the renames are missing and extra, and the stale
    // copy differs.
    let out = verify(&env, &config, &[&["f2"][..], &base[..]].concat());
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    for line in ["  missing:    2 ", "  different:  1\n", "  extra:      2 "] {
        assert!(said.contains(line), "{line:?} in:\n{said}");
    }

    // Behind s3rf's back: a renamed object changed, another deleted, and
    // an object no source maps to added among the renamed ones.
    put(&fs, &dst, "archive/raw/r2", body(99)).await;
    fs.delete_object()
        .bucket(&dst)
        .key("archive/raw/r1")
        .send()
        .await
        .unwrap();
    put(&fs, &dst, "archive/raw/zz", body(7)).await;
    let out = verify(&env, &config, &with("f3"));
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    for line in [
        "  matching:   2 ",
        "  missing:    1 ",
        "  different:  1\n",
        "  extra:      1 ",
        "2 compared under a new name",
    ] {
        assert!(said.contains(line), "{line:?} in:\n{said}");
    }
    let listed = text(&verify(&env, &config, &["f3", "--list"]));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(
        lines,
        [
            format!("extra      {b}/archive/raw/zz -> {dst}/archive/raw/zz"),
            format!("missing    {b}/raw/r1 -> {dst}/archive/raw/r1"),
            format!("different  {b}/raw/r2 -> {dst}/archive/raw/r2 (checksum)"),
        ],
        "{listed}"
    );
    let out = verify(&env, &config, &["f3", "--repair"]);
    assert!(
        text(&out).contains("f3: published 2 copy and 1 delete jobs"),
        "{}",
        text(&out)
    );
    env.wait_jobs_done().await;
    let out = verify(&env, &config, &with("f4"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let want: std::collections::BTreeMap<String, Vec<u8>> = [
        ("archive/raw/r1", body(2)),
        ("archive/raw/r2", body(3)),
        ("keep/a", body(0)),
        ("keep/b", body(1)),
        ("tmp/x.tmp", body(9)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(bucket_contents(&fs, &dst).await, want);
    assert_eq!(env.dead_letter_count().await, 0);
    // Three verifications with the filters, one without: each page counted
    // once in /metrics.
    let (status, metrics) =
        tokio::task::spawn_blocking(move || crate::lifecycle::http_get(port, "/metrics"))
            .await
            .unwrap();
    assert_eq!(status, 200);
    for (result, n) in [("renamed", 6), ("filtered", 3), ("missing", 3)] {
        let line = format!("s3rf_verified_objects_total{{result=\"{result}\"}} {n}\n");
        assert!(metrics.contains(&line), "{line:?} in:\n{metrics}");
    }
}

/// Puts `n` small objects `k<i>` into `bucket`, 64 at a time.
async fn put_many(s3: &aws_sdk_s3::Client, bucket: &str, n: usize) {
    futures::stream::iter(0..n)
        .for_each_concurrent(64, |i| {
            let s3 = s3.clone();
            async move {
                put(
                    &s3,
                    bucket,
                    &format!("k{i:06}"),
                    format!("object {i}").into_bytes(),
                )
                .await;
            }
        })
        .await;
}

/// Verifying ten times as many objects takes no more agent memory: one
/// page of each side is held, whatever the bucket's size. CI compares
/// 1,000 with 10,000 objects; `S3RF_VERIFY_OBJECTS=50000` runs 5,000
/// against 50,000 (about 8 minutes here, most of it s3s-fs listing: each
/// of its ListObjectsV2 calls takes longer as the bucket grows).
#[tokio::test(flavor = "multi_thread")]
async fn a_large_verification_keeps_agent_memory_flat() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let opts = AgentOpts::default();
    let config = env.write_config(&opts);
    let large: usize = std::env::var("S3RF_VERIFY_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut rss = Vec::new();
    for (n, tag) in [(large / 10, "flat-small"), (large, "flat-large")] {
        let b = make_bucket(&fs, tag).await;
        let dst = make_bucket(&fs, &format!("{tag}-dst")).await;
        let filled = Instant::now();
        put_many(&fs, &b, n).await;
        put_many(&fs, &dst, n).await;
        let filled = filled.elapsed();
        let agent = env.spawn_agent(&opts).await;
        let map = format!("{b}={dst}");
        let t = Instant::now();
        let out = verify(
            &env,
            &config,
            &[
                tag, "--src", "fs", "--dst", "fs", "--bucket", &b, "--map", &map, "--wait",
            ],
        );
        let took = t.elapsed();
        let said = text(&out);
        assert_eq!(out.status.code(), Some(0), "{said}\n{}", agent.log());
        assert!(
            said.contains(&format!("  matching:   {n} (0 by size only")),
            "{said}"
        );
        let peak = agent.peak_rss_kib();
        fault_summary(&format!(
            "verify: {n} objects in {:.1} s ({:.0} objects/s), agent peak RSS {} MiB (filling both sides took {:.0} s)",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64(),
            peak / 1024,
            filled.as_secs_f64()
        ));
        rss.push(peak);
        drop(agent);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        rss[1] <= rss[0] + rss[0] / 4 + 8 * 1024,
        "peak RSS {} KiB for {large} objects against {} KiB for {}",
        rss[1],
        rss[0],
        large / 10
    );
}
