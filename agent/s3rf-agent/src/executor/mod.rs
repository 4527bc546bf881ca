//! The executor: the only code that talks to S3.
//!
//! It gathers facts (HEAD requests), asks [`crate::plan`] what to do, and does
//! it. Every multipart upload it starts is either completed or aborted, also on
//! error and on shutdown. Object bytes in memory are bounded by one semaphore
//! (`copy.buffer_memory`), shared by every copy of the agent.

mod buckets;
mod copy;
mod delete;
mod encode;
mod error;
mod filter_input;
pub mod integrity;
mod multipart;
mod put;
mod read_ahead;
mod source;
mod throttle;
mod uploads;
mod verify;
mod versions;

use crate::outcome::Disposition;
use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    BucketLocationConstraint, ChecksumAlgorithm, ChecksumMode, ChecksumType,
    CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration, MetadataDirective,
    TaggingDirective,
};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use crate::outcome::Outcome;
pub use buckets::{Listed, Page};
pub use encode::{copy_source, tagging};
pub use error::{ExecError, Target, classify, classify_service};
pub use throttle::{RateBook, Throttle};
pub use versions::VersionPage;

use crate::config::{CopyConfig, EndpointKind, Verify};
use crate::filter::{Filters, Kind as FilterKind, ObjectInput, Verdict};
use crate::job::{CopyJob, DeleteJob, Mode, ObjectJob, ObjectRef, Origin};
use crate::migration::BucketState;
use crate::names::{META_SOURCE_ETAG, META_SOURCE_VERSION};
use crate::plan::{self, Body, CopyPlan, Method, ObjectFacts, Part, Plan, Read, SkipReason};
use crate::resume::Uploads;
use crate::store::{Store, Stores};
use integrity::{EtagContext, Md5, OrderedMd5, Written};

/// Buffer accounting unit: the semaphore counts KiB so that u32 permits cover
/// terabytes.
const BUFFER_UNIT: u64 = 1024;

/// The attributes S3 keeps with an object besides its bytes and tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Attributes {
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<DateTime>,
    metadata: HashMap<String, String>,
}

/// What a HEAD (or GET) of the source said.
#[derive(Debug, Clone)]
struct Source {
    facts: ObjectFacts,
    attrs: Attributes,
    last_modified_ms: Option<i64>,
    /// Tags on the source, when the response said (GET does, HEAD does not).
    tag_count: Option<i32>,
    /// The MD5 of the source's bytes, when its ETag states it
    /// ([`integrity::source_md5`]): what every read of it is checked against.
    md5: Option<Md5>,
}

/// Sets the destination's user metadata and the source's attributes on a
/// PutObject, CreateMultipartUpload or CopyObject (metadata REPLACE)
/// request: the three builders share these setters, but no trait.
macro_rules! with_attributes {
    ($req:expr, $metadata:expr, $attrs:expr) => {{
        let a: &Attributes = $attrs;
        $req.set_metadata(Some($metadata))
            .set_content_type(a.content_type.clone())
            .set_content_encoding(a.content_encoding.clone())
            .set_content_disposition(a.content_disposition.clone())
            .set_content_language(a.content_language.clone())
            .set_cache_control(a.cache_control.clone())
            .set_expires(a.expires)
    }};
}
use with_attributes;

/// What `get_source` read of an object it copies with one PUT.
enum Prefetched {
    /// The whole object, checked against the source's MD5 where it has one,
    /// with its MD5 (unless neither end checks) and the buffer budget it
    /// holds.
    Whole(Bytes, Option<Md5>, OwnedSemaphorePermit),
    /// The open body of a larger object, which the PUT reads through a
    /// window of `window` bytes (`copy.read_ahead`) whose budget it holds.
    Open {
        body: ByteStream,
        window: u64,
        permit: OwnedSemaphorePermit,
    },
}

/// Carries out jobs.
#[derive(Debug, Clone)]
pub struct Executor {
    stores: Stores,
    copy: CopyConfig,
    buffers: Arc<Semaphore>,
    buffer_units: u64,
    filters: Filters,
    /// Where multipart copies record their parts, to be resumed.
    uploads: Option<Uploads>,
    /// `[limits]`, shared by every copy of the agent.
    throttle: Arc<Throttle>,
    /// This agent's share of each migration's fleet rate.
    rates: RateBook,
}

fn strip_quotes(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

/// Whether `bucket` on `store` is a directory bucket (S3 Express One Zone).
fn is_express(store: &Store, bucket: &str) -> bool {
    store.config.kind == EndpointKind::S3Express || plan::is_directory_bucket(bucket)
}

/// Why `store`'s ETags in `bucket` cannot be MD5s: (directory bucket,
/// `verify = "off"`).
fn opaque(store: &Store, bucket: &str) -> (bool, bool) {
    (
        is_express(store, bucket),
        store.config.verify == Verify::Off,
    )
}

/// How the destination checks the bytes of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WriteCheck {
    /// By `Content-MD5` (and the agent by the returned ETag).
    md5: bool,
    /// By a CRC32C the SDK computes as it sends: directory buckets (S3
    /// Express One Zone) take no MD5-based checksums.
    crc32c: bool,
}

/// How a write to `bucket` on `store` is checked: off with
/// `verify = "off"`, a CRC32C for a directory bucket, else `Content-MD5`.
fn write_check(store: &Store, bucket: &str) -> WriteCheck {
    let on = store.config.verify == Verify::Auto;
    let crc32c = on && is_express(store, bucket);
    WriteCheck {
        md5: on && !crc32c,
        crc32c,
    }
}

/// What a write to `obj` on `store` returned, for comparing its ETag.
fn written_context<'a>(
    store: &Store,
    obj: &ObjectRef,
    sse: Option<&'a aws_sdk_s3::types::ServerSideEncryption>,
    sse_c: bool,
) -> EtagContext<'a> {
    let (express, verify_off) = opaque(store, &obj.bucket);
    EtagContext {
        sse: sse.map(|s| s.as_str()),
        sse_c,
        express,
        verify_off,
    }
}

fn target(obj: &ObjectRef) -> Target {
    Target {
        endpoint: obj.endpoint.clone(),
        bucket: obj.bucket.clone(),
        key: Some(obj.key.clone()),
    }
}

impl Executor {
    /// An executor over `stores` with `copy` tuning.
    pub fn new(stores: Stores, copy: CopyConfig) -> Self {
        let buffer_units = (copy.buffer_memory / BUFFER_UNIT).max(1);
        let permits = usize::try_from(buffer_units).unwrap_or(usize::MAX >> 4);
        Self {
            stores,
            copy,
            buffers: Arc::new(Semaphore::new(permits)),
            buffer_units,
            filters: Filters::default(),
            uploads: None,
            throttle: Arc::new(Throttle::default()),
            rates: RateBook::default(),
        }
    }

    /// The per-migration buckets `fleet.rs` keeps current.
    pub fn rates(&self) -> &RateBook {
        &self.rates
    }

    /// Waits until `n` more bytes of `job`'s source may be read: the
    /// agent's limit, then its share of the job's migration's rate.
    async fn charge_bytes(&self, job: &CopyJob, n: u64) {
        self.throttle.bytes(n).await;
        if let Some(t) = job.origin.migration().and_then(|m| self.rates.get(m)) {
            t.bytes(n).await;
        }
    }

    /// The same executor, within `limits`.
    #[must_use]
    pub fn with_limits(mut self, limits: &crate::config::LimitsConfig) -> Self {
        self.throttle = Arc::new(Throttle::new(limits));
        self
    }

    /// The same executor, recording multipart copies in `uploads` so a
    /// redelivery resumes them.
    #[must_use]
    pub fn with_resume(mut self, uploads: Uploads) -> Self {
        self.uploads = Some(uploads);
        self
    }

    /// The same executor, running `filters` on every copy and delete.
    #[must_use]
    pub fn with_filters(mut self, filters: Filters) -> Self {
        self.filters = filters;
        self
    }

    /// The endpoints this executor can reach.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    fn store(&self, obj: &ObjectRef) -> Result<&Store, ExecError> {
        self.stores
            .get(&obj.endpoint)
            .ok_or_else(|| ExecError::Internal {
                op: "lookup",
                target: target(obj),
                detail: "endpoint vanished after validation".to_owned(),
            })
    }

    /// Runs one job. `cancel` aborts it (uploads are aborted, not left behind).
    pub async fn run(
        &self,
        job: ObjectJob<'_>,
        cancel: &CancellationToken,
    ) -> Result<Outcome, ExecError> {
        let migration = match job {
            ObjectJob::Copy(c) => c.origin.migration(),
            ObjectJob::Delete(d) => d.origin.migration(),
        };
        let share = migration.and_then(|m| self.rates.get(m));
        tokio::select! {
            () = async {
                self.throttle.object().await;
                if let Some(t) = &share {
                    t.object().await;
                }
            } => {}
            () = cancel.cancelled() => return Err(ExecError::Cancelled),
        }
        match job {
            ObjectJob::Copy(c) => self.copy(c, cancel).await,
            ObjectJob::Delete(d) => {
                tokio::select! {
                    r = self.delete(d) => r,
                    () = cancel.cancelled() => Err(ExecError::Cancelled),
                }
            }
        }
    }

    /// Buffer permits `bytes` take (at most the whole budget).
    fn buffer_units_for(&self, bytes: u64) -> usize {
        let units = bytes.div_ceil(BUFFER_UNIT).clamp(1, self.buffer_units);
        usize::try_from(units).unwrap_or(usize::MAX)
    }

    async fn buffer_permit(&self, bytes: u64) -> Result<OwnedSemaphorePermit, ExecError> {
        let units = u32::try_from(self.buffer_units_for(bytes)).unwrap_or(u32::MAX);
        self.buffers
            .clone()
            .acquire_many_owned(units)
            .await
            .map_err(|_| ExecError::Cancelled)
    }
}
