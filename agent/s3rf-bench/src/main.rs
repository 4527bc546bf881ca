//! `s3rf-bench`: s3rf against the tools users would pick instead, on local
//! servers (`compare`), and the memory of one large migration (`scale`).
//! Run through `bash .ci/bench`, which installs the servers and peers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod compare;
mod dataset;
mod limit;
mod peers;
mod report;
mod requests;
mod s3rf;
mod scale;
mod shaper;
mod tools;
mod usage;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Benchmark s3rf on local servers")]
struct Cli {
    /// The s3rf-agent binary (default: next to this binary).
    #[arg(long, global = true)]
    agent: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// s3rf side by side with rclone, aws s3 sync, s5cmd and s3sync.
    Compare(compare::Args),
    /// One migration of many small objects; agent RSS sampled as it runs.
    Scale(scale::Args),
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let agent_bin = match cli.agent {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("no exe dir")?
            .join("s3rf-agent"),
    };
    if !agent_bin.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p s3rf-agent`",
            agent_bin.display()
        );
    }
    match cli.command {
        Command::Compare(args) => compare::run(args, &agent_bin).await,
        Command::Scale(args) => scale::run(args, &agent_bin).await,
    }
}
