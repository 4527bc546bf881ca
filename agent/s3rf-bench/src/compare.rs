//! `s3rf-bench compare`: every dataset, in both modes, through s3rf (1 and 2
//! agents) and every peer, interleaved over the repetitions; each copy is
//! verified before its numbers count.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use s3rf_testkit::{S3Kind, S3Server};

use crate::dataset::{self, Dataset};
use crate::limit::{self, Limit};
use crate::peers::{self, Mode, Peer, Route, Tuning};
use crate::report::{Outcome, Row, Section};

/// `compare` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Datasets as NAME=COUNTxSIZE (repeatable; default small=20000x4KiB,
    /// medium=200x8MiB, large=4x512MiB).
    #[arg(long = "dataset")]
    datasets: Vec<Dataset>,
    /// Modes to run.
    #[arg(long, value_enum, default_value = "both")]
    mode: ModeArg,
    /// Repetitions of every run (medians are reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Objects copied at once, for every tool.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Parts in flight per object, for every tool.
    #[arg(long, default_value_t = 4)]
    part_concurrency: usize,
    /// Part size, for every tool.
    #[arg(long, default_value = "16MiB")]
    part_size: bytesize::ByteSize,
    /// A tool whose run took longer than this many seconds is not repeated
    /// (its row shows one run), so a slow peer cannot eat the whole budget.
    #[arg(long, default_value_t = 120)]
    repeat_under_secs: u64,
    /// Only these tools (comma separated: s3rf, s3rf-2, s3rf-2-shared,
    /// s3rf-unverified, rclone, aws, s5cmd, s3sync). `s3rf-2-shared`: 2
    /// agents sharing the concurrency (half each), as many requests in
    /// flight as one agent. `s3rf-unverified`: 1 agent with `verify = "off"`
    /// on both endpoints, to show what the integrity checks cost.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where the S3 servers keep their data. The default, a tmpfs, keeps a
    /// shared VM's disk from swamping the comparison; nats-server (s3rf's
    /// durable queue) stays on disk either way, so its cost is counted.
    #[arg(long, default_value = "/dev/shm")]
    server_data: PathBuf,
    /// Markdown results file.
    #[arg(long, default_value = "target/bench/compare.md")]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ModeArg {
    Same,
    Cross,
    Both,
}

enum Tool {
    /// `agents` s3rf agents; `shared`: they split the concurrency between
    /// them instead of each taking all of it.
    S3rf {
        agents: usize,
        shared: bool,
        /// `verify = "off"` on both endpoints: what integrity checks cost.
        unverified: bool,
    },
    Peer(Peer),
}

impl Tool {
    fn name(&self) -> String {
        match self {
            Self::S3rf {
                unverified: true, ..
            } => "s3rf, 1 agent, verify = off".into(),
            Self::S3rf { agents: 1, .. } => "s3rf, 1 agent".into(),
            Self::S3rf {
                agents,
                shared: false,
                ..
            } => format!("s3rf, {agents} agents"),
            Self::S3rf {
                agents,
                shared: true,
                ..
            } => format!("s3rf, {agents} agents sharing the concurrency"),
            Self::Peer(p) => p.name().into(),
        }
    }

    fn key(&self) -> &'static str {
        match self {
            Self::S3rf {
                unverified: true, ..
            } => "s3rf-unverified",
            Self::S3rf { agents: 1, .. } => "s3rf",
            Self::S3rf { shared: false, .. } => "s3rf-2",
            Self::S3rf { shared: true, .. } => "s3rf-2-shared",
            Self::Peer(Peer::Rclone(_)) => "rclone",
            Self::Peer(Peer::Aws(_)) => "aws",
            Self::Peer(Peer::S5cmd(_)) => "s5cmd",
            Self::Peer(Peer::S3sync(_)) => "s3sync",
        }
    }
}

fn version(bin: &Path, arg: &str) -> String {
    Command::new(bin)
        .arg(arg)
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|k| k.parse::<u64>().ok())
        .map_or(0, |k| k / 1024 / 1024);
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = version(Path::new("uname"), "-r");
    format!("{cores} cores ({cpu}), {mem} GiB RAM, Linux {kernel}")
}

/// Runs the comparison and writes the Markdown file.
pub async fn run(args: Args, agent_bin: &Path) -> Result<()> {
    let datasets = if args.datasets.is_empty() {
        dataset::defaults()
    } else {
        args.datasets.clone()
    };
    let modes: &[Mode] = match args.mode {
        ModeArg::Same => &[Mode::Same],
        ModeArg::Cross => &[Mode::Cross],
        ModeArg::Both => &[Mode::Same, Mode::Cross],
    };
    let tuning = Tuning {
        concurrency: args.concurrency,
        part_concurrency: args.part_concurrency,
        part_size: args.part_size.as_u64(),
        multipart_threshold: args.part_size.as_u64(),
        server_side_multipart_threshold: 512 << 20,
    };
    let wanted = |key: &str| args.only.is_empty() || args.only.iter().any(|o| o == key);
    let mut tools: Vec<Tool> = vec![
        Tool::S3rf {
            agents: 1,
            shared: false,
            unverified: false,
        },
        Tool::S3rf {
            agents: 2,
            shared: false,
            unverified: false,
        },
        Tool::S3rf {
            agents: 2,
            shared: true,
            unverified: false,
        },
        Tool::S3rf {
            agents: 1,
            shared: false,
            unverified: true,
        },
    ];
    let mut missing: Vec<(String, String)> = Vec::new();
    let mut versions = vec![format!("s3rf-agent: {}", version(agent_bin, "--version"))];
    for p in peers::discover() {
        match p {
            Ok(p) => {
                // rclone and s5cmd take a `version` subcommand, not a flag.
                let arg = if matches!(p, Peer::Rclone(_) | Peer::S5cmd(_)) {
                    "version"
                } else {
                    "--version"
                };
                let bin = match &p {
                    Peer::Rclone(b) | Peer::Aws(b) | Peer::S5cmd(b) | Peer::S3sync(b) => b.clone(),
                };
                versions.push(format!("{}: {}", p.name(), version(&bin, arg)));
                tools.push(Tool::Peer(p));
            }
            Err(e) => missing.push((e.split_whitespace().next().unwrap_or("?").to_owned(), e)),
        }
    }
    tools.retain(|t| wanted(t.key()));
    // S3RF_BENCH_KEEP=1 keeps the agents' and peers' logs for a look.
    let keep = std::env::var_os("S3RF_BENCH_KEEP").is_some();
    let work = tempfile::Builder::new()
        .prefix("s3rf-bench-")
        .disable_cleanup(keep)
        .tempdir()?;
    if keep {
        println!("logs are kept in {}", work.path().display());
    }
    let a = S3Server::start_under(S3Kind::S3sFs, &args.server_data).with_context(|| {
        format!(
            "starting s3s-fs under {} (--server-data)",
            args.server_data.display()
        )
    })?;
    let b = S3Server::start_under(S3Kind::S3sFs, &args.server_data).with_context(|| {
        format!(
            "starting s3s-fs under {} (--server-data)",
            args.server_data.display()
        )
    })?;
    let (ac, bc) = (a.client(), b.client());
    let mut header = String::new();
    header.push_str(&format!(
        "Machine: {}. Date: {}.\n\nServers: two s3s-fs 0.14.1 on loopback (data under {}), one nats-server per s3rf run (store on disk). \
         Every tool: {} objects at once, {} parts in flight per object, {} parts, one request up to {} (streamed) and up to 512 MiB (server-side). \
         Medians of {} runs, each repetition starting with the next tool, `sync` before every run; MB = 10^6 bytes. CPU s and peak RSS count the copying processes (s3rf: agents plus nats-server).\n\n",
        machine(),
        version(Path::new("date"), "-u"),
        args.server_data.display(),
        tuning.concurrency,
        tuning.part_concurrency,
        args.part_size.display().iec_short(),
        args.part_size.display().iec_short(),
        args.reps,
    ));
    header.push_str("Versions:\n");
    for v in &versions {
        header.push_str(&format!("- {v}\n"));
    }
    for (_, e) in &missing {
        header.push_str(&format!("- not run: {e}\n"));
    }
    header.push('\n');
    println!("{header}");
    let mut sections = Vec::new();
    let mut run_no = 0;
    for d in &datasets {
        println!("filling {d} on the source server …");
        ac.create_bucket().bucket(&d.name).send().await?;
        d.fill(&ac, &d.name).await?;
        settle();
        for &mode in modes {
            let (dst, dc) = match mode {
                Mode::Same => (&a, &ac),
                Mode::Cross => (&b, &bc),
            };
            let mut section = Section {
                dataset: d.clone(),
                mode,
                limits: Vec::new(),
                rows: tools
                    .iter()
                    .map(|t| Row {
                        tool: t.name(),
                        s3rf: matches!(t, Tool::S3rf { .. }),
                        outcome: match t {
                            Tool::Peer(p) => {
                                p.unsupported(mode).map_or(Outcome::Ran(Vec::new()), |w| {
                                    Outcome::NotApplicable(w.into())
                                })
                            }
                            Tool::S3rf { .. } => Outcome::Ran(Vec::new()),
                        },
                    })
                    .collect(),
            };
            for rep in 0..args.reps {
                let scratch = format!("limit-{run_no}");
                run_no += 1;
                dc.create_bucket().bucket(&scratch).send().await?;
                let get = limit::get_all(&ac, &d.name, d, tuning.concurrency).await?;
                let put = limit::put_all(dc, &scratch, d, tuning.concurrency).await?;
                let _ = dc.delete_bucket().bucket(&scratch).send().await;
                let copy = if mode == Mode::Same {
                    ac.create_bucket().bucket(&scratch).send().await?;
                    let c = limit::copy_all(&ac, &d.name, &scratch, d, tuning.concurrency).await?;
                    let _ = ac.delete_bucket().bucket(&scratch).send().await;
                    c
                } else {
                    std::time::Duration::ZERO
                };
                section.limits.push(Limit { get, put, copy });
                settle();
                // Each repetition starts with the next tool, so no tool always
                // runs right after the limit measurement.
                let mut order: Vec<_> = tools.iter().zip(section.rows.iter_mut()).collect();
                order.rotate_left(rep % tools.len());
                for (tool, row) in order {
                    let Outcome::Ran(runs) = &mut row.outcome else {
                        continue;
                    };
                    if runs
                        .first()
                        .is_some_and(|u| u.wall.as_secs() > args.repeat_under_secs)
                    {
                        println!(
                            "{d}, {}: {} not repeated (first run over {}s)",
                            mode.name(),
                            tool.name(),
                            args.repeat_under_secs
                        );
                        continue;
                    }
                    let label = format!("r{run_no}-{}", tool.key());
                    run_no += 1;
                    let dst_bucket = format!("dst-{label}");
                    // s3rf creates its destination bucket; peers get one.
                    if !matches!(tool, Tool::S3rf { .. }) {
                        dc.create_bucket().bucket(&dst_bucket).send().await?;
                    }
                    let route = Route {
                        src: &a,
                        src_bucket: &d.name,
                        dst,
                        dst_bucket: &dst_bucket,
                        work: work.path(),
                        label: &label,
                    };
                    print!(
                        "{d}, {}, run {}/{}: {} … ",
                        mode.name(),
                        rep + 1,
                        args.reps,
                        tool.name()
                    );
                    let result = match tool {
                        Tool::S3rf {
                            agents,
                            shared,
                            unverified,
                        } => {
                            let tuning = Tuning {
                                concurrency: if *shared {
                                    (tuning.concurrency / agents).max(1)
                                } else {
                                    tuning.concurrency
                                },
                                ..tuning
                            };
                            crate::s3rf::run(agent_bin, *agents, &route, &tuning, !*unverified)
                                .await
                        }
                        Tool::Peer(p) => p.run(&route, &tuning).await,
                    };
                    let result = match result {
                        Ok(u) => d
                            .verify(dc, &dst_bucket)
                            .await
                            .context("the copy is wrong")
                            .map(|()| u),
                        Err(e) => Err(e),
                    };
                    let _ = dc.delete_bucket().bucket(&dst_bucket).send().await;
                    settle();
                    match result {
                        Ok(u) => {
                            println!(
                                "{:.1}s, {:.0} objects/s, {:.1} MB/s, CPU {:.1}s, RSS {} MiB",
                                u.wall.as_secs_f64(),
                                d.count as f64 / u.wall.as_secs_f64(),
                                d.bytes() as f64 / 1e6 / u.wall.as_secs_f64(),
                                u.cpu.as_secs_f64(),
                                u.peak_rss_kib / 1024
                            );
                            runs.push(u);
                        }
                        Err(e) => {
                            println!("FAILED: {e:#}");
                            row.outcome = Outcome::Failed(format!("{e:#}"));
                        }
                    }
                }
            }
            let md = section.markdown();
            println!("\n{md}");
            sections.push(section);
        }
        let _ = ac.delete_bucket().bucket(&d.name).send().await;
    }
    let mut md = String::from("## Results\n\n");
    md.push_str(&header);
    for s in &sections {
        md.push_str(&s.markdown());
    }
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, &md).with_context(|| format!("writing {}", args.out.display()))?;
    println!("results written to {}", args.out.display());
    Ok(())
}

/// Flushes dirty pages to disk, so the next run does not pay for the
/// writeback of the one before (or of the fill and the limit measurement).
fn settle() {
    if let Err(e) = Command::new("sync").status() {
        eprintln!("warning: cannot run sync ({e}); runs may pay for each other's writeback");
    }
}
