//! The `s3rf-agent` command line: argument parsing and dispatch. `main` only
//! calls [`main`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::agent::{self, RunOptions};
use crate::config::Config;
use crate::migration::Tally;
use crate::ops::{self, Location, Operator, Selection};
use crate::telemetry;

/// Config file used when neither --config nor S3RF_CONFIG is given.
pub const DEFAULT_CONFIG: &str = "/etc/s3rf/agent.toml";

/// Copy objects between S3-compatible stores, driven by NATS JetStream jobs.
#[derive(Debug, Parser)]
#[command(name = "s3rf-agent", version, about)]
pub struct Cli {
    /// Agent config file (TOML).
    #[arg(long, short, env = "S3RF_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands; `run` is the default.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent daemon (the default).
    Run(RunArgs),
    /// Run the SQS ingress bridge: S3 event notifications become jobs.
    Bridge,
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Start a migration from one endpoint to another and print its id.
    Migrate(MigrateArgs),
    /// Publish a job copying one object: `copy a:photos/x.jpg b:photos-copy[/new-key]`.
    Copy {
        /// Source, ENDPOINT:BUCKET/KEY.
        src: Location,
        /// Destination, ENDPOINT:BUCKET[/KEY].
        dst: Location,
    },
    /// Publish a job deleting one object: `delete b:photos-copy/x.jpg`.
    Delete {
        /// ENDPOINT:BUCKET/KEY.
        dst: Location,
    },
    /// List migrations, or show one in detail.
    Status {
        /// Migration id.
        id: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List multipart copies in progress, with parts done and total: those
    /// running and those kept for a redelivery to resume.
    Uploads {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Inspect, retry or purge dead letters.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Try a Wasm filter, or list the filters a config would load.
    Filter {
        #[command(subcommand)]
        command: FilterCommand,
    },
}

/// `filter` subcommands.
#[derive(Debug, Subcommand)]
pub enum FilterCommand {
    /// Print the decision of a filter for each KEY (or each line of stdin:
    /// `KEY` or `KEY<TAB>SIZE`).
    Test(FilterTestArgs),
    /// Show the filters the config's [filters] dir holds: version hash, or
    /// why a file is refused. Exits 1 if any file is refused.
    List,
}

/// Options of `filter test`.
#[derive(Debug, clap::Args)]
pub struct FilterTestArgs {
    /// The filter module.
    pub file: PathBuf,
    /// Parameters (.toml or .json); default: FILE's stem with .toml/.json if present.
    #[arg(long)]
    pub params: Option<PathBuf>,
    /// Object size in bytes, for keys without one.
    #[arg(long)]
    pub size: Option<u64>,
    /// Ask about deletes instead of copies.
    #[arg(long)]
    pub delete: bool,
    /// Source and destination bucket name shown to the filter.
    #[arg(long, default_value = "bucket")]
    pub bucket: String,
    /// Source endpoint name shown to the filter.
    #[arg(long, default_value = "src")]
    pub endpoint: String,
    /// Keys to decide; read from stdin when none are given.
    pub keys: Vec<String>,
}

/// Options of `migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Source endpoint.
    #[arg(long)]
    pub src: String,
    /// Destination endpoint.
    #[arg(long)]
    pub dst: String,
    /// A bucket to migrate (repeat); all buckets of --src when absent.
    #[arg(long = "bucket")]
    pub buckets: Vec<String>,
    /// A glob of buckets to leave out (repeat).
    #[arg(long = "exclude-bucket")]
    pub exclude_buckets: Vec<String>,
    /// Only keys under this prefix.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Rename a bucket at the destination: SRC=DST (repeat).
    #[arg(long = "map", value_parser = parse_mapping)]
    pub bucket_map: Vec<(String, String)>,
    /// Delete destination objects the source no longer has.
    #[arg(long)]
    pub delete_extraneous: bool,
    /// Count what would happen; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Migration id (default: generated).
    #[arg(long)]
    pub id: Option<String>,
    /// Show progress until the migration completes; exit 2 if anything was dead-lettered.
    #[arg(long)]
    pub wait: bool,
}

fn parse_mapping(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.to_owned(), b.to_owned())),
        _ => Err(format!("{s:?}: expected SRC=DST")),
    }
}

/// `dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters with their reasons.
    List {
        /// Only this migration's.
        #[arg(long)]
        migration: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter with its job.
    Show {
        /// Sequence number from `dlq list`.
        seq: u64,
    },
    /// Republish dead letters to their job subjects and remove them.
    Retry(DlqSelect),
    /// Remove dead letters.
    Purge(DlqSelect),
}

/// Which dead letters.
#[derive(Debug, clap::Args)]
pub struct DlqSelect {
    /// Sequence number from `dlq list`.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub seq: Option<u64>,
    /// All of them (optionally of --migration).
    #[arg(long)]
    pub all: bool,
    /// Only this migration's (with --all).
    #[arg(long, requires = "all")]
    pub migration: Option<String>,
}

impl DlqSelect {
    fn selection(&self) -> Selection {
        match self.seq {
            Some(seq) => Selection::One(seq),
            None => Selection::All {
                migration: self.migration.clone(),
            },
        }
    }
}

/// Options of `run`.
#[derive(Debug, Default, clap::Args)]
pub struct RunArgs {
    /// Exit 0 after this long without work, e.g. `60s` or `5m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub exit_when_idle: Option<Duration>,
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file (with S3RF_* overrides) and summarise it.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

/// Parses arguments, runs, and turns errors into one line and an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    match cli.command.unwrap_or(Command::Run(RunArgs::default())) {
        Command::Config {
            command: ConfigCommand::Check { file },
        } => {
            let cfg = load(&file)?;
            println!("{}", summary(&file, &cfg));
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let cfg = load(&config_path)?;
            telemetry::init(cfg.log.format, &cfg.log.level);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("s3rf-agent")
                .build()
                .context("cannot start the tokio runtime")?;
            let opts = RunOptions {
                exit_when_idle: args.exit_when_idle,
            };
            runtime.block_on(agent::run(cfg, opts))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bridge => {
            let cfg = load(&config_path)?;
            telemetry::init(cfg.log.format, &cfg.log.level);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("s3rf-bridge")
                .build()
                .context("cannot start the tokio runtime")?;
            runtime.block_on(crate::bridge::run(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Filter {
            command: FilterCommand::Test(args),
        } => {
            // Use the config's limits when there is a config; defaults otherwise.
            let limits = match cli.config.as_deref() {
                Some(p) => load(p)?.filters.limits,
                None => crate::config::FilterConfig::default().limits,
            };
            filter_test(&args, limits)
        }
        Command::Filter {
            command: FilterCommand::List,
        } => {
            let cfg = load(&config_path)?;
            filter_list(&cfg)
        }
        command => {
            let cfg = load(&config_path)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the tokio runtime")?;
            runtime.block_on(operate(cfg, command))
        }
    }
}

fn filter_test(
    args: &FilterTestArgs,
    limits: crate::config::FilterLimits,
) -> anyhow::Result<ExitCode> {
    use crate::filter::{Chain, Kind, ObjectInput, Verdict, dir};
    use std::io::BufRead as _;

    let name = args
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("filter.wasm")
        .to_owned();
    let params = args.params.clone().or_else(|| {
        ["toml", "json"]
            .iter()
            .map(|ext| args.file.with_extension(ext))
            .find(|p| p.is_file())
    });
    let entry = dir::Entry {
        name: name.clone(),
        wasm: args.file.clone(),
        params,
    };
    let loaded = dir::load(&entry, limits).with_context(|| format!("filter {name} refused"))?;
    eprintln!("filter {name}@{}", loaded.version);
    let chain = Chain::new(vec![std::sync::Arc::new(loaded)]);
    let mut lines: Box<dyn Iterator<Item = String>> = if args.keys.is_empty() {
        Box::new(std::io::stdin().lock().lines().map_while(Result::ok))
    } else {
        Box::new(args.keys.clone().into_iter())
    };
    let mut failed = false;
    for line in &mut lines {
        let (key, size) = match line.split_once('\t') {
            Some((k, s)) => (k.to_owned(), s.trim().parse().ok().or(args.size)),
            None => (line.clone(), args.size),
        };
        if key.is_empty() {
            continue;
        }
        let input = ObjectInput {
            kind: Some(if args.delete {
                Kind::Delete
            } else {
                Kind::Copy
            }),
            size: if args.delete { None } else { size },
            src_endpoint: args.endpoint.clone(),
            src_bucket: args.bucket.clone(),
            src_key: key.clone(),
            bucket: args.bucket.clone(),
            key: key.clone(),
            ..ObjectInput::default()
        };
        match chain.decide(input) {
            Ok(Verdict::Skip { reason, .. }) => println!("{key}\tskip\t{reason}"),
            Ok(Verdict::Proceed { renamed: false, .. }) => println!("{key}\tkeep"),
            Ok(Verdict::Proceed {
                bucket, key: to, ..
            }) if bucket == args.bucket => {
                println!("{key}\trename\t{to}");
            }
            Ok(Verdict::Proceed {
                bucket, key: to, ..
            }) => {
                println!("{key}\trename\t{bucket}/{to}");
            }
            Err(e) => {
                failed = true;
                println!("{key}\terror\t{e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn filter_list(cfg: &Config) -> anyhow::Result<ExitCode> {
    let Some(dir) = cfg.filters.dir.clone() else {
        println!("no filter directory configured; set [filters] dir");
        return Ok(ExitCode::SUCCESS);
    };
    crate::filter::dir::scan(&dir)?;
    let filters = crate::filter::Filters::default();
    let mut watcher = crate::filter::Watcher::new(dir.clone(), cfg.filters.limits, filters);
    watcher.refresh();
    let status = watcher.status();
    println!(
        "{} ({} filter file(s), run in this order)",
        dir.display(),
        status.len()
    );
    let mut refused = false;
    for s in status {
        match (&s.version, &s.error) {
            (Some(v), None) => println!("  {}  {v}  ok", s.name),
            (_, Some(e)) => {
                refused = true;
                println!("  {}  -  refused: {e}", s.name);
            }
            (None, None) => println!("  {}  -  not loaded", s.name),
        }
    }
    Ok(if refused {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn human_bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(0))
        .unwrap_or(0)
}

fn counts_line(t: &Tally) -> String {
    let mut parts = vec![
        format!("listed {}", t.listed),
        format!("copied {}", t.copied),
        format!("skipped {}", t.skipped),
        format!("filtered {}", t.filtered),
    ];
    if t.dry_run {
        parts.push(format!("would copy {}", t.would_copy));
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

fn detail(id: &str, spec: &serde_json::Value, t: &Tally) -> String {
    let (objects_per_s, bytes_per_s) = ops::rates(t, now_ms());
    let mut out = vec![
        format!("migration {id}: {}", ops::state_of(t)),
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
        let (objects_per_s, bytes_per_s) = ops::rates(&t, now_ms());
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

async fn operate(cfg: Config, command: Command) -> anyhow::Result<ExitCode> {
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
            if json {
                let v = serde_json::json!({"id": id, "state": ops::state_of(&t), "spec": spec, "tally": t});
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}", detail(&id, &spec, &t));
            }
            ExitCode::SUCCESS
        }
        Command::Status { id: None, json } => {
            let mut rows = Vec::new();
            for id in op.migrations().await? {
                let (_, t) = op.status(&id).await?;
                rows.push((id, t));
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(id, t)| serde_json::json!({"id": id, "state": ops::state_of(t), "tally": t}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if rows.is_empty() {
                println!("no migrations");
            } else {
                for (id, t) in rows {
                    println!(
                        "{id}  {}  buckets {}/{}  {}",
                        ops::state_of(&t),
                        t.buckets_done(),
                        t.buckets.len(),
                        counts_line(&t)
                    );
                }
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
                let now = crate::resume::now_ms();
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

fn summary(path: &Path, cfg: &Config) -> String {
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
