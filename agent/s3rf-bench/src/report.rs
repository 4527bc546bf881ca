//! Medians, ratios and the Markdown table.

use std::fmt::Write as _;
use std::time::Duration;

use crate::dataset::Dataset;
use crate::limit::Limit;
use crate::peers::{Mode, Setting};
use crate::requests::Kind;
use crate::shaper::{Counts, Link};
use crate::usage::Usage;

/// What became of one tool in one section.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// One usage per repetition, every copy verified.
    Ran(Vec<Usage>),
    /// A run failed or copied wrong data: no number.
    Failed(String),
    /// The tool cannot do this (or is not installed).
    NotApplicable(String),
}

/// One tool's line.
#[derive(Debug, Clone)]
pub struct Row {
    /// Tool name.
    pub tool: String,
    /// Tool key (`s3rf`, `s3rf-2`, `rclone`, …).
    pub key: String,
    /// s3rf rather than a peer.
    pub s3rf: bool,
    /// Result.
    pub outcome: Outcome,
}

/// One dataset in one mode.
#[derive(Debug, Clone)]
pub struct Section {
    /// The data.
    pub dataset: Dataset,
    /// Where it went.
    pub mode: Mode,
    /// How the tools were set.
    pub setting: Setting,
    /// The emulated link (WAN profile), if any.
    pub link: Option<Link>,
    /// The raw server limit, per repetition.
    pub limits: Vec<Limit>,
    /// Tools.
    pub rows: Vec<Row>,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

fn median_u64(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    match v.len() {
        0 => 0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

/// Median usage of a tool's runs.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub wall: Duration,
    pub cpu: Duration,
    pub peak_rss_kib: u64,
}

impl Summary {
    fn of(runs: &[Usage]) -> Self {
        Self {
            wall: median(runs.iter().map(|u| u.wall).collect()),
            cpu: median(runs.iter().map(|u| u.cpu).collect()),
            peak_rss_kib: median_u64(runs.iter().map(|u| u.peak_rss_kib).collect()),
        }
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(1e-9)
}

impl Section {
    /// The raw limit for this mode (median wall): CopyObject on one
    /// endpoint; across endpoints the slower of GET and PUT, since every
    /// byte must be read and written once.
    pub fn limit_wall(&self) -> Option<Duration> {
        if self.limits.is_empty() {
            return None;
        }
        let get = median(self.limits.iter().map(|l| l.get).collect());
        let put = median(self.limits.iter().map(|l| l.put).collect());
        let copy = median(self.limits.iter().map(|l| l.copy).collect());
        Some(match self.mode {
            Mode::Same => copy,
            Mode::Cross => get.max(put),
        })
    }

    fn summary(&self, row: &Row) -> Option<Summary> {
        match &row.outcome {
            Outcome::Ran(runs) if !runs.is_empty() => Some(Summary::of(runs)),
            _ => None,
        }
    }

    /// The fastest peer's median wall time.
    pub fn best_peer(&self) -> Option<(&str, Duration)> {
        self.rows
            .iter()
            .filter(|r| !r.s3rf)
            .filter_map(|r| self.summary(r).map(|s| (r.tool.as_str(), s.wall)))
            .min_by_key(|(_, w)| *w)
    }

    /// The summary of the first s3rf row (one agent).
    pub fn s3rf(&self) -> Option<Summary> {
        self.rows
            .iter()
            .find(|r| r.s3rf)
            .and_then(|r| self.summary(r))
    }

    fn small(&self) -> bool {
        self.dataset.size < (1 << 20)
    }

    fn wan(&self) -> bool {
        self.link.is_some_and(|l| !l.rtt.is_zero())
    }

    /// Median wall of the row with `key`.
    fn wall_of(&self, key: &str) -> Option<Duration> {
        self.rows
            .iter()
            .find(|r| r.key == key)
            .and_then(|r| self.summary(r))
            .map(|s| s.wall)
    }

    /// The target for this section and whether s3rf meets it.
    pub fn verdict(&self) -> String {
        let met = |ok: bool| if ok { "met" } else { "NOT met" };
        let Some(s) = self.s3rf() else {
            return "no verdict: s3rf has no result".into();
        };
        let cap = self.link.and_then(|l| l.bytes_per_sec);
        if self.wan()
            && !self.small()
            && self.mode == Mode::Cross
            && let Some(cap) = cap
        {
            let f = self.dataset.bytes() as f64 / secs(s.wall) / cap;
            return format!(
                "MB/s at {:.0}% of the {:.0} MB/s cap (target >= 90%): {}",
                f * 100.0,
                cap / 1e6,
                met(f >= 0.9)
            );
        }
        let Some((peer, best)) = self.best_peer() else {
            return "no verdict: every peer has no result".into();
        };
        let ratio = secs(best) / secs(s.wall);
        if self.small() || self.wan() {
            let target = match (self.wan(), self.setting, self.mode) {
                (true, Setting::Defaults, _) | (false, _, Mode::Same) => 1.5,
                (true, Setting::Equal(_), _) | (false, _, Mode::Cross) => 1.2,
            };
            let what = if self.small() { "objects/s" } else { "MB/s" };
            let mut v = format!(
                "{what} {ratio:.2}x {peer} (target >= {target}x): {}",
                met(ratio >= target)
            );
            if self.wan()
                && let (Some(one), Some(two)) = (self.wall_of("s3rf"), self.wall_of("s3rf-2"))
            {
                let f = secs(one) / secs(two);
                v.push_str(&format!(
                    "; 2 agents {f:.2}x 1 agent (target >= 1.8x): {}",
                    met(f >= 1.8)
                ));
            }
            v
        } else {
            let of_limit = self.limit_wall().map(|l| secs(l) / secs(s.wall));
            let ok = ratio >= 1.2 && of_limit.is_some_and(|f| f >= 0.8);
            format!(
                "MB/s {ratio:.2}x {peer} (target >= 1.2x), {} of the limit (target >= 80%): {}",
                of_limit.map_or("?".into(), |f| format!("{:.0}%", f * 100.0)),
                met(ok)
            )
        }
    }

    /// The Markdown table of this section.
    pub fn markdown(&self) -> String {
        let d = &self.dataset;
        let mut out = String::new();
        let link = self
            .link
            .map_or(String::new(), |l| format!(", {}", l.describe()));
        let _ = writeln!(
            out,
            "### {d}, {}, {}{link}\n",
            self.mode.name(),
            self.setting.name()
        );
        let _ = writeln!(
            out,
            "| tool | wall s | objects/s | MB/s | CPU s | CPU s/GB | CPU s/1k obj | peak RSS MiB | requests/obj | vs best peer | of limit | runs (wall s) |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        let mut breakdown = Vec::new();
        let mut queue_shares = Vec::new();
        let best = self.best_peer().map(|(_, w)| w);
        let limit = self.limit_wall();
        let gb = d.bytes() as f64 / 1e9;
        let rate = |w: Duration| (d.count as f64 / secs(w), d.bytes() as f64 / 1e6 / secs(w));
        for row in &self.rows {
            let name = if row.s3rf {
                format!("**{}**", row.tool)
            } else {
                row.tool.clone()
            };
            let runs = match &row.outcome {
                Outcome::Ran(runs) if !runs.is_empty() => runs,
                Outcome::Ran(_) => {
                    let _ = writeln!(out, "| {name} | n/a: no runs |||||||||");
                    continue;
                }
                Outcome::Failed(e) => {
                    let _ = writeln!(out, "| {name} | FAILED: {} |||||||||", one_line(e));
                    continue;
                }
                Outcome::NotApplicable(why) => {
                    let _ = writeln!(out, "| {name} | n/a: {} |||||||||", one_line(why));
                    continue;
                }
            };
            let s = Summary::of(runs);
            let (ops, mbs) = rate(s.wall);
            let walls: Vec<String> = runs
                .iter()
                .map(|u| format!("{:.1}", u.wall.as_secs_f64()))
                .collect();
            let queue = median(runs.iter().map(|u| u.queue_cpu).collect());
            if !queue.is_zero() {
                let per_k = |c: Duration| c.as_secs_f64() * 1000.0 / d.count.max(1) as f64;
                queue_shares.push(format!(
                    "{}: {:.2} in the agents, {:.2} in nats-server",
                    row.tool,
                    per_k(s.cpu.saturating_sub(queue)),
                    per_k(queue)
                ));
            }
            let requests = median_counts(runs);
            if let Some(c) = &requests {
                breakdown.push(format!("{}: {}", row.tool, per_object(c, d.count as u64)));
            }
            let _ = writeln!(
                out,
                "| {name} | {:.1} | {} | {mbs:.1} | {:.1} | {:.1} | {:.2} | {} | {} | {} | {} | {} |",
                s.wall.as_secs_f64(),
                // Few large objects: keep the decimals.
                if ops < 10.0 {
                    format!("{ops:.2}")
                } else {
                    format!("{ops:.0}")
                },
                s.cpu.as_secs_f64(),
                s.cpu.as_secs_f64() / gb.max(1e-9),
                s.cpu.as_secs_f64() * 1000.0 / d.count.max(1) as f64,
                s.peak_rss_kib / 1024,
                requests.map_or("-".into(), |c| format!(
                    "{:.2}",
                    c.total() as f64 / d.count.max(1) as f64
                )),
                best.map_or("-".into(), |b| format!("{:.2}x", secs(b) / secs(s.wall))),
                limit.map_or("-".into(), |l| format!(
                    "{:.0}%",
                    100.0 * secs(l) / secs(s.wall)
                )),
                walls.join(" / "),
            );
        }
        if !breakdown.is_empty() {
            let _ = writeln!(
                out,
                "\nRequests per object at the proxies (median of the runs): {}.",
                breakdown.join("; ")
            );
        }
        if !queue_shares.is_empty() {
            let _ = writeln!(
                out,
                "\nCPU s per 1,000 objects, split (medians): {}.",
                queue_shares.join("; ")
            );
        }
        if !self.limits.is_empty() {
            let get = median(self.limits.iter().map(|l| l.get).collect());
            let put = median(self.limits.iter().map(|l| l.put).collect());
            let (gops, gmbs) = rate(get);
            let (pops, pmbs) = rate(put);
            let _ = write!(
                out,
                "\nServer limit (this process, raw requests): GET {gops:.0} objects/s = {gmbs:.1} MB/s; PUT {pops:.0} objects/s = {pmbs:.1} MB/s"
            );
            if self.mode == Mode::Same {
                let copy = median(self.limits.iter().map(|l| l.copy).collect());
                let (cops, cmbs) = rate(copy);
                let _ = write!(
                    out,
                    "; CopyObject {cops:.0} objects/s = {cmbs:.1} MB/s (the limit here)"
                );
            } else {
                let _ = write!(out, " (the slower of the two is the limit here)");
            }
            let _ = writeln!(out, ".");
        }
        let _ = writeln!(out, "\nVerdict: {}.\n", self.verdict());
        out
    }
}

/// Per-kind medians of the runs' proxy counts.
fn median_counts(runs: &[Usage]) -> Option<Counts> {
    let all: Vec<Counts> = runs.iter().filter_map(|u| u.requests).collect();
    if all.is_empty() {
        return None;
    }
    let mut c = Counts::default();
    for k in Kind::ALL {
        c.requests[k.index()] = median_u64(all.iter().map(|a| a.requests[k.index()]).collect());
    }
    c.connections = median_u64(all.iter().map(|a| a.connections).collect());
    c.unparsed = all.iter().map(|a| a.unparsed).max().unwrap_or(0);
    Some(c)
}

/// "GET 1.00, PUT 1.00, LIST 0.01; 33 connections".
fn per_object(c: &Counts, objects: u64) -> String {
    let parts: Vec<String> = Kind::ALL
        .iter()
        .filter(|k| c.requests[k.index()] > 0)
        .map(|k| {
            format!(
                "{} {:.2}",
                k.name(),
                c.requests[k.index()] as f64 / objects.max(1) as f64
            )
        })
        .collect();
    let mut s = format!("{}; {} connections", parts.join(", "), c.connections);
    if c.unparsed > 0 {
        s.push_str(&format!(" ({} not parsed: counts are a floor)", c.unparsed));
    }
    s
}

fn one_line(s: &str) -> String {
    let s = s.replace(['\n', '|'], " ");
    if s.len() > 200 {
        format!("{}…", &s[..s.floor_char_boundary(200)])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(wall: u64) -> Usage {
        Usage {
            wall: Duration::from_secs(wall),
            cpu: Duration::from_secs(wall / 2),
            queue_cpu: Duration::ZERO,
            peak_rss_kib: 1024 * wall,
            requests: None,
        }
    }

    fn section(size: u64, s3rf: u64, peer: u64, limit: u64) -> Section {
        Section {
            dataset: Dataset {
                name: "x".into(),
                count: 100,
                size,
            },
            mode: Mode::Cross,
            setting: Setting::Equal(32),
            link: None,
            limits: vec![Limit {
                get: Duration::from_secs(limit),
                put: Duration::from_secs(limit / 2),
                copy: Duration::ZERO,
            }],
            rows: vec![
                Row {
                    tool: "s3rf".into(),
                    key: "s3rf".into(),
                    s3rf: true,
                    outcome: Outcome::Ran(vec![usage(s3rf), usage(s3rf + 100), usage(s3rf - 1)]),
                },
                Row {
                    tool: "peer".into(),
                    key: "peer".into(),
                    s3rf: false,
                    outcome: Outcome::Ran(vec![usage(peer)]),
                },
                Row {
                    tool: "broken".into(),
                    key: "broken".into(),
                    s3rf: false,
                    outcome: Outcome::Failed("wrong bytes".into()),
                },
            ],
        }
    }

    #[test]
    fn medians_ratios_and_verdicts() {
        let s = section(4096, 10, 20, 5);
        assert_eq!(s.s3rf().unwrap().wall, Duration::from_secs(10));
        assert_eq!(s.best_peer().unwrap(), ("peer", Duration::from_secs(20)));
        assert!(s.verdict().contains("2.00x peer") && s.verdict().ends_with(": met"));
        // Local small objects: 1.2x across endpoints, 1.5x within one.
        assert!(section(4096, 10, 13, 5).verdict().ends_with(": met"));
        assert!(section(4096, 10, 11, 5).verdict().ends_with("NOT met"));
        let mut same = section(4096, 10, 14, 5);
        same.mode = Mode::Same;
        assert!(same.verdict().ends_with("NOT met"), "{}", same.verdict());
        // Large objects: 1.2x the peer and 80% of the limit (the slower side).
        assert!(section(1 << 20, 10, 13, 8).verdict().ends_with(": met"));
        assert!(
            section(1 << 20, 10, 13, 7)
                .verdict()
                .contains("70% of the limit")
        );
        let md = s.markdown();
        assert!(md.contains("| broken | FAILED: wrong bytes |"), "{md}");
        assert!(md.contains("| 2.00x | 50% | 10.0 / 110.0 / 9.0 |"), "{md}");
    }

    #[test]
    fn wan_targets_defaults_fleet_and_the_bandwidth_cap() {
        let link = Link {
            rtt: Duration::from_millis(20),
            bytes_per_sec: Some(1e6),
        };
        let mut s = section(4096, 10, 14, 5);
        s.link = Some(link);
        // Equal settings: 1.2x; each tool's defaults: 1.5x.
        assert!(
            s.verdict()
                .starts_with("objects/s 1.40x peer (target >= 1.2x): met")
        );
        s.setting = Setting::Defaults;
        assert!(
            s.verdict()
                .starts_with("objects/s 1.40x peer (target >= 1.5x): NOT met")
        );
        // A second agent: 1.8x one agent.
        let mut two = s.rows[0].clone();
        two.key = "s3rf-2".into();
        two.outcome = Outcome::Ran(vec![usage(6)]);
        s.rows.push(two);
        assert!(
            s.verdict()
                .ends_with("2 agents 1.67x 1 agent (target >= 1.8x): NOT met")
        );
        // Large objects across the link: 90% of the cap. 100 objects of
        // 1 MiB in 10 s is 10.5 MB/s against a 1 MB/s cap.
        let mut big = section(1 << 20, 110, 13, 8);
        big.link = Some(link);
        assert!(
            big.verdict()
                .contains("95% of the 1 MB/s cap (target >= 90%): met"),
            "{}",
            big.verdict()
        );
        // Request counts are reported per object.
        big.rows[0].outcome = Outcome::Ran(vec![Usage {
            requests: Some(Counts {
                requests: [1, 0, 100, 100, 0, 0, 0, 2],
                connections: 33,
                ..Counts::default()
            }),
            // 55 s of CPU for 100 objects, 5 of them in nats-server.
            queue_cpu: Duration::from_secs(5),
            ..usage(110)
        }]);
        let md = big.markdown();
        assert!(
            md.contains("split (medians): s3rf: 500.00 in the agents, 50.00 in nats-server."),
            "{md}"
        );
        assert!(md.contains("| 2.03 |"), "{md}");
        assert!(
            md.contains("s3rf: LIST 0.01, GET 1.00, PUT 1.00, other 0.02; 33 connections"),
            "{md}"
        );
        assert!(md.contains("rtt 20 ms, 8 Mbit/s each way"), "{md}");
    }
}
