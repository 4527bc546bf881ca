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
        };
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
        };
        let text = serde_json::to_string(&job).unwrap_or_default();
        assert_eq!(text, r#"{"dst":{"endpoint":"b","bucket":"x","key":"k"}}"#);
    }
}
