//! Errors from carrying out a job against S3, and what each means for retries.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::outcome::Disposition;

/// Which object an S3 call was about, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Endpoint name.
    pub endpoint: String,
    /// Bucket.
    pub bucket: String,
    /// Key, when the call is about one object.
    pub key: Option<String>,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(k) => write!(
                f,
                "bucket {} key {:?} on endpoint {}",
                self.bucket, k, self.endpoint
            ),
            None => write!(f, "bucket {} on endpoint {}", self.bucket, self.endpoint),
        }
    }
}

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("NoSuchBucket: bucket {} does not exist on endpoint {}; create it or fix the job", .0.bucket, .0.endpoint)]
    NoSuchBucket(Target),
    #[error(
        "NoSuchKey: {0} does not exist; check the key, or ignore this if the object was deleted since the job was published"
    )]
    NoSuchKey(Target),
    #[error("AccessDenied: {op} on {target}: {message}; check the credentials and policy of endpoint {}", .target.endpoint)]
    AccessDenied {
        op: &'static str,
        target: Target,
        message: String,
    },
    #[error("{code}: {op} on {target} failed with HTTP {status}: {message}{hint}")]
    Service {
        op: &'static str,
        target: Target,
        status: u16,
        code: String,
        message: String,
        hint: &'static str,
        retryable: bool,
    },
    #[error("{op} on {target}: {detail}; check that endpoint {} is up and its url is right (retrying)", .target.endpoint)]
    Transport {
        op: &'static str,
        target: Target,
        detail: String,
    },
    #[error(
        "{op} on {target}: HTTP {status} with a body the SDK could not read: {detail}; a proxy in the way or a bug of this store (retrying)"
    )]
    Unreadable {
        op: &'static str,
        target: Target,
        status: u16,
        detail: String,
    },
    #[error("source {0} changed while it was being copied; the copy will be retried")]
    SourceChanged(Target),
    #[error("{target}: got {got} bytes where {expected} were expected; the copy will be retried")]
    ShortRead {
        target: Target,
        expected: u64,
        got: u64,
    },
    #[error(
        "{target}: the bytes {stage} did not match: expected {expected}, got {got}; the copy will be retried; if this repeats, check the network path and memory of this host, or set verify = \"off\" on endpoint {} if its ETags are not MD5s", .target.endpoint
    )]
    Corrupt {
        /// "read from the source" or "stored at the destination".
        stage: &'static str,
        target: Target,
        expected: String,
        got: String,
    },
    #[error("{op} on {target}: {detail}; this is a bug in s3rf, please report it")]
    Internal {
        op: &'static str,
        target: Target,
        detail: String,
    },
    #[error("BucketAlreadyExists: bucket {} on endpoint {} exists and is not ours; map it to another name with bucket_map", .0.bucket, .0.endpoint)]
    BucketTaken(Target),
    #[error(
        "bucket {} on endpoint {} is not versioned (versioning {state}): a versioned migration keeps every version only in a bucket with versioning enabled; enable it (aws s3api put-bucket-versioning --versioning-configuration Status=Enabled), map the bucket to a new one with bucket_map, or migrate without versions", .target.bucket, .target.endpoint
    )]
    Unversioned { target: Target, state: String },
    #[error("cancelled by shutdown; the job goes back to the queue")]
    Cancelled,
    #[error(transparent)]
    Filter(#[from] crate::filter::FilterError),
}

impl ExecError {
    /// Whether retrying can help.
    pub fn disposition(&self) -> Disposition {
        match self {
            ExecError::NoSuchBucket(_)
            | ExecError::NoSuchKey(_)
            | ExecError::AccessDenied { .. }
            | ExecError::BucketTaken(_)
            | ExecError::Unversioned { .. }
            | ExecError::Filter(_)
            | ExecError::Internal { .. } => Disposition::DeadLetter,
            ExecError::Service { retryable, .. } => {
                if *retryable {
                    Disposition::Retry
                } else {
                    Disposition::DeadLetter
                }
            }
            ExecError::Transport { .. }
            | ExecError::Unreadable { .. }
            | ExecError::SourceChanged(_)
            | ExecError::ShortRead { .. }
            | ExecError::Corrupt { .. } => Disposition::Retry,
            ExecError::Cancelled => Disposition::Release,
        }
    }

    /// Whether S3 said the object or bucket is not there (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            ExecError::NoSuchKey(_)
                | ExecError::NoSuchBucket(_)
                | ExecError::Service { status: 404, .. }
        )
    }

    /// Whether S3 said the operation is not implemented by this store.
    pub fn is_not_implemented(&self) -> bool {
        matches!(self, ExecError::Service { status: 501, .. })
            || matches!(self, ExecError::Service { code, .. } if code == "NotImplemented")
    }
}

/// Codes that mean "try again later" even on a 4xx status.
const RETRYABLE_CODES: &[&str] = &[
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "OperationAborted",
    "NoSuchUpload",
    "ExpiredToken",
    // The bytes changed on their way: a flaky link, proxy or NIC. The next
    // attempt sends them again.
    "BadDigest",
    "XAmzContentChecksumMismatch",
    "XAmzContentSHA256Mismatch",
];

/// Maps any SDK error to an [`ExecError`] with the right disposition.
pub fn classify<E>(op: &'static str, target: &Target, err: SdkError<E, HttpResponse>) -> ExecError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let target = target.clone();
    match &err {
        SdkError::ServiceError(ctx) if ctx.raw().status().is_success() => {
            // A 2xx whose body the SDK could not read: a broken proxy or a
            // store bug. The effect may or may not have happened; retrying is
            // safe because every step checks the destination first.
            ExecError::Unreadable {
                op,
                target,
                status: ctx.raw().status().as_u16(),
                detail: source_chain(Some(ctx.err())),
            }
        }
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or_default().to_owned();
            let message = ctx
                .err()
                .message()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("HTTP {status}"));
            classify_service(op, target, status, code, message)
        }
        SdkError::TimeoutError(_) => ExecError::Transport {
            op,
            target,
            detail: "timed out".to_owned(),
        },
        SdkError::DispatchFailure(f) => ExecError::Transport {
            op,
            target,
            detail: format!(
                "cannot connect: {}",
                source_chain(
                    f.as_connector_error()
                        .map(|c| c as &(dyn std::error::Error + 'static))
                )
            ),
        },
        SdkError::ResponseError(_) => ExecError::Transport {
            op,
            target,
            detail: format!("bad response: {}", source_chain(Some(&err))),
        },
        SdkError::ConstructionFailure(_) => ExecError::Internal {
            op,
            target,
            detail: source_chain(Some(&err)),
        },
        _ => ExecError::Transport {
            op,
            target,
            detail: source_chain(Some(&err)),
        },
    }
}

/// Classifies a service response by status and code.
pub fn classify_service(
    op: &'static str,
    target: Target,
    status: u16,
    code: String,
    message: String,
) -> ExecError {
    match (status, code.as_str()) {
        (_, "NoSuchBucket") => ExecError::NoSuchBucket(target),
        (_, "NoSuchKey") => ExecError::NoSuchKey(target),
        (412, _) | (_, "PreconditionFailed") => ExecError::SourceChanged(target),
        (403, c) if !RETRYABLE_CODES.contains(&c) => ExecError::AccessDenied {
            op,
            target,
            message,
        },
        (s, c) => {
            let retryable = (s >= 500 && s != 501)
                || s == 429
                || s == 408
                || s == 409
                || RETRYABLE_CODES.contains(&c);
            let hint = match (s, c) {
                (501, _) | (_, "NotImplemented") => "; this store does not support the operation",
                (_, "BadDigest" | "XAmzContentChecksumMismatch" | "XAmzContentSHA256Mismatch") => {
                    "; the bytes did not match their checksum when they arrived, so the store refused them (retrying); if every attempt fails, check the network path to this endpoint, or try checksums = \"when_required\" on it"
                }
                (_, "InvalidDigest") => {
                    "; this store refuses the Content-MD5 header: set verify = \"off\" on this endpoint"
                }
                _ if retryable => " (retrying)",
                _ => "",
            };
            let code = if code.is_empty() {
                format!("HTTP{s}")
            } else {
                code
            };
            ExecError::Service {
                op,
                target,
                status: s,
                code,
                message,
                hint,
                retryable,
            }
        }
    }
}

fn source_chain(err: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut parts = Vec::new();
    let mut cur = err;
    while let Some(e) = cur {
        let s = e.to_string();
        if parts.last() != Some(&s) {
            parts.push(s);
        }
        cur = e.source();
    }
    if parts.is_empty() {
        "unknown error".to_owned()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Target {
        Target {
            endpoint: "b".into(),
            bucket: "photos-copy".into(),
            key: Some("k".into()),
        }
    }

    #[test]
    fn disposition_table() {
        #[rustfmt::skip]
        let table: &[(u16, &str, Disposition)] = &[
            (404, "NoSuchBucket", Disposition::DeadLetter),
            (404, "NoSuchKey", Disposition::DeadLetter),
            (403, "AccessDenied", Disposition::DeadLetter),
            (403, "SignatureDoesNotMatch", Disposition::DeadLetter),
            (403, "RequestTimeTooSkewed", Disposition::Retry),
            (400, "InvalidArgument", Disposition::DeadLetter),
            (400, "RequestTimeout", Disposition::Retry),
            (412, "PreconditionFailed", Disposition::Retry),
            (429, "", Disposition::Retry),
            (500, "InternalError", Disposition::Retry),
            (503, "SlowDown", Disposition::Retry),
            (501, "NotImplemented", Disposition::DeadLetter),
            (400, "BadDigest", Disposition::Retry),
            (400, "XAmzContentSHA256Mismatch", Disposition::Retry),
            (400, "InvalidDigest", Disposition::DeadLetter),
            (404, "NoSuchUpload", Disposition::Retry),
        ];
        for (status, code, want) in table {
            let e = classify_service("PutObject", t(), *status, (*code).into(), "m".into());
            assert_eq!(e.disposition(), *want, "{status} {code}: {e}");
        }
        assert_eq!(ExecError::Cancelled.disposition(), Disposition::Release);
        let down = ExecError::Transport {
            op: "HeadObject",
            target: t(),
            detail: "cannot connect".into(),
        };
        assert_eq!(down.disposition(), Disposition::Retry);
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = classify_service("PutObject", t(), 404, "NoSuchBucket".into(), "m".into());
        assert_eq!(
            e.to_string(),
            "NoSuchBucket: bucket photos-copy does not exist on endpoint b; create it or fix the job"
        );
        let e = classify_service(
            "PutObject",
            t(),
            400,
            "XAmzContentSHA256Mismatch".into(),
            "m".into(),
        );
        assert!(e.to_string().contains("when_required"), "{e}");
    }
}
