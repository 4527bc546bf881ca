//! The `s3rf-agent` command line: argument parsing and dispatch. `main` only
//! calls [`main`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::agent::{self, RunOptions};
use crate::config::Config;
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
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
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
    }
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
