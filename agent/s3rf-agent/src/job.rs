//! Validated jobs: the domain form of the wire JSON in `s3rf-wire`.
//!
//! Parsing is pure. It checks shape, field values and that every endpoint a job
//! names exists in this agent's config, so a job naming an unknown endpoint is
//! refused before any connection is made.

use crate::names::JobKind;

/// Longest S3 key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Why a job payload was refused. All of these are permanent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("malformed {kind} job: {detail}; publish JSON as documented in README.md (Jobs)")]
    Malformed { kind: JobKind, detail: String },
    #[error(
        "unknown endpoint {name}: it is not defined in this agent's config; add [endpoints.{name}] or fix the job"
    )]
    UnknownEndpoint { name: String },
    #[error("invalid {field} in {kind} job: {detail}")]
    Invalid {
        kind: JobKind,
        field: &'static str,
        detail: String,
    },
}

/// One object on one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// Endpoint name from the agent config.
    pub endpoint: String,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}/{}", self.endpoint, self.bucket, self.key)
    }
}

/// A validated copy job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyJob {
    /// Source object.
    pub src: ObjectRef,
    /// Source version, if pinned.
    pub src_version: Option<String>,
    /// Destination object.
    pub dst: ObjectRef,
    /// Migration id.
    pub migration: Option<String>,
}

/// A validated delete job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteJob {
    /// Object to delete.
    pub dst: ObjectRef,
    /// Event sequencer, when the delete came from an S3 event.
    pub sequencer: Option<String>,
    /// Migration id.
    pub migration: Option<String>,
}

/// Any job an agent executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Copy.
    Copy(CopyJob),
    /// Delete.
    Delete(DeleteJob),
}

impl Job {
    /// Parses and validates a payload received on the subject of `kind`.
    pub fn parse(
        kind: JobKind,
        payload: &[u8],
        endpoint_exists: impl Fn(&str) -> bool,
    ) -> Result<Self, JobError> {
        let malformed = |e: serde_json::Error| JobError::Malformed {
            kind,
            detail: e.to_string(),
        };
        let check = Checker {
            kind,
            endpoint_exists: &endpoint_exists,
        };
        match kind {
            JobKind::Copy => {
                let w: s3rf_wire::CopyJob = serde_json::from_slice(payload).map_err(malformed)?;
                let dst_key = w.dst.key.unwrap_or_else(|| w.src.key.clone());
                let job = CopyJob {
                    src: check.object(w.src.endpoint, w.src.bucket, w.src.key, "src")?,
                    src_version: check.optional("src.version_id", w.src.version_id)?,
                    dst: check.object(w.dst.endpoint, w.dst.bucket, dst_key, "dst")?,
                    migration: check.optional("migration", w.migration)?,
                };
                Ok(Job::Copy(job))
            }
            JobKind::Delete => {
                let w: s3rf_wire::DeleteJob = serde_json::from_slice(payload).map_err(malformed)?;
                if let Some(src) = &w.src {
                    check.endpoint(&src.endpoint)?;
                }
                let job = DeleteJob {
                    dst: check.object(w.dst.endpoint, w.dst.bucket, w.dst.key, "dst")?,
                    sequencer: check.optional("sequencer", w.sequencer)?,
                    migration: check.optional("migration", w.migration)?,
                };
                Ok(Job::Delete(job))
            }
        }
    }

    /// The object a log line about this job is mainly about.
    pub fn dst(&self) -> &ObjectRef {
        match self {
            Job::Copy(c) => &c.dst,
            Job::Delete(d) => &d.dst,
        }
    }
}

struct Checker<'a, F> {
    kind: JobKind,
    endpoint_exists: &'a F,
}

impl<F: Fn(&str) -> bool> Checker<'_, F> {
    fn endpoint(&self, name: &str) -> Result<(), JobError> {
        if (self.endpoint_exists)(name) {
            Ok(())
        } else {
            Err(JobError::UnknownEndpoint {
                name: name.to_owned(),
            })
        }
    }

    fn invalid(&self, field: &'static str, detail: impl Into<String>) -> JobError {
        JobError::Invalid {
            kind: self.kind,
            field,
            detail: detail.into(),
        }
    }

    fn object(
        &self,
        endpoint: String,
        bucket: String,
        key: String,
        side: &'static str,
    ) -> Result<ObjectRef, JobError> {
        self.endpoint(&endpoint)?;
        let (bucket_field, key_field) = match side {
            "src" => ("src.bucket", "src.key"),
            _ => ("dst.bucket", "dst.key"),
        };
        if bucket.is_empty() || bucket.len() > 255 || bucket.contains('/') {
            return Err(self.invalid(
                bucket_field,
                format!("{bucket:?} is not a bucket name (1-255 characters, no '/')"),
            ));
        }
        if key.is_empty() {
            return Err(self.invalid(key_field, "must not be empty"));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(self.invalid(
                key_field,
                format!("{} bytes is longer than S3's 1024-byte limit", key.len()),
            ));
        }
        Ok(ObjectRef {
            endpoint,
            bucket,
            key,
        })
    }

    fn optional(
        &self,
        field: &'static str,
        value: Option<String>,
    ) -> Result<Option<String>, JobError> {
        match value {
            Some(v) if v.is_empty() => Err(self.invalid(field, "must not be empty when present")),
            other => Ok(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: JobKind, payload: &str, expect: Result<&str, &str>) {
        let got = Job::parse(kind, payload.as_bytes(), |e| e == "a" || e == "b");
        match (got, expect) {
            (Ok(job), Ok(want)) => {
                let dbg = format!("{job:?}");
                assert!(dbg.contains(want), "{dbg} lacks {want:?}");
            }
            (Err(e), Err(want)) => {
                let msg = e.to_string();
                assert!(msg.contains(want), "{msg:?} lacks {want:?}");
            }
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn copy_jobs() {
        let c = JobKind::Copy;
        check(
            c,
            r#"{"src":{"endpoint":"a","bucket":"p","key":"2024/x.jpg"},"dst":{"endpoint":"b","bucket":"q"}}"#,
            Ok(r#"dst: ObjectRef { endpoint: "b", bucket: "q", key: "2024/x.jpg" }"#),
        );
        check(
            c,
            r#"{"src":{"endpoint":"a","bucket":"p","key":"k"},"dst":{"endpoint":"c","bucket":"q"}}"#,
            Err("unknown endpoint c"),
        );
        check(
            c,
            r#"{"src":{"endpoint":"zz","bucket":"p","key":"k"},"dst":{"endpoint":"b","bucket":"q"}}"#,
            Err("unknown endpoint zz"),
        );
        check(c, "{not json", Err("malformed copy job"));
        check(
            c,
            r#"{"src":{"endpoint":"a","bucket":"p","key":""},"dst":{"endpoint":"b","bucket":"q"}}"#,
            Err("invalid src.key"),
        );
        let long = "k".repeat(1025);
        check(
            c,
            &format!(
                r#"{{"src":{{"endpoint":"a","bucket":"p","key":"{long}"}},"dst":{{"endpoint":"b","bucket":"q"}}}}"#
            ),
            Err("1024-byte limit"),
        );
        check(
            c,
            r#"{"src":{"endpoint":"a","bucket":"p/x","key":"k"},"dst":{"endpoint":"b","bucket":"q"}}"#,
            Err("invalid src.bucket"),
        );
    }

    #[test]
    fn delete_jobs() {
        let d = JobKind::Delete;
        check(
            d,
            r#"{"dst":{"endpoint":"b","bucket":"x","key":"k"},"sequencer":"0A1"}"#,
            Ok(r#"sequencer: Some("0A1")"#),
        );
        check(
            d,
            r#"{"dst":{"endpoint":"b","bucket":"x"}}"#,
            Err("missing field `key`"),
        );
        check(
            d,
            r#"{"dst":{"endpoint":"q","bucket":"x","key":"k"}}"#,
            Err("unknown endpoint q"),
        );
    }
}
