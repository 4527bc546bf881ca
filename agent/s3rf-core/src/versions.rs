//! Versioned migrations, the pure part: which keys a ListObjectVersions
//! page hands to `versions` jobs, and which of a key's source versions the
//! destination still lacks.
//!
//! ListObjectVersions lists keys in order and each key's versions newest
//! first, delete markers among them. A key's versions may run over a page
//! boundary, so a page hands each key to exactly one job: the page on which
//! the key first appears. A key cut off at the end of a truncated page gets
//! a job without versions (it lists the key itself), and the next pages
//! skip the rest of that key ([`page_keys`]).
//!
//! A versions job copies a key's versions oldest first, one after another,
//! so the destination's history is always a prefix of the source's. Each
//! copy records its source version id in the destination's metadata
//! (`names::META_SOURCE_VERSION`); delete markers carry no metadata. Which
//! versions are still to copy follows from the destination's newest version
//! that records a source version ([`Walk`]): everything after it, less the
//! delete markers already replayed on top of it. What a job did is
//! `migration::VersionCounts`.

use crate::job::Version;

/// One entry of a ListObjectVersions page, in listing order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageEntry {
    /// The key.
    pub key: String,
    /// The version (or delete marker).
    pub version: Version,
}

/// The job a page publishes for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersions {
    /// The key.
    pub key: String,
    /// Its versions oldest first; `None` when the page may not hold all of
    /// them (the job lists them).
    pub versions: Option<Vec<Version>>,
}

/// The keys a page hands to versions jobs. `continues` is the key the
/// page's version marker points into (a key an earlier page handed off,
/// whose remaining versions this page skips); `truncated` says more pages
/// follow, so the page's last key may go on.
pub fn page_keys(
    entries: Vec<PageEntry>,
    continues: Option<&str>,
    truncated: bool,
) -> Vec<KeyVersions> {
    let mut keys: Vec<KeyVersions> = Vec::new();
    for e in entries {
        if continues == Some(e.key.as_str()) {
            continue;
        }
        match keys.last_mut() {
            Some(k) if k.key == e.key => {
                if let Some(v) = k.versions.as_mut() {
                    v.push(e.version);
                }
            }
            _ => keys.push(KeyVersions {
                key: e.key,
                versions: Some(vec![e.version]),
            }),
        }
    }
    for k in &mut keys {
        if let Some(v) = k.versions.as_mut() {
            v.reverse();
        }
    }
    if truncated && let Some(last) = keys.last_mut() {
        last.versions = None;
    }
    keys
}

/// Finds the first source version the destination lacks, walking the
/// destination's versions of the key newest first: call [`Walk::marker`]
/// for a delete marker and [`Walk::object`] for an object version with the
/// source version id it records (if any), until one returns the answer,
/// else [`Walk::end`].
#[derive(Debug, Clone)]
pub struct Walk<'a> {
    source: &'a [Version],
    /// Delete markers seen since the last object version.
    markers: usize,
}

impl<'a> Walk<'a> {
    /// A walk over the destination for `source` (oldest first).
    pub fn new(source: &'a [Version]) -> Self {
        Self { source, markers: 0 }
    }

    /// The next (older) destination entry is a delete marker.
    pub fn marker(&mut self) {
        self.markers += 1;
    }

    /// The next (older) destination entry is an object version recording
    /// `recorded`. `Some(first pending index)` once it is one of the
    /// source's versions; a version not copied from the source (written at
    /// the destination directly) is passed over.
    pub fn object(&mut self, recorded: Option<&str>) -> Option<usize> {
        let found = recorded.and_then(|r| {
            self.source
                .iter()
                .position(|v| !v.delete_marker && v.id == r)
        });
        match found {
            Some(i) => Some(self.after(i + 1)),
            None => {
                self.markers = 0;
                None
            }
        }
    }

    /// No destination version records a source version: only delete
    /// markers at the very start of the source's history can be there.
    pub fn end(self) -> usize {
        self.after(0)
    }

    /// `from` plus the delete markers at `from` that the markers seen
    /// account for.
    fn after(&self, from: usize) -> usize {
        let leading = self.source[from.min(self.source.len())..]
            .iter()
            .take_while(|v| v.delete_marker)
            .count();
        from + leading.min(self.markers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str) -> Version {
        Version {
            id: id.to_owned(),
            delete_marker: false,
            size: 1,
            etag: None,
        }
    }

    fn m(id: &str) -> Version {
        Version {
            delete_marker: true,
            size: 0,
            ..v(id)
        }
    }

    fn entry(key: &str, version: Version) -> PageEntry {
        PageEntry {
            key: key.to_owned(),
            version,
        }
    }

    fn ids(k: &KeyVersions) -> Option<Vec<&str>> {
        k.versions
            .as_ref()
            .map(|vs| vs.iter().map(|v| v.id.as_str()).collect())
    }

    #[test]
    fn a_page_hands_each_key_to_one_job_oldest_first() {
        // Page 1 (truncated, cut inside b): a3 a2 a1 b4 b3.
        let page1 = vec![
            entry("a", v("a3")),
            entry("a", m("a2")),
            entry("a", v("a1")),
            entry("b", v("b4")),
            entry("b", v("b3")),
        ];
        let keys = page_keys(page1, None, true);
        assert_eq!(keys.len(), 2);
        assert_eq!(ids(&keys[0]), Some(vec!["a1", "a2", "a3"]));
        assert!(
            keys[0]
                .versions
                .as_ref()
                .is_some_and(|vs| vs[1].delete_marker)
        );
        assert_eq!(keys[1].key, "b");
        assert_eq!(ids(&keys[1]), None, "b may go on: its job lists it");
        // Page 2 starts inside b: b2 b1 c1 (last page).
        let page2 = vec![
            entry("b", v("b2")),
            entry("b", v("b1")),
            entry("c", v("c1")),
        ];
        let keys = page_keys(page2, Some("b"), false);
        assert_eq!(keys.len(), 1, "b was handed off by page 1");
        assert_eq!(
            (keys[0].key.as_str(), ids(&keys[0])),
            ("c", Some(vec!["c1"]))
        );
        // A page wholly inside one long key hands off nothing.
        let page3 = vec![entry("b", v("b9")), entry("b", v("b8"))];
        assert!(page_keys(page3, Some("b"), true).is_empty());
        // A page cut exactly at a key boundary: the next starts at a new key.
        let page4 = vec![entry("d", v("d1"))];
        let keys = page_keys(page4, Some("c"), false);
        assert_eq!(ids(&keys[0]), Some(vec!["d1"]));
    }

    /// The first pending index for `source` given the destination newest
    /// first: `None` a marker, `Some(rec)` an object recording `rec`
    /// (`""`: no record).
    fn pending(source: &[Version], dest: &[Option<&str>]) -> usize {
        let mut walk = Walk::new(source);
        for d in dest {
            match d {
                None => walk.marker(),
                Some(rec) => {
                    let recorded = Some(*rec).filter(|r| !r.is_empty());
                    if let Some(i) = walk.object(recorded) {
                        return i;
                    }
                }
            }
        }
        walk.end()
    }

    #[test]
    fn the_destination_newest_recorded_version_says_what_is_still_to_copy() {
        let src = [v("1"), v("2"), m("3"), v("4")];
        let cases: &[(&[Option<&str>], usize, &str)] = &[
            (&[], 0, "empty destination: everything"),
            (&[Some("4"), None, Some("2"), Some("1")], 4, "all there"),
            (&[Some("2"), Some("1")], 2, "the marker and 4 to go"),
            (
                &[None, Some("2"), Some("1")],
                3,
                "the marker replayed: only 4",
            ),
            (&[Some("1")], 1, "stopped after 1"),
            (
                &[Some(""), Some("2"), Some("1")],
                2,
                "a version written at the destination is passed over",
            ),
            (
                &[None, Some(""), Some("2"), Some("1")],
                2,
                "a marker above a foreign version is not ours",
            ),
            (&[Some("x")], 0, "a record from another source"),
            (
                &[None, None, Some("2")],
                3,
                "more markers than the source has: only its own count",
            ),
        ];
        for (dest, want, why) in cases {
            assert_eq!(pending(&src, dest), *want, "{why}");
        }
        let starts_deleted = [m("0"), v("1")];
        assert_eq!(
            pending(&starts_deleted, &[None]),
            1,
            "a leading marker replayed"
        );
        assert_eq!(pending(&starts_deleted, &[]), 0);
        assert_eq!(pending(&starts_deleted, &[Some("1"), None]), 2);
    }
}
