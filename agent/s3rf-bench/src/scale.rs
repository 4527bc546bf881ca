//! `s3rf-bench scale`: one migration of many small objects on local servers,
//! with the agent's RSS sampled as it runs (memory must not grow with the
//! object count).
//!
//! Starts nats-server and two s3s-fs stores on loopback, fills the source
//! bucket with N small objects, runs one `s3rf-agent` and a migration, and
//! prints listing and copy throughput and the peak RSS of the agent and of
//! nats-server, sampled as the migration runs. With rclone installed it
//! copies the same data with rclone for comparison.
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use s3rf_testkit::{NatsServer, S3Kind, S3Server, find_binary};

/// `scale` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Objects in the source bucket.
    #[arg(long, default_value_t = 100_000)]
    objects: usize,
    /// Bytes per object.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Concurrent copies in the agent (also rclone's --transfers).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Skip the rclone comparison.
    #[arg(long)]
    no_rclone: bool,
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// Runs the scale benchmark with `agent_bin`.
pub async fn run(args: Args, agent_bin: &Path) -> Result<()> {
    let nats = NatsServer::start()?;
    let src = S3Server::start(S3Kind::S3sFs)?;
    let dst = S3Server::start(S3Kind::S3sFs)?;
    let (sc, dc) = (src.client(), dst.client());
    sc.create_bucket().bucket("bench").send().await?;
    dc.create_bucket().bucket("rclone").send().await?;
    println!(
        "dataset: {} objects x {} B; concurrency {}",
        args.objects, args.size, args.concurrency
    );
    let t = Instant::now();
    crate::dataset::Dataset {
        name: "bench".into(),
        count: args.objects,
        size: args.size as u64,
    }
    .fill(&sc, "bench")
    .await?;
    println!(
        "fill:    {:.0} objects/s ({:.1}s)",
        rate(args.objects as u64, t.elapsed()),
        t.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[nats]
url = "{}"
[endpoints.src]
url = "{}"
path_style = true
access_key_id_env = "B_KEY"
secret_access_key_env = "B_SECRET"
[endpoints.dst]
url = "{}"
path_style = true
access_key_id_env = "B_KEY"
secret_access_key_env = "B_SECRET"
[copy]
concurrency = {}
[migrate]
tally_interval_ms = 500
[log]
level = "warn"
format = "json"
"#,
            nats.url(),
            src.url(),
            dst.url(),
            args.concurrency
        ),
    )?;
    let agent = KillOnDrop(
        Command::new(agent_bin)
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("B_KEY", &src.access_key)
            .env("B_SECRET", &src.secret_key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(
                dir.path().join("agent.log"),
            )?))
            .spawn()?,
    );
    let pid = agent.0.id();
    let client = nats.connect().await?;
    let js = async_nats::jetstream::new(client);
    let names = s3rf_agent::names::Names::new("s3rf");
    // Wait for the agent's streams.
    let deadline = Instant::now() + Duration::from_secs(30);
    while js.get_stream("S3RF_JOBS").await.is_err() {
        if Instant::now() > deadline {
            bail!(
                "agent did not start; see {}",
                dir.path().join("agent.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ledger = s3rf_agent::ledger::Ledger::open(&js, &names, 1).await?;
    let idle_rss = crate::usage::proc_kib(pid, "VmRSS:");
    let job = serde_json::json!({"id": "bench", "src": "src", "dst": "dst", "buckets": ["bench"]});
    let t0 = Instant::now();
    js.publish("s3rf.migrate", job.to_string().into())
        .await?
        .await?;
    let mut listed_at = None;
    let mut samples = Vec::new();
    let mut next_sample = 0.0;
    let nats_pid = nats.pid();
    let tally = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let t = ledger.fold("bench").await?;
        if listed_at.is_none() && t.listing_finished() {
            listed_at = Some(t0.elapsed());
        }
        let progress = t.source_outcomes as f64 / args.objects as f64;
        if progress >= next_sample {
            samples.push((progress, crate::usage::proc_kib(pid, "VmRSS:")));
            next_sample += 0.25;
        }
        if t.complete() {
            break t;
        }
        if t0.elapsed() > Duration::from_secs(3600) {
            bail!("migration did not complete within an hour: {t:?}");
        }
    };
    let total = t0.elapsed();
    let listing = listed_at.unwrap_or(total);
    if tally.copied != args.objects as u64 || tally.dead_lettered != 0 {
        bail!("wrong result: {tally:?}");
    }
    let peak = crate::usage::proc_kib(pid, "VmHWM:");
    println!(
        "s3rf listing+publish: {:.0} objects/s ({:.1}s)",
        rate(tally.listed, listing),
        listing.as_secs_f64()
    );
    println!(
        "s3rf copy:            {:.0} objects/s ({:.1}s, {} copied)",
        rate(tally.copied, total),
        total.as_secs_f64(),
        tally.copied
    );
    println!(
        "s3rf agent RSS: idle {} MiB, peak {} MiB; samples (progress, MiB): {}",
        idle_rss / 1024,
        peak / 1024,
        samples
            .iter()
            .map(|(p, r)| format!("({:.0}%, {})", p * 100.0, r / 1024))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if let Some(np) = nats_pid {
        println!(
            "nats-server peak RSS: {} MiB",
            crate::usage::proc_kib(np, "VmHWM:") / 1024
        );
    }
    drop(agent);

    if args.no_rclone {
        return Ok(());
    }
    let Ok(rclone) = find_binary("rclone", "apt-get install rclone") else {
        println!("rclone: not installed (apt-get install rclone); comparison skipped");
        return Ok(());
    };
    let remote = |name: &str, s: &S3Server| {
        vec![
            (format!("RCLONE_CONFIG_{name}_TYPE"), "s3".to_owned()),
            (format!("RCLONE_CONFIG_{name}_PROVIDER"), "Other".to_owned()),
            (format!("RCLONE_CONFIG_{name}_ENDPOINT"), s.url()),
            (
                format!("RCLONE_CONFIG_{name}_ACCESS_KEY_ID"),
                s.access_key.clone(),
            ),
            (
                format!("RCLONE_CONFIG_{name}_SECRET_ACCESS_KEY"),
                s.secret_key.clone(),
            ),
            (
                format!("RCLONE_CONFIG_{name}_FORCE_PATH_STYLE"),
                "true".to_owned(),
            ),
        ]
    };
    let t = Instant::now();
    let mut cmd = Command::new(rclone);
    cmd.args(["copy", "SRC:bench", "DST:rclone", "--transfers"])
        .arg(args.concurrency.to_string())
        .arg("--checkers")
        .arg(args.concurrency.to_string())
        .env_remove("AWS_CA_BUNDLE")
        .envs(remote("SRC", &src))
        .envs(remote("DST", &dst))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn()?;
    let rpid = child.id();
    let mut rpeak = 0;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        rpeak = rpeak.max(crate::usage::proc_kib(rpid, "VmRSS:"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if !status.success() {
        bail!("rclone failed: {status}");
    }
    println!(
        "rclone copy:          {:.0} objects/s ({:.1}s), peak RSS ~{} MiB (sampled)",
        rate(args.objects as u64, t.elapsed()),
        t.elapsed().as_secs_f64(),
        rpeak / 1024
    );
    Ok(())
}
