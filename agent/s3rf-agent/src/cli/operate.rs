//! The operator commands that talk to NATS (`migrate`, `copy`, `delete`,
//! `status`, `pause`, `resume`, `uploads`, `dlq`) and how they print: progress, tallies and
//! one-line summaries.

use std::collections::BTreeMap;

use super::*;
use crate::pause::{PauseScope, Pauses};
use crate::pausing::Paused;

fn human_bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

fn counts_line(t: &Tally) -> String {
    let mut parts = if t.versions {
        vec![
            format!("listed {} keys", t.listed),
            format!("copied {} versions", t.copied),
            format!("{} delete markers", t.markers),
            format!("already there {}", t.skipped),
            format!("filtered {}", t.filtered),
        ]
    } else {
        vec![
            format!("listed {}", t.listed),
            format!("copied {}", t.copied),
            format!("skipped {}", t.skipped),
            format!("filtered {}", t.filtered),
        ]
    };
    if t.dry_run {
        parts.push(format!("would copy {}", t.would_copy));
        if t.versions {
            parts.push(format!("would write {} delete markers", t.would_mark));
        }
    }
    if t.vanished > 0 {
        parts.push(format!("gone at the source {}", t.vanished));
    }
    if t.mirror {
        parts.push(format!("deleted {}", t.deleted));
        if t.dry_run {
            parts.push(format!("would delete {}", t.would_delete));
        }
        parts.push(format!("kept {}", t.kept));
    }
    parts.push(format!("dead-lettered {}", t.dead_lettered));
    parts.push(human_bytes(t.copied_bytes));
    parts.join(", ")
}

fn detail(id: &str, spec: &serde_json::Value, t: &Tally, paused: &PauseView) -> String {
    let (objects_per_s, bytes_per_s) = ops::rates(t, crate::clock::now_ms());
    let mut out = vec![
        format!("migration {id}: {}", paused.state(id, t)),
        format!("  spec:      {spec}"),
        format!(
            "  buckets:   {}/{} settled",
            t.buckets_done(),
            t.buckets.len()
        ),
        format!(
            "  listing:   {}",
            if t.listing_finished() {
                "finished"
            } else {
                "in progress"
            }
        ),
        format!("  objects:   {}", counts_line(t)),
        format!(
            "  rate:      {objects_per_s:.1} objects/s, {}/s",
            human_bytes(bytes_per_s as u64)
        ),
        format!("  started:   {}", fmt_ms(t.first_event_ms)),
    ];
    if let Some(line) = paused.of_migration(id) {
        out.push(format!("  paused:    {line}"));
    }
    for (name, b) in &t.buckets {
        out.push(format!(
            "  bucket {name} -> {}: {}{}, {} objects in {} pages{}",
            b.dst_bucket,
            b.state
                .map_or("pending".to_owned(), |s| format!("{s:?}").to_lowercase()),
            b.reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            b.objects,
            b.source_pages,
            if b.source_listed() { ", listed" } else { "" },
        ));
    }
    out.join("\n")
}

/// The pauses in force and the jobs each has parked, as `status` shows them.
struct PauseView {
    pauses: Pauses,
    parked: BTreeMap<PauseScope, u64>,
}

impl PauseView {
    async fn read(op: &Operator) -> anyhow::Result<Self> {
        Ok(Self {
            pauses: op.pauses().await?,
            parked: op.parked().await?,
        })
    }

    /// `since T, N jobs parked` for `scope`, if it is paused.
    fn line(&self, scope: &PauseScope) -> Option<String> {
        let since = self.pauses.since(scope)?;
        let parked = self.parked.get(scope).copied().unwrap_or(0);
        Some(format!("since {}, {parked} jobs parked", fmt_ms(since)))
    }

    /// What holds migration `id`: its own pause, or a pause of everything.
    fn of_migration(&self, id: &str) -> Option<String> {
        let own = PauseScope::Migration(id.to_owned());
        self.line(&own).or_else(|| {
            self.line(&PauseScope::All)
                .map(|l| format!("with all work, {l}"))
        })
    }

    fn state(&self, id: &str, t: &Tally) -> &'static str {
        if !t.complete() && self.pauses.holds_migration(id) {
            "paused"
        } else {
            ops::state_of(t)
        }
    }

    fn json(&self, id: &str) -> serde_json::Value {
        let scope = PauseScope::Migration(id.to_owned());
        let held = if self.pauses.since(&scope).is_some() {
            Some(scope)
        } else if self.pauses.all() {
            Some(PauseScope::All)
        } else {
            None
        };
        match held {
            None => serde_json::Value::Null,
            Some(s) => serde_json::json!({
                "scope": s.key(),
                "since": fmt_ms(self.pauses.since(&s).unwrap_or(0)),
                "parked": self.parked.get(&s).copied().unwrap_or(0),
            }),
        }
    }
}

/// `verify`: start, show, list or repair a verification.
async fn verify(op: &Operator, a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let id = match (&a.src, &a.dst) {
        (Some(src), Some(dst)) => {
            let spec = s3rf_wire::VerifyJob {
                id: a.id.clone(),
                src: src.clone(),
                dst: dst.clone(),
                buckets: (!a.buckets.is_empty()).then(|| a.buckets.clone()),
                exclude_buckets: a.exclude_buckets.clone(),
                prefix: a.prefix.clone(),
                bucket_map: a.bucket_map.iter().cloned().collect(),
                deep: a.deep,
                filters: a.filters,
                page: None,
            };
            let id = op.verify(spec).await?;
            println!("{id}");
            if !a.wait {
                return Ok(ExitCode::SUCCESS);
            }
            id
        }
        _ => a.id.clone().ok_or_else(|| {
            anyhow::anyhow!("name a verification (verify ID) or start one (verify --src A --dst B)")
        })?,
    };
    if a.list {
        let diffs = op.verify_differences(&id).await?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&diffs)?);
        } else {
            for d in &diffs {
                let kind = match d.kind {
                    crate::verify::Kind::Missing => "missing",
                    crate::verify::Kind::Different => "different",
                    crate::verify::Kind::Extra => "extra",
                };
                let why = d
                    .why
                    .as_deref()
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default();
                let dst_key = d.dst_key.as_deref().unwrap_or(&d.key);
                println!(
                    "{kind:9}  {}/{} -> {}/{dst_key}{why}",
                    d.bucket, d.key, d.dst_bucket
                );
            }
        }
        return Ok(if diffs.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    if a.repair {
        let (copies, deletes) = op.repair(&id).await?;
        println!(
            "verification {id}: published {copies} copy and {deletes} delete jobs; verify again once they are done"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(24 * 3600);
    let s = loop {
        let s = op.verify_summary(&id).await?;
        if s.endpoints.is_none() && !a.wait {
            anyhow::bail!(
                "no verification {id}; start one with `s3rf-agent verify --src … --dst …`"
            );
        }
        if s.complete() || !a.wait || std::time::Instant::now() > deadline {
            break s;
        }
        let dead = op.dead_letters(Some(&id)).await?.len();
        if dead > 0 {
            eprintln!(
                "error: {dead} job(s) of verification {id} dead-lettered; see `s3rf-agent dlq list --migration {id}`"
            );
            return Ok(ExitCode::from(2));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let c = s.counts;
    if a.json {
        let v = serde_json::json!({"id": id, "complete": s.complete(), "counts": c,
            "pages": s.pages_done(), "buckets": s.buckets});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let state = if s.complete() { "complete" } else { "running" };
        println!("verification {id}: {state}");
        println!(
            "  matching:   {} ({} by size only: checksums not comparable; --deep reads them)",
            c.matching + c.size_only,
            c.size_only
        );
        println!(
            "  missing:    {} (at the source, not at the destination)",
            c.missing
        );
        println!("  different:  {}", c.different);
        println!("  extra:      {} (at the destination only)", c.extra);
        if c.read > 0 {
            println!("  read:       {} objects on both sides", c.read);
        }
        if c.filtered > 0 || c.renamed > 0 {
            println!(
                "  filters:    {} skipped (left out on both sides), {} compared under a new name",
                c.filtered, c.renamed
            );
        }
        println!(
            "  pages:      {} in {} bucket(s)",
            s.pages_done(),
            s.buckets.as_ref().map_or(0, Vec::len)
        );
        if s.complete() && c.differences() == 0 {
            println!("verification {id}: everything matches");
        } else if s.complete() {
            println!(
                "verification {id}: {} differences; `s3rf-agent verify {id} --list` shows them, `--repair` fixes them",
                c.differences()
            );
        }
    }
    Ok(if s.complete() && c.differences() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `every 1h; run 3 (m1-3) started T; next at T'`.
fn schedule_line(s: &crate::schedule::Schedule) -> String {
    format!(
        "every {}; run {} ({}) started {}; next at {} (once it is complete)",
        humantime::format_duration(Duration::from_millis(s.every_ms)),
        s.runs,
        s.last_run(),
        fmt_ms(s.last_started_ms),
        fmt_ms(s.next_ms())
    )
}

fn fmt_ms(ms: u64) -> String {
    if ms == 0 {
        return "-".to_owned();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

async fn wait_with_progress(op: &Operator, id: &str) -> anyhow::Result<Tally> {
    use indicatif::{ProgressBar, ProgressStyle};
    op.wait_started(id, Duration::from_secs(60)).await?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} objects  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    loop {
        let (_, t) = op.status(id).await?;
        let done = t.source_outcomes + t.destination_outcomes;
        bar.set_length(t.listed + t.mirror_listed);
        bar.set_position(done);
        let (objects_per_s, bytes_per_s) = ops::rates(&t, crate::clock::now_ms());
        let eta = if objects_per_s > 0.0 && !t.complete() {
            format!(", ETA {}s", (t.outstanding() as f64 / objects_per_s).ceil())
        } else {
            String::new()
        };
        bar.set_message(format!(
            "{} | {}/s{eta}{}",
            counts_line(&t),
            human_bytes(bytes_per_s as u64),
            if t.listing_finished() {
                ""
            } else {
                " (listing)"
            }
        ));
        if t.complete() {
            bar.finish();
            return Ok(t);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub(super) async fn operate(cfg: Config, command: Command) -> anyhow::Result<ExitCode> {
    let op = Operator::connect(cfg).await?;
    let code = match command {
        Command::Migrate(a) => {
            let spec = s3rf_wire::MigrateJob {
                id: a.id,
                src: a.src,
                dst: a.dst,
                buckets: (!a.buckets.is_empty()).then_some(a.buckets),
                exclude_buckets: a.exclude_buckets,
                prefix: a.prefix,
                bucket_map: a.bucket_map.into_iter().collect(),
                delete_extraneous: a.delete_extraneous,
                dry_run: a.dry_run,
                every: a.every,
                versions: a.versions,
                rate: (a.bytes_per_sec.is_some() || a.objects_per_sec.is_some()).then_some(
                    s3rf_wire::Rate {
                        bytes_per_sec: a.bytes_per_sec,
                        objects_per_sec: a.objects_per_sec,
                    },
                ),
            };
            let id = op.migrate(spec).await?;
            println!("{id}");
            if a.wait {
                let t = wait_with_progress(&op, &id).await?;
                println!("migration {id} {}: {}", ops::state_of(&t), counts_line(&t));
                if t.dead_lettered > 0 {
                    eprintln!(
                        "error: {} job(s) dead-lettered; see `s3rf-agent dlq list --migration {id}`",
                        t.dead_lettered
                    );
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                }
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Copy { src, dst } => {
            let seq = op.copy(&src, &dst).await?;
            println!("published copy job {seq}");
            ExitCode::SUCCESS
        }
        Command::Delete { dst } => {
            let seq = op.delete(&dst).await?;
            println!("published delete job {seq}");
            ExitCode::SUCCESS
        }
        Command::Status { id: Some(id), json } => {
            let (spec, t) = op.status(&id).await?;
            let paused = PauseView::read(&op).await?;
            let rate = op.rate(&id).await?;
            let schedule = op.schedule(&id).await?;
            if json {
                let sched = schedule.as_ref().map(|s| {
                    serde_json::json!({
                    "every_ms": s.every_ms, "runs": s.runs, "last_run": s.last_run(),
                    "last_started": fmt_ms(s.last_started_ms), "next": fmt_ms(s.next_ms())})
                });
                let v = serde_json::json!({"id": id, "state": paused.state(&id, &t),
                    "paused": paused.json(&id), "rate_limit": rate, "schedule": sched,
                    "spec": spec, "tally": t});
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}", detail(&id, &spec, &t, &paused));
                if let Some(r) = rate {
                    println!("  limit:     {} for the fleet", crate::rate::describe(&r));
                }
                if let Some(s) = schedule {
                    println!("  schedule:  {}", schedule_line(&s));
                }
            }
            ExitCode::SUCCESS
        }
        Command::Status { id: None, json } => {
            let mut rows = Vec::new();
            for id in op.migrations().await? {
                let (_, t) = op.status(&id).await?;
                rows.push((id, t));
            }
            let paused = PauseView::read(&op).await?;
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(id, t)| {
                        serde_json::json!({"id": id, "state": paused.state(id, t),
                        "paused": paused.json(id), "tally": t})
                    })
                    .collect();
                let pauses: Vec<_> = paused
                    .pauses
                    .iter()
                    .map(|(s, since)| {
                        serde_json::json!({"scope": s.key(), "since": fmt_ms(since),
                        "parked": paused.parked.get(s).copied().unwrap_or(0)})
                    })
                    .collect();
                let v = serde_json::json!({"pauses": pauses, "migrations": v});
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for (scope, _) in paused.pauses.iter() {
                    if !matches!(scope, PauseScope::Migration(_)) {
                        let line = paused.line(scope).unwrap_or_default();
                        println!("paused: {} {line}", scope.describe());
                    }
                }
                if rows.is_empty() {
                    println!("no migrations");
                }
                for (id, t) in rows {
                    println!(
                        "{id}  {}  buckets {}/{}  {}",
                        paused.state(&id, &t),
                        t.buckets_done(),
                        t.buckets.len(),
                        counts_line(&t)
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Command::Verify(a) => verify(&op, a).await?,
        Command::Schedule(a) => {
            if a.stop {
                if op.stop_schedule(&a.id).await? {
                    println!(
                        "migration {}: schedule ended; runs already started go on",
                        a.id
                    );
                } else {
                    println!("migration {} has no schedule", a.id);
                }
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(every) = &a.every {
                op.set_every(&a.id, every).await?;
            }
            match op.schedule(&a.id).await? {
                Some(s) => println!("migration {}: {}", a.id, schedule_line(&s)),
                None => println!("migration {} has no schedule", a.id),
            }
            ExitCode::SUCCESS
        }
        Command::MigrateRate(a) => {
            let rate = s3rf_wire::Rate {
                bytes_per_sec: a.bytes_per_sec,
                objects_per_sec: a.objects_per_sec,
            };
            let agents = op.set_rate(&a.id, &rate).await?;
            if rate == s3rf_wire::Rate::default() {
                println!(
                    "migration {}: no rate limit; agents apply it within seconds",
                    a.id
                );
            } else {
                println!(
                    "migration {}: {} for the fleet, shared by {agents} live agent(s); they apply it within seconds",
                    a.id,
                    crate::rate::describe(&rate)
                );
            }
            ExitCode::SUCCESS
        }
        Command::Pause(target) => {
            let scope = target.scope();
            match op.pause(&scope).await? {
                Paused::Now(since) => println!(
                    "paused {} at {}: jobs in flight finish, the rest wait until `s3rf-agent resume {}`",
                    scope.describe(),
                    fmt_ms(since),
                    target.arg()
                ),
                Paused::Already(since) => println!(
                    "{} was already paused, since {}",
                    scope.describe(),
                    fmt_ms(since)
                ),
            }
            ExitCode::SUCCESS
        }
        Command::Resume(target) => {
            let scope = target.scope();
            match op.resume(&scope).await? {
                (Some(since), parked) => println!(
                    "resumed {} (paused since {}): its {parked} parked jobs go back to the queue",
                    scope.describe(),
                    fmt_ms(since)
                ),
                (None, _) => println!("{} was not paused", scope.describe()),
            }
            ExitCode::SUCCESS
        }
        Command::Uploads { json } => {
            let uploads = op.uploads().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&uploads)?);
            } else if uploads.is_empty() {
                println!("no multipart copies in progress");
            } else {
                let now = crate::clock::now_ms_signed();
                for u in uploads {
                    println!(
                        "{}  parts {}/{}  {}  {}  updated {}s ago  from {}  upload {}",
                        u.dst,
                        u.parts_done,
                        u.parts_total,
                        bytesize::ByteSize::b(u.size),
                        if u.running {
                            "running"
                        } else {
                            "waiting to resume"
                        },
                        (now - u.updated_ms).max(0) / 1000,
                        u.src,
                        u.upload_id
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Command::Dlq { command } => match command {
            DlqCommand::List { migration, json } => {
                let letters = op.dead_letters(migration.as_deref()).await?;
                if json {
                    let v: Vec<_> = letters.iter().map(|(v, _)| v).collect();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else if letters.is_empty() {
                    println!("no dead letters");
                } else {
                    for (v, _) in letters {
                        println!(
                            "{}  {}  deliveries {}  {}  {}",
                            v.seq, v.subject, v.deliveries, v.failed_at, v.reason
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            DlqCommand::Show { seq } => {
                let v = op.dead_letter(seq).await?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                ExitCode::SUCCESS
            }
            DlqCommand::Retry(sel) => {
                let n = op.retry(&sel.selection()).await?;
                println!("retried {n} dead letter(s)");
                ExitCode::SUCCESS
            }
            DlqCommand::Purge(sel) => {
                let n = op.purge(&sel.selection()).await?;
                println!("purged {n} dead letter(s)");
                ExitCode::SUCCESS
            }
        },
        Command::Run(_) | Command::Bridge | Command::Config { .. } | Command::Filter { .. } => {
            ExitCode::FAILURE
        }
    };
    op.close().await;
    Ok(code)
}

pub(super) fn summary(path: &Path, cfg: &Config) -> String {
    let endpoints: Vec<String> = cfg
        .endpoints
        .values()
        .map(|e| {
            format!(
                "{} ({}, region {}, credentials {:?})",
                e.name,
                e.url.as_deref().unwrap_or("AWS"),
                e.region,
                e.credentials
            )
        })
        .collect();
    format!(
        "ok: {}\n  nats: {} (prefix {})\n  endpoints: {}\n  copy: concurrency {}, part size {} B, buffer memory {} B",
        path.display(),
        cfg.nats.url,
        cfg.nats.prefix,
        if endpoints.is_empty() {
            "none".to_owned()
        } else {
            endpoints.join(", ")
        },
        cfg.copy.concurrency,
        cfg.copy.part_size,
        cfg.copy.buffer_memory,
    )
}
