//! End-to-end integrity: a fault proxy flips one bit in a body, and the copy
//! must still end byte-exact (after a retry), or in a dead letter that says
//! the bytes did not match, never in a corrupt object at the destination.

use s3rf_testkit::pattern_bytes;
use s3rf_testkit::proxy::{Fault, FaultProxy, Op, Rule};

use crate::faults::proxied_endpoint;
use crate::harness::*;

/// One object of each copy path (whole single PUT, piped single PUT,
/// streamed multipart), each with one bit flipped once: in the request body
/// on the way to the destination (`w-*`) or in the response body on the way
/// from the source (`r-*`, the multipart one in a ranged part's GET). Every
/// copy ends byte-exact, with no dead letter, and the agent said why it
/// retried.
#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_bit_in_any_body_is_caught_and_the_copy_retried() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let src = make_bucket(&fs, "flip-src").await;
    let dst = make_bucket(&fs, "flip-dst").await;
    let proxy = FaultProxy::start(&env.fs.url()).expect("proxy");
    let objects = [
        ("w-small", 4 * 1024),
        ("w-3mib", 3 * MIB),
        ("w-multi", 12 * MIB),
        ("r-small", 4 * 1024),
        ("r-3mib", 3 * MIB),
        ("r-multi", 12 * MIB),
    ];
    for (i, (key, size)) in objects.iter().enumerate() {
        put(&fs, &src, key, pattern_bytes(*size, 70 + i as u64)).await;
    }
    proxy.add(Rule::first(Op::PutObject, Fault::FlipRequestBody, 1).on_path("w-small"));
    proxy.add(Rule::first(Op::PutObject, Fault::FlipRequestBody, 1).on_path("w-3mib"));
    proxy.add(Rule::first(Op::UploadPart, Fault::FlipRequestBody, 1).on_path("w-multi"));
    proxy.add(
        Rule::first(Op::GetObject, Fault::FlipResponseBody, 1)
            .ranged(false)
            .on_path("r-small"),
    );
    proxy.add(
        Rule::first(Op::GetObject, Fault::FlipResponseBody, 1)
            .ranged(false)
            .on_path("r-3mib"),
    );
    proxy.add(
        Rule::first(Op::GetObject, Fault::FlipResponseBody, 1)
            .ranged(true)
            .on_path("r-multi"),
    );
    let opts = AgentOpts {
        extra_toml: proxied_endpoint("fsx", &proxy, "T_FS"),
        ..AgentOpts::default()
    };
    let agent = env.spawn_agent(&opts).await;
    for (key, _) in &objects {
        // Writes go through the proxy; reads come through it.
        if key.starts_with('w') {
            env.publish_copy(("fs", &src, key), ("fsx", &dst, None))
                .await;
        } else {
            env.publish_copy(("fsx", &src, key), ("fs", &dst, None))
                .await;
        }
    }
    env.wait_jobs_done().await;
    for (i, (key, size)) in objects.iter().enumerate() {
        let got = get(&fs, &dst, key).await;
        assert!(
            got == pattern_bytes(*size, 70 + i as u64),
            "{key}: the destination differs ({} bytes); log:\n{}",
            got.len(),
            agent.log()
        );
    }
    assert_eq!(
        proxy.injected(Op::PutObject),
        2,
        "{}",
        proxy.injected_summary()
    );
    assert_eq!(proxy.injected(Op::UploadPart), 1);
    assert_eq!(proxy.injected(Op::GetObject), 3);
    assert_eq!(env.dead_letter_count().await, 0, "{}", agent.log());
    fault_summary(&format!(
        "integrity: {} bit flips injected (PUT, part, whole GET, ranged GET), {} objects byte-exact after retry",
        proxy.injected_total(),
        objects.len()
    ));
    let log = agent.log();
    // A flip in a ranged part's GET is caught by s3rf's own MD5 of the
    // parts, in order, before the upload is completed.
    let read_mismatches = log
        .lines()
        .filter(|l| l.contains("the bytes read from the source did not match"))
        .count();
    assert!(
        read_mismatches >= 1,
        "{read_mismatches} read mismatches; log:\n{log}"
    );
    // Every other flip is refused by the destination, which checks each
    // body against its Content-MD5 (for a single PUT, the source's MD5: the
    // read and the write at once), or caught by the ETag comparison.
    let caught = log
        .lines()
        .filter(|l| l.contains("did not match") || l.contains("BadDigest"))
        .count();
    assert!(caught >= 6, "{caught} flips caught; log:\n{log}");
}

/// A link that corrupts every attempt: the copies end in dead letters that
/// say the bytes did not match, and nothing corrupt stays behind: s3s-fs
/// keeps a PUT body it refused as BadDigest, so s3rf deletes it; moto's
/// multipart upload is aborted.
#[tokio::test(flavor = "multi_thread")]
async fn bytes_corrupted_on_every_attempt_end_in_a_dead_letter_and_nothing_corrupt_stays() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let src = make_bucket(&fs, "bad-src").await;
    let fs_dst = make_bucket(&fs, "bad-dst").await;
    let moto_dst = make_bucket(&moto, "bad-dst").await;
    put(&fs, &src, "always-small", pattern_bytes(4096, 81)).await;
    put(&fs, &src, "always-multi", pattern_bytes(11 * MIB, 82)).await;
    let fs_proxy = FaultProxy::start(&env.fs.url()).expect("proxy");
    let moto_proxy = FaultProxy::start(&env.moto.url()).expect("proxy");
    fs_proxy.add(Rule::always(Op::PutObject, Fault::FlipRequestBody));
    moto_proxy.add(Rule::always(Op::UploadPart, Fault::FlipRequestBody).after(1));
    let opts = AgentOpts {
        extra_toml: format!(
            "{}{}",
            proxied_endpoint("fsx", &fs_proxy, "T_FS"),
            proxied_endpoint("motox", &moto_proxy, "T_MOTO")
        ),
        ..AgentOpts::default()
    };
    let agent = env.spawn_agent(&opts).await;
    env.publish_copy(("fs", &src, "always-small"), ("fsx", &fs_dst, None))
        .await;
    env.publish_copy(("fs", &src, "always-multi"), ("motox", &moto_dst, None))
        .await;
    let dead = env.dead_letters(2).await;
    env.wait_jobs_done().await;
    for d in &dead {
        let reason = header(d, "S3rf-Reason");
        assert!(reason.contains("did not match"), "{reason}");
        assert_eq!(header(d, "S3rf-Deliveries"), "3", "{reason}");
    }
    assert!(
        fs_proxy.injected(Op::PutObject) >= 3,
        "{}",
        fs_proxy.injected_summary()
    );
    assert!(
        moto_proxy.injected(Op::UploadPart) >= 3,
        "{}",
        moto_proxy.injected_summary()
    );
    assert!(
        !exists(&fs, &fs_dst, "always-small").await,
        "a corrupt object stayed at the destination; log:\n{}",
        agent.log()
    );
    assert!(!exists(&moto, &moto_dst, "always-multi").await);
    assert_eq!(open_uploads(&moto, &moto_dst).await, Vec::<String>::new());
}

/// A copy job whose listing hint says 1 byte cannot make the agent buffer
/// more than `buffer_memory`: the real size takes its budget before it is
/// read (issue #19, F2).
#[tokio::test(flavor = "multi_thread")]
async fn a_lying_listed_size_cannot_bypass_buffer_memory() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let src = make_bucket(&fs, "lie-src").await;
    let dst = make_bucket(&fs, "lie-dst").await;
    let size = 15 * MIB;
    put(&fs, &src, "big", pattern_bytes(size, 91)).await;
    let opts = AgentOpts {
        multipart_threshold: "16MiB",
        part_size: "8MiB",
        buffer_memory: "16MiB",
        extra_toml: format!(
            "[endpoints.fs2]\nurl = \"{}\"\npath_style = true\naccess_key_id_env = \"T_FS_KEY\"\nsecret_access_key_env = \"T_FS_SECRET\"\n",
            env.fs.url()
        ),
        ..AgentOpts::default()
    };
    let agent = env.spawn_agent(&opts).await;
    let jobs = 12;
    for i in 0..jobs {
        let job = serde_json::json!({
            "src": {"endpoint": "fs", "bucket": src, "key": "big"},
            "dst": {"endpoint": "fs2", "bucket": dst, "key": format!("copy-{i}")},
            "listed_size": 1,
        });
        env.publish("s3rf.copy", job.to_string()).await;
    }
    env.wait_jobs_done().await;
    for i in 0..jobs {
        assert_eq!(get(&fs, &dst, &format!("copy-{i}")).await.len(), size);
    }
    // Four copies at once would hold 60 MiB of whole objects; the budget
    // allows one. The agent's own footprint is about 30 MiB.
    let peak_mib = agent.peak_rss_kib() / 1024;
    assert!(
        peak_mib < 30 + 16 + 12,
        "peak RSS {peak_mib} MiB with buffer_memory = 16MiB; log:\n{}",
        agent.log()
    );
    assert_eq!(env.dead_letter_count().await, 0);
}

/// A directory bucket (S3 Express One Zone) takes no `Content-MD5`: writes
/// to an endpoint of `kind = "s3-express"` carry a CRC32C the store checks
/// instead, and the agent checks what it read against the source's MD5
/// itself. (The SDK computes no checksum on its own with `checksums =
/// "when_required"`, so s3rf computes the CRC32C and sends it as a header;
/// a body bound for a directory bucket is therefore read whole, never
/// piped.) A bit flipped in a PUT is refused by the store's CRC32C check and
/// a bit flipped in a GET by the agent's MD5; each copy ends byte-exact
/// with its CRC32C stored. A multipart copy asks for a full-object CRC32C.
/// (s3s-fs checks PUT checksums but not UploadPart ones, so a flipped part
/// is not tried here.)
#[tokio::test(flavor = "multi_thread")]
async fn writes_to_a_directory_bucket_are_checked_by_crc32c_not_md5() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let src = make_bucket(&fs, "xcrc-src").await;
    let dst = make_bucket(&fs, "xcrc-dst").await;
    let writes = FaultProxy::start(&env.fs.url()).expect("proxy");
    let reads = FaultProxy::start(&env.fs.url()).expect("proxy");
    let objects = [
        ("w-small", 4 * 1024),
        ("w-3mib", 3 * MIB),
        ("r-small", 4 * 1024),
        ("r-3mib", 3 * MIB),
        ("multi", 12 * MIB),
    ];
    for (i, (key, size)) in objects.iter().enumerate() {
        put(&fs, &src, key, pattern_bytes(*size, 170 + i as u64)).await;
    }
    for key in ["w-small", "w-3mib"] {
        writes.add(Rule::first(Op::PutObject, Fault::FlipRequestBody, 1).on_path(key));
    }
    for key in ["r-small", "r-3mib"] {
        reads.add(
            Rule::first(Op::GetObject, Fault::FlipResponseBody, 1)
                .ranged(false)
                .on_path(key),
        );
    }
    let opts = AgentOpts {
        extra_toml: format!(
            "{}kind = \"s3-express\"\n{}",
            proxied_endpoint("fsx", &writes, "T_FS"),
            proxied_endpoint("fsr", &reads, "T_FS")
        ),
        ..AgentOpts::default()
    };
    let agent = env.spawn_agent(&opts).await;
    for (key, _) in &objects {
        env.publish_copy(("fsr", &src, key), ("fsx", &dst, None))
            .await;
    }
    env.wait_jobs_done().await;
    for (i, (key, size)) in objects.iter().enumerate() {
        let got = get(&fs, &dst, key).await;
        assert!(
            got == pattern_bytes(*size, 170 + i as u64),
            "{key}: the destination differs ({} bytes); log:\n{}",
            got.len(),
            agent.log()
        );
    }
    assert_eq!(env.dead_letter_count().await, 0, "{}", agent.log());
    assert_eq!(
        writes.injected(Op::PutObject),
        2,
        "{}",
        writes.injected_summary()
    );
    assert_eq!(
        reads.injected(Op::GetObject),
        2,
        "{}",
        reads.injected_summary()
    );
    let log = agent.log();
    assert!(
        log.contains("checksum_crc32c mismatch"),
        "the store's CRC32C check refused a flipped PUT:\n{log}"
    );
    assert_eq!(
        log.matches("the bytes read from the source did not match")
            .count(),
        2,
        "{log}"
    );
    for key in ["w-small", "w-3mib", "r-small"] {
        let head = fs
            .head_object()
            .bucket(&dst)
            .key(key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .expect("head");
        assert!(
            head.checksum_crc32_c().is_some(),
            "{key} was written without a CRC32C"
        );
    }
}
