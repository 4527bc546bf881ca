//! Migration planning and accounting, all pure: bucket selection, ids, the
//! ledger events a migration records, and the fold that turns them into a
//! [`Tally`].
//!
//! Every event is recorded at most once per entity (bucket, page, object) in
//! the ledger stream (see `ledger.rs`), and the tally is a fold over those
//! events with a sequence watermark, so counts stay exact under redelivery and
//! with any number of agents.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};

use globset::{Glob, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod events;
mod tally;

pub use events::*;
pub use tally::*;

/// Why a migration spec is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrationError {
    #[error("invalid migration id {0:?}: use 1-64 letters, digits, '-' or '_'")]
    BadId(String),
    #[error("invalid exclude_buckets pattern {pattern:?}: {detail}")]
    BadPattern { pattern: String, detail: String },
    #[error("bucket_map maps {src} to {dst:?}, which is not a bucket name")]
    BadMapping { src: String, dst: String },
}

/// Checks a user-given migration id (it becomes a subject token and KV key).
pub fn validate_id(id: &str) -> Result<(), MigrationError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(MigrationError::BadId(id.to_owned()))
    }
}

/// A fresh migration id such as `m-20261123-170301-3f9a1c`.
pub fn generate_id(now: std::time::SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    let digits: String = stamp
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect();
    let (date, time) = digits.split_at(digits.len().min(8));
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("m-{date}-{time}-{:06x}", random & 0xff_ffff)
}

/// The bucket pairs a migration covers, in name order.
pub fn select_buckets(
    available: &[String],
    requested: Option<&[String]>,
    exclude: &[String],
    bucket_map: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, MigrationError> {
    let mut set = GlobSetBuilder::new();
    for pattern in exclude {
        let glob = Glob::new(pattern).map_err(|e| MigrationError::BadPattern {
            pattern: pattern.clone(),
            detail: e.to_string(),
        })?;
        set.add(glob);
    }
    let excluded = set.build().map_err(|e| MigrationError::BadPattern {
        pattern: exclude.join(","),
        detail: e.to_string(),
    })?;
    let mut names: Vec<String> = match requested {
        Some(r) => r.to_vec(),
        None => available.to_vec(),
    };
    names.sort();
    names.dedup();
    let mut pairs = Vec::new();
    for name in names {
        if excluded.is_match(&name) {
            continue;
        }
        let dst = bucket_map
            .get(&name)
            .cloned()
            .unwrap_or_else(|| name.clone());
        if dst.is_empty() || dst.contains('/') {
            return Err(MigrationError::BadMapping { src: name, dst });
        }
        pairs.push((name, dst));
    }
    Ok(pairs)
}

/// A stable 128-bit hex id for ledger entities and message ids; keys never go
/// into subjects raw.
pub fn entity_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Which listing a page or object belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Objects to copy.
    Source,
    /// Destination objects checked for mirror deletion.
    Destination,
}

impl Side {
    fn letter(self) -> &'static str {
        match self {
            Side::Source => "s",
            Side::Destination => "d",
        }
    }
}

/// Ledger entity of a bucket.
pub fn bucket_entity(bucket: &str) -> String {
    format!("b-{}", entity_hash(&["bucket", bucket]))
}

/// Ledger entity of a listing page: of the bucket's first listing
/// (`split_prefix` `None`) or of the split listing of one prefix.
pub fn page_entity(bucket: &str, side: Side, split_prefix: Option<&str>, page: u64) -> String {
    let listing = match split_prefix {
        None => entity_hash(&["bucket", bucket]),
        Some(p) => entity_hash(&["bucket", bucket, p]),
    };
    format!("p-{listing}-{}{page}", side.letter())
}

/// Ledger entity of an object of a listing side.
pub fn object_entity(bucket: &str, side: Side, key: &str) -> String {
    format!("o-{}", entity_hash(&[side.letter(), bucket, key]))
}

/// Ledger entity of a batch: the keys it carries, in order.
pub fn batch_entity<'a>(bucket: &'a str, keys: impl IntoIterator<Item = &'a str>) -> String {
    let mut parts = vec!["batch", bucket];
    parts.extend(keys);
    format!("x-{}", entity_hash(&parts))
}

/// `Nats-Msg-Id` of the copy job of one listed object (published by a
/// listing, or handed off by a batch): the same object and ETag, the same
/// id, so JetStream drops a second publish within its duplicate window.
pub fn copy_msg_id(migration: &str, bucket: &str, key: &str, etag: Option<&str>) -> String {
    let entity = object_entity(bucket, Side::Source, key);
    format!("{migration}:copy:{entity}:{}", etag.unwrap_or(""))
}

/// Fewest objects a batch carries once its page is large enough
/// (`batch_size`).
pub const BATCH_FLOOR: usize = 8;

/// Objects per batch when a listing page has `objects` small ones and the
/// agents have `concurrency` copy slots each: enough batches for every slot
/// to work on the page alone, but no fewer than `BATCH_FLOOR` objects per
/// batch once the page still fills a `BATCH_FLOOR`th of the slots that way.
/// Other pages are listed meanwhile, and every batch costs a message, a
/// ledger event and an ack, so slicing a page for every slot costs more
/// queue work than it gains. At most `max_per_batch`.
pub fn batch_size(objects: usize, max_per_batch: usize, concurrency: usize) -> usize {
    let spread = (concurrency / BATCH_FLOOR).max(1);
    let floor = objects.div_ceil(spread).min(BATCH_FLOOR);
    objects
        .div_ceil(concurrency.max(1))
        .max(floor)
        .clamp(1, max_per_batch.max(1))
}

/// How a listing page's source objects are published: every object of at
/// most `max_size` bytes goes into a batch of about `batch_size` objects, the
/// batches as even as possible. Returns the indexes of the objects published
/// alone and the batches' index lists, in listing order. `max_per_batch`
/// below 2 turns batching off.
pub fn plan_batches(
    sizes: &[u64],
    max_size: u64,
    max_per_batch: usize,
    concurrency: usize,
) -> (Vec<usize>, Vec<Vec<usize>>) {
    if max_per_batch < 2 {
        return ((0..sizes.len()).collect(), Vec::new());
    }
    let (small, alone): (Vec<usize>, Vec<usize>) =
        (0..sizes.len()).partition(|&i| sizes[i] <= max_size);
    if small.len() < 2 {
        let mut alone = alone;
        alone.extend(small);
        alone.sort_unstable();
        return (alone, Vec::new());
    }
    let per = batch_size(small.len(), max_per_batch, concurrency);
    let batches = small.len().div_ceil(per);
    // Even sizes: the first `extra` batches get one object more.
    let (base, extra) = (small.len() / batches, small.len() % batches);
    let mut out = Vec::with_capacity(batches);
    let mut rest = small.as_slice();
    for b in 0..batches {
        let n = base + usize::from(b < extra);
        let (head, tail) = rest.split_at(n);
        out.push(head.to_vec());
        rest = tail;
    }
    // A batch of one is just a copy job.
    let mut alone = alone;
    out.retain(|b| {
        if b.len() == 1 {
            alone.push(b[0]);
            false
        } else {
            true
        }
    });
    alone.sort_unstable();
    (alone, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    type Row<'a> = (Option<Vec<String>>, Vec<String>, Vec<(&'a str, &'a str)>);

    #[test]
    fn bucket_selection_table() {
        let all = s(&["x", "y", "tmp-1", "tmp-2", "logs"]);
        let map: BTreeMap<String, String> = [("x".to_owned(), "x-new".to_owned())].into();
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            (None, vec![], vec![("logs", "logs"), ("tmp-1", "tmp-1"), ("tmp-2", "tmp-2"), ("x", "x-new"), ("y", "y")]),
            (None, s(&["tmp-*"]), vec![("logs", "logs"), ("x", "x-new"), ("y", "y")]),
            (Some(s(&["y", "x", "y"])), vec![], vec![("x", "x-new"), ("y", "y")]),
            (Some(s(&["tmp-1"])), s(&["tmp-?"]), vec![]),
        ];
        for (requested, exclude, want) in table {
            let got = select_buckets(&all, requested.as_deref(), &exclude, &map).unwrap();
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect();
            assert_eq!(got, want, "{requested:?} {exclude:?}");
        }
        assert!(select_buckets(&all, None, &s(&["[x"]), &map).is_err());
    }

    #[test]
    fn ids() {
        assert!(validate_id("m1").is_ok());
        assert!(validate_id("m.1").is_err());
        assert!(validate_id("").is_err());
        let id = generate_id(std::time::SystemTime::UNIX_EPOCH);
        assert!(id.starts_with("m-19700101-000000-"), "{id}");
        assert!(validate_id(&id).is_ok());
        assert_ne!(entity_hash(&["a", "bc"]), entity_hash(&["ab", "c"]));
        assert_eq!(entity_hash(&["a"]).len(), 32);
        assert_ne!(
            object_entity("b", Side::Source, "k"),
            object_entity("b", Side::Destination, "k")
        );
    }

    fn planned(buckets: &[(&str, &str)], mirror: bool) -> LedgerEvent {
        LedgerEvent::Planned {
            buckets: buckets
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
            mirror,
            dry_run: false,
            versions: false,
        }
    }

    fn page(bucket: &str, side: Side, page: u64, objects: u64, last: bool) -> LedgerEvent {
        LedgerEvent::Page {
            bucket: bucket.to_owned(),
            side,
            page,
            objects,
            bytes: objects * 10,
            last,
            listings: 0,
        }
    }

    fn obj(outcome: ObjectOutcome) -> LedgerEvent {
        LedgerEvent::Object {
            outcome,
            bytes: 10,
            replaces_failure: false,
        }
    }

    fn bucket(b: &str, state: BucketState) -> LedgerEvent {
        LedgerEvent::Bucket {
            bucket: b.to_owned(),
            state,
            reason: None,
        }
    }

    #[test]
    fn fold_reaches_complete_exactly() {
        let events = [
            planned(&[("x", "x"), ("y", "y2")], false),
            bucket("x", BucketState::Created),
            page("x", Side::Source, 0, 2, false),
            obj(ObjectOutcome::Copied),
            bucket("y", BucketState::Existed),
            page("y", Side::Source, 0, 1, true),
            obj(ObjectOutcome::Skipped),
            page("x", Side::Source, 1, 1, true),
            obj(ObjectOutcome::CopyFailed),
            obj(ObjectOutcome::Copied),
        ];
        let mut t = Tally::default();
        for (i, e) in events.iter().enumerate() {
            assert!(!t.complete(), "complete too early at event {i}");
            t.apply(i as u64 + 1, 1000 + i as u64, e);
        }
        assert!(t.complete(), "{t:?}");
        assert_eq!(
            (t.listed, t.copied, t.skipped, t.dead_lettered),
            (4, 2, 1, 1)
        );
        assert_eq!(t.copied_bytes, 20);
        assert_eq!(t.buckets["y"].dst_bucket, "y2");
        assert_eq!((t.first_event_ms, t.last_event_ms), (1000, 1009));

        // Re-folding events at or below the watermark changes nothing.
        let before = t.clone();
        for (i, e) in events.iter().enumerate() {
            t.apply(i as u64 + 1, 0, e);
        }
        assert_eq!(t, before);
    }

    #[test]
    fn mirror_mode_waits_for_the_destination_listing() {
        let mut t = Tally::default();
        let events = [
            planned(&[("x", "x")], true),
            bucket("x", BucketState::Existed),
            page("x", Side::Source, 0, 0, true),
            page("x", Side::Destination, 0, 1, true),
        ];
        for (i, e) in events.iter().enumerate() {
            t.apply(i as u64 + 1, 0, e);
        }
        assert!(t.listing_finished());
        assert!(!t.complete());
        t.apply(10, 0, &obj(ObjectOutcome::Deleted));
        assert!(t.complete());
        assert_eq!(t.deleted, 1);
    }

    #[test]
    fn an_announced_page_keeps_the_listing_open() {
        // A page is recorded before the jobs of the pages it announces are
        // published (control/), so a page never precedes its announcer.
        let mut t = Tally::default();
        t.apply(1, 0, &planned(&[("x", "x")], false));
        t.apply(2, 0, &bucket("x", BucketState::Created));
        t.apply(3, 0, &page("x", Side::Source, 0, 1, false));
        t.apply(4, 0, &obj(ObjectOutcome::Copied));
        assert!(!t.listing_finished());
        t.apply(5, 0, &page("x", Side::Source, 1, 1, false));
        t.apply(6, 0, &obj(ObjectOutcome::Copied));
        assert!(!t.listing_finished());
        assert!(!t.complete());
        t.apply(7, 0, &page("x", Side::Source, 2, 1, true));
        assert!(t.listing_finished());
        assert!(!t.complete());
        t.apply(8, 0, &obj(ObjectOutcome::Skipped));
        assert!(t.complete());
    }

    #[test]
    fn split_listings_finish_when_every_announced_page_is_recorded() {
        let split = |page, objects, last, listings| LedgerEvent::Page {
            bucket: "x".to_owned(),
            side: Side::Source,
            page,
            objects,
            bytes: objects * 10,
            last,
            listings,
        };
        let mut t = Tally::default();
        t.apply(1, 0, &planned(&[("x", "x")], false));
        t.apply(2, 0, &bucket("x", BucketState::Created));
        // The root listing: page 0 has 2 prefixes and a next page; page 1
        // (recorded after the listings page 0 started) has one more prefix.
        t.apply(3, 0, &split(0, 1, false, 2));
        // The second prefix's single page comes before the first prefix's.
        t.apply(4, 0, &split(0, 2, true, 0));
        // The first prefix's listing has two pages.
        t.apply(5, 0, &split(0, 3, false, 0));
        t.apply(6, 0, &split(1, 3, true, 0));
        assert!(!t.listing_finished(), "root page 1 is still missing: {t:?}");
        t.apply(7, 0, &split(1, 0, true, 1));
        assert!(!t.listing_finished(), "the third prefix is still missing");
        t.apply(8, 0, &split(0, 1, true, 0));
        assert!(t.listing_finished(), "{t:?}");
        assert_eq!((t.listed, t.buckets["x"].source_pages), (10, 6));
        for i in 0..9 {
            assert!(!t.complete());
            t.apply(10 + i, 0, &obj(ObjectOutcome::Copied));
        }
        assert!(!t.complete());
        t.apply(20, 0, &obj(ObjectOutcome::Copied));
        assert!(t.complete());
    }

    #[test]
    fn a_tally_stored_before_split_listings_is_folded_again() {
        let old = r#"{"dst_bucket":"x","state":"created","source_pages":2,"source_last":1,"destination_pages":0,"destination_last":null,"objects":3}"#;
        assert!(serde_json::from_str::<BucketTally>(old).is_err());
    }

    #[test]
    fn a_retried_dead_letter_replaces_its_failure() {
        let mut t = Tally::default();
        t.apply(1, 0, &planned(&[("x", "x")], false));
        t.apply(2, 0, &bucket("x", BucketState::Created));
        t.apply(3, 0, &page("x", Side::Source, 0, 1, true));
        t.apply(4, 0, &obj(ObjectOutcome::CopyFailed));
        assert!(t.complete());
        assert_eq!(t.dead_lettered, 1);
        let retried = LedgerEvent::Object {
            outcome: ObjectOutcome::Copied,
            bytes: 10,
            replaces_failure: true,
        };
        t.apply(5, 0, &retried);
        assert!(t.complete());
        assert_eq!((t.dead_lettered, t.copied, t.source_outcomes), (0, 1, 1));
    }

    #[test]
    fn a_versioned_key_is_one_outcome_and_its_versions_are_counted() {
        let mut t = Tally::default();
        let versioned = LedgerEvent::Planned {
            buckets: vec![("x".into(), "x".into())],
            mirror: false,
            dry_run: false,
            versions: true,
        };
        t.apply(1, 0, &versioned);
        t.apply(2, 0, &bucket("x", BucketState::Created));
        t.apply(3, 0, &page("x", Side::Source, 0, 2, true));
        let key = |copied, markers, present, replaces_failure| LedgerEvent::Versions {
            counts: crate::migration::VersionCounts {
                copied,
                copied_bytes: copied * 10,
                markers,
                present,
                ..Default::default()
            },
            replaces_failure,
        };
        t.apply(4, 0, &key(3, 1, 0, false));
        assert!(!t.complete(), "one of two keys");
        t.apply(5, 0, &obj(ObjectOutcome::CopyFailed));
        assert!(t.complete());
        t.apply(6, 0, &key(2, 0, 1, true));
        assert!(t.complete() && t.versions);
        assert_eq!(
            (t.listed, t.copied, t.markers, t.skipped, t.dead_lettered),
            (2, 5, 1, 1, 0)
        );
        assert_eq!((t.source_outcomes, t.copied_bytes), (2, 50));
    }

    #[test]
    fn a_batch_counts_its_objects_and_its_hand_offs_count_their_own() {
        let mut counts = BatchCounts::default();
        counts.add(ObjectOutcome::Copied, 4);
        counts.add(ObjectOutcome::Copied, 4);
        counts.add(ObjectOutcome::Skipped, 4);
        counts.add(ObjectOutcome::CopyFailed, 4); // not a batch outcome: ignored
        assert_eq!(counts.objects(), 3);
        let batch = LedgerEvent::Batch {
            counts,
            handed_off: vec!["k4".to_owned()],
        };
        // The stored form round-trips (the hand-off list is read back on redelivery).
        let text = serde_json::to_string(&batch).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"event":"batch","copied":2,"copied_bytes":8,"skipped":1,"skipped_bytes":4,"handed_off":["k4"]}"#
        );
        assert_eq!(
            serde_json::from_str::<LedgerEvent>(&text).ok(),
            Some(batch.clone())
        );
        let mut t = Tally::default();
        t.apply(1, 0, &planned(&[("x", "x")], false));
        t.apply(2, 0, &bucket("x", BucketState::Created));
        t.apply(3, 0, &page("x", Side::Source, 0, 4, true));
        t.apply(4, 0, &batch);
        assert!(!t.complete(), "the handed-off object is outstanding");
        assert_eq!(t.outstanding(), 1);
        t.apply(5, 0, &obj(ObjectOutcome::CopyFailed));
        assert!(t.complete());
        assert_eq!(
            (t.copied, t.copied_bytes, t.skipped, t.dead_lettered),
            (2, 8, 1, 1)
        );
    }

    #[test]
    fn batch_plan_table() {
        // (sizes, max size, max per batch, concurrency, alone, batches)
        type Row = (Vec<u64>, u64, usize, usize, Vec<usize>, Vec<Vec<usize>>);
        const K: u64 = 1024;
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            // Off: everything alone.
            (vec![1, 1, 1], K, 1, 4, vec![0, 1, 2], vec![]),
            // One small object is not a batch.
            (vec![1, 2 * K], K, 100, 4, vec![0, 1], vec![]),
            // Large objects stay alone, small ones batch around them.
            (vec![1, 2 * K, 1, 1, 3 * K, 1], K, 100, 1, vec![1, 4], vec![vec![0, 2, 3, 5]]),
            // Batches for an eighth of the slots: 10 objects, 64 slots -> 5 x 2.
            (vec![1; 10], K, 100, 64, vec![], vec![vec![0, 1], vec![2, 3], vec![4, 5], vec![6, 7], vec![8, 9]]),
            // ... but a floor: 10 objects, 4 slots -> 5, 5 (not 3, 3, 2, 2).
            (vec![1; 10], K, 100, 4, vec![], vec![vec![0, 1, 2, 3, 4], vec![5, 6, 7, 8, 9]]),
            // At most max_per_batch each, sizes even.
            (vec![1; 7], K, 3, 1, vec![], vec![vec![0, 1, 2], vec![3, 4], vec![5, 6]]),
            // Batches of one are copy jobs.
            (vec![1; 3], K, 100, 256, vec![0, 1, 2], vec![]),
            // ... unless the slots are few: 3 objects, 8 slots -> one batch.
            (vec![1; 3], K, 100, 8, vec![], vec![vec![0, 1, 2]]),
            (vec![], K, 100, 8, vec![], vec![]),
        ];
        for (sizes, max_size, max_per, conc, alone, batches) in table {
            let got = plan_batches(&sizes, max_size, max_per, conc);
            assert_eq!(got, (alone, batches), "{sizes:?} {max_per} {conc}");
        }
    }

    #[test]
    fn batch_size_floor_table() {
        // (small objects on the page, max per batch, slots, objects per batch)
        #[rustfmt::skip]
        let table: &[(usize, usize, usize, usize)] = &[
            // 256 slots: a large page goes in batches of BATCH_FLOOR, not 4.
            (1000, 100, 256, 8),
            // A page of 256 still fills 32 slots in batches of 8.
            (256, 100, 256, 8),
            // Smaller pages keep 32 slots busy: 100 -> 4 per batch, 40 -> 2.
            (100, 100, 256, 4),
            (40, 100, 256, 2),
            // A page smaller than that is copied object by object.
            (20, 100, 256, 1),
            // Few slots: as many objects per batch as fills them.
            (5000, 100, 32, 100),
            (1000, 100, 32, 32),
            (20, 100, 32, 5),
            // max_per_batch caps the floor.
            (1000, 3, 256, 3),
            (1000, 0, 256, 1),
            (0, 100, 256, 1),
        ];
        for &(objects, max_per, conc, want) in table {
            assert_eq!(
                batch_size(objects, max_per, conc),
                want,
                "{objects} {max_per} {conc}"
            );
        }
        // The plan follows it: 1,000 objects at 256 slots -> 125 batches of 8.
        let (alone, batches) = plan_batches(&[1; 1000], 1, 100, 256);
        assert!(alone.is_empty());
        assert_eq!(batches.len(), 125);
        assert!(batches.iter().all(|b| b.len() == 8));
    }

    #[test]
    fn failed_buckets_do_not_block_completion() {
        let mut t = Tally::default();
        t.apply(1, 0, &planned(&[("x", "x")], false));
        assert!(!t.listing_finished());
        t.apply(2, 0, &bucket("x", BucketState::Failed));
        assert!(t.complete());
    }
}
