//! Medians, ratios and the Markdown table.

use std::fmt::Write as _;
use std::time::Duration;

use crate::dataset::Dataset;
use crate::limit::Limit;
use crate::peers::Mode;
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

    /// The target for this section and whether s3rf meets it.
    pub fn verdict(&self) -> String {
        let (Some(s), Some((peer, best))) = (self.s3rf(), self.best_peer()) else {
            return "no verdict: s3rf or every peer has no result".into();
        };
        let ratio = secs(best) / secs(s.wall);
        if self.small() {
            let ok = ratio >= 1.5;
            format!(
                "objects/s {ratio:.2}x {peer} (target >= 1.5x): {}",
                if ok { "met" } else { "NOT met" }
            )
        } else {
            let of_limit = self.limit_wall().map(|l| secs(l) / secs(s.wall));
            let ok = ratio >= 1.2 && of_limit.is_some_and(|f| f >= 0.8);
            format!(
                "MB/s {ratio:.2}x {peer} (target >= 1.2x), {} of the limit (target >= 80%): {}",
                of_limit.map_or("?".into(), |f| format!("{:.0}%", f * 100.0)),
                if ok { "met" } else { "NOT met" }
            )
        }
    }

    /// The Markdown table of this section.
    pub fn markdown(&self) -> String {
        let d = &self.dataset;
        let mut out = String::new();
        let _ = writeln!(out, "### {d}, {}\n", self.mode.name());
        let _ = writeln!(
            out,
            "| tool | wall s | objects/s | MB/s | CPU s | CPU s/GB | peak RSS MiB | vs best peer | of limit | runs (wall s) |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
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
            let _ = writeln!(
                out,
                "| {name} | {:.1} | {} | {mbs:.1} | {:.1} | {:.1} | {} | {} | {} | {} |",
                s.wall.as_secs_f64(),
                // Few large objects: keep the decimals.
                if ops < 10.0 {
                    format!("{ops:.2}")
                } else {
                    format!("{ops:.0}")
                },
                s.cpu.as_secs_f64(),
                s.cpu.as_secs_f64() / gb.max(1e-9),
                s.peak_rss_kib / 1024,
                best.map_or("-".into(), |b| format!("{:.2}x", secs(b) / secs(s.wall))),
                limit.map_or("-".into(), |l| format!(
                    "{:.0}%",
                    100.0 * secs(l) / secs(s.wall)
                )),
                walls.join(" / "),
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
            peak_rss_kib: 1024 * wall,
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
            limits: vec![Limit {
                get: Duration::from_secs(limit),
                put: Duration::from_secs(limit / 2),
                copy: Duration::ZERO,
            }],
            rows: vec![
                Row {
                    tool: "s3rf".into(),
                    s3rf: true,
                    outcome: Outcome::Ran(vec![usage(s3rf), usage(s3rf + 100), usage(s3rf - 1)]),
                },
                Row {
                    tool: "peer".into(),
                    s3rf: false,
                    outcome: Outcome::Ran(vec![usage(peer)]),
                },
                Row {
                    tool: "broken".into(),
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
        assert!(section(4096, 10, 14, 5).verdict().ends_with("NOT met"));
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
}
