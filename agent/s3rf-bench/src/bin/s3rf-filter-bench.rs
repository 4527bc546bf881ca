//! `s3rf-filter-bench`: filter decisions per second and per-call latency of
//! the example filters, alone and as a two-filter chain, on one thread.
//!
//! Run through `bash .ci/bench filters`, which builds the filters first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use s3rf_agent::config::FilterConfig;
use s3rf_agent::filter::{Chain, Kind, Loaded, ObjectInput, abi, dir};

#[derive(Debug, Parser)]
#[command(about = "Benchmark s3rf Wasm filters")]
struct Args {
    /// Directory with the built example filters (bash filters/build.sh).
    #[arg(long, default_value = "filters/dist")]
    dir: PathBuf,
    /// Decisions per measurement.
    #[arg(long, default_value_t = 200_000)]
    calls: usize,
    /// Copies per second of 4 KiB objects to compare with (measure it with
    /// `bash .ci/bench migrate --size 4096`).
    #[arg(long, default_value_t = 450.0)]
    copy_rate: f64,
}

/// Keys like a log bucket's: dated logs, temporaries, plain objects.
fn objects(n: usize) -> Vec<ObjectInput> {
    (0..n)
        .map(|i| {
            let key = match i % 4 {
                0 => format!("logs/2024-05-{:02}-app-{i}.log", 1 + i % 28),
                1 => format!("spark/out/_temporary/0/part-{i:05}"),
                2 => format!("data/batch-{i}.tmp"),
                _ => format!("images/{:03}/photo-{i}.jpg", i % 1000),
            };
            ObjectInput {
                kind: Some(Kind::Copy),
                size: Some(4096 + (i as u64 % 7) * 1000),
                last_modified_ms: Some(1_714_521_600_000),
                src_endpoint: "src".to_owned(),
                src_bucket: "logs".to_owned(),
                src_key: key.clone(),
                bucket: "logs".to_owned(),
                key,
                etag: Some("9b2cf535f27731c974343645a3985328".to_owned()),
                content_type: Some("text/plain".to_owned()),
                metadata: vec![("owner".to_owned(), "team-a".to_owned())],
            }
        })
        .collect()
}

fn load(
    args: &Args,
    file: &str,
    params: Option<(&str, &str)>,
    tmp: &std::path::Path,
) -> Result<Arc<Loaded>> {
    let params = match params {
        Some((ext, text)) => {
            let p = tmp.join(format!("{file}.{ext}"));
            std::fs::write(&p, text)?;
            Some(p)
        }
        None => None,
    };
    let entry = dir::Entry {
        name: format!("{file}.wasm"),
        wasm: args.dir.join(format!("{file}.wasm")),
        params,
    };
    let loaded = dir::load(&entry, FilterConfig::default().limits)
        .with_context(|| format!("load {file}; run `bash filters/build.sh` first"))?;
    Ok(Arc::new(loaded))
}

struct Measured {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn measure(chain: &Chain, objs: &[ObjectInput]) -> Measured {
    // Warm up: instances, caches.
    for o in objs.iter().take(1000) {
        chain.decide(o.clone()).unwrap();
    }
    let mut lat = Vec::with_capacity(objs.len());
    let started = Instant::now();
    for o in objs {
        let t = Instant::now();
        let v = chain.decide(o.clone()).unwrap();
        lat.push(t.elapsed());
        std::hint::black_box(v);
    }
    let total = started.elapsed();
    lat.sort();
    Measured {
        per_sec: objs.len() as f64 / total.as_secs_f64(),
        p50: lat[lat.len() / 2],
        p99: lat[lat.len() * 99 / 100],
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let objs = objects(args.calls);

    // The cost of encoding the input alone (what any ABI has to pay).
    let mut buf = Vec::new();
    let started = Instant::now();
    for o in &objs {
        abi::encode(o, &mut buf);
        std::hint::black_box(&buf);
    }
    let encode_ns = started.elapsed().as_nanos() as f64 / objs.len() as f64;
    println!(
        "input encoding: {encode_ns:.0} ns per object ({} bytes for a typical object)",
        buf.len()
    );

    let skip_glob = load(
        &args,
        "skip-glob",
        Some(("toml", "patterns = [\"**.tmp\", \"**/_temporary/**\"]\n")),
        tmp.path(),
    )?;
    let date = load(&args, "date-partition", None, tmp.path())?;
    let rename = load(
        &args,
        "rename-prefix",
        Some(("toml", "from = \"images/\"\nto = \"img/\"\n")),
        tmp.path(),
    )?;
    let max = load(
        &args,
        "max-size",
        Some(("json", "{\"max_bytes\": 8000}")),
        tmp.path(),
    )?;
    let empty = load(&args, "skip-empty", None, tmp.path())?;

    println!();
    println!("| chain | decisions/s (1 thread) | p50 | p99 |");
    println!("|---|---:|---:|---:|");
    let runs: Vec<(&str, Vec<Arc<Loaded>>)> = vec![
        ("skip-glob", vec![skip_glob.clone()]),
        ("date-partition", vec![date.clone()]),
        ("rename-prefix", vec![rename]),
        ("max-size", vec![max]),
        ("skip-empty (WAT)", vec![empty]),
        ("skip-glob → date-partition", vec![skip_glob, date]),
    ];
    let mut chain_latency = Duration::ZERO;
    for (name, filters) in runs {
        let chain = Chain::new(filters);
        let m = measure(&chain, &objs);
        println!(
            "| {name} | {:.0} | {:.1} µs | {:.1} µs |",
            m.per_sec,
            m.p50.as_secs_f64() * 1e6,
            m.p99.as_secs_f64() * 1e6
        );
        chain_latency = Duration::from_secs_f64(1.0 / m.per_sec);
    }
    let copy_cost = 1.0 / args.copy_rate;
    println!();
    println!(
        "two-filter chain: {:.1} µs per object = {:.3}% of copying one 4 KiB object at {} objects/s",
        chain_latency.as_secs_f64() * 1e6,
        chain_latency.as_secs_f64() / copy_cost * 100.0,
        args.copy_rate
    );
    Ok(())
}
