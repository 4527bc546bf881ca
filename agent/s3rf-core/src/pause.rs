//! Pausing work (pure): what a pause covers, which pause holds a job, and
//! the names a pause and its parked jobs go by.
//!
//! A pause covers everything ([`PauseScope::All`]), event-driven work
//! ([`PauseScope::Sync`]) or one migration ([`PauseScope::Migration`]).
//! Pauses live in the KV bucket `<prefix>-pauses` under [`PauseScope::key`];
//! the agent's `pause.rs` watches it and parks the jobs a pause holds. A job
//! pulled while a pause holds it is moved, unchanged, to
//! `<prefix>.parked.<key>.<kind>` and moved back when the pause ends.

use std::collections::BTreeMap;

use crate::job::{ControlJob, Job};

/// What one pause covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PauseScope {
    /// Every job.
    All,
    /// Jobs made from S3 event notifications.
    Sync,
    /// The jobs of one migration.
    Migration(String),
}

impl PauseScope {
    /// The KV key and parked-subject token: `all`, `sync`, `m.<id>`.
    /// Migration ids are `[A-Za-z0-9_-]{1,64}`, so the key is a valid KV key
    /// and subject tokens.
    pub fn key(&self) -> String {
        match self {
            PauseScope::All => "all".to_owned(),
            PauseScope::Sync => "sync".to_owned(),
            PauseScope::Migration(id) => format!("m.{id}"),
        }
    }

    /// The scope a KV key names; `None` for a key s3rf did not write.
    pub fn from_key(key: &str) -> Option<Self> {
        match key {
            "all" => Some(PauseScope::All),
            "sync" => Some(PauseScope::Sync),
            _ => {
                let id = key.strip_prefix("m.")?;
                crate::migration::validate_id(id).ok()?;
                Some(PauseScope::Migration(id.to_owned()))
            }
        }
    }

    /// A consumer name for moving this scope's parked jobs back:
    /// `unpark-all`, `unpark-sync`, `unpark-m-<id>` (no dots).
    pub fn unpark_consumer(&self) -> String {
        format!("unpark-{}", self.key().replace('.', "-"))
    }

    /// How `status` names it.
    pub fn describe(&self) -> String {
        match self {
            PauseScope::All => "all work".to_owned(),
            PauseScope::Sync => "event sync".to_owned(),
            PauseScope::Migration(id) => format!("migration {id}"),
        }
    }
}

/// The parked-subject token of `subject` (`<prefix>.parked.<key>.<kind>`):
/// the scope it was parked under, or `None` for another subject.
pub fn parked_scope(prefix: &str, subject: &str) -> Option<PauseScope> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix(".parked.")?;
    let (key, _kind) = rest.rsplit_once('.')?;
    PauseScope::from_key(key)
}

/// Which pauses a job is subject to, besides [`PauseScope::All`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pausable<'a> {
    /// Published by hand: only a pause of everything holds it.
    Direct,
    /// Made from an S3 event.
    Sync,
    /// Part of this migration.
    Migration(&'a str),
}

impl Job {
    /// Which pauses hold this job.
    pub fn pausable(&self) -> Pausable<'_> {
        use crate::job::Origin;
        let origin = match self {
            Job::Copy(c) => &c.origin,
            Job::Delete(d) => &d.origin,
            Job::Batch(b) => return Pausable::Migration(&b.scope.0.migration),
            Job::Versions(v) => return Pausable::Migration(&v.scope.0.migration),
            Job::Control(ControlJob::Bucket(s)) => return Pausable::Migration(&s.0.migration),
            Job::Control(ControlJob::List(l)) => return Pausable::Migration(&l.scope.0.migration),
            Job::Control(ControlJob::Verify(_)) => return Pausable::Direct,
            Job::Control(ControlJob::Migrate(m)) => {
                return match &m.spec.id {
                    Some(id) => Pausable::Migration(id),
                    None => Pausable::Direct,
                };
            }
        };
        match origin {
            Origin::Direct => Pausable::Direct,
            Origin::Migration(id) => Pausable::Migration(id),
            Origin::Event { .. } => Pausable::Sync,
        }
    }
}

/// The pauses in force, each with when it began (ms since the epoch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pauses {
    since_ms: BTreeMap<PauseScope, u64>,
}

impl Pauses {
    /// Records `scope` as paused since `since_ms` (an update keeps the first).
    pub fn insert(&mut self, scope: PauseScope, since_ms: u64) {
        self.since_ms.entry(scope).or_insert(since_ms);
    }

    /// Ends `scope`'s pause.
    pub fn remove(&mut self, scope: &PauseScope) {
        self.since_ms.remove(scope);
    }

    /// When `scope` was paused, if it is.
    pub fn since(&self, scope: &PauseScope) -> Option<u64> {
        self.since_ms.get(scope).copied()
    }

    /// Whether everything is paused.
    pub fn all(&self) -> bool {
        self.since_ms.contains_key(&PauseScope::All)
    }

    /// Whether nothing is paused.
    pub fn is_empty(&self) -> bool {
        self.since_ms.is_empty()
    }

    /// Every pause, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&PauseScope, u64)> {
        self.since_ms.iter().map(|(s, t)| (s, *t))
    }

    /// The pause that holds a job that is `pausable`: `All` before the
    /// narrower one, so that a job parked under `All` waits for
    /// `resume --all` and then meets the narrower pause again.
    pub fn holding(&self, pausable: Pausable<'_>) -> Option<PauseScope> {
        if self.all() {
            return Some(PauseScope::All);
        }
        let narrow = match pausable {
            Pausable::Direct => return None,
            Pausable::Sync => PauseScope::Sync,
            Pausable::Migration(id) => PauseScope::Migration(id.to_owned()),
        };
        self.since_ms.contains_key(&narrow).then_some(narrow)
    }

    /// Whether migration `id`'s work is held (by its own pause or `All`).
    pub fn holds_migration(&self, id: &str) -> bool {
        self.holding(Pausable::Migration(id)).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_foreign_keys_are_ignored() {
        for s in [
            PauseScope::All,
            PauseScope::Sync,
            PauseScope::Migration("m-20261203-1_x".to_owned()),
        ] {
            assert_eq!(PauseScope::from_key(&s.key()), Some(s.clone()));
            assert!(!s.unpark_consumer().contains('.'), "{s:?}");
        }
        for k in ["", "m.", "m.a.b", "m.a b", "ALL", "x"] {
            assert_eq!(PauseScope::from_key(k), None, "{k:?}");
        }
    }

    #[test]
    fn parked_subjects_name_their_scope() {
        let table = [
            ("s3rf.parked.all.copy", Some(PauseScope::All)),
            ("s3rf.parked.sync.delete", Some(PauseScope::Sync)),
            (
                "s3rf.parked.m.m1.batch",
                Some(PauseScope::Migration("m1".to_owned())),
            ),
            ("s3rf.copy", None),
            ("other.parked.all.copy", None),
            ("s3rf.parked.m.a.b.copy", None),
        ];
        for (subject, want) in table {
            assert_eq!(parked_scope("s3rf", subject), want, "{subject}");
        }
        let names = crate::names::Names::new("s3rf");
        let m = PauseScope::Migration("m1".to_owned());
        let subject = names.parked_subject(&m.key(), crate::names::JobKind::Copy);
        assert_eq!(parked_scope("s3rf", &subject), Some(m));
    }

    #[test]
    fn which_pause_holds_a_job() {
        let m1 = Pausable::Migration("m1");
        let m2 = Pausable::Migration("m2");
        let mut p = Pauses::default();
        for j in [Pausable::Direct, Pausable::Sync, m1] {
            assert_eq!(p.holding(j), None);
        }
        p.insert(PauseScope::Migration("m1".to_owned()), 5);
        assert_eq!(p.holding(m1), Some(PauseScope::Migration("m1".to_owned())));
        assert_eq!(p.holding(m2), None);
        assert_eq!(p.holding(Pausable::Sync), None);
        p.insert(PauseScope::Sync, 6);
        assert_eq!(p.holding(Pausable::Sync), Some(PauseScope::Sync));
        assert_eq!(
            p.holding(Pausable::Direct),
            None,
            "direct jobs are not sync"
        );
        p.insert(PauseScope::All, 7);
        for j in [Pausable::Direct, Pausable::Sync, m1, m2] {
            assert_eq!(p.holding(j), Some(PauseScope::All), "{j:?}");
        }
        p.remove(&PauseScope::All);
        assert!(p.holds_migration("m1") && !p.holds_migration("m2"));
        p.insert(PauseScope::Sync, 99);
        assert_eq!(
            p.since(&PauseScope::Sync),
            Some(6),
            "an update keeps the first time"
        );
    }
}
