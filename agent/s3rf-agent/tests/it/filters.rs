//! Wasm filters: the real example filters built to wasm, and hostile ones
//! written for these tests, in a real agent against real NATS and S3.

use std::collections::BTreeMap;
use std::path::Path;

use s3rf_testkit::{pattern_bytes, unique_bucket};

use crate::harness::*;

/// Copies example filter `name` into `dir` as `as_name`.
pub(crate) fn install(dir: &Path, name: &str, as_name: &str) {
    std::fs::copy(
        example_filters().join(format!("{name}.wasm")),
        dir.join(as_name),
    )
    .unwrap();
}

pub(crate) fn filter_dir(env: &TestEnv, tag: &str) -> std::path::PathBuf {
    let dir = env.dir.path().join(tag);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) fn filters_toml(dir: &Path) -> String {
    format!(
        "[filters]\ndir = \"{}\"\nreload_interval = \"200ms\"\n",
        dir.display()
    )
}

/// A migration through five filters (four Rust examples and the WAT one):
/// keys are renamed and objects skipped exactly as the filters say, skips are
/// counted as "filtered", and the log names the filter versions.
#[tokio::test(flavor = "multi_thread")]
async fn migration_renames_and_skips_as_the_filters_say() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let src = make_bucket(&fs, "flt-src").await;
    let dst = unique_bucket("flt-dst");
    let archive = make_bucket(&moto, "flt-archive").await;

    let dir = filter_dir(&env, "filters-mig");
    install(&dir, "skip-glob", "10-skip-glob.wasm");
    std::fs::write(
        dir.join("10-skip-glob.toml"),
        "patterns = [\"**.tmp\", \"**/_temporary/**\"]\n",
    )
    .unwrap();
    install(&dir, "max-size", "20-max-size.wasm");
    std::fs::write(dir.join("20-max-size.json"), r#"{"max_bytes": 2000}"#).unwrap();
    install(&dir, "date-partition", "30-date-partition.wasm");
    install(&dir, "rename-prefix", "40-rename-prefix.wasm");
    std::fs::write(
        dir.join("40-rename-prefix.toml"),
        format!("from = \"logs/year=2024/\"\nto = \"y2024/\"\nbucket = \"{archive}\"\n"),
    )
    .unwrap();
    install(&dir, "skip-empty", "50-skip-empty.wasm");

    let objects: &[(&str, usize)] = &[
        ("logs/2024-05-01-app.log", 100),
        ("logs/2024-05-02_db.log", 200),
        ("tmp/x.tmp", 10),
        ("out/_temporary/0/part-0", 10),
        ("big/blob.bin", 3000),
        ("raw/data.csv", 300),
        ("empty.txt", 0),
        ("plain/keep.txt", 400),
    ];
    let mut bodies = BTreeMap::new();
    for (i, (key, size)) in objects.iter().enumerate() {
        let body = pattern_bytes(*size, i as u64);
        put(&fs, &src, key, body.clone()).await;
        bodies.insert(*key, body);
    }
    let agent = env
        .spawn_agent(&AgentOpts {
            extra_toml: filters_toml(&dir),
            ..AgentOpts::default()
        })
        .await;
    let job = serde_json::json!({
        "id": "f1", "src": "fs", "dst": "moto", "buckets": [src], "bucket_map": {src.clone(): dst},
    });
    env.publish("s3rf.migrate", job.to_string()).await;
    let t = wait_complete(&env, "f1").await;

    let expect = |pairs: &[(&str, &str)]| -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(to, from)| ((*to).to_owned(), bodies[from].clone()))
            .collect()
    };
    assert_eq!(
        bucket_contents(&moto, &dst).await,
        expect(&[
            ("plain/keep.txt", "plain/keep.txt"),
            ("raw/data.csv", "raw/data.csv")
        ])
    );
    // date-partition renamed the logs, and rename-prefix, next in the chain,
    // matched the renamed keys and moved them into another bucket.
    assert_eq!(
        bucket_contents(&moto, &archive).await,
        expect(&[
            ("y2024/month=05/day=01/app.log", "logs/2024-05-01-app.log"),
            ("y2024/month=05/day=02/db.log", "logs/2024-05-02_db.log"),
        ])
    );
    assert_eq!(t.listed, 8, "{t:#?}");
    assert_eq!(t.copied, 4);
    assert_eq!(t.filtered, 4, "tmp, _temporary, oversize, empty");
    assert_eq!(t.filtered_bytes, 3020);
    assert_eq!(t.skipped + t.dead_lettered, 0);

    // Decisions name the filter that decided and the versions of the chain.
    agent
        .wait_message("filtered: skipped", "\"filter\":\"20-max-size.wasm\"", 1)
        .await;
    agent
        .wait_message("filtered: skipped", "\"reason\":\"empty object\"", 1)
        .await;
    agent
        .wait_message("filtered: renamed", "30-date-partition.wasm@", 2)
        .await;
    agent
        .wait_message("filter loaded", "\"filter\":\"50-skip-empty.wasm\"", 1)
        .await;

    // A re-run decides the same: nothing new is copied, the same 4 are filtered.
    env.publish("s3rf.migrate", job.to_string().replace("\"f1\"", "\"f2\""))
        .await;
    let t = wait_complete(&env, "f2").await;
    assert_eq!((t.copied, t.skipped, t.filtered), (0, 4, 4), "{t:#?}");
    env.wait_jobs_done().await;
}

async fn copy_and_wait(env: &TestEnv, src: &str, key: &str, dst: &str) {
    env.publish_copy(("fs", src, key), ("moto", dst, None))
        .await;
    env.wait_jobs_done().await;
}

/// Filters are picked up, replaced and removed while the agent runs; a broken
/// file is refused and the previous good version keeps working.
#[tokio::test(flavor = "multi_thread")]
async fn hot_reload_and_broken_files() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let src = make_bucket(&fs, "hot-src").await;
    let dst = make_bucket(&moto, "hot-dst").await;
    for i in 1..=5 {
        put(&fs, &src, &format!("a/{i}.txt"), pattern_bytes(50, i)).await;
    }
    let dir = filter_dir(&env, "filters-hot");
    let opts = AgentOpts {
        extra_toml: filters_toml(&dir),
        ..AgentOpts::default()
    };
    let config = env.write_config(&opts);
    let agent = env.spawn_agent(&opts).await;

    // No filters yet: copied as is.
    copy_and_wait(&env, &src, "a/1.txt", &dst).await;
    assert!(exists(&moto, &dst, "a/1.txt").await);

    // Dropped in: later jobs obey it.
    std::fs::write(dir.join("10-rename.toml"), "from = \"a/\"\nto = \"b/\"\n").unwrap();
    install(&dir, "rename-prefix", "10-rename.wasm");
    agent
        .wait_message("filter loaded", "\"filter\":\"10-rename.wasm\"", 1)
        .await;
    copy_and_wait(&env, &src, "a/2.txt", &dst).await;
    assert!(exists(&moto, &dst, "b/2.txt").await);
    assert!(!exists(&moto, &dst, "a/2.txt").await);

    // Overwritten with garbage: refused, the previous version stays.
    std::fs::write(dir.join("10-rename.wasm"), b"this is not wasm").unwrap();
    agent
        .wait_message(
            "filter refused; its previous version stays in use",
            "not a WebAssembly binary",
            1,
        )
        .await;
    copy_and_wait(&env, &src, "a/3.txt", &dst).await;
    assert!(exists(&moto, &dst, "b/3.txt").await);

    // A module importing WASI is refused; the chain keeps working.
    let wasi = wat::parse_str(
        r#"(module
             (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
             (memory (export "memory") 1)
             (func (export "s3rf_abi_version") (result i32) i32.const 1)
             (func (export "s3rf_alloc") (param i32) (result i32) i32.const 1024)
             (func (export "s3rf_filter") (param i32 i32) (result i64) i64.const 0))"#,
    )
    .unwrap();
    std::fs::write(dir.join("05-wasi.wasm"), wasi).unwrap();
    agent
        .wait_message(
            "filter refused; it is not in the chain",
            "imports wasi_snapshot_preview1::fd_write",
            1,
        )
        .await;
    copy_and_wait(&env, &src, "a/4.txt", &dst).await;
    assert!(exists(&moto, &dst, "b/4.txt").await);

    // `filter list` shows what a fresh agent would load, with the reasons.
    let out = env
        .agent_command(&config)
        .args(["filter", "list"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("05-wasi.wasm  -  refused: imports wasi_snapshot_preview1::fd_write"),
        "{stdout}"
    );
    assert!(
        stdout.contains("10-rename.wasm  -  refused: not a WebAssembly binary"),
        "{stdout}"
    );

    // Removed: later jobs are not renamed any more.
    std::fs::remove_file(dir.join("10-rename.wasm")).unwrap();
    agent
        .wait_message("filter removed", "\"filter\":\"10-rename.wasm\"", 1)
        .await;
    copy_and_wait(&env, &src, "a/5.txt", &dst).await;
    assert!(exists(&moto, &dst, "a/5.txt").await);
    assert_eq!(env.dead_letter_count().await, 0);
}

/// The WAT preamble of a hostile filter: keeps every object except those of
/// `size` bytes, for which it runs `body`.
fn hostile(size: u64, body: &str, data: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
             (memory (export "memory") 1)
             {data}
             (func (export "s3rf_abi_version") (result i32) i32.const 1)
             (func (export "s3rf_alloc") (param i32) (result i32) i32.const 1024)
             (func (export "s3rf_filter") (param $ptr i32) (param $len i32) (result i64)
               (if (i64.eq (i64.load offset=8 (local.get $ptr)) (i64.const {size}))
                 (then {body}))
               ;; keep: one zero byte at 48
               (i64.const 206158430209)))"#
    ))
    .unwrap()
}

/// Hostile filters: each one's victim is dead-lettered with the filter and
/// the limit named; modules that cannot be filters are refused at load with
/// the reason; the agent keeps running and copies everything else.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_filters_are_contained() {
    let env = TestEnv::new().await;
    let fs = env.fs.client();
    let moto = env.moto.client();
    let src = make_bucket(&fs, "hostile-src").await;
    let dst = make_bucket(&moto, "hostile-dst").await;
    let dir = filter_dir(&env, "filters-hostile");
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "11-loop.wasm",
            "(loop $l (br $l))",
            "",
            "filter 11-loop.wasm: fuel exhausted (budget 10000000)",
        ),
        (
            "12-bomb.wasm",
            "(loop $l (drop (memory.grow (i32.const 16))) (br $l))",
            "",
            "filter 12-bomb.wasm: memory limit of 16.0 MiB exceeded",
        ),
        (
            "13-trap.wasm",
            "unreachable",
            "",
            "filter 13-trap.wasm: trapped: wasm trap: wasm `unreachable` instruction executed",
        ),
        (
            "14-oversize.wasm",
            "(return (i64.const 68720476736))",
            "",
            "filter 14-oversize.wasm: output of 1000000 bytes is over the limit of 4096",
        ),
        (
            "15-not-utf8.wasm",
            "(return (i64.const 274877906955))",
            r#"(data (i32.const 64) "\02\02\00\00\00\ff\fe\00\00\00\00")"#,
            "filter 15-not-utf8.wasm: bad output: returned a key that is not UTF-8",
        ),
        (
            "16-empty-key.wasm",
            "(return (i64.const 274877906953))",
            r#"(data (i32.const 64) "\02\00\00\00\00\00\00\00\00")"#,
            "filter 16-empty-key.wasm: bad output: returned an empty key",
        ),
        (
            "17-empty-output.wasm",
            "(return (i64.const 274877906944))",
            "",
            "filter 17-empty-output.wasm: bad output: returned an empty decision",
        ),
    ];
    for (i, (name, body, data, _)) in cases.iter().enumerate() {
        std::fs::write(dir.join(name), hostile(i as u64 + 1, body, data)).unwrap();
    }
    let refused: &[(&str, Vec<u8>, &str)] = &[
        (
            "20-wasi.wasm",
            wat::parse_str(
                r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
                     (memory (export "memory") 1))"#,
            )
            .unwrap(),
            "imports wasi_snapshot_preview1::proc_exit",
        ),
        (
            "21-no-filter.wasm",
            wat::parse_str(
                r#"(module (memory (export "memory") 1)
                     (func (export "s3rf_abi_version") (result i32) i32.const 1)
                     (func (export "s3rf_alloc") (param i32) (result i32) i32.const 1024))"#,
            )
            .unwrap(),
            "does not export s3rf_filter",
        ),
        (
            "22-abi-2.wasm",
            wat::parse_str(
                r#"(module (memory (export "memory") 1)
                     (func (export "s3rf_abi_version") (result i32) i32.const 2)
                     (func (export "s3rf_alloc") (param i32) (result i32) i32.const 1024)
                     (func (export "s3rf_filter") (param i32 i32) (result i64) i64.const 0))"#,
            )
            .unwrap(),
            "speaks ABI version 2, this agent speaks version 1",
        ),
        (
            "23-garbage.wasm",
            b"\0asm\x01\0\0\0\xff\xff".to_vec(),
            "not valid WebAssembly",
        ),
    ];
    for (name, bytes, _) in refused {
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    // Sizes 1..=7 each trip one hostile filter; 8 passes every filter.
    for size in 1..=8u64 {
        put(
            &fs,
            &src,
            &format!("victim-{size}"),
            pattern_bytes(size as usize, size),
        )
        .await;
    }
    let opts = AgentOpts {
        extra_toml: filters_toml(&dir),
        ..AgentOpts::default()
    };
    let config = env.write_config(&opts);
    let mut agent = env.spawn_agent(&opts).await;
    for (name, _, reason) in refused {
        agent
            .wait_message(
                "filter refused; it is not in the chain",
                &format!("\"filter\":\"{name}\""),
                1,
            )
            .await;
        assert!(
            agent.log().contains(reason),
            "{name}: {reason}\n{}",
            agent.log()
        );
    }
    for size in 1..=8u64 {
        env.publish_copy(
            ("fs", &src, &format!("victim-{size}")),
            ("moto", &dst, None),
        )
        .await;
    }
    let letters = env.dead_letters(cases.len() as u64).await;
    let mut reasons: Vec<String> = letters
        .iter()
        .map(|m| header(m, "S3rf-Reason").to_owned())
        .collect();
    reasons.sort();
    for (name, _, _, want) in cases {
        assert!(
            reasons.iter().any(|r| r.starts_with(want)),
            "{name}: want {want:?} in {reasons:#?}"
        );
    }
    env.wait_jobs_done().await;
    assert_eq!(
        get(&moto, &dst, "victim-8").await,
        pattern_bytes(8, 8),
        "the survivor is copied"
    );
    for size in 1..=7 {
        assert!(!exists(&moto, &dst, &format!("victim-{size}")).await);
    }
    assert!(agent.is_running(), "the agent survived every filter");

    let out = env
        .agent_command(&config)
        .args(["filter", "list"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (name, _, reason) in refused {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(name) && l.contains("refused") && l.contains(reason)),
            "{name}: {stdout}"
        );
    }
    for (name, _, _, _) in cases {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(name) && l.ends_with("ok")),
            "{stdout}"
        );
    }
}

/// `filter test` decides keys from arguments or from stdin (`KEY<TAB>SIZE`),
/// with parameters found beside the module, and exits 1 on a refused filter.
#[test]
fn filter_test_command() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "max-size", "max.wasm");
    std::fs::write(dir.path().join("max.toml"), "max_bytes = 100\n").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_s3rf-agent"))
        .args(["filter", "test"])
        .arg(dir.path().join("max.wasm"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"small\t10\nbig/one\t5000\nunknown\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "small\tkeep\nbig/one\tskip\t5000 bytes is over max_bytes 100\nunknown\tkeep\n"
    );
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("filter max.wasm@"));

    install(dir.path(), "date-partition", "dp.wasm");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_s3rf-agent"))
        .args(["filter", "test"])
        .arg(dir.path().join("dp.wasm"))
        .args(["logs/2024-05-01-app.log", "notes.txt"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "logs/2024-05-01-app.log\trename\tlogs/year=2024/month=05/day=01/app.log\nnotes.txt\tkeep\n"
    );

    std::fs::write(dir.path().join("bad.json"), "{\"nope\": 1}").unwrap();
    install(dir.path(), "skip-glob", "bad.wasm");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_s3rf-agent"))
        .args(["filter", "test"])
        .arg(dir.path().join("bad.wasm"))
        .arg("k")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("error: filter bad.wasm refused: could not start: init refused its parameters: invalid parameters: unknown field `nope`"),
        "{stderr}"
    );
}
