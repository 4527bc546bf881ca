//! The JSON that travels on NATS: s3rf's public wire contract.
//!
//! These types mirror exactly what a user publishes with `nats pub`. They are
//! deliberately dumb: no validation beyond shape, no dependency on tokio or the
//! AWS SDK. The agent converts them into validated domain jobs (see
//! `s3rf_agent::job`) before anything touches the network.
//!
//! Jobs never carry credentials or URLs: endpoints are *names* that the agent
//! resolves against its own configuration.

use serde::{Deserialize, Serialize};

/// The object a copy reads, or that an event came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceObject {
    /// Name of an `[endpoints.<name>]` entry in the agent config.
    pub endpoint: String,
    /// Bucket on that endpoint.
    pub bucket: String,
    /// Object key, exactly as stored (no URL encoding).
    pub key: String,
    /// Copy this version instead of the latest one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

/// Where a copy writes. `key` defaults to the source key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationLocation {
    /// Name of an `[endpoints.<name>]` entry in the agent config.
    pub endpoint: String,
    /// Bucket on that endpoint; it must exist.
    pub bucket: String,
    /// Destination key; the source key when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// An object to delete: every field is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationObject {
    /// Name of an `[endpoints.<name>]` entry in the agent config.
    pub endpoint: String,
    /// Bucket on that endpoint.
    pub bucket: String,
    /// Object key to delete.
    pub key: String,
}

/// Subject `<prefix>.copy`: copy one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyJob {
    /// What to read.
    pub src: SourceObject,
    /// Where to write.
    pub dst: DestinationLocation,
    /// Migration this job belongs to, if any; carried into logs and dead letters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<String>,
    /// Plan and compare only; change nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dry_run: bool,
    /// The S3 event sequencer of the change, when it came from an event; an
    /// older event never undoes a newer one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequencer: Option<String>,
    /// Event sync: a source that is gone by now is not an error (its delete
    /// event will follow); the copy is skipped.
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_if_source_missing: bool,
    /// The source's size as listed (or as the event said). A hint only: a
    /// small object is then read with one GET instead of HEAD + GET; what the
    /// GET returns is what counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed_size: Option<u64>,
    /// The source's ETag as listed (no quotes). A hint: a small copy within
    /// one endpoint into a new bucket is then one CopyObject conditioned on
    /// this ETag, with no HEAD; if the source changed, the agent HEADs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed_etag: Option<String>,
    /// The migration created the destination bucket, so on a job's first
    /// delivery there is nothing there to compare with: no destination HEAD.
    /// Redeliveries compare as usual.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dst_bucket_new: bool,
    /// Set by a batch that hands an object off after failing it: its own
    /// attempt may have written the object from this time on (ms since the
    /// epoch). An identical destination object written since then was
    /// copied by that attempt and counts as copied. Accounting only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempted_since_ms: Option<i64>,
}

/// Subject `<prefix>.delete`: delete one object at the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteJob {
    /// The object to delete. Deleting an object that is already gone succeeds.
    pub dst: DestinationObject,
    /// The source object whose removal caused this delete, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<SourceObject>,
    /// The S3 event sequencer of the removal, when it came from an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequencer: Option<String>,
    /// Migration this job belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<String>,
    /// Delete only if `src` no longer exists (mirror mode).
    #[serde(default, skip_serializing_if = "is_false")]
    pub if_source_absent: bool,
    /// Decide only; delete nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dry_run: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Subject `<prefix>.migrate`: migrate buckets from one endpoint to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateJob {
    /// Migration id; generated when absent. Letters, digits, `-` and `_`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Source endpoint name.
    pub src: String,
    /// Destination endpoint name.
    pub dst: String,
    /// Buckets to migrate; all buckets of `src` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<String>>,
    /// Glob patterns (`*`, `?`) of buckets to leave out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_buckets: Vec<String>,
    /// Only keys starting with this prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Destination bucket names by source bucket name; default: the same name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub bucket_map: std::collections::BTreeMap<String, String>,
    /// Delete destination objects that no longer exist at the source.
    #[serde(default, skip_serializing_if = "is_false")]
    pub delete_extraneous: bool,
    /// Count what would happen; change nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dry_run: bool,
    /// How fast the whole fleet may work on this migration; `s3rf-agent
    /// migrate-rate` changes it while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// Re-run incrementally on this interval (`1h`, `30m`, `1d`): run n is
    /// the same spec under id `<id>-<n>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Migrate every version of every object, oldest first, delete markers
    /// included, into versioned destination buckets.
    #[serde(default, skip_serializing_if = "is_false")]
    pub versions: bool,
}

/// A fleet-wide rate: all agents together, each taking its share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Bytes read from the source per second (at least 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_sec: Option<u64>,
    /// Object jobs started per second (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects_per_sec: Option<u32>,
}

/// Subject `<prefix>.verify`: compare a destination with its source
/// (`s3rf-agent verify`). Published without `page`, it plans the buckets
/// and publishes one with `page` per bucket; each page job publishes the
/// next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyJob {
    /// Verification id; generated when absent. Letters, digits, `-` and `_`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Source endpoint name.
    pub src: String,
    /// Destination endpoint name.
    pub dst: String,
    /// Buckets to verify; all buckets of `src` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<String>>,
    /// Glob patterns of buckets to leave out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_buckets: Vec<String>,
    /// Only keys starting with this prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Destination bucket names by source bucket name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub bucket_map: std::collections::BTreeMap<String, String>,
    /// Read both objects where checksums are not comparable.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deep: bool,
    /// Apply the agent's filters to source objects: skipped ones are left
    /// out on both sides, renamed ones compared under their new name.
    #[serde(default, skip_serializing_if = "is_false")]
    pub filters: bool,
    /// The page this job compares (set by s3rf).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<VerifyPage>,
}

/// One page of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyPage {
    /// Source bucket.
    pub bucket: String,
    /// Destination bucket.
    pub dst_bucket: String,
    /// Page number, from 0.
    pub number: u64,
    /// The source key this page starts after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_after: Option<String>,
}

/// What a migration's bucket and listing jobs carry along, so that every job
/// is self-contained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationScope {
    /// Migration id.
    pub migration: String,
    /// Source endpoint name.
    pub src: String,
    /// Destination endpoint name.
    pub dst: String,
    /// Source bucket.
    pub bucket: String,
    /// Destination bucket.
    pub dst_bucket: String,
    /// Key prefix filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Mirror mode.
    #[serde(default, skip_serializing_if = "is_false")]
    pub delete_extraneous: bool,
    /// Dry run.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dry_run: bool,
    /// Set by the agent on listing jobs when this migration created the
    /// destination bucket (see [`CopyJob::dst_bucket_new`]).
    #[serde(default, skip_serializing_if = "is_false")]
    pub dst_bucket_new: bool,
    /// Every version of every object ([`MigrateJob::versions`]).
    #[serde(default, skip_serializing_if = "is_false")]
    pub versions: bool,
}

/// Subject `<prefix>.bucket`: create one destination bucket, then start its listing.
pub type BucketJob = MigrationScope;

/// Which side a listing job lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ListSide {
    /// The source bucket: objects to copy.
    #[default]
    Source,
    /// The destination bucket: candidates for mirror-mode deletion.
    Destination,
}

/// Subject `<prefix>.list`: list one page of a bucket and publish its jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListJob {
    /// The bucket pair and migration settings.
    pub scope: MigrationScope,
    /// Which bucket of the pair to list.
    #[serde(default)]
    pub side: ListSide,
    /// Page number, from 0.
    #[serde(default)]
    pub page: u64,
    /// ListObjectsV2 continuation token of this page; absent for page 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation_token: Option<String>,
    /// Versioned listing (ListObjectVersions): the key and version id this
    /// page starts after; absent for page 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_marker: Option<VersionMarker>,
    /// The prefix this listing covers, which starts with the scope's prefix;
    /// absent: the scope's prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// How many more `/` levels this listing splits: above 0 it lists with
    /// delimiter `/` and starts one listing per common prefix, which run in
    /// parallel; 0 lists every key under the prefix.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub split: u32,
}

/// Subject `<prefix>.versions`: copy the versions of one key that the
/// destination lacks, oldest first, one after another (versioned
/// migrations). Listings publish one per key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionsJob {
    /// The bucket pair and migration settings.
    pub scope: MigrationScope,
    /// Source key.
    pub key: String,
    /// The key's versions oldest first, when the listing saw all of them
    /// on one page; absent: the job lists them itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<Vec<ListedVersion>>,
}

/// One version of a key, as ListObjectVersions gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListedVersion {
    /// Source version id (`null` for a version from before versioning).
    pub version_id: String,
    /// A delete marker rather than an object.
    #[serde(default, skip_serializing_if = "is_false")]
    pub delete_marker: bool,
    /// Size (0 for a delete marker).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub size: u64,
    /// ETag, no quotes (none for a delete marker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// Where a ListObjectVersions page starts: after this version of this key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionMarker {
    /// `key-marker`.
    pub key: String,
    /// `version-id-marker`.
    pub version_id: String,
}

/// One object of a [`BatchJob`], as the listing saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchObject {
    /// Source key; the destination key is the same.
    pub key: String,
    /// Size as listed (a hint, as [`CopyJob::listed_size`]).
    pub size: u64,
    /// ETag as listed, no quotes (a hint, as [`CopyJob::listed_etag`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// Subject `<prefix>.batch`: copy several small objects of one migration
/// listing, one after another, with one message, one ledger event and one
/// ack for all of them. Listings publish these; an object the batch cannot
/// finish is handed off as its own [`CopyJob`], which retries and
/// dead-letters on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchJob {
    /// The bucket pair and migration settings.
    pub scope: MigrationScope,
    /// The objects, each copied to the same key in `scope.dst_bucket`.
    pub objects: Vec<BatchObject>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_copy(json: &str, expect: Result<CopyJob, &str>) {
        let got = serde_json::from_str::<CopyJob>(json).map_err(|e| e.to_string());
        match (got, expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(got), Err(want)) => assert!(got.contains(want), "{got:?} lacks {want:?}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn copy_job_shapes() {
        let base = CopyJob {
            src: SourceObject {
                endpoint: "a".into(),
                bucket: "photos".into(),
                key: "2024/x.jpg".into(),
                version_id: None,
            },
            dst: DestinationLocation {
                endpoint: "b".into(),
                bucket: "photos-copy".into(),
                key: None,
            },
            migration: None,
            dry_run: false,
            sequencer: None,
            skip_if_source_missing: false,
            listed_size: None,
            listed_etag: None,
            dst_bucket_new: false,
            attempted_since_ms: None,
        };
        let mut hinted = base.clone();
        hinted.listed_size = Some(4096);
        hinted.dst_bucket_new = true;
        check_copy(
            r#"{"src":{"endpoint":"a","bucket":"photos","key":"2024/x.jpg"},"dst":{"endpoint":"b","bucket":"photos-copy"},"listed_size":4096,"dst_bucket_new":true}"#,
            Ok(hinted),
        );
        check_copy(
            r#"{"src":{"endpoint":"a","bucket":"photos","key":"2024/x.jpg"},"dst":{"endpoint":"b","bucket":"photos-copy"}}"#,
            Ok(base.clone()),
        );
        let mut renamed = base.clone();
        renamed.dst.key = Some("y.jpg".into());
        renamed.src.version_id = Some("v1".into());
        check_copy(
            r#"{"src":{"endpoint":"a","bucket":"photos","key":"2024/x.jpg","version_id":"v1"},"dst":{"endpoint":"b","bucket":"photos-copy","key":"y.jpg"}}"#,
            Ok(renamed),
        );
        check_copy(
            r#"{"src":{"endpoint":"a","bucket":"photos","key":"k"},"dst":{"endpoint":"b","bucket":"c","url":"http://evil"}}"#,
            Err("unknown field `url`"),
        );
        check_copy(r#"{"src":{"endpoint":"a"}}"#, Err("missing field"));
        check_copy("not json", Err("expected"));
    }

    #[test]
    fn round_trip_omits_absent_fields() {
        let job = DeleteJob {
            dst: DestinationObject {
                endpoint: "b".into(),
                bucket: "x".into(),
                key: "k".into(),
            },
            src: None,
            sequencer: None,
            migration: None,
            if_source_absent: false,
            dry_run: false,
        };
        let text = serde_json::to_string(&job).unwrap_or_default();
        assert_eq!(text, r#"{"dst":{"endpoint":"b","bucket":"x","key":"k"}}"#);
    }

    #[test]
    fn migrate_job_needs_only_endpoints() {
        let job: MigrateJob = serde_json::from_str(r#"{"src":"a","dst":"b"}"#).unwrap();
        assert_eq!(job.buckets, None);
        assert!(!job.dry_run && !job.delete_extraneous);
        let full: MigrateJob = serde_json::from_str(
            r#"{"id":"m1","src":"a","dst":"b","buckets":["x","y"],"exclude_buckets":["tmp-*"],
                "prefix":"2024/","bucket_map":{"x":"x-new"},"delete_extraneous":false,"dry_run":false}"#,
        )
        .unwrap();
        assert_eq!(full.bucket_map.get("x").map(String::as_str), Some("x-new"));
        assert!(
            serde_json::from_str::<MigrateJob>(r#"{"src":"a","dst":"b","bukets":[]}"#).is_err()
        );
    }

    #[test]
    fn batch_job_round_trips() {
        let text = r#"{"scope":{"migration":"m1","src":"a","dst":"b","bucket":"x","dst_bucket":"y","dst_bucket_new":true},"objects":[{"key":"k1","size":4096,"etag":"e1"},{"key":"k2","size":0}]}"#;
        let job: BatchJob = serde_json::from_str(text).unwrap();
        assert_eq!(job.objects.len(), 2);
        assert_eq!(job.objects[1].etag, None);
        assert_eq!(serde_json::to_string(&job).unwrap(), text);
        assert!(
            serde_json::from_str::<BatchJob>(
                r#"{"scope":{"migration":"m1","src":"a","dst":"b","bucket":"x","dst_bucket":"y"},"objects":[{"key":"k","size":1,"url":"http://evil"}]}"#
            )
            .is_err()
        );
    }

    #[test]
    fn list_job_round_trips() {
        let text = r#"{"scope":{"migration":"m1","src":"a","dst":"b","bucket":"x","dst_bucket":"x"},"side":"destination","page":3,"continuation_token":"t"}"#;
        let job: ListJob = serde_json::from_str(text).unwrap();
        assert_eq!(job.side, ListSide::Destination);
        assert_eq!((job.prefix.as_deref(), job.split), (None, 0));
        assert_eq!(serde_json::to_string(&job).unwrap(), text);
        let split = r#"{"scope":{"migration":"m1","src":"a","dst":"b","bucket":"x","dst_bucket":"x"},"side":"source","page":0,"prefix":"logs/","split":2}"#;
        let job: ListJob = serde_json::from_str(split).unwrap();
        assert_eq!((job.prefix.as_deref(), job.split), (Some("logs/"), 2));
        assert_eq!(serde_json::to_string(&job).unwrap(), split);
    }
}
