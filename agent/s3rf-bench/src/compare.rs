//! `s3rf-bench compare`: every dataset, in both modes, through s3rf (1 and 2
//! agents) and every peer, interleaved over the repetitions; each copy is
//! verified before its numbers count. `--profile wan` puts a shaping proxy
//! (`shaper`) in front of each server and adds each tool's defaults.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use s3rf_testkit::{S3Kind, S3Server};

use crate::dataset::{self, Dataset};
use crate::limit::{self, Limit};
use crate::peers::{self, Endpoint, Mode, Peer, Route, Setting, Tuning};
use crate::report::{Outcome, Row, Section};
use crate::shaper::{self, Link, Proxy};
use crate::tools::{Tool, machine, version};

/// `compare` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `local`: the servers on loopback as they are. `wan`: each behind a
    /// shaping proxy (default `--rtt 20ms --bandwidth 1Gbit`), with each
    /// tool's defaults and 32 and 256 objects at once, on smaller datasets.
    #[arg(long, value_enum, default_value = "local")]
    profile: Profile,
    /// Round trip the proxies add (e.g. 20ms, 5ms; 0ms measures the proxy's
    /// own cost). Setting it puts the proxies in, whatever the profile.
    #[arg(long, value_parser = shaper::parse_rtt)]
    rtt: Option<Duration>,
    /// Bandwidth cap per endpoint and direction (e.g. 1Gbit, 100Mbit, off).
    #[arg(long, value_parser = shaper::parse_bandwidth)]
    bandwidth: Option<shaper::Bandwidth>,
    /// Datasets as NAME=COUNTxSIZE (repeatable; default small=20000x4KiB,
    /// medium=200x8MiB, large=4x512MiB; with `--profile wan`
    /// small=2000x4KiB, medium=100x8MiB, large=2x256MiB).
    #[arg(long = "dataset")]
    datasets: Vec<Dataset>,
    /// Modes to run.
    #[arg(long, value_enum, default_value = "both")]
    mode: ModeArg,
    /// Repetitions of every run (medians are reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// One table per entry: objects copied at once by every tool, or
    /// `defaults` (every tool untuned). Comma separated; default 32, with
    /// `--profile wan` defaults,32,256.
    #[arg(long, value_delimiter = ',')]
    concurrency: Vec<Setting>,
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
enum Profile {
    Local,
    Wan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ModeArg {
    Same,
    Cross,
    Both,
}

/// The link every endpoint gets, if any.
fn link(args: &Args) -> Option<Link> {
    let wan = args.profile == Profile::Wan;
    if !wan && args.rtt.is_none() && args.bandwidth.is_none() {
        return None;
    }
    let default_rtt = if wan {
        Duration::from_millis(20)
    } else {
        Duration::ZERO
    };
    Some(Link {
        rtt: args.rtt.unwrap_or(default_rtt),
        bytes_per_sec: args
            .bandwidth
            .map_or(if wan { Some(125e6) } else { None }, |b| b.0),
    })
}

/// One server and how the tools reach it.
struct Side {
    server: S3Server,
    proxy: Option<Proxy>,
    endpoint: Endpoint,
}

impl Side {
    async fn start(data: &Path, link: Option<Link>) -> Result<Side> {
        let server = S3Server::start_under(S3Kind::S3sFs, data)
            .with_context(|| format!("starting s3s-fs under {} (--server-data)", data.display()))?;
        let proxy = match link {
            Some(l) => {
                let upstream = server
                    .url()
                    .trim_start_matches("http://")
                    .parse()
                    .context("the server's address")?;
                Some(Proxy::start(upstream, l).await?)
            }
            None => None,
        };
        let url = proxy.as_ref().map_or_else(|| server.url(), Proxy::url);
        let endpoint = Endpoint::at(&server, url);
        Ok(Side {
            server,
            proxy,
            endpoint,
        })
    }

    fn reset(&self) {
        if let Some(p) = &self.proxy {
            p.reset();
        }
    }
}

/// Runs the comparison and writes the Markdown file.
pub async fn run(args: Args, agent_bin: &Path) -> Result<()> {
    let wan = args.profile == Profile::Wan;
    let link = link(&args);
    let datasets = match (args.datasets.is_empty(), wan) {
        (false, _) => args.datasets.clone(),
        (true, false) => dataset::defaults(),
        (true, true) => dataset::wan_defaults(),
    };
    let modes: &[Mode] = match args.mode {
        ModeArg::Same => &[Mode::Same],
        ModeArg::Cross => &[Mode::Cross],
        ModeArg::Both => &[Mode::Same, Mode::Cross],
    };
    let settings = match (args.concurrency.is_empty(), wan) {
        (false, _) => args.concurrency.clone(),
        (true, false) => vec![Setting::Equal(32)],
        (true, true) => vec![Setting::Defaults, Setting::Equal(32), Setting::Equal(256)],
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
    let mut missing: Vec<String> = Vec::new();
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
            Err(e) => missing.push(e),
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
    let a = Side::start(&args.server_data, link).await?;
    let b = Side::start(&args.server_data, link).await?;
    let network = match link {
        Some(l) => format!(
            "each behind a shaping proxy in this process ({}; a new connection costs one round trip)",
            l.describe()
        ),
        None => "reached directly".into(),
    };
    let mut header = format!(
        "Machine: {}. Date: {}.\n\nServers: two s3s-fs 0.14.1 on loopback (data under {}), {network}; one nats-server per s3rf run (store on disk). \
         Tables with N objects at once: every tool with N objects at once, {} parts in flight per object, {} parts, one request up to {} (streamed) and up to 512 MiB (server-side). \
         Tables with each tool's defaults: no tuning flags at all. \
         Medians of {} runs, each repetition starting with the next tool, `sync` before every run; MB = 10^6 bytes. CPU s and peak RSS count the copying processes (s3rf: agents plus nats-server).\n\n",
        machine(),
        version(Path::new("date"), "-u"),
        args.server_data.display(),
        args.part_concurrency,
        args.part_size.display().iec_short(),
        args.part_size.display().iec_short(),
        args.reps,
    );
    header.push_str("Versions:\n");
    for v in &versions {
        header.push_str(&format!("- {v}\n"));
    }
    for e in &missing {
        header.push_str(&format!("- not run: {e}\n"));
    }
    header.push('\n');
    println!("{header}");
    let ctx = Ctx {
        args: &args,
        agent_bin,
        tools: &tools,
        a: &a,
        b: &b,
        link,
        work: work.path(),
    };
    let mut sections = Vec::new();
    let mut run_no = 0;
    // Fill and verify directly: only the copies cross the link.
    let ac = a.server.client();
    for d in &datasets {
        println!("filling {d} on the source server …");
        ac.create_bucket().bucket(&d.name).send().await?;
        d.fill(&ac, &d.name).await?;
        settle();
        for &mode in modes {
            for &setting in &settings {
                let section = ctx.section(d, mode, setting, &mut run_no).await?;
                println!("\n{}", section.markdown());
                sections.push(section);
            }
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

/// What every section shares.
struct Ctx<'a> {
    args: &'a Args,
    agent_bin: &'a Path,
    tools: &'a [Tool],
    a: &'a Side,
    b: &'a Side,
    link: Option<Link>,
    work: &'a Path,
}

impl Ctx<'_> {
    /// One table: `d` in `mode` with `setting`, every tool `reps` times.
    async fn section(
        &self,
        d: &Dataset,
        mode: Mode,
        setting: Setting,
        run_no: &mut usize,
    ) -> Result<Section> {
        let args = self.args;
        let (a, b) = (self.a, self.b);
        let dst = match mode {
            Mode::Same => a,
            Mode::Cross => b,
        };
        // Raw requests go through the link too; the copy is checked directly.
        let (src_c, dst_c, dst_direct) = (
            a.endpoint.client(),
            dst.endpoint.client(),
            dst.server.client(),
        );
        let tuning = match setting {
            Setting::Defaults => None,
            Setting::Equal(n) => Some(Tuning {
                concurrency: n,
                part_concurrency: args.part_concurrency,
                part_size: args.part_size.as_u64(),
                multipart_threshold: args.part_size.as_u64(),
                server_side_multipart_threshold: 512 << 20,
            }),
        };
        let limit_concurrency = tuning.map_or(32, |t| t.concurrency);
        // At defaults, 2 agents sharing one agent's concurrency has no
        // meaning: no concurrency is set.
        let tools: Vec<&Tool> = self
            .tools
            .iter()
            .filter(|t| {
                tuning.is_some()
                    || !matches!(
                        t,
                        Tool::S3rf { shared: true, .. }
                            | Tool::S3rf {
                                unverified: true,
                                ..
                            }
                    )
            })
            .collect();
        let mut section = Section {
            dataset: d.clone(),
            mode,
            setting,
            link: self.link,
            limits: Vec::new(),
            rows: tools
                .iter()
                .map(|t| Row {
                    tool: t.name(),
                    key: t.key().into(),
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
            *run_no += 1;
            dst_c.create_bucket().bucket(&scratch).send().await?;
            let get = limit::get_all(&src_c, &d.name, d, limit_concurrency).await?;
            let put = limit::put_all(&dst_c, &scratch, d, limit_concurrency).await?;
            let _ = dst_c.delete_bucket().bucket(&scratch).send().await;
            let copy = if mode == Mode::Same {
                src_c.create_bucket().bucket(&scratch).send().await?;
                let c = limit::copy_all(&src_c, &d.name, &scratch, d, limit_concurrency).await?;
                let _ = src_c.delete_bucket().bucket(&scratch).send().await;
                c
            } else {
                Duration::ZERO
            };
            section.limits.push(Limit { get, put, copy });
            settle();
            // Each repetition starts with the next tool, so no tool always
            // runs right after the limit measurement.
            let mut order: Vec<_> = tools.iter().zip(section.rows.iter_mut()).collect();
            order.rotate_left(rep % tools.len().max(1));
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
                *run_no += 1;
                let dst_bucket = format!("dst-{label}");
                // s3rf creates its destination bucket; peers get one.
                if !matches!(tool, Tool::S3rf { .. }) {
                    dst_direct
                        .create_bucket()
                        .bucket(&dst_bucket)
                        .send()
                        .await?;
                }
                let route = Route {
                    src: &a.endpoint,
                    src_bucket: &d.name,
                    dst: &dst.endpoint,
                    same: mode == Mode::Same,
                    dst_bucket: &dst_bucket,
                    work: self.work,
                    label: &label,
                };
                print!(
                    "{d}, {}, {}, run {}/{}: {} … ",
                    mode.name(),
                    setting.name(),
                    rep + 1,
                    args.reps,
                    tool.name()
                );
                a.reset();
                b.reset();
                let result = self.run_tool(tool, &route, tuning.as_ref()).await;
                let result = match result {
                    Ok(u) => d
                        .verify(&dst_direct, &dst_bucket)
                        .await
                        .context("the copy is wrong")
                        .map(|()| u),
                    Err(e) => Err(e),
                };
                let _ = dst_direct.delete_bucket().bucket(&dst_bucket).send().await;
                settle();
                match result {
                    Ok(mut u) => {
                        if let (Some(pa), Some(pb)) = (&a.proxy, &b.proxy) {
                            u.requests = Some(if mode == Mode::Same {
                                pa.counts()
                            } else {
                                pa.counts().plus(&pb.counts())
                            });
                        }
                        println!(
                            "{:.1}s, {:.0} objects/s, {:.1} MB/s, CPU {:.1}s, RSS {} MiB{}",
                            u.wall.as_secs_f64(),
                            d.count as f64 / u.wall.as_secs_f64(),
                            d.bytes() as f64 / 1e6 / u.wall.as_secs_f64(),
                            u.cpu.as_secs_f64(),
                            u.peak_rss_kib / 1024,
                            u.requests.map_or(String::new(), |c| format!(
                                ", {:.2} requests/object",
                                c.total() as f64 / d.count as f64
                            )),
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
        Ok(section)
    }

    async fn run_tool(
        &self,
        tool: &Tool,
        route: &Route<'_>,
        tuning: Option<&Tuning>,
    ) -> Result<crate::usage::Usage> {
        match tool {
            Tool::S3rf {
                agents,
                shared,
                unverified,
            } => {
                let tuning = tuning.map(|t| Tuning {
                    concurrency: if *shared {
                        (t.concurrency / agents).max(1)
                    } else {
                        t.concurrency
                    },
                    ..*t
                });
                crate::s3rf::run(
                    self.agent_bin,
                    *agents,
                    route,
                    tuning.as_ref(),
                    !*unverified,
                )
                .await
            }
            Tool::Peer(p) => p.run(route, tuning).await,
        }
    }
}

/// Flushes dirty pages to disk, so the next run does not pay for the
/// writeback of the one before (or of the fill and the limit measurement).
fn settle() {
    if let Err(e) = Command::new("sync").status() {
        eprintln!("warning: cannot run sync ({e}); runs may pay for each other's writeback");
    }
}
