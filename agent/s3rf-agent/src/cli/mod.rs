//! The `s3rf-agent` command line: argument parsing and dispatch. `main` only
//! calls [`main`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

mod filters;
mod operate;

use filters::{filter_list, filter_test};
use operate::{operate, summary};

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
    /// Change a running migration's fleet-wide rate; without limits, remove
    /// it. Every agent applies it within seconds.
    MigrateRate(MigrateRateArgs),
    /// Compare a destination with its source, like `rclone check`: start
    /// one (--src, --dst), or show one (ID), list its differences (--list)
    /// or repair them (--repair). Exits 0 only when everything matches.
    Verify(VerifyArgs),
    /// Show a migration's schedule: last and next run; change it (--every)
    /// or end it (--stop).
    Schedule(ScheduleArgs),
    /// Pause a migration (ID), event sync (--sync) or all work (--all): jobs
    /// in flight finish, no new ones start, every agent within seconds.
    Pause(PauseTarget),
    /// Undo `pause`: the paused jobs run again.
    Resume(PauseTarget),
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

/// What `pause` and `resume` apply to: one of a migration id, `--sync` or
/// `--all`.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct PauseTarget {
    /// Migration id.
    pub id: Option<String>,
    /// Event-driven work: the jobs the SQS bridge makes from S3 events (the
    /// bridge keeps reading; its jobs wait).
    #[arg(long)]
    pub sync: bool,
    /// Every job, of every migration, event and hand-published job.
    #[arg(long)]
    pub all: bool,
}

impl PauseTarget {
    /// The pause it names.
    pub fn scope(&self) -> crate::pause::PauseScope {
        use crate::pause::PauseScope;
        match (&self.id, self.all) {
            (Some(id), _) => PauseScope::Migration(id.clone()),
            (None, true) => PauseScope::All,
            (None, false) => PauseScope::Sync,
        }
    }

    /// How it is written on the command line.
    pub fn arg(&self) -> String {
        match (&self.id, self.all) {
            (Some(id), _) => id.clone(),
            (None, true) => "--all".to_owned(),
            (None, false) => "--sync".to_owned(),
        }
    }
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
    /// Fleet-wide: source bytes all agents together read per second for
    /// this migration (e.g. 100MiB).
    #[arg(long, value_parser = parse_size)]
    pub bytes_per_sec: Option<u64>,
    /// Fleet-wide: object jobs all agents together start per second for
    /// this migration.
    #[arg(long)]
    pub objects_per_sec: Option<u32>,
    /// Re-run incrementally on this interval (30m, 1h, 1d); run n gets the
    /// id ID-n. With --wait, waits for the first run.
    #[arg(long)]
    pub every: Option<String>,
    /// Migrate every version of every object, oldest first, delete markers
    /// included; destination buckets must be (or are created) versioned.
    #[arg(long)]
    pub versions: bool,
}

/// Options of `verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The verification's id: with --src its id (default: generated), else
    /// the one to show, list or repair.
    pub id: Option<String>,
    /// Source endpoint: start a new verification.
    #[arg(long, requires = "dst")]
    pub src: Option<String>,
    /// Destination endpoint.
    #[arg(long, requires = "src")]
    pub dst: Option<String>,
    /// A bucket to verify (repeat); all buckets of --src when absent.
    #[arg(long = "bucket")]
    pub buckets: Vec<String>,
    /// A glob of buckets to leave out (repeat).
    #[arg(long = "exclude-bucket")]
    pub exclude_buckets: Vec<String>,
    /// A bucket's name at the destination: SRC=DST (repeat).
    #[arg(long = "map", value_parser = parse_mapping)]
    pub bucket_map: Vec<(String, String)>,
    /// Only keys under this prefix.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Read both objects where checksums cannot be compared.
    #[arg(long)]
    pub deep: bool,
    /// Apply the agents' filters to source objects, as a copy would:
    /// skipped ones are left out, renamed ones compared under their new name.
    #[arg(long)]
    pub filters: bool,
    /// Wait until it is complete, then print the summary.
    #[arg(long)]
    pub wait: bool,
    /// Print the differing keys.
    #[arg(long, conflicts_with = "repair")]
    pub list: bool,
    /// Publish copy and delete jobs for the differing keys.
    #[arg(long)]
    pub repair: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `schedule`.
#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// The scheduled migration's id (its first run's).
    pub id: String,
    /// A new interval (30m, 1h, 1d).
    #[arg(long, conflicts_with = "stop")]
    pub every: Option<String>,
    /// End the schedule; runs already started go on.
    #[arg(long)]
    pub stop: bool,
}

/// Options of `migrate-rate`.
#[derive(Debug, clap::Args)]
pub struct MigrateRateArgs {
    /// Migration id.
    pub id: String,
    /// Source bytes per second for the whole fleet (e.g. 100MiB).
    #[arg(long, value_parser = parse_size)]
    pub bytes_per_sec: Option<u64>,
    /// Object jobs per second for the whole fleet.
    #[arg(long)]
    pub objects_per_sec: Option<u32>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{s:?}: {e} (write e.g. 100MiB)"))
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
