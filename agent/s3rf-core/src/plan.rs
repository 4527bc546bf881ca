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
    pub skip_destination_head: bool,
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
        let as_listed = f.skip_destination_head
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
mod tests {
    use super::*;
    use std::time::Duration;

    const MB5: u64 = 5 * MIB;

    fn cfg() -> CopyConfig {
        CopyConfig {
            concurrency: 4,
            part_concurrency: 4,
            part_size: MB5,
            multipart_threshold: MB5,
            server_side_multipart_threshold: 2 * MB5,
            buffer_memory: 64 * MIB,
            read_ahead: 4 * MIB,
            shutdown_grace: Duration::from_secs(1),
            retry_base_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(10),
            resume_ttl: None,
        }
    }

    fn facts(size: u64, etag: &str) -> ObjectFacts {
        ObjectFacts {
            size,
            etag: Some(etag.to_owned()),
            ..ObjectFacts::default()
        }
    }

    #[test]
    fn read_table() {
        let c = cfg();
        let listed = |size| ReadFacts {
            same_endpoint: true,
            listed_size: Some(size),
            listed_multipart_etag: false,
            skip_destination_head: true,
            dry_run: false,
            express: false,
            filters: false,
        };
        let small = listed(1024);
        let cross = ReadFacts {
            same_endpoint: false,
            skip_destination_head: false,
            ..small
        };
        #[rustfmt::skip]
        let table = [
            (small, Read::AsListed),
            (ReadFacts { listed_size: None, ..small }, Read::Head),
            (ReadFacts { skip_destination_head: false, ..small }, Read::Head),
            (ReadFacts { dry_run: true, ..small }, Read::Head),
            (ReadFacts { express: true, ..small }, Read::Head),
            (ReadFacts { filters: true, ..small }, Read::Head),
            (ReadFacts { listed_multipart_etag: true, ..small }, Read::Head),
            (listed(c.server_side_multipart_threshold), Read::AsListed),
            (listed(c.server_side_multipart_threshold + 1), Read::Head),
            (cross, Read::GetWhole),
            (ReadFacts { listed_size: Some(c.multipart_threshold), ..cross }, Read::GetWhole),
            (ReadFacts { listed_size: Some(c.multipart_threshold + 1), ..cross }, Read::Head),
            (ReadFacts { dry_run: true, ..cross }, Read::Head),
            (ReadFacts { listed_size: None, ..cross }, Read::Head),
            // Filters see a GET's headers as well as a HEAD's.
            (ReadFacts { filters: true, ..cross }, Read::GetWhole),
        ];
        for (facts, want) in table {
            assert_eq!(plan_read(&facts, &c), want, "{facts:?}");
        }
        #[rustfmt::skip]
        let bodies = [
            (8 * MIB, true, 4 * MIB, Body::Piped { window: 4 * MIB }),
            (PIPE_ABOVE + 1, true, 4 * MIB, Body::Piped { window: PIPE_ABOVE + 1 }),
            (3 * MIB, true, 4 * MIB, Body::Piped { window: 3 * MIB }),
            (PIPE_ABOVE, true, 4 * MIB, Body::Whole),
            (3 * MIB, false, 4 * MIB, Body::Whole),
            (3 * MIB, true, 0, Body::Whole),
        ];
        for (size, pipeable, read_ahead, want) in bodies {
            assert_eq!(
                plan_body(size, pipeable, read_ahead),
                want,
                "{size} {pipeable} {read_ahead}"
            );
        }
    }

    #[test]
    fn method_table() {
        #[rustfmt::skip]
        let table: &[(u64, bool, Method, bool)] = &[
            // size, same endpoint, method, records source etag
            (0, false, Method::Put, false),
            (1, false, Method::Put, false),
            (MB5, false, Method::Put, false),
            (MB5 + 1, false, Method::StreamedMultipart { part_size: MB5, parts: 2 }, true),
            (12 * MIB, false, Method::StreamedMultipart { part_size: MB5, parts: 3 }, true),
            (0, true, Method::ServerSideCopy, false),
            (2 * MB5, true, Method::ServerSideCopy, false),
            (2 * MB5 + 1, true, Method::ServerSideMultipart { part_size: MB5, parts: 3 }, true),
        ];
        for (size, same, method, record) in table {
            let plan = plan_copy(&facts(*size, "abc"), None, *same, &cfg());
            let want = Plan::Copy(CopyPlan {
                method: method.clone(),
                record_source_etag: *record,
                drop_tags: false,
            });
            assert_eq!(plan, want, "size {size} same {same}");
        }
    }

    #[test]
    fn multipart_source_etag_is_recorded_even_for_single_requests() {
        let plan = plan_copy(&facts(10, "abc-3"), None, false, &cfg());
        assert!(matches!(
            plan,
            Plan::Copy(CopyPlan {
                method: Method::Put,
                record_source_etag: true,
                drop_tags: false,
            })
        ));
    }

    #[test]
    fn objects_over_five_gib_stay_within_ten_thousand_parts() {
        let size = 6 * 1024 * MIB;
        let mut c = cfg();
        c.server_side_multipart_threshold = 5 * 1024 * MIB;
        let Plan::Copy(plan) = plan_copy(&facts(size, "e"), None, true, &c) else {
            panic!("expected a copy")
        };
        assert_eq!(
            plan.method,
            Method::ServerSideMultipart {
                part_size: MB5,
                parts: 1229
            }
        );
        // 5 TiB, S3's largest object, with 5 MiB preferred parts.
        let huge = 5 * 1024 * 1024 * MIB;
        let part = effective_part_size(huge, MB5);
        assert!(huge.div_ceil(part) <= MAX_PARTS);
        assert_eq!(part % MIB, 0);
    }

    #[test]
    fn part_ranges_are_consecutive_with_a_short_last_part() {
        let parts = part_ranges(12 * MIB, MB5);
        assert_eq!(
            parts.iter().map(|p| p.number).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(parts[0].range, 0..=MB5 - 1);
        assert_eq!(parts[1].range, MB5..=2 * MB5 - 1);
        assert_eq!(parts[2].range, 2 * MB5..=12 * MIB - 1);
        assert_eq!(parts[2].len(), 2 * MIB);
        assert_eq!(parts[0].http_range(), "bytes=0-5242879");
        assert_eq!(part_ranges(MB5 + 1, MB5)[1].range, MB5..=MB5);
        assert!(part_ranges(0, MB5).is_empty());
    }

    #[test]
    fn identity_table() {
        let with = |f: fn(&mut ObjectFacts)| {
            let mut o = facts(10, "e1");
            f(&mut o);
            o
        };
        #[rustfmt::skip]
        let table: Vec<(ObjectFacts, ObjectFacts, bool)> = vec![
            (facts(10, "e1"), facts(10, "e1"), true),
            (facts(10, "e1"), facts(11, "e1"), false),
            (facts(10, "e1"), facts(10, "e2"), false),
            // s3rf recorded the source etag on a multipart copy
            (facts(10, "e1"), with(|o| { o.etag = Some("x-2".into()); o.recorded_source_etag = Some("e1".into()) }), true),
            (facts(10, "e9"), with(|o| { o.etag = Some("x-2".into()); o.recorded_source_etag = Some("e1".into()) }), false),
            // full-object checksums decide even when etags differ (Express)
            (with(|o| o.checksums.crc32c = Some("AAAA".into())), with(|o| { o.etag = Some("rnd".into()); o.checksums.crc32c = Some("AAAA".into()) }), true),
            (with(|o| o.checksums.crc32c = Some("AAAA".into())), with(|o| o.checksums.crc32c = Some("BBBB".into())), false),
            // composite checksums only count when equal
            (with(|o| o.checksums.crc32c = Some("AAAA-2".into())), with(|o| o.checksums.crc32c = Some("BBBB-3".into())), true),
            // no etag at all: copy again
            (ObjectFacts { size: 10, ..Default::default() }, ObjectFacts { size: 10, ..Default::default() }, false),
        ];
        for (i, (src, dst, want)) in table.iter().enumerate() {
            assert_eq!(identical(src, dst), *want, "row {i}: {src:?} vs {dst:?}");
        }
    }

    #[test]
    fn express_destinations() {
        let express = Destination { express: true };
        // Same ETag string means nothing on a directory bucket.
        assert!(!identical_for(&facts(3, "e"), &facts(3, "e"), express));
        // The recorded source ETag and checksums still count.
        let mut copied = facts(3, "random");
        copied.recorded_source_etag = Some("e".into());
        assert!(identical_for(&facts(3, "e"), &copied, express));
        let mut a = facts(3, "e");
        a.checksums.crc64nvme = Some("C".into());
        let mut b = facts(3, "random");
        b.checksums.crc64nvme = Some("C".into());
        assert!(identical_for(&a, &b, express));
        #[rustfmt::skip]
        let table = [
            (1u64, true, Method::ServerSideCopy),
            (1, false, Method::Put),
            (12 * MIB, false, Method::StreamedMultipart { part_size: MB5, parts: 3 }),
            (11 * MIB, true, Method::ServerSideMultipart { part_size: MB5, parts: 3 }),
        ];
        for (size, same, method) in table {
            let Plan::Copy(p) = plan_copy_to(&facts(size, "e"), None, same, express, &cfg()) else {
                panic!("expected a copy")
            };
            assert_eq!(p.method, method);
            assert!(p.drop_tags, "tags are dropped (directive REPLACE, no tags)");
            assert!(
                p.record_source_etag,
                "ETags never match; re-runs need the marker"
            );
            let numbers: Vec<i32> = p.method.parts(size).iter().map(|p| p.number).collect();
            assert_eq!(
                numbers,
                (1..=numbers.len() as i32).collect::<Vec<_>>(),
                "consecutive from 1"
            );
        }
        assert!(is_directory_bucket("photos--euw1-az1--x-s3"));
        assert!(!is_directory_bucket("photos"));
    }

    #[test]
    fn identical_destination_is_skipped() {
        assert_eq!(
            plan_copy(&facts(3, "e"), Some(&facts(3, "e")), false, &cfg()),
            Plan::Skip(SkipReason::Identical)
        );
    }
}
