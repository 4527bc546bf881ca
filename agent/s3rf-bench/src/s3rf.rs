//! s3rf as users run it: a fresh nats-server, N agents, one migration job;
//! the clock runs from publishing the job to the ledger saying complete.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use s3rf_testkit::NatsServer;

use crate::peers::{Route, Tuning};
use crate::usage::{Usage, proc_cpu, proc_kib, spawn_logged, tail, terminate, wait4};

/// Runs one migration of `route` with `agents` agents; `verify` false sets
/// `verify = "off"` on both endpoints; `t` `None` leaves `[copy]` at the
/// agent's defaults.
pub async fn run(
    agent_bin: &Path,
    agents: usize,
    route: &Route<'_>,
    t: Option<&Tuning>,
    verify: bool,
) -> Result<Usage> {
    let mut nats = NatsServer::start()?;
    let nats_pid = nats.pid().context("nats-server has no pid")?;
    let config = route.work.join(format!("{}.toml", route.label));
    std::fs::write(
        &config,
        format!(
            r#"
[nats]
url = "{nats}"
[endpoints.src]
url = "{src}"
path_style = true
access_key_id_env = "SRC_KEY"
secret_access_key_env = "SRC_SECRET"
verify = "{verify}"
[endpoints.dst]
url = "{dst}"
path_style = true
access_key_id_env = "DST_KEY"
secret_access_key_env = "DST_SECRET"
verify = "{verify}"
{copy}
[log]
level = "{level}"
"#,
            level = std::env::var("S3RF_BENCH_AGENT_LOG").unwrap_or_else(|_| "warn".into()),
            nats = nats.url(),
            verify = if verify { "auto" } else { "off" },
            src = route.src.url,
            dst = route.dst.url,
            copy = t.map_or(String::new(), |t| format!(
                "[copy]\nconcurrency = {}\npart_concurrency = {}\npart_size = {}\n\
                 multipart_threshold = {}\nserver_side_multipart_threshold = {}",
                t.concurrency,
                t.part_concurrency,
                t.part_size,
                t.multipart_threshold,
                t.server_side_multipart_threshold,
            )),
        ),
    )?;
    let mut children = Vec::new();
    for n in 0..agents {
        let log = route.work.join(format!("{}.agent{n}.log", route.label));
        let mut cmd = Command::new(agent_bin);
        cmd.arg("--config")
            .arg(&config)
            .arg("run")
            .env("SRC_KEY", &route.src.access_key)
            .env("SRC_SECRET", &route.src.secret_key)
            .env("DST_KEY", &route.dst.access_key)
            .env("DST_SECRET", &route.dst.secret_key);
        children.push((spawn_logged(&mut cmd, &log)?, log));
    }
    let result = migrate(&nats, agents, route, &children).await;
    let nats_cpu = proc_cpu(nats_pid);
    let nats_rss = proc_kib(nats_pid, "VmHWM:");
    let mut usage = Usage {
        cpu: nats_cpu,
        queue_cpu: nats_cpu,
        peak_rss_kib: nats_rss,
        ..Usage::default()
    };
    for (child, log) in children {
        let pid = child.id();
        // VmHWM is the agent's own peak (not inherited across exec).
        usage.peak_rss_kib += proc_kib(pid, "VmHWM:");
        terminate(pid);
        let (code, ru) = tokio::task::spawn_blocking(move || wait4(pid)).await??;
        std::mem::forget(child);
        if code != 0 {
            bail!(
                "agent exited with {code}; {} ends:\n{}",
                log.display(),
                tail(&log)
            );
        }
        usage.cpu += ru.cpu;
    }
    nats.stop();
    usage.wall = result?;
    Ok(usage)
}

async fn migrate(
    nats: &NatsServer,
    agents: usize,
    route: &Route<'_>,
    children: &[(std::process::Child, std::path::PathBuf)],
) -> Result<Duration> {
    let js = async_nats::jetstream::new(nats.connect().await?);
    let names = s3rf_agent::names::Names::new("s3rf");
    // Ready when every agent's consumers exist.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = match js.get_stream(names.jobs_stream()).await {
            Ok(mut s) => s.info().await.map(|i| i.state.consumer_count).unwrap_or(0) > 0,
            Err(_) => false,
        };
        if ready {
            break;
        }
        if Instant::now() > deadline {
            let log = &children[0].1;
            bail!(
                "agent did not start; {} ends:\n{}",
                log.display(),
                tail(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the other agents join their consumers.
    tokio::time::sleep(Duration::from_millis(300 * agents as u64)).await;
    let ledger = s3rf_agent::ledger::Ledger::open(&js, &names, 1).await?;
    let id = route.label.replace(['.', ' '], "-");
    // One endpoint name for both sides: s3rf copies server-side only within
    // one endpoint.
    let dst = if route.same { "src" } else { "dst" };
    let job = serde_json::json!({
        "id": id, "src": "src", "dst": dst,
        "buckets": [route.src_bucket],
        "bucket_map": {route.src_bucket: route.dst_bucket},
    });
    let t0 = Instant::now();
    let t0_ms = s3rf_agent::clock::now_ms();
    js.publish(
        names.job_subject(s3rf_agent::names::JobKind::Migrate),
        job.to_string().into(),
    )
    .await?
    .await?;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = ledger.fold(&id).await?;
        if t.complete() {
            if t.dead_lettered != 0 || t.buckets.values().any(|b| b.reason.is_some()) {
                bail!("s3rf migration {id} finished with failures: {t:?}");
            }
            return Ok(finished_after(t0_ms, t.last_event_ms).unwrap_or_else(|| t0.elapsed()));
        }
        if t0.elapsed() > Duration::from_secs(3600) {
            bail!("s3rf migration {id} did not complete within an hour: {t:?}");
        }
    }
}

/// The run's wall time: from publishing the job to the ledger's last event
/// (its JetStream timestamp, on this machine's clock). The migration is
/// complete the moment that event is stored, so the time it takes the bench
/// to poll and fold the ledger is not counted against s3rf; a poll
/// interval would otherwise round every run up to its next tick.
fn finished_after(published_ms: u64, last_event_ms: u64) -> Option<Duration> {
    (last_event_ms >= published_ms).then(|| Duration::from_millis(last_event_ms - published_ms))
}

#[cfg(test)]
mod tests {
    use super::finished_after;
    use std::time::Duration;

    #[test]
    fn wall_time_ends_at_the_last_ledger_event() {
        assert_eq!(
            finished_after(1_000, 1_437),
            Some(Duration::from_millis(437))
        );
        assert_eq!(finished_after(1_000, 1_000), Some(Duration::ZERO));
        // A clock that went backwards: fall back to the bench's own clock.
        assert_eq!(finished_after(1_000, 999), None);
    }
}
