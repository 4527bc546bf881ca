//! The executor: the only code that talks to S3.
//!
//! It gathers facts (HEAD requests), asks [`crate::plan`] what to do, and does
//! it. Every multipart upload it starts is either completed or aborted, also on
//! error and on shutdown. Object bytes in memory are bounded by one semaphore
//! (`copy.buffer_memory`), shared by every copy of the agent.

mod encode;
mod error;
pub mod integrity;
mod multipart;
mod read_ahead;

use crate::outcome::Disposition;
use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};
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

pub use encode::{copy_source, tagging};
pub use error::{ExecError, Target, classify, classify_service};

use crate::config::{CopyConfig, EndpointKind, Verify};
use crate::filter::{Filters, Kind as FilterKind, ObjectInput, Verdict};
use crate::job::{CopyJob, DeleteJob, Job, ObjectRef};
use crate::migration::{BucketState, ObjectOutcome};
use crate::names::META_SOURCE_ETAG;
use crate::plan::{self, CopyPlan, Method, ObjectFacts, Part, Plan, SkipReason};
use crate::resume::Uploads;
use crate::store::{Store, Stores};
use integrity::{EtagContext, Md5, OrderedMd5, Written};

/// Buffer accounting unit: the semaphore counts KiB so that u32 permits cover
/// terabytes.
const BUFFER_UNIT: u64 = 1024;

/// What a job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The object was copied.
    Copied {
        /// Which method.
        method: &'static str,
        /// Bytes copied.
        bytes: u64,
    },
    /// Nothing needed doing.
    Skipped {
        /// Why.
        reason: SkipReason,
        /// Object size.
        bytes: u64,
        /// When the identical destination object was last written (ms since
        /// the epoch), if its store said.
        dst_modified_ms: Option<i64>,
    },
    /// Dry run: the object would be copied.
    WouldCopy {
        /// Object size.
        bytes: u64,
    },
    /// The object was deleted (or was already gone).
    Deleted,
    /// Mirror mode: the source still has the object, so it stays.
    Kept,
    /// Dry run: the object would be deleted.
    WouldDelete,
    /// A filter skipped the object.
    Filtered {
        /// Which filter.
        filter: String,
        /// Its reason.
        reason: String,
        /// Object size (0 for deletes).
        bytes: u64,
    },
}

impl Outcome {
    /// Clock difference allowed between the store that dated an object and
    /// the NATS server that dated the job.
    pub const CLOCK_SLACK_MS: i64 = 60_000;

    /// The outcome of a job that an earlier attempt may have done: a
    /// redelivery (`delivered` > 1, the job published at `published_ms`),
    /// or an object a batch handed off after its own attempt, begun at
    /// `attempted_since_ms`. An identical object written since then was
    /// written by that attempt, whose agent died, lost its ack or saw an
    /// error after the store had acted, so it counts as copied, not as
    /// already there. Other outcomes stay as they are.
    #[must_use]
    pub fn redone(
        self,
        delivered: u64,
        published_ms: i64,
        attempted_since_ms: Option<i64>,
    ) -> Self {
        let since = attempted_since_ms.map_or(published_ms, |t| t.min(published_ms));
        let earlier_attempt = delivered > 1 || attempted_since_ms.is_some();
        match self {
            Outcome::Skipped {
                reason: SkipReason::Identical,
                bytes,
                dst_modified_ms: Some(written),
            } if earlier_attempt && written >= since - Self::CLOCK_SLACK_MS => {
                info!(
                    bytes,
                    "counted as copied: an earlier delivery of this job wrote it"
                );
                Outcome::Copied {
                    method: "earlier_delivery",
                    bytes,
                }
            }
            other => other,
        }
    }

    /// The migration ledger's outcome of a result and its bytes. A filter's
    /// skip is `Filtered` for a copy; for a mirror delete it means the
    /// object stays (`Kept`).
    pub fn ledger(&self, side: crate::migration::Side) -> (ObjectOutcome, u64) {
        use crate::migration::Side;
        match self {
            Outcome::Copied { bytes, .. } => (ObjectOutcome::Copied, *bytes),
            Outcome::Skipped { bytes, .. } => (ObjectOutcome::Skipped, *bytes),
            Outcome::WouldCopy { bytes } => (ObjectOutcome::WouldCopy, *bytes),
            Outcome::Deleted => (ObjectOutcome::Deleted, 0),
            Outcome::Kept => (ObjectOutcome::Kept, 0),
            Outcome::WouldDelete => (ObjectOutcome::WouldDelete, 0),
            Outcome::Filtered { bytes, .. } => match side {
                Side::Source => (ObjectOutcome::Filtered, *bytes),
                Side::Destination => (ObjectOutcome::Kept, 0),
            },
        }
    }
}

/// One object of a listing page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag without quotes.
    pub etag: Option<String>,
}

/// One page of a bucket listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Objects, in the store's order (not necessarily sorted).
    pub objects: Vec<Listed>,
    /// Common prefixes (listing with a delimiter only).
    pub prefixes: Vec<String>,
    /// Token of the next page, if any.
    pub next: Option<String>,
}

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

/// The source's facts and attributes from a HeadObject or GetObject output
/// (the two share these accessors); `$opaque` says that the store's ETags
/// cannot be MD5s (a directory bucket, or `verify = "off"`).
macro_rules! source_from {
    ($r:expr, $tag_count:expr, $opaque:expr) => {{
        let r = $r;
        let opaque: (bool, bool) = $opaque;
        let metadata = r.metadata().cloned().unwrap_or_default();
        let md5 = integrity::source_md5(
            r.e_tag(),
            EtagContext {
                sse: r.server_side_encryption().map(|s| s.as_str()),
                sse_c: r.sse_customer_algorithm().is_some(),
                express: opaque.0,
                verify_off: opaque.1,
            },
        );
        Source {
            facts: ObjectFacts {
                size: u64::try_from(r.content_length().unwrap_or(0)).unwrap_or(0),
                last_modified_ms: None,
                etag: r.e_tag().map(strip_quotes),
                recorded_source_etag: metadata.get(META_SOURCE_ETAG).cloned(),
                checksums: plan::Checksums {
                    crc64nvme: r.checksum_crc64_nvme().map(str::to_owned),
                    crc32c: r.checksum_crc32_c().map(str::to_owned),
                    crc32: r.checksum_crc32().map(str::to_owned),
                    sha256: r.checksum_sha256().map(str::to_owned),
                },
            },
            attrs: Attributes {
                content_type: r.content_type().map(str::to_owned),
                content_encoding: r.content_encoding().map(str::to_owned),
                content_disposition: r.content_disposition().map(str::to_owned),
                content_language: r.content_language().map(str::to_owned),
                cache_control: r.cache_control().map(str::to_owned),
                expires: r
                    .expires_string()
                    .and_then(|s| DateTime::from_str(s, DateTimeFormat::HttpDate).ok()),
                metadata,
            },
            last_modified_ms: r.last_modified().and_then(|t| t.to_millis().ok()),
            tag_count: $tag_count,
            md5,
        }
    }};
}

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

/// Objects above this size are piped from their GET into their PUT
/// through the read-ahead window; smaller ones are read whole first.
const PIPE_ABOVE: u64 = 1024 * 1024;

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
        }
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

    /// Runs the filter chain for a delete: only names are known.
    fn filter_delete(&self, job: &DeleteJob) -> Result<Verdict, ExecError> {
        let src = job.src.as_ref().unwrap_or(&job.dst);
        let input = ObjectInput {
            kind: Some(FilterKind::Delete),
            src_endpoint: src.endpoint.clone(),
            src_bucket: src.bucket.clone(),
            src_key: src.key.clone(),
            bucket: job.dst.bucket.clone(),
            key: job.dst.key.clone(),
            ..ObjectInput::default()
        };
        Ok(self.filters.decide(input)?)
    }

    /// Runs the filter chain for a copy.
    fn filter_copy(&self, job: &CopyJob, src: &Source) -> Result<Verdict, ExecError> {
        let mut metadata: Vec<(String, String)> = src
            .attrs
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        metadata.sort();
        let input = ObjectInput {
            kind: Some(FilterKind::Copy),
            size: Some(src.facts.size),
            last_modified_ms: src.last_modified_ms,
            src_endpoint: job.src.endpoint.clone(),
            src_bucket: job.src.bucket.clone(),
            src_key: job.src.key.clone(),
            bucket: job.dst.bucket.clone(),
            key: job.dst.key.clone(),
            etag: src.facts.etag.clone(),
            content_type: src.attrs.content_type.clone(),
            metadata,
        };
        Ok(self.filters.decide(input)?)
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
    pub async fn run(&self, job: &Job, cancel: &CancellationToken) -> Result<Outcome, ExecError> {
        match job {
            Job::Copy(c) => self.copy(c, cancel).await,
            Job::Delete(d) => {
                tokio::select! {
                    r = self.delete(d) => r,
                    () = cancel.cancelled() => Err(ExecError::Cancelled),
                }
            }
            Job::Migrate(_) | Job::Bucket(_) | Job::List(_) | Job::Batch(_) => {
                Err(ExecError::Internal {
                    op: "run",
                    target: Target {
                        endpoint: String::new(),
                        bucket: String::new(),
                        key: None,
                    },
                    detail: "migration jobs are handled by the control module".to_owned(),
                })
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

    // ----- copy -------------------------------------------------------------

    async fn copy(&self, job: &CopyJob, cancel: &CancellationToken) -> Result<Outcome, ExecError> {
        let src_store = self.store(&job.src)?;
        let dst_store = self.store(&job.dst)?;
        let same_endpoint = job.src.endpoint == job.dst.endpoint;
        if same_endpoint && let Some(outcome) = self.copy_as_listed(dst_store, job).await? {
            return Ok(outcome);
        }
        // A small object across endpoints is read at once: its GET answers
        // what the HEAD would have, one request instead of two.
        let small = job.listed_size.filter(|&size| {
            !same_endpoint && !job.dry_run && size <= self.copy.multipart_threshold
        });
        let read = match small {
            Some(size) => self.get_source(src_store, job, size).await,
            None => self.head_source(src_store, job).await.map(|s| (s, None)),
        };
        let (src, mut prefetched) = match read {
            Err(ExecError::NoSuchKey(_)) if job.skip_if_source_missing => {
                info!("skipped: source gone");
                return Ok(Outcome::Skipped {
                    reason: SkipReason::SourceGone,
                    bytes: 0,
                    dst_modified_ms: None,
                });
            }
            other => other?,
        };
        let renamed;
        let job = match self.filter_copy(job, &src)? {
            Verdict::Skip { filter, reason } => {
                return Ok(Outcome::Filtered {
                    filter,
                    reason,
                    bytes: src.facts.size,
                });
            }
            Verdict::Proceed { renamed: false, .. } => job,
            Verdict::Proceed { bucket, key, .. } => {
                renamed = CopyJob {
                    dst: job.dst.moved_to(bucket, key),
                    ..job.clone()
                };
                &renamed
            }
        };
        let dst = if job.skip_destination_head {
            None
        } else {
            self.head_destination(dst_store, &job.dst).await?
        };
        let kind = plan::Destination {
            express: is_express(dst_store, &job.dst.bucket),
        };
        let plan = plan::plan_copy_to(&src.facts, dst.as_ref(), same_endpoint, kind, &self.copy);
        let plan = match plan {
            Plan::Skip(reason) => {
                info!(bytes = src.facts.size, "skipped: identical");
                return Ok(Outcome::Skipped {
                    reason,
                    bytes: src.facts.size,
                    dst_modified_ms: dst.as_ref().and_then(|d| d.last_modified_ms),
                });
            }
            Plan::Copy(p) => p,
        };
        if job.dry_run {
            info!(
                method = plan.method.name(),
                bytes = src.facts.size,
                "dry run: would copy"
            );
            return Ok(Outcome::WouldCopy {
                bytes: src.facts.size,
            });
        }
        debug!(
            method = plan.method.name(),
            bytes = src.facts.size,
            "copy planned"
        );
        let work = async {
            match &plan.method {
                Method::ServerSideCopy => self.server_side_copy(job, &src, &plan).await,
                Method::Put => self.put(job, &src, &plan, prefetched.take()).await,
                Method::ServerSideMultipart { .. } | Method::StreamedMultipart { .. } => {
                    self.multipart(job, &src, &plan, cancel).await
                }
            }
        };
        // Multipart handles cancellation itself so it can abort its upload.
        let result = match plan.method {
            Method::ServerSideCopy | Method::Put => tokio::select! {
                r = work => r,
                () = cancel.cancelled() => Err(ExecError::Cancelled),
            },
            _ => work.await,
        };
        result?;
        info!(
            method = plan.method.name(),
            bytes = src.facts.size,
            "copied"
        );
        Ok(Outcome::Copied {
            method: plan.method.name(),
            bytes: src.facts.size,
        })
    }

    /// Within one endpoint, into a bucket this migration created (first
    /// delivery), with no filters: one CopyObject of the object as listed,
    /// conditioned on the listed ETag when the listing had one, with metadata
    /// and tags copied by the server. No HEAD at either end. `None` when the
    /// shortcut does not apply or the source changed since it was listed (the
    /// caller then takes the usual path).
    ///
    /// A listing without ETags (some S3-compatible servers omit them) gives
    /// an unconditional copy: whatever the source holds when the copy runs,
    /// which is what a migration wants. Such a source may have a multipart
    /// ETag that the copy does not record on the destination; a re-run then
    /// copies that object once more instead of skipping it.
    async fn copy_as_listed(
        &self,
        store: &Store,
        job: &CopyJob,
    ) -> Result<Option<Outcome>, ExecError> {
        let Some(size) = job.listed_size else {
            return Ok(None);
        };
        let etag = job.listed_etag.as_deref();
        let express =
            is_express(store, &job.dst.bucket) || plan::is_directory_bucket(&job.src.bucket);
        // A multipart ETag must be recorded on the copy (metadata REPLACE,
        // which needs the source's attributes): that takes the HEAD.
        if !job.skip_destination_head
            || job.dry_run
            || express
            || size > self.copy.server_side_multipart_threshold
            || etag.is_some_and(plan::is_multipart_etag)
            || !self.filters.chain().is_empty()
        {
            return Ok(None);
        }
        let res = store
            .client
            .copy_object()
            .bucket(&job.dst.bucket)
            .key(&job.dst.key)
            .copy_source(copy_source(
                &job.src.bucket,
                &job.src.key,
                job.src_version.as_deref(),
            ))
            .set_copy_source_if_match(etag.map(|e| format!("\"{e}\"")))
            .metadata_directive(MetadataDirective::Copy)
            .tagging_directive(TaggingDirective::Copy)
            .send()
            .await
            .map_err(|e| classify("CopyObject", &target(&job.dst), e));
        match res {
            Ok(_) => {
                info!(method = "server_side_copy", bytes = size, "copied");
                Ok(Some(Outcome::Copied {
                    method: Method::ServerSideCopy.name(),
                    bytes: size,
                }))
            }
            Err(e) if e.disposition() == Disposition::Retry => Err(e),
            // Changed or gone since the listing, or refused: the usual path
            // finds out which and says so.
            Err(e) => {
                debug!(error = %e, "copy as listed did not apply; taking the usual path");
                Ok(None)
            }
        }
    }

    async fn head_source(&self, store: &Store, job: &CopyJob) -> Result<Source, ExecError> {
        let t = target(&job.src);
        let head = store
            .client
            .head_object()
            .bucket(&job.src.bucket)
            .key(&job.src.key)
            .set_version_id(job.src_version.clone())
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| classify("HeadObject", &t, e));
        match head {
            Ok(h) => Ok(source_from!(&h, None, opaque(store, &job.src.bucket))),
            Err(e) if e.is_not_found() => Err(self.which_missing(store, &job.src).await),
            Err(e) => Err(e),
        }
    }

    /// Reads a small source with one GET whose headers stand in for the
    /// HEAD. Returns no body when the object has grown past the single-PUT
    /// limit since it was listed (the caller then copies it in parts).
    async fn get_source(
        &self,
        store: &Store,
        job: &CopyJob,
        listed_size: u64,
    ) -> Result<(Source, Option<Prefetched>), ExecError> {
        let pipe = self.pipes_into(&job.dst) && listed_size > PIPE_ABOVE;
        let window = if pipe {
            self.copy.read_ahead.min(listed_size)
        } else {
            listed_size
        };
        let permit = self.buffer_permit(window).await?;
        let t = target(&job.src);
        let out = store
            .client
            .get_object()
            .bucket(&job.src.bucket)
            .key(&job.src.key)
            .set_version_id(job.src_version.clone())
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| classify("GetObject", &t, e));
        let mut out = match out {
            Ok(o) => o,
            Err(e) if e.is_not_found() => return Err(self.which_missing(store, &job.src).await),
            Err(e) => return Err(e),
        };
        let counts_tags = &store.counts_tags;
        let tag_count = match out.tag_count() {
            Some(n) => {
                counts_tags.store(true, std::sync::atomic::Ordering::Relaxed);
                Some(n)
            }
            None if counts_tags.load(std::sync::atomic::Ordering::Relaxed) => Some(0),
            None => None,
        };
        let src = source_from!(&out, tag_count, opaque(store, &job.src.bucket));
        let expected = src.facts.size;
        if expected > self.copy.multipart_threshold {
            return Ok((src, None));
        }
        if pipe && expected > PIPE_ABOVE {
            let open = Prefetched::Open {
                body: out.body,
                window,
                permit,
            };
            return Ok((src, Some(open)));
        }
        // The listing's size is a hint: an object that grew since (or a job
        // that lied) takes the budget of what it really holds before a byte
        // of it is buffered.
        let permit = if permit.num_permits() < self.buffer_units_for(expected) {
            drop(permit);
            self.buffer_permit(expected).await?
        } else {
            permit
        };
        let buf = read_body(&mut out.body, expected, &t).await?;
        let digest = self
            .verify_read(store, &src, &buf, &t, self.verifies(&job.dst))
            .await?;
        Ok((src, Some(Prefetched::Whole(buf, digest, permit))))
    }

    /// Whether writes to `dst` are checked (`verify = "auto"`).
    fn verifies(&self, dst: &ObjectRef) -> bool {
        self.store(dst)
            .is_ok_and(|s| s.config.verify == Verify::Auto)
    }

    /// Checks bytes read whole against the source's MD5 (when its ETag
    /// states one) and returns their MD5, when either that check or the
    /// destination (`write_checked`) needs it. A checking destination is
    /// given the source's MD5 as `Content-MD5`, which checks the read and
    /// the write at once: then nothing is hashed here.
    async fn verify_read(
        &self,
        store: &Store,
        src: &Source,
        bytes: &Bytes,
        t: &Target,
        write_checked: bool,
    ) -> Result<Option<Md5>, ExecError> {
        let Some(want) = src.md5 else {
            self.note_unverified_read(store, src);
            return Ok(match write_checked {
                true => Some(integrity::md5_of(bytes).await),
                false => None,
            });
        };
        if write_checked {
            return Ok(Some(want));
        }
        let digest = integrity::md5_of(bytes).await;
        if want != digest {
            return Err(ExecError::Corrupt {
                stage: "read from the source",
                target: t.clone(),
                expected: integrity::hex(&want),
                got: integrity::hex(&digest),
            });
        }
        Ok(Some(digest))
    }

    /// Says once per endpoint that some reads from it cannot be checked.
    fn note_unverified_read(&self, store: &Store, src: &Source) {
        use std::sync::atomic::Ordering;
        if store.config.verify == Verify::Off
            || store.unverified_reads.swap(true, Ordering::Relaxed)
        {
            return;
        }
        info!(
            endpoint = %store.config.name,
            etag = src.facts.etag.as_deref().unwrap_or(""),
            "reads from this endpoint of objects whose ETag is not a plain MD5 (multipart, encrypted, directory buckets) are checked only where the store reports a full-object checksum; writes are still checked by the destination"
        );
    }

    /// Whether a PUT to `dst` can take a piped body: its length is known,
    /// but nothing can hash it in advance (a signed payload) or append a
    /// checksum trailer to it (checksums when supported).
    fn pipes_into(&self, dst: &ObjectRef) -> bool {
        self.copy.read_ahead > 0
            && self.store(dst).is_ok_and(|s| {
                !s.config.sign_payload
                    && s.config.checksums == crate::config::ChecksumMode::WhenRequired
                    // A directory bucket's PUT carries the CRC32C of the
                    // whole body in its headers: it is read whole first.
                    && !write_check(s, &dst.bucket).crc32c
            })
    }

    /// After a 404 on an object: is it the key or the whole bucket?
    async fn which_missing(&self, store: &Store, obj: &ObjectRef) -> ExecError {
        let bucket = store.client.head_bucket().bucket(&obj.bucket).send().await;
        match bucket {
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                ExecError::NoSuchBucket(target(obj))
            }
            _ => ExecError::NoSuchKey(target(obj)),
        }
    }

    async fn head_destination(
        &self,
        store: &Store,
        obj: &ObjectRef,
    ) -> Result<Option<ObjectFacts>, ExecError> {
        let head = store
            .client
            .head_object()
            .bucket(&obj.bucket)
            .key(&obj.key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| classify("HeadObject", &target(obj), e));
        match head {
            Ok(h) => Ok(Some(ObjectFacts {
                size: u64::try_from(h.content_length().unwrap_or(0)).unwrap_or(0),
                last_modified_ms: h.last_modified().and_then(|t| t.to_millis().ok()),
                etag: h.e_tag().map(strip_quotes),
                recorded_source_etag: h.metadata().and_then(|m| m.get(META_SOURCE_ETAG)).cloned(),
                checksums: plan::Checksums {
                    crc64nvme: h.checksum_crc64_nvme().map(str::to_owned),
                    crc32c: h.checksum_crc32_c().map(str::to_owned),
                    crc32: h.checksum_crc32().map(str::to_owned),
                    sha256: h.checksum_sha256().map(str::to_owned),
                },
            })),
            Err(e) if e.is_not_found() => Ok(None),
            // Without s3:ListBucket, S3 answers 403 for a missing object; the
            // write that follows will say whether we may write.
            Err(ExecError::AccessDenied { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The metadata the destination gets, with s3rf's own marker set or cleared.
    fn destination_metadata(&self, src: &Source, plan: &CopyPlan) -> HashMap<String, String> {
        let mut metadata = src.attrs.metadata.clone();
        metadata.remove(META_SOURCE_ETAG);
        if plan.record_source_etag
            && let Some(etag) = &src.facts.etag
        {
            metadata.insert(META_SOURCE_ETAG.to_owned(), etag.clone());
        }
        metadata
    }

    /// The source's tags, or none when the source store has no tagging.
    async fn source_tags(&self, job: &CopyJob) -> Result<Vec<(String, String)>, ExecError> {
        let store = self.store(&job.src)?;
        if store.no_tagging.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(Vec::new());
        }
        let res = store
            .client
            .get_object_tagging()
            .bucket(&job.src.bucket)
            .key(&job.src.key)
            .set_version_id(job.src_version.clone())
            .send()
            .await
            .map_err(|e| classify("GetObjectTagging", &target(&job.src), e));
        match res {
            Ok(out) => Ok(out
                .tag_set()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect()),
            // A store that is busy or down (503, 500, resets) may have tags
            // to give: retry the copy rather than drop them.
            Err(e) if e.disposition() == Disposition::Retry => Err(e),
            Err(e) if e.is_not_implemented() => {
                info!(endpoint = %job.src.endpoint, "source endpoint has no object tagging; tags are not read from it again");
                store
                    .no_tagging
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(Vec::new())
            }
            Err(e) => {
                warn!(error = %e, "cannot read the source object's tags; copying without tags");
                Ok(Vec::new())
            }
        }
    }

    /// Checks that tags we sent arrived; a store without tagging drops them.
    async fn verify_tags(&self, dst: &ObjectRef, sent: &[(String, String)]) {
        if sent.is_empty() {
            return;
        }
        let Ok(store) = self.store(dst) else { return };
        let res = store
            .client
            .get_object_tagging()
            .bucket(&dst.bucket)
            .key(&dst.key)
            .send()
            .await;
        let held = res.map(|o| o.tag_set().len()).unwrap_or(0);
        if held < sent.len() {
            warn!(
                tags = sent.len(),
                held,
                "destination endpoint {} cannot hold object tags; {} tag(s) dropped",
                dst.endpoint,
                sent.len() - held
            );
        }
    }

    async fn server_side_copy(
        &self,
        job: &CopyJob,
        src: &Source,
        plan: &CopyPlan,
    ) -> Result<(), ExecError> {
        let store = self.store(&job.dst)?;
        let mut req = store
            .client
            .copy_object()
            .bucket(&job.dst.bucket)
            .key(&job.dst.key)
            .copy_source(copy_source(
                &job.src.bucket,
                &job.src.key,
                job.src_version.as_deref(),
            ))
            .tagging_directive(if plan.drop_tags {
                // Directory buckets hold no tags; copying them fails with 501.
                TaggingDirective::Replace
            } else {
                TaggingDirective::Copy
            });
        if plan.drop_tags {
            debug!("tags not copied: directory buckets hold no tags");
        }
        if let Some(etag) = &src.facts.etag {
            req = req.copy_source_if_match(format!("\"{etag}\""));
        }
        req = if plan.record_source_etag || src.attrs.metadata.contains_key(META_SOURCE_ETAG) {
            let a = &src.attrs;
            req.metadata_directive(MetadataDirective::Replace)
                .set_metadata(Some(self.destination_metadata(src, plan)))
                .set_content_type(a.content_type.clone())
                .set_content_encoding(a.content_encoding.clone())
                .set_content_disposition(a.content_disposition.clone())
                .set_content_language(a.content_language.clone())
                .set_cache_control(a.cache_control.clone())
                .set_expires(a.expires)
        } else {
            req.metadata_directive(MetadataDirective::Copy)
        };
        req.send()
            .await
            .map_err(|e| classify("CopyObject", &target(&job.dst), e))?;
        Ok(())
    }

    /// A GET of the source, pinned to its version and ETag.
    fn source_get(
        &self,
        job: &CopyJob,
        src: &Source,
    ) -> Result<aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder, ExecError>
    {
        let store = self.store(&job.src)?;
        let mut req = store
            .client
            .get_object()
            .bucket(&job.src.bucket)
            .key(&job.src.key)
            .set_version_id(job.src_version.clone());
        if let Some(etag) = &src.facts.etag {
            req = req.if_match(format!("\"{etag}\""));
        }
        Ok(req)
    }

    /// The body of a GET of the whole source.
    async fn open_body(&self, job: &CopyJob, src: &Source) -> Result<ByteStream, ExecError> {
        let out = self
            .source_get(job, src)?
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| classify("GetObject", &target(&job.src), e))?;
        Ok(out.body)
    }

    /// The bytes of `range` of the source, or of all of it. A whole read
    /// asks for the source's checksums, which the SDK then checks the body
    /// against (full-object checksums only).
    async fn get_bytes(
        &self,
        job: &CopyJob,
        src: &Source,
        range: Option<&Part>,
    ) -> Result<Bytes, ExecError> {
        let t = target(&job.src);
        let mut req = self.source_get(job, src)?;
        let expected = match range {
            Some(p) => {
                req = req.range(p.http_range());
                p.len()
            }
            None => {
                req = req.checksum_mode(ChecksumMode::Enabled);
                src.facts.size
            }
        };
        let mut out = req.send().await.map_err(|e| classify("GetObject", &t, e))?;
        read_body(&mut out.body, expected, &t).await
    }

    /// The tags to write: the source's, or none for a directory bucket (logged).
    async fn tags_for(
        &self,
        job: &CopyJob,
        plan: &CopyPlan,
    ) -> Result<Vec<(String, String)>, ExecError> {
        let tags = self.source_tags(job).await?;
        if plan.drop_tags {
            if !tags.is_empty() {
                warn!(
                    tags = tags.len(),
                    "tags dropped: directory buckets hold no tags"
                );
            }
            return Ok(Vec::new());
        }
        Ok(tags)
    }

    async fn put(
        &self,
        job: &CopyJob,
        src: &Source,
        plan: &CopyPlan,
        prefetched: Option<Prefetched>,
    ) -> Result<(), ExecError> {
        let tags = if src.tag_count == Some(0) {
            Vec::new()
        } else {
            self.tags_for(job, plan).await?
        };
        let store = self.store(&job.dst)?;
        let WriteCheck {
            md5: verify,
            crc32c,
        } = write_check(store, &job.dst.bucket);
        let size = src.facts.size;
        let prefetched = match prefetched {
            None if self.pipes_into(&job.dst) && size > PIPE_ABOVE => {
                let window = self.copy.read_ahead.min(size);
                let permit = self.buffer_permit(window).await?;
                Some(Prefetched::Open {
                    body: self.open_body(job, src).await?,
                    window,
                    permit,
                })
            }
            other => other,
        };
        let (bytes, digest, _permit) = match prefetched {
            Some(Prefetched::Whole(bytes, digest, permit)) => (bytes, digest, permit),
            Some(Prefetched::Open {
                body,
                window,
                permit,
            }) => {
                debug!(window, "piping the GET into the PUT");
                if src.md5.is_none() {
                    self.note_unverified_read(self.store(&job.src)?, src);
                }
                // The source's own MD5 is known before the first byte: the
                // destination checks the body against it (as rclone does),
                // which checks the read and the write at once, and the
                // reader need not hash. Without it, the reader hashes for
                // the ETag comparison; without a checking destination, it
                // checks the read itself.
                let (check_read, hash) = match (src.md5, verify) {
                    (Some(_), true) => (None, false),
                    (Some(md5), false) => (Some(md5), false),
                    (None, verify) => (None, verify),
                };
                let (body, reader) =
                    read_ahead::pipe(body, size, window, target(&job.src), check_read, hash);
                let req = self
                    .put_request(store, job, src, plan, &tags)
                    .set_content_md5(
                        src.md5
                            .filter(|_| verify)
                            .map(|d| integrity::content_md5(&d)),
                    )
                    .content_length(i64::try_from(size).unwrap_or(i64::MAX))
                    .body(body);
                let put = async {
                    req.customize()
                        .disable_payload_signing()
                        .send()
                        .await
                        .map_err(|e| classify("PutObject", &target(&job.dst), e))
                };
                let (read, put) = tokio::join!(reader, put);
                let (digest, out) = match (read, put) {
                    (Ok(digest), Ok(out)) => (digest.or(src.md5), out),
                    (Ok(digest), Err(e)) => {
                        let sent = digest.or(src.md5);
                        return Err(self
                            .after_failed_write(store, &job.dst, sent.as_ref(), e)
                            .await);
                    }
                    // The PUT stopped reading: its own error says why.
                    (
                        Err(ExecError::Transport {
                            op: "PutObject", ..
                        }),
                        Err(e),
                    ) => {
                        if is_digest_error(&e) {
                            self.discard_unverified(store, &job.dst, src.md5.as_ref())
                                .await;
                        }
                        return Err(e);
                    }
                    // A broken, short or corrupt GET explains a failed PUT
                    // best; whatever the store kept of it goes.
                    (Err(e), put) => {
                        if put.is_ok() || put.as_ref().is_err_and(is_digest_error) {
                            self.discard_unverified(store, &job.dst, src.md5.as_ref())
                                .await;
                        }
                        return Err(e);
                    }
                };
                drop(permit);
                return self.after_put(store, &job.dst, &out, digest, &tags).await;
            }
            None => {
                let permit = self.buffer_permit(src.facts.size).await?;
                let bytes = self.get_bytes(job, src, None).await?;
                let digest = self
                    .verify_read(
                        self.store(&job.src)?,
                        src,
                        &bytes,
                        &target(&job.src),
                        verify,
                    )
                    .await?;
                (bytes, digest, permit)
            }
        };
        let crc = match crc32c {
            true => Some(integrity::crc32c_of(&bytes).await),
            false => None,
        };
        let req = self
            .put_request(store, job, src, plan, &tags)
            .set_content_md5(
                digest
                    .filter(|_| verify)
                    .map(|d| integrity::content_md5(&d)),
            )
            .set_checksum_crc32_c(crc)
            .content_length(i64::try_from(bytes.len()).unwrap_or(i64::MAX))
            .body(ByteStream::from(bytes));
        // SHA-256 of the body was a fifth of the CPU of a streamed copy;
        // Content-MD5 lets the store check the bytes instead, and
        // Content-Length their size.
        let sent = if store.config.sign_payload {
            req.send().await
        } else {
            req.customize().disable_payload_signing().send().await
        }
        .map_err(|e| classify("PutObject", &target(&job.dst), e));
        let out = match sent {
            Ok(out) => out,
            Err(e) => {
                return Err(self
                    .after_failed_write(store, &job.dst, digest.as_ref(), e)
                    .await);
            }
        };
        self.after_put(store, &job.dst, &out, digest, &tags).await
    }

    /// After a PUT the store accepted: its ETag against the MD5 of what was
    /// sent (when known), then the tags.
    async fn after_put(
        &self,
        store: &Store,
        dst: &ObjectRef,
        out: &aws_sdk_s3::operation::put_object::PutObjectOutput,
        sent: Option<Md5>,
        tags: &[(String, String)],
    ) -> Result<(), ExecError> {
        if let Some(sent) = sent {
            let ctx = written_context(
                store,
                dst,
                out.server_side_encryption(),
                out.sse_customer_algorithm().is_some(),
            );
            self.check_stored(store, dst, out.e_tag(), &integrity::hex(&sent), ctx)
                .await?;
        }
        self.verify_tags(dst, tags).await;
        Ok(())
    }

    /// Compares the ETag a write returned with the one the bytes sent must
    /// have. A mismatch means the store holds other bytes than were sent:
    /// they are deleted, so nothing corrupt stays at the key, and the copy
    /// is retried.
    async fn check_stored(
        &self,
        store: &Store,
        dst: &ObjectRef,
        returned: Option<&str>,
        expected: &str,
        ctx: EtagContext<'_>,
    ) -> Result<(), ExecError> {
        match integrity::check_written(returned, expected, ctx) {
            Written::Match | Written::Unchecked => Ok(()),
            Written::Mismatch { expected, got } => {
                warn!(
                    expected,
                    got, "the destination stored other bytes than were sent; deleting them"
                );
                self.delete_corrupt(store, dst).await;
                Err(ExecError::Corrupt {
                    stage: "stored at the destination",
                    target: target(dst),
                    expected,
                    got,
                })
            }
        }
    }

    /// After a failed single PUT: a store that refused the bytes as corrupt
    /// may have kept them anyway (s3s-fs does), so an object at the key
    /// whose ETag is not the MD5 of what was sent is deleted.
    async fn after_failed_write(
        &self,
        store: &Store,
        dst: &ObjectRef,
        sent: Option<&Md5>,
        e: ExecError,
    ) -> ExecError {
        if is_digest_error(&e) {
            self.discard_unverified(store, dst, sent).await;
        }
        e
    }

    /// Deletes the object at `dst` unless its ETag is `good`'s hex (a
    /// `None` deletes whatever is there).
    async fn discard_unverified(&self, store: &Store, dst: &ObjectRef, good: Option<&Md5>) {
        if store.config.verify == Verify::Off {
            return;
        }
        let now = self.head_destination(store, dst).await;
        let keep = match (&now, good) {
            (Ok(None), _) => true,
            (Ok(Some(facts)), Some(good)) => {
                facts.etag.as_deref().and_then(integrity::parse_plain) == Some(*good)
            }
            (Ok(Some(_)), None) => false,
            // Cannot tell: the retry overwrites it, the last one leaves it.
            (Err(_), _) => true,
        };
        if !keep {
            warn!("the destination kept bytes it refused or that did not match; deleting them");
            self.delete_corrupt(store, dst).await;
        }
    }

    async fn delete_corrupt(&self, store: &Store, dst: &ObjectRef) {
        let res = store
            .client
            .delete_object()
            .bucket(&dst.bucket)
            .key(&dst.key)
            .send()
            .await;
        if let Err(e) = res {
            warn!(error = %classify("DeleteObject", &target(dst), e), "could not delete corrupt bytes at the destination; the retry overwrites them");
        }
    }

    /// A PutObject of `job`'s destination with the source's attributes and
    /// `tags`; the caller adds the body and its length.
    fn put_request(
        &self,
        store: &Store,
        job: &CopyJob,
        src: &Source,
        plan: &CopyPlan,
        tags: &[(String, String)],
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        let a = &src.attrs;
        let mut req = store
            .client
            .put_object()
            .bucket(&job.dst.bucket)
            .key(&job.dst.key)
            .set_metadata(Some(self.destination_metadata(src, plan)))
            .set_content_type(a.content_type.clone())
            .set_content_encoding(a.content_encoding.clone())
            .set_content_disposition(a.content_disposition.clone())
            .set_content_language(a.content_language.clone())
            .set_cache_control(a.cache_control.clone())
            .set_expires(a.expires);
        if !tags.is_empty() {
            req = req.tagging(tagging(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
        }
        req
    }

    // ----- delete -----------------------------------------------------------

    async fn delete(&self, job: &DeleteJob) -> Result<Outcome, ExecError> {
        let renamed;
        let job = match self.filter_delete(job)? {
            Verdict::Skip { filter, reason } => {
                return Ok(Outcome::Filtered {
                    filter,
                    reason,
                    bytes: 0,
                });
            }
            Verdict::Proceed { renamed: false, .. } => job,
            // A mirror delete names a destination key; we cannot tell which
            // source a renamed object came from, so never delete on a guess.
            Verdict::Proceed { .. } if job.if_source_absent => {
                warn!("mirror delete of a key the filters would rename; kept");
                return Ok(Outcome::Kept);
            }
            Verdict::Proceed { bucket, key, .. } => {
                renamed = DeleteJob {
                    dst: job.dst.moved_to(bucket, key),
                    ..job.clone()
                };
                &renamed
            }
        };
        if job.if_source_absent
            && let Some(src) = &job.src
        {
            let store = self.store(src)?;
            let head = store
                .client
                .head_object()
                .bucket(&src.bucket)
                .key(&src.key)
                .send()
                .await
                .map_err(|e| classify("HeadObject", &target(src), e));
            match head {
                Ok(_) => {
                    debug!("source still exists; kept");
                    return Ok(Outcome::Kept);
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        if job.dry_run {
            info!("dry run: would delete");
            return Ok(Outcome::WouldDelete);
        }
        let store = self.store(&job.dst)?;
        let res = store
            .client
            .delete_object()
            .bucket(&job.dst.bucket)
            .key(&job.dst.key)
            .send()
            .await
            .map_err(|e| classify("DeleteObject", &target(&job.dst), e));
        match res {
            Ok(_) | Err(ExecError::NoSuchKey(_)) => {
                info!("deleted");
                Ok(Outcome::Deleted)
            }
            Err(e) => Err(e),
        }
    }

    /// Makes `dst` match `src` as it is now: copy it if it exists, delete the
    /// destination if it does not.
    pub async fn reconcile(
        &self,
        src: &ObjectRef,
        dst: &ObjectRef,
        cancel: &CancellationToken,
    ) -> Result<Outcome, ExecError> {
        let copy = CopyJob {
            src: src.clone(),
            src_version: None,
            dst: dst.clone(),
            migration: None,
            dry_run: false,
            sequencer: None,
            skip_if_source_missing: true,
            listed_size: None,
            listed_etag: None,
            skip_destination_head: false,
            attempted_since_ms: None,
        };
        match self.copy(&copy, cancel).await? {
            Outcome::Skipped {
                reason: SkipReason::SourceGone,
                ..
            } => {
                let delete = DeleteJob {
                    dst: dst.clone(),
                    src: Some(src.clone()),
                    sequencer: None,
                    migration: None,
                    if_source_absent: true,
                    dry_run: false,
                };
                self.delete(&delete).await
            }
            other => Ok(other),
        }
    }

    // ----- buckets and listings ----------------------------------------------

    fn bucket_target(endpoint: &str, bucket: &str) -> Target {
        Target {
            endpoint: endpoint.to_owned(),
            bucket: bucket.to_owned(),
            key: None,
        }
    }

    fn named_store(&self, endpoint: &str) -> Result<&Store, ExecError> {
        self.stores
            .get(endpoint)
            .ok_or_else(|| ExecError::Internal {
                op: "lookup",
                target: Self::bucket_target(endpoint, ""),
                detail: "endpoint vanished after validation".to_owned(),
            })
    }

    /// Every bucket of `endpoint`.
    pub async fn list_buckets(&self, endpoint: &str) -> Result<Vec<String>, ExecError> {
        let store = self.named_store(endpoint)?;
        let t = Self::bucket_target(endpoint, "*");
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = store
                .client
                .list_buckets()
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| classify("ListBuckets", &t, e))?;
            names.extend(
                out.buckets()
                    .iter()
                    .filter_map(|b| b.name().map(str::to_owned)),
            );
            match out.continuation_token() {
                Some(next) if !next.is_empty() && Some(next) != token.as_deref() => {
                    token = Some(next.to_owned());
                }
                _ => return Ok(names),
            }
        }
    }

    /// Makes sure `bucket` exists on `endpoint` and is ours; creates it unless `dry_run`.
    pub async fn ensure_bucket(
        &self,
        endpoint: &str,
        bucket: &str,
        dry_run: bool,
    ) -> Result<BucketState, ExecError> {
        let store = self.named_store(endpoint)?;
        let t = Self::bucket_target(endpoint, bucket);
        let head = store.client.head_bucket().bucket(bucket).send().await;
        match head {
            Ok(_) => {
                return Ok(if dry_run {
                    BucketState::WouldUse
                } else {
                    BucketState::Existed
                });
            }
            Err(e) => match classify("HeadBucket", &t, e) {
                e if e.is_not_found() => {}
                ExecError::AccessDenied { .. } => {
                    return Err(ExecError::BucketTaken(t));
                }
                e => return Err(e),
            },
        }
        if dry_run {
            return Ok(BucketState::WouldCreate);
        }
        let mut req = store.client.create_bucket().bucket(bucket);
        if store.config.region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(
                        store.config.region.as_str(),
                    ))
                    .build(),
            );
        }
        match req
            .send()
            .await
            .map_err(|e| classify("CreateBucket", &t, e))
        {
            Ok(_) => {
                info!(endpoint, bucket, "bucket created");
                Ok(BucketState::Created)
            }
            Err(ExecError::Service { code, .. }) if code == "BucketAlreadyOwnedByYou" => {
                Ok(BucketState::Existed)
            }
            Err(ExecError::Service { code, .. }) if code == "BucketAlreadyExists" => {
                Err(ExecError::BucketTaken(t))
            }
            Err(e) => Err(e),
        }
    }

    /// One page (up to `max_keys`) of `bucket` under `prefix`.
    pub async fn list_page(
        &self,
        endpoint: &str,
        bucket: &str,
        prefix: Option<&str>,
        token: Option<&str>,
        max_keys: i32,
        delimiter: Option<&str>,
    ) -> Result<Page, ExecError> {
        let store = self.named_store(endpoint)?;
        let t = Self::bucket_target(endpoint, bucket);
        let out = store
            .client
            .list_objects_v2()
            .bucket(bucket)
            .set_prefix(prefix.filter(|p| !p.is_empty()).map(str::to_owned))
            .set_continuation_token(token.map(str::to_owned))
            .max_keys(max_keys)
            .set_delimiter(delimiter.map(str::to_owned))
            .send()
            .await
            .map_err(|e| classify("ListObjectsV2", &t, e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(Listed {
                    key: o.key()?.to_owned(),
                    size: u64::try_from(o.size().unwrap_or(0)).unwrap_or(0),
                    etag: o.e_tag().map(strip_quotes),
                })
            })
            .collect();
        let prefixes = out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix().map(str::to_owned))
            .collect();
        let next = match (out.is_truncated(), out.next_continuation_token()) {
            (Some(true), Some(tok)) if !tok.is_empty() => Some(tok.to_owned()),
            _ => None,
        };
        Ok(Page {
            objects,
            prefixes,
            next,
        })
    }
}

/// Whether a store refused a write because its bytes did not match their
/// checksum.
fn is_digest_error(e: &ExecError) -> bool {
    matches!(e, ExecError::Service { code, .. }
        if matches!(code.as_str(), "BadDigest" | "XAmzContentChecksumMismatch" | "XAmzContentSHA256Mismatch"))
}

/// Reads a body of `expected` bytes into one buffer of exactly that size
/// (no reallocation, no second copy: a part costs its own size in memory);
/// a body that ends early or runs long is a short read.
async fn read_body(body: &mut ByteStream, expected: u64, t: &Target) -> Result<Bytes, ExecError> {
    let mut buf = BytesMut::with_capacity(usize::try_from(expected).unwrap_or(0));
    while let Some(chunk) = body.try_next().await.map_err(|e| ExecError::Transport {
        op: "GetObject",
        target: t.clone(),
        detail: format!("reading the body failed: {e}"),
    })? {
        if (buf.len() + chunk.len()) as u64 > expected {
            return Err(ExecError::ShortRead {
                target: t.clone(),
                expected,
                got: (buf.len() + chunk.len()) as u64,
            });
        }
        buf.extend_from_slice(&chunk);
    }
    if buf.len() as u64 != expected {
        return Err(ExecError::ShortRead {
            target: t.clone(),
            expected,
            got: buf.len() as u64,
        });
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::Side;

    #[test]
    fn redone_work_counts_as_copied() {
        let published = 1_000_000_000;
        let identical = |written| Outcome::Skipped {
            reason: SkipReason::Identical,
            bytes: 9,
            dst_modified_ms: written,
        };
        let copied = Outcome::Copied {
            method: "earlier_delivery",
            bytes: 9,
        };
        #[rustfmt::skip]
        let table = [
            // Written after the job was published, seen on a redelivery.
            (identical(Some(published + 5_000)), 2, copied.clone()),
            // Within the clock slack (the store's clock runs behind).
            (identical(Some(published - 30_000)), 3, copied),
            // Already there long before the job: skipped.
            (identical(Some(published - 3_600_000)), 2, identical(Some(published - 3_600_000))),
            // The first delivery never redoes anything.
            (identical(Some(published + 5_000)), 1, identical(Some(published + 5_000))),
            (identical(None), 2, identical(None)),
            (Outcome::Skipped { reason: SkipReason::Stale, bytes: 0, dst_modified_ms: Some(published) }, 2,
             Outcome::Skipped { reason: SkipReason::Stale, bytes: 0, dst_modified_ms: Some(published) }),
        ];
        for (outcome, delivered, want) in table {
            assert_eq!(
                outcome.clone().redone(delivered, published, None),
                want,
                "{outcome:?} {delivered}"
            );
        }
        // A batch's hand-off, first delivery: written after the batch's
        // attempt began, before the hand-off was published.
        let handed_off = identical(Some(published - 90_000));
        assert_eq!(
            handed_off
                .clone()
                .redone(1, published, Some(published - 100_000)),
            Outcome::Copied {
                method: "earlier_delivery",
                bytes: 9
            }
        );
        assert_eq!(handed_off.clone().redone(1, published, None), handed_off);
    }

    #[test]
    fn outcomes_map_to_ledger_outcomes() {
        let filtered = Outcome::Filtered {
            filter: "f".to_owned(),
            reason: "r".to_owned(),
            bytes: 9,
        };
        #[rustfmt::skip]
        let table = [
            (Outcome::Copied { method: "put", bytes: 5 }, Side::Source, (ObjectOutcome::Copied, 5)),
            (Outcome::Skipped { reason: SkipReason::Stale, bytes: 6, dst_modified_ms: None }, Side::Source, (ObjectOutcome::Skipped, 6)),
            (Outcome::WouldCopy { bytes: 7 }, Side::Source, (ObjectOutcome::WouldCopy, 7)),
            (filtered.clone(), Side::Source, (ObjectOutcome::Filtered, 9)),
            // A filter holding back a mirror delete keeps the object.
            (filtered, Side::Destination, (ObjectOutcome::Kept, 0)),
            (Outcome::Deleted, Side::Destination, (ObjectOutcome::Deleted, 0)),
            (Outcome::Kept, Side::Destination, (ObjectOutcome::Kept, 0)),
            (Outcome::WouldDelete, Side::Destination, (ObjectOutcome::WouldDelete, 0)),
        ];
        for (outcome, side, want) in table {
            assert_eq!(outcome.ledger(side), want, "{outcome:?} {side:?}");
        }
    }
}
