//! Scheduled incremental re-runs of a migration (pure): `"every": "1h"` on
//! a migrate job makes it a schedule. Run 1 is the migration itself (id
//! `m1`); run n is the same spec under id `m1-n`, which copies only what
//! changed, as any re-run does. A run starts `every` after the previous
//! one started, and never before the previous one is complete, so runs
//! never overlap. The agent's `scheduler.rs` keeps schedules in the KV
//! bucket `<prefix>-schedules`, and one agent starts each run: the one whose
//! compare-and-swap of the schedule wins.

use serde::{Deserialize, Serialize};

/// Longest base id: room for `-` and a run number of up to 7 digits.
pub const MAX_BASE_ID: usize = 56;

/// Shortest interval.
pub const MIN_EVERY_MS: u64 = 1000;

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// The migration spec each run repeats (its id is the base id, no `every`).
    pub spec: s3rf_wire::MigrateJob,
    /// Interval between run starts, ms.
    pub every_ms: u64,
    /// Runs started so far.
    pub runs: u32,
    /// When the last run started, ms since the epoch.
    pub last_started_ms: u64,
}

/// Why an `every` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not a duration.
    #[error("{0:?} is not a duration such as 30s, 15m, 1h or 1d")]
    NotADuration(String),
    /// Below a second.
    #[error("{0:?} is shorter than one second")]
    TooShort(String),
    /// Base id too long for run ids.
    #[error(
        "a scheduled migration's id is at most {MAX_BASE_ID} characters, to leave room for run numbers"
    )]
    IdTooLong,
}

/// Parses an `every` such as `1h` into milliseconds.
pub fn parse_every(every: &str) -> Result<u64, ScheduleError> {
    let d = humantime::parse_duration(every.trim())
        .map_err(|_| ScheduleError::NotADuration(every.to_owned()))?;
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms < MIN_EVERY_MS {
        return Err(ScheduleError::TooShort(every.to_owned()));
    }
    Ok(ms)
}

/// Checks that `base` leaves room for run ids.
pub fn check_base(base: &str) -> Result<(), ScheduleError> {
    if base.len() > MAX_BASE_ID {
        return Err(ScheduleError::IdTooLong);
    }
    Ok(())
}

/// The id of run `n` of `base`: `base` itself for the first.
pub fn run_id(base: &str, n: u32) -> String {
    if n <= 1 {
        base.to_owned()
    } else {
        format!("{base}-{n}")
    }
}

/// What a schedule calls for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Nothing before this time.
    NotYet {
        /// When the next run is due.
        at_ms: u64,
    },
    /// Due, but the last run is still going (or the schedule is paused).
    Waiting,
    /// Start run `n` under `id`.
    Start {
        /// Run number.
        n: u32,
        /// Its migration id.
        id: String,
    },
}

impl Schedule {
    /// A new schedule whose first run, `spec` itself, starts at `now_ms`.
    pub fn new(mut spec: s3rf_wire::MigrateJob, every_ms: u64, now_ms: u64) -> Self {
        spec.every = None;
        Self {
            spec,
            every_ms,
            runs: 1,
            last_started_ms: now_ms,
        }
    }

    /// The base id.
    pub fn base(&self) -> &str {
        self.spec.id.as_deref().unwrap_or_default()
    }

    /// The id of the last run started.
    pub fn last_run(&self) -> String {
        run_id(self.base(), self.runs)
    }

    /// When the next run is due.
    pub fn next_ms(&self) -> u64 {
        self.last_started_ms.saturating_add(self.every_ms)
    }

    /// What to do at `now_ms`, given whether the last run is complete and
    /// whether the schedule is paused.
    pub fn due(&self, now_ms: u64, last_complete: bool, paused: bool) -> Due {
        if now_ms < self.next_ms() {
            return Due::NotYet {
                at_ms: self.next_ms(),
            };
        }
        if !last_complete || paused {
            return Due::Waiting;
        }
        let n = self.runs + 1;
        Due::Start {
            n,
            id: run_id(self.base(), n),
        }
    }

    /// The schedule once run `n` started at `now_ms`.
    pub fn started(&self, n: u32, now_ms: u64) -> Self {
        Self {
            runs: n,
            last_started_ms: now_ms,
            ..self.clone()
        }
    }

    /// The migrate job of run `n`.
    pub fn run_spec(&self, n: u32) -> s3rf_wire::MigrateJob {
        s3rf_wire::MigrateJob {
            id: Some(run_id(self.base(), n)),
            every: None,
            ..self.spec.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> s3rf_wire::MigrateJob {
        serde_json::from_str(r#"{"id":"m1","src":"a","dst":"b","every":"5s"}"#).unwrap()
    }

    #[test]
    fn every_parses_and_refuses_nonsense() {
        assert_eq!(parse_every("1h"), Ok(3_600_000));
        assert_eq!(parse_every(" 5s "), Ok(5_000));
        assert_eq!(parse_every("90 min"), Ok(5_400_000));
        assert!(matches!(
            parse_every("soon"),
            Err(ScheduleError::NotADuration(_))
        ));
        assert!(matches!(
            parse_every("500ms"),
            Err(ScheduleError::TooShort(_))
        ));
        assert!(check_base(&"x".repeat(56)).is_ok());
        assert_eq!(check_base(&"x".repeat(57)), Err(ScheduleError::IdTooLong));
    }

    #[test]
    fn runs_start_every_interval_and_never_overlap() {
        let s = Schedule::new(spec(), 5_000, 100_000);
        assert_eq!(s.spec.every, None, "runs do not schedule again");
        assert_eq!((s.runs, s.last_run()), (1, "m1".to_owned()));
        assert_eq!(s.due(104_999, true, false), Due::NotYet { at_ms: 105_000 });
        assert_eq!(
            s.due(105_000, false, false),
            Due::Waiting,
            "run 1 still going"
        );
        assert_eq!(s.due(105_000, true, true), Due::Waiting, "paused");
        let Due::Start { n, id } = s.due(107_000, true, false) else {
            panic!("due");
        };
        assert_eq!((n, id.as_str()), (2, "m1-2"));
        let s2 = s.started(n, 107_000);
        assert_eq!(s2.last_run(), "m1-2");
        assert_eq!(s2.next_ms(), 112_000, "from when the run started");
        let run = s2.run_spec(2);
        assert_eq!(run.id.as_deref(), Some("m1-2"));
        assert_eq!((run.src.as_str(), run.every), ("a", None));
    }
}
