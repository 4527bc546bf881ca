//! Resume records of multipart copies, so that a redelivered copy (after
//! SIGKILL, a lost node or a shutdown whose grace ran out) uploads only the
//! parts that are missing instead of starting over.
//!
//! A record lives in the KV bucket `<prefix>-uploads` (entries expire after
//! `[copy] resume_ttl_secs`), under two kinds of key:
//! - `<d>.<s>`: the [`Record`] of one copy: its upload id, part layout and,
//!   for a source whose ETag is its MD5, the MD5 state of the parts read so
//!   far. `d` names the destination object, `s` the source object and ETag,
//!   so a changed source never resumes an upload of its old bytes.
//! - `<d>.<s>.c<n>`: parts `1000n+1 ..= 1000n+1000` that are stored and
//!   checked, with their ETag and MD5 ([`PartDone`]).
//!
//! A part counts as done only when the record says so *and* ListParts lists
//! it with the same ETag ([`decide`], pure, in this file). The KV side is
//! `store.rs`: [`Uploads`] reads and removes records, and the [`Recorder`]
//! writes a part before that part's slot is freed, so at most
//! `part_concurrency` finished parts can be unrecorded when an agent dies.

mod store;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::job::ObjectRef;
use crate::migration::entity_hash;

pub use store::{Recorder, Uploads};

/// Parts per chunk key.
pub const CHUNK: i32 = 1000;

/// One multipart copy in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The destination's upload id.
    pub upload_id: String,
    /// Destination endpoint, bucket and key.
    pub dst: [String; 3],
    /// Source endpoint, bucket and key.
    pub src: [String; 3],
    /// Source version, when the job named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_version: Option<String>,
    /// The source ETag the parts were read under.
    pub src_etag: String,
    /// The part layout.
    #[serde(flatten)]
    pub shape: Shape,
    /// When the upload was created (ms since the epoch).
    pub started_ms: i64,
    /// When an agent last wrote this record (it rewrites it while it works).
    pub updated_ms: i64,
    /// Parts recorded as done.
    pub parts_done: u32,
    /// Parts `1..=hashed_through` are in `md5_state`.
    #[serde(default)]
    pub hashed_through: i32,
    /// The MD5 state (RustCrypto's serialized form, base64) of the source
    /// bytes of parts `1..=hashed_through`, for the whole-object read check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5_state: Option<String>,
}

/// The part layout of a multipart copy; a record of another layout is not
/// resumed (the part size or the object changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Object size.
    pub size: u64,
    /// Part size (the last part may be shorter).
    pub part_size: u64,
    /// Number of parts.
    pub parts_total: i32,
    /// UploadPartCopy (true) or ranged GET into UploadPart (false).
    pub server_side: bool,
}

/// A part that is stored and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartDone {
    /// The ETag UploadPart or UploadPartCopy returned.
    pub etag: String,
    /// The MD5 of the part's bytes (hex), when it was computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// The part's CRC32C (base64), which completing a directory bucket's
    /// upload with a full-object checksum names again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
}

/// A part as ListParts reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPart {
    /// Part number.
    pub number: i32,
    /// ETag.
    pub etag: Option<String>,
    /// Size in bytes, when reported.
    pub size: Option<u64>,
}

/// What a redelivered copy does with a record it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Upload the parts not in `done`; continue the whole-object MD5 from
    /// `hashed` (parts `1..=n` and their state) when the copy checks it.
    Resume {
        done: BTreeMap<i32, PartDone>,
        hashed: Option<(i32, String)>,
    },
    /// Abort the recorded upload and start a new one, for this reason.
    StartOver(&'static str),
}

fn unquoted(etag: &str) -> &str {
    etag.trim_matches('"')
}

/// The length of part `number` of `shape`.
fn part_len(shape: &Shape, number: i32) -> u64 {
    let start = u64::try_from(number - 1).unwrap_or(0) * shape.part_size;
    shape.size.saturating_sub(start).min(shape.part_size)
}

/// The pure resume rule. A part is done when the record has it and ListParts
/// lists it with the same ETag and size (each where the store lists it). A
/// copy that checks the whole object's MD5 (`hashing`) continues the hash
/// from the recorded prefix: every part in it must be done (else it starts
/// over); done parts after it are read again for the hash, not sent.
pub fn decide(
    record: &Record,
    recorded: &BTreeMap<i32, PartDone>,
    listed: &[ListedPart],
    shape: &Shape,
    hashing: bool,
) -> Decision {
    if record.shape != *shape {
        return Decision::StartOver("the object or the part size changed");
    }
    let listed: BTreeMap<i32, &ListedPart> = listed.iter().map(|p| (p.number, p)).collect();
    let done: BTreeMap<i32, PartDone> = recorded
        .iter()
        .filter(|(n, part)| {
            (1..=shape.parts_total).contains(*n)
                && listed.get(*n).is_some_and(|l| {
                    // s3s-fs lists parts without ETags: the size must do.
                    l.etag
                        .as_deref()
                        .is_none_or(|e| unquoted(e) == unquoted(&part.etag))
                        && l.size.is_none_or(|s| s == part_len(shape, **n))
                })
        })
        .map(|(n, p)| (*n, p.clone()))
        .collect();
    if !hashing {
        return Decision::Resume { done, hashed: None };
    }
    let k = record.hashed_through;
    let state = match (k, &record.md5_state) {
        (0, _) => None,
        (k, Some(state)) if k > 0 && k <= shape.parts_total => Some((k, state.clone())),
        _ => return Decision::StartOver("the record's MD5 state is unusable"),
    };
    if (1..=k).any(|n| !done.contains_key(&n)) {
        return Decision::StartOver("a part the record has hashed is not in the upload");
    }
    // Parts done past `k` stay done: the copy reads them again to hash
    // them, but does not send them again.
    Decision::Resume {
        done,
        hashed: state,
    }
}

/// The largest `k` with parts `1..=k` all in `parts`.
pub(crate) fn contiguous(parts: &BTreeMap<i32, PartDone>) -> i32 {
    let mut k = 0;
    for n in parts.keys() {
        if *n != k + 1 {
            break;
        }
        k = *n;
    }
    k
}

/// How long a multipart resume record stays "running" after its last
/// write: a copy rewrites it at least every quarter of this while it runs,
/// and a job whose agent died is redelivered after `ack_wait`.
pub fn liveness(ack_wait: Duration) -> Duration {
    (ack_wait * 2).max(Duration::from_secs(10))
}

/// The destination token of record keys.
pub(crate) fn dst_token(dst: &ObjectRef) -> String {
    format!("d{}", entity_hash(&[&dst.endpoint, &dst.bucket, &dst.key]))
}

/// The key of the record of copying `src` (at `version`, with `etag`) to `dst`.
pub fn key_of(dst: &ObjectRef, src: &ObjectRef, version: Option<&str>, etag: &str) -> String {
    let s = entity_hash(&[
        &src.endpoint,
        &src.bucket,
        &src.key,
        version.unwrap_or(""),
        unquoted(etag),
    ]);
    format!("{}.s{s}", dst_token(dst))
}

pub(crate) fn chunk_key(key: &str, chunk: i32) -> String {
    format!("{key}.c{chunk}")
}

pub(crate) fn chunk_of(part: i32) -> i32 {
    (part - 1) / CHUNK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(parts: i32) -> Shape {
        Shape {
            size: u64::try_from(parts).unwrap() * 10 - 5,
            part_size: 10,
            parts_total: parts,
            server_side: false,
        }
    }

    fn record(parts: i32, hashed_through: i32) -> Record {
        Record {
            upload_id: "u".into(),
            dst: ["d".into(), "b".into(), "k".into()],
            src: ["s".into(), "b".into(), "k".into()],
            src_version: None,
            src_etag: "e".into(),
            shape: shape(parts),
            started_ms: 0,
            updated_ms: 0,
            parts_done: 0,
            hashed_through,
            md5_state: (hashed_through > 0).then(|| "STATE".to_owned()),
        }
    }

    fn done(n: i32) -> (i32, PartDone) {
        (
            n,
            PartDone {
                etag: format!("\"e{n}\""),
                md5: None,
                crc32c: None,
            },
        )
    }

    fn listed(n: i32, len: u64) -> ListedPart {
        ListedPart {
            number: n,
            etag: Some(format!("e{n}")),
            size: Some(len),
        }
    }

    fn resume(done: &[i32], hashed: Option<i32>) -> Decision {
        Decision::Resume {
            done: done.iter().map(|n| self::done(*n)).collect(),
            hashed: hashed.map(|k| (k, "STATE".to_owned())),
        }
    }

    #[test]
    fn a_part_is_done_when_recorded_and_listed_alike() {
        let rec = record(4, 0);
        let recorded: BTreeMap<_, _> = [1, 2, 3].into_iter().map(done).collect();
        let mut bad_etag = listed(2, 10);
        bad_etag.etag = Some("other".into());
        let table: Vec<(Vec<ListedPart>, Decision)> = vec![
            // Listed and recorded: done; listed but unrecorded (4): sent again.
            (
                vec![listed(1, 10), listed(2, 10), listed(3, 10), listed(4, 5)],
                resume(&[1, 2, 3], None),
            ),
            // Recorded but gone from the upload: sent again.
            (vec![listed(1, 10), listed(3, 10)], resume(&[1, 3], None)),
            // Another ETag: not the bytes we checked.
            (
                vec![listed(1, 10), bad_etag, listed(3, 10)],
                resume(&[1, 3], None),
            ),
            // A short part.
            (
                vec![listed(1, 10), listed(2, 9), listed(3, 10)],
                resume(&[1, 3], None),
            ),
            // A store that lists no ETags (s3s-fs): the size decides.
            (
                vec![
                    ListedPart {
                        etag: None,
                        ..listed(1, 10)
                    },
                    ListedPart {
                        etag: None,
                        ..listed(2, 9)
                    },
                ],
                resume(&[1], None),
            ),
            (vec![], resume(&[], None)),
        ];
        for (listed, want) in table {
            assert_eq!(
                decide(&rec, &recorded, &listed, &shape(4), false),
                want,
                "{listed:?}"
            );
        }
    }

    #[test]
    fn a_hashing_copy_resumes_from_its_hashed_prefix_only() {
        let all: Vec<ListedPart> = (1..=4)
            .map(|n| listed(n, if n == 4 { 5 } else { 10 }))
            .collect();
        let recorded: BTreeMap<_, _> = [1, 2, 3].into_iter().map(done).collect();
        // Parts 1..=2 hashed: part 3 stays done (it is read again for the
        // hash, not sent again).
        assert_eq!(
            decide(&record(4, 2), &recorded, &all, &shape(4), true),
            resume(&[1, 2, 3], Some(2))
        );
        // Nothing hashed yet: every done part is read again, none sent.
        assert_eq!(
            decide(&record(4, 0), &recorded, &all, &shape(4), true),
            resume(&[1, 2, 3], None)
        );
        // A hashed part missing from the upload: the hash cannot be redone.
        assert_eq!(
            decide(&record(4, 2), &recorded, &all[1..], &shape(4), true),
            Decision::StartOver("a part the record has hashed is not in the upload")
        );
        let mut no_state = record(4, 2);
        no_state.md5_state = None;
        assert!(matches!(
            decide(&no_state, &recorded, &all, &shape(4), true),
            Decision::StartOver(_)
        ));
    }

    #[test]
    fn another_layout_starts_over() {
        let recorded: BTreeMap<_, _> = [1].into_iter().map(done).collect();
        let mut other = shape(4);
        other.part_size = 20;
        assert!(matches!(
            decide(&record(4, 0), &recorded, &[listed(1, 10)], &other, false),
            Decision::StartOver(_)
        ));
    }

    #[test]
    fn keys_and_chunks() {
        let d = ObjectRef {
            endpoint: "e".into(),
            bucket: "b".into(),
            key: "k".into(),
        };
        let k1 = key_of(&d, &d, None, "\"abc\"");
        assert_eq!(k1, key_of(&d, &d, None, "abc"), "quotes do not matter");
        assert_ne!(k1, key_of(&d, &d, None, "abd"), "a changed source");
        assert_ne!(k1, key_of(&d, &d, Some("v1"), "abc"));
        assert!(k1.starts_with(&dst_token(&d)));
        assert_eq!(k1.split('.').count(), 2, "records match <d>.*");
        assert_eq!(chunk_key(&k1, 3).split('.').count(), 3);
        assert_eq!((chunk_of(1), chunk_of(1000), chunk_of(1001)), (0, 0, 1));
        let parts: BTreeMap<_, _> = [1, 2, 4].into_iter().map(done).collect();
        assert_eq!(contiguous(&parts), 2);
        assert_eq!(contiguous(&BTreeMap::new()), 0);
    }

    #[test]
    fn records_round_trip_as_json() {
        let r = record(3, 1);
        let v = serde_json::to_string(&r).unwrap();
        assert!(v.contains("\"parts_total\":3"), "{v}");
        assert_eq!(serde_json::from_str::<Record>(&v).unwrap(), r);
    }
}
