//! Copy planning: a pure function from what we know about the source and the
//! destination to how the object is copied.
//!
//! **Architecture Invariant:** nothing here does IO. The executor gathers the
//! facts (HEAD responses), calls [`plan_copy`], and carries out the plan.

use std::ops::RangeInclusive;

use crate::settings::CopyConfig;

/// S3's highest multipart part number.
pub const MAX_PARTS: u64 = 10_000;
const MIB: u64 = 1024 * 1024;

/// What a HEAD told us about an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectFacts {
    /// Size in bytes.
    pub size: u64,
    /// ETag, with the quotes removed.
    pub etag: Option<String>,
    /// The source ETag s3rf recorded when it wrote this object (user metadata
    /// `s3rf-source-etag`).
    pub recorded_source_etag: Option<String>,
    /// Checksums the server reported, by algorithm.
    pub checksums: Checksums,
    /// When the object was last written (ms since the epoch), where known.
    pub last_modified_ms: Option<i64>,
}

/// Full-object or composite checksums as the server reports them (base64).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checksums {
    /// CRC64NVME (always full-object).
    pub crc64nvme: Option<String>,
    /// CRC32C.
    pub crc32c: Option<String>,
    /// CRC32.
    pub crc32: Option<String>,
    /// SHA-256.
    pub sha256: Option<String>,
}

/// Why the plan says there is nothing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The destination holds the same bytes.
    Identical,
    /// Event sync: the source is gone; its delete event handles the destination.
    SourceGone,
    /// Event sync: a newer event for this key was already applied.
    Stale,
}

/// One part of a multipart copy: `number` from 1, bytes `range` of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Part number, consecutive from 1.
    pub number: i32,
    /// Inclusive byte range of the source object.
    pub range: RangeInclusive<u64>,
}

impl Part {
    /// Bytes in this part.
    pub fn len(&self) -> u64 {
        self.range.end() - self.range.start() + 1
    }

    /// Never true: parts hold at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The HTTP `Range`/`x-amz-copy-source-range` value.
    pub fn http_range(&self) -> String {
        format!("bytes={}-{}", self.range.start(), self.range.end())
    }
}

/// How one object is copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// One server-side CopyObject (same endpoint, at most 5 GiB).
    ServerSideCopy,
    /// Parallel UploadPartCopy on the same endpoint.
    ServerSideMultipart {
        /// Part size used for every part but the last.
        part_size: u64,
        /// Number of parts.
        parts: u64,
    },
    /// One GET into one PUT, across endpoints.
    Put,
    /// Parallel ranged GETs into UploadPart, across endpoints.
    StreamedMultipart {
        /// Part size used for every part but the last.
        part_size: u64,
        /// Number of parts.
        parts: u64,
    },
}

impl Method {
    /// Short name for logs and metrics.
    pub const fn name(&self) -> &'static str {
        match self {
            Method::ServerSideCopy => "server_side_copy",
            Method::ServerSideMultipart { .. } => "server_side_multipart",
            Method::Put => "put",
            Method::StreamedMultipart { .. } => "streamed_multipart",
        }
    }

    /// The parts of a multipart method, in order; empty for single-request methods.
    pub fn parts(&self, size: u64) -> Vec<Part> {
        match self {
            Method::ServerSideMultipart { part_size, .. }
            | Method::StreamedMultipart { part_size, .. } => part_ranges(size, *part_size),
            Method::ServerSideCopy | Method::Put => Vec::new(),
        }
    }
}

/// What kind of bucket the destination is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Destination {
    /// An S3 Express One Zone directory bucket: random ETags, no tags.
    pub express: bool,
}

/// Directory bucket names end in `--<az-id>--x-s3`.
pub fn is_directory_bucket(bucket: &str) -> bool {
    bucket.ends_with("--x-s3")
}

/// The plan for one copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPlan {
    /// How.
    pub method: Method,
    /// Whether the destination will get an ETag different from the source's,
    /// so the source ETag must be recorded in user metadata for re-runs to
    /// recognise the copy.
    pub record_source_etag: bool,
    /// Tags cannot be kept (directory buckets): copy with tagging directive
    /// REPLACE and no tags, and say so.
    pub drop_tags: bool,
}

/// The decision for one copy job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to do.
    Skip(SkipReason),
    /// Copy.
    Copy(CopyPlan),
}

pub fn is_multipart_etag(etag: &str) -> bool {
    etag.contains('-')
}

/// Whether `dst` already holds the bytes of `src`.
///
/// Evidence, strongest first: a matching checksum of the same algorithm, the
/// source ETag s3rf recorded on the destination, or equal ETags. Sizes must
/// always match. Without comparable evidence the answer is "no", so the copy
/// happens again rather than being skipped wrongly.
pub fn identical(src: &ObjectFacts, dst: &ObjectFacts) -> bool {
    identical_for(src, dst, Destination::default())
}

/// [`identical`] for a destination of the given kind: ETags of directory
/// buckets are random, so they are never compared with the source's.
pub fn identical_for(src: &ObjectFacts, dst: &ObjectFacts, kind: Destination) -> bool {
    if src.size != dst.size {
        return false;
    }
    let pairs = [
        (&src.checksums.crc64nvme, &dst.checksums.crc64nvme),
        (&src.checksums.crc32c, &dst.checksums.crc32c),
        (&src.checksums.crc32, &dst.checksums.crc32),
        (&src.checksums.sha256, &dst.checksums.sha256),
    ];
    for (a, b) in pairs {
        if let (Some(a), Some(b)) = (a, b) {
            // Composite checksums ("...-N") depend on the part layout, so only a
            // match is evidence; full-object checksums decide both ways.
            if a == b {
                return true;
            }
            if !is_multipart_etag(a) && !is_multipart_etag(b) {
                return false;
            }
        }
    }
    match (&src.etag, &dst.etag, &dst.recorded_source_etag) {
        (Some(s), _, Some(recorded)) if s == recorded => true,
        (Some(s), Some(d), _) if !kind.express => s == d,
        _ => false,
    }
}

/// Part size for an object: the preferred size, raised (to a whole MiB) when
/// needed to stay within 10,000 parts.
pub fn effective_part_size(size: u64, preferred: u64) -> u64 {
    let needed = size.div_ceil(MAX_PARTS);
    if needed <= preferred {
        preferred
    } else {
        needed.div_ceil(MIB) * MIB
    }
}

/// Consecutive parts covering `0..size`; the last one may be short.
pub fn part_ranges(size: u64, part_size: u64) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut start = 0u64;
    let mut number = 1i32;
    while start < size {
        let end = (start + part_size).min(size) - 1;
        parts.push(Part {
            number,
            range: start..=end,
        });
        start = end + 1;
        number += 1;
    }
    parts
}

/// Decides how to copy `src` to a destination currently holding `dst`.
pub fn plan_copy(
    src: &ObjectFacts,
    dst: Option<&ObjectFacts>,
    same_endpoint: bool,
    cfg: &CopyConfig,
) -> Plan {
    plan_copy_to(src, dst, same_endpoint, Destination::default(), cfg)
}

/// What a copy knows before its first request: from the job, the
/// listing and the endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadFacts {
    /// Source and destination are one endpoint.
    pub same_endpoint: bool,
    /// The size the listing reported, if the job came from one.
    pub listed_size: Option<u64>,
    /// The listed ETag is a multipart one (it must be recorded on the copy).
    pub listed_multipart_etag: bool,
    /// The destination bucket is new to this migration: no HEAD needed.
    pub destination_empty: bool,
    /// A dry run.
    pub dry_run: bool,
    /// Either side is a directory bucket.
    pub express: bool,
    /// Filters are loaded (they need the source's attributes).
    pub filters: bool,
}

/// How a copy starts reading its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// One server-side CopyObject of the object as listed, no HEAD at
    /// either end.
    AsListed,
    /// One GET of the whole object, whose headers stand in for the HEAD.
    GetWhole,
    /// A HEAD first; the plan then picks the method.
    Head,
}

/// The pure rule for [`Read`]: copy as listed within one endpoint into a
/// bucket the migration created, when nothing needs the source's
/// attributes; GET a small object across endpoints at once; else HEAD.
pub fn plan_read(f: &ReadFacts, cfg: &CopyConfig) -> Read {
    let Some(size) = f.listed_size else {
        return Read::Head;
    };
    if f.same_endpoint {
        let as_listed = f.destination_empty
            && !f.dry_run
            && !f.express
            && size <= cfg.server_side_multipart_threshold
            && !f.listed_multipart_etag
            && !f.filters;
        return if as_listed {
            Read::AsListed
        } else {
            Read::Head
        };
    }
    if !f.dry_run && size <= cfg.multipart_threshold {
        Read::GetWhole
    } else {
        Read::Head
    }
}

/// How the bytes of a single PUT get from the GET to the PUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Piped through a window of this many bytes.
    Piped { window: u64 },
    /// Read whole first.
    Whole,
}

/// Objects above this size are piped from their GET into their PUT
/// through the read-ahead window; smaller ones are read whole first.
pub const PIPE_ABOVE: u64 = 1024 * 1024;

/// The pure rule for [`Body`]: pipe an object above [`PIPE_ABOVE`] when the
/// destination can take a body whose checksum is not known up front
/// (`pipeable`: unsigned payloads, no SDK checksums, not a directory
/// bucket) and `read_ahead` is not 0.
pub fn plan_body(size: u64, pipeable: bool, read_ahead: u64) -> Body {
    if pipeable && read_ahead > 0 && size > PIPE_ABOVE {
        Body::Piped {
            window: read_ahead.min(size),
        }
    } else {
        Body::Whole
    }
}

/// [`plan_copy`] for a destination of the given kind.
pub fn plan_copy_to(
    src: &ObjectFacts,
    dst: Option<&ObjectFacts>,
    same_endpoint: bool,
    kind: Destination,
    cfg: &CopyConfig,
) -> Plan {
    if let Some(dst) = dst
        && identical_for(src, dst, kind)
    {
        return Plan::Skip(SkipReason::Identical);
    }
    let multipart = |part_size: u64| {
        let part_size = effective_part_size(src.size, part_size);
        (part_size, src.size.div_ceil(part_size))
    };
    let method = if same_endpoint {
        if src.size <= cfg.server_side_multipart_threshold {
            Method::ServerSideCopy
        } else {
            let (part_size, parts) = multipart(cfg.part_size);
            Method::ServerSideMultipart { part_size, parts }
        }
    } else if src.size <= cfg.multipart_threshold {
        Method::Put
    } else {
        let (part_size, parts) = multipart(cfg.part_size);
        Method::StreamedMultipart { part_size, parts }
    };
    let source_etag_multipart = src.etag.as_deref().is_some_and(is_multipart_etag);
    let record_source_etag = kind.express
        || match method {
            Method::ServerSideMultipart { .. } | Method::StreamedMultipart { .. } => true,
            Method::ServerSideCopy | Method::Put => source_etag_multipart,
        };
    Plan::Copy(CopyPlan {
        method,
        record_source_etag,
        drop_tags: kind.express,
    })
}

#[cfg(test)]
mod tests;
