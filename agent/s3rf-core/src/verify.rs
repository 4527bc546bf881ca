//! Verification (pure): compare a destination with its source the way
//! `rclone check` does, independently of any migration's own records.
//!
//! A verification lists both sides page by page: each page job takes one
//! page of the source (in key order, after `start_after`) and the
//! destination keys of the same range, and merges the two sorted lists
//! ([`Merge`]): a source key alone is *missing* at the destination, a
//! destination key alone is *extra*, and a pair is judged ([`judge`]) by
//! size, then checksum where the ETags are comparable. Pairs whose ETags
//! are not comparable (multipart layouts, opaque ETags) are settled by the
//! ETag s3rf recorded at the destination, or with `--deep` by reading both;
//! otherwise they match by size only. Only one page of each side is held.
//!
//! Each page's counts are recorded once ([`VerifyEvent::Page`]) and folded
//! into a [`VerifySummary`]; each differing key is recorded as a
//! [`Difference`], which `verify --repair` turns into copy and delete jobs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag without quotes, if listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// What a pair of objects is, by their listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Same size and the same ETag.
    Same,
    /// They differ, and why.
    Differ(&'static str),
    /// Same size; the ETags cannot be compared (a multipart layout or an
    /// opaque ETag on either side): ask the destination's recorded source
    /// ETag, or read both.
    Unsure,
}

/// Whether `etag` is the MD5 of the bytes as S3 states it for a single
/// PUT: 32 hex digits.
pub fn is_plain_md5(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Judges a source object against the destination object of the same key.
pub fn judge(src: &Entry, dst: &Entry) -> Verdict {
    if src.size != dst.size {
        return Verdict::Differ("size");
    }
    match (src.etag.as_deref(), dst.etag.as_deref()) {
        (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => Verdict::Same,
        (Some(a), Some(b)) if is_plain_md5(a) && is_plain_md5(b) => Verdict::Differ("checksum"),
        _ => Verdict::Unsure,
    }
}

/// One step of a merge of a source page with destination keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// At the source only.
    Missing(Entry),
    /// At the destination only.
    Extra(Entry),
    /// At both.
    Pair(Entry, Entry),
}

/// Merges one source page (any order; sorted here) with destination keys
/// fed in ascending order, a page at a time, so that only the source page
/// is held.
#[derive(Debug, Clone)]
pub struct Merge {
    src: Vec<Entry>,
    next: usize,
}

impl Merge {
    /// A merge of `src`.
    pub fn new(mut src: Vec<Entry>) -> Self {
        src.sort_by(|a, b| a.key.cmp(&b.key));
        src.dedup_by(|a, b| a.key == b.key);
        Self { src, next: 0 }
    }

    /// The last source key, the upper bound of the page's range.
    pub fn last_key(&self) -> Option<&str> {
        self.src.last().map(|e| e.key.as_str())
    }

    /// Takes the next destination entry (keys ascending).
    pub fn feed(&mut self, dst: Entry, out: &mut Vec<Merged>) {
        while let Some(s) = self.src.get(self.next) {
            if s.key < dst.key {
                out.push(Merged::Missing(s.clone()));
                self.next += 1;
            } else if s.key == dst.key {
                out.push(Merged::Pair(s.clone(), dst));
                self.next += 1;
                return;
            } else {
                break;
            }
        }
        out.push(Merged::Extra(dst));
    }

    /// The source entries no destination key matched.
    pub fn finish(self, out: &mut Vec<Merged>) {
        out.extend(self.src.into_iter().skip(self.next).map(Merged::Missing));
    }
}

/// What kind of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// At the source, not at the destination.
    Missing,
    /// At both, not the same.
    Different,
    /// At the destination only.
    Extra,
}

/// One differing key, as recorded for `--list` and `--repair`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// Source bucket.
    pub bucket: String,
    /// Destination bucket.
    pub dst_bucket: String,
    /// Key: the source key, or an extra destination key.
    pub key: String,
    /// The destination key, where the filters renamed the source key
    /// (`verify --filters`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_key: Option<String>,
    /// Which difference.
    pub kind: Kind,
    /// Why a pair differs (`size`, `checksum`, `bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// The counts of a page, or of a whole verification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VerifyCounts {
    /// Same size and checksum (or recorded source checksum, or bytes).
    pub matching: u64,
    /// Same size; checksums not comparable and not read.
    pub size_only: u64,
    /// At the source only.
    pub missing: u64,
    /// At both, different.
    pub different: u64,
    /// At the destination only.
    pub extra: u64,
    /// Objects read on both sides (`--deep`).
    pub read: u64,
    /// Source objects the filters skip (`--filters`): left out, and so is
    /// a destination object of the same key.
    pub filtered: u64,
    /// Source objects the filters renamed (`--filters`), compared under
    /// their new name; counted in `matching`, `missing` or `different` too.
    pub renamed: u64,
}

impl VerifyCounts {
    /// Adds another page's counts.
    pub fn add(&mut self, o: &VerifyCounts) {
        self.matching += o.matching;
        self.size_only += o.size_only;
        self.missing += o.missing;
        self.different += o.different;
        self.extra += o.extra;
        self.read += o.read;
        self.filtered += o.filtered;
        self.renamed += o.renamed;
    }

    /// Differences found.
    pub fn differences(&self) -> u64 {
        self.missing + self.different + self.extra
    }
}

/// What a verification records, each exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum VerifyEvent {
    /// The endpoints and bucket pairs it covers.
    Planned {
        /// Source endpoint.
        src: String,
        /// Destination endpoint.
        dst: String,
        /// (source, destination) bucket pairs.
        buckets: Vec<(String, String)>,
    },
    /// One page compared.
    Page {
        /// Source bucket.
        bucket: String,
        /// Page number, from 0.
        page: u64,
        /// No source page follows.
        last: bool,
        /// What it found.
        counts: VerifyCounts,
    },
}

/// A verification's state, folded from its events in any order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifySummary {
    /// Source and destination endpoints, once planned.
    pub endpoints: Option<(String, String)>,
    /// Planned bucket pairs, once known.
    pub buckets: Option<Vec<(String, String)>>,
    /// Counts so far.
    pub counts: VerifyCounts,
    /// Per source bucket: pages compared, and the number of the last page
    /// once it is compared.
    pub pages: BTreeMap<String, (u64, Option<u64>)>,
}

impl VerifySummary {
    /// Folds one event in.
    pub fn apply(&mut self, e: &VerifyEvent) {
        match e {
            VerifyEvent::Planned { src, dst, buckets } => {
                self.endpoints = Some((src.clone(), dst.clone()));
                self.buckets = Some(buckets.clone());
            }
            VerifyEvent::Page {
                bucket,
                page,
                last,
                counts,
            } => {
                self.counts.add(counts);
                let p = self.pages.entry(bucket.clone()).or_default();
                p.0 += 1;
                if *last {
                    p.1 = Some(*page);
                }
            }
        }
    }

    /// Whether every page of every bucket is compared.
    pub fn complete(&self) -> bool {
        let Some(buckets) = &self.buckets else {
            return false;
        };
        buckets.iter().all(|(b, _)| {
            self.pages
                .get(b)
                .is_some_and(|(done, last)| last.is_some_and(|l| *done == l + 1))
        })
    }

    /// Pages compared in all.
    pub fn pages_done(&self) -> u64 {
        self.pages.values().map(|p| p.0).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(key: &str, size: u64, etag: Option<&str>) -> Entry {
        Entry {
            key: key.to_owned(),
            size,
            etag: etag.map(str::to_owned),
        }
    }

    const A: &str = "0cc175b9c0f1b6a831c399e269772661";
    const B: &str = "92eb5ffee6ae2fec3ad71c777531578f";

    #[test]
    fn pairs_are_judged_by_size_then_comparable_checksums() {
        let table = [
            (e("k", 1, Some(A)), e("k", 1, Some(A)), Verdict::Same),
            (
                e("k", 1, Some(A)),
                e("k", 1, Some(&A.to_uppercase())),
                Verdict::Same,
            ),
            (
                e("k", 1, Some(A)),
                e("k", 2, Some(A)),
                Verdict::Differ("size"),
            ),
            (
                e("k", 1, Some(A)),
                e("k", 1, Some(B)),
                Verdict::Differ("checksum"),
            ),
            (
                e("k", 1, Some("abc-2")),
                e("k", 1, Some("abc-2")),
                Verdict::Same,
            ),
            (
                e("k", 1, Some("abc-2")),
                e("k", 1, Some(A)),
                Verdict::Unsure,
            ),
            (
                e("k", 1, Some(A)),
                e("k", 1, Some("def-3")),
                Verdict::Unsure,
            ),
            (e("k", 1, None), e("k", 1, Some(A)), Verdict::Unsure),
        ];
        for (s, d, want) in table {
            assert_eq!(judge(&s, &d), want, "{s:?} {d:?}");
        }
    }

    #[test]
    fn a_merge_finds_missing_extra_and_pairs_in_key_order() {
        // The source page in store order (unsorted); the destination fed in
        // two chunks.
        let mut m = Merge::new(vec![e("c", 3, None), e("a", 1, None), e("d", 4, None)]);
        assert_eq!(m.last_key(), Some("d"));
        let mut out = Vec::new();
        for d in [e("a", 1, None), e("b", 2, None)] {
            m.feed(d, &mut out);
        }
        m.feed(e("d", 5, None), &mut out);
        m.finish(&mut out);
        assert_eq!(
            out,
            vec![
                Merged::Pair(e("a", 1, None), e("a", 1, None)),
                Merged::Extra(e("b", 2, None)),
                Merged::Missing(e("c", 3, None)),
                Merged::Pair(e("d", 4, None), e("d", 5, None)),
            ]
        );
        // Nothing at the destination: everything is missing.
        let mut out = Vec::new();
        Merge::new(vec![e("x", 1, None)]).finish(&mut out);
        assert_eq!(out, vec![Merged::Missing(e("x", 1, None))]);
        // Destination keys past the page's source keys are extra.
        let mut m = Merge::new(vec![]);
        let mut out = Vec::new();
        m.feed(e("z", 1, None), &mut out);
        assert_eq!(out, vec![Merged::Extra(e("z", 1, None))]);
    }

    #[test]
    fn a_summary_is_complete_when_every_bucket_reached_its_last_page() {
        let mut s = VerifySummary::default();
        let page = |bucket: &str, page, last, missing| VerifyEvent::Page {
            bucket: bucket.to_owned(),
            page,
            last,
            counts: VerifyCounts {
                matching: 10,
                missing,
                ..VerifyCounts::default()
            },
        };
        // Pages may be folded before the plan and out of order.
        s.apply(&page("a", 1, true, 1));
        assert!(!s.complete(), "no plan yet");
        s.apply(&VerifyEvent::Planned {
            src: "x".into(),
            dst: "y".into(),
            buckets: vec![("a".into(), "a".into()), ("b".into(), "b2".into())],
        });
        assert!(!s.complete(), "a's page 0 and b are missing");
        s.apply(&page("a", 0, false, 0));
        s.apply(&page("b", 0, true, 0));
        assert!(s.complete());
        assert_eq!(s.counts.matching, 30);
        assert_eq!(s.counts.differences(), 1);
        assert_eq!(s.pages_done(), 3);
        let json = serde_json::to_string(&page("a", 0, false, 0)).unwrap();
        assert!(json.starts_with(r#"{"event":"page""#), "{json}");
    }
}
