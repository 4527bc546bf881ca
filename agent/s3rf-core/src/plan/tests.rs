//! Table tests of the copy planner: methods by size and endpoint, part
//! ranges, identity rules, read strategies.

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
        destination_empty: true,
        dry_run: false,
        express: false,
        filters: false,
    };
    let small = listed(1024);
    let cross = ReadFacts {
        same_endpoint: false,
        destination_empty: false,
        ..small
    };
    #[rustfmt::skip]
    let table = [
        (small, Read::AsListed),
        (ReadFacts { listed_size: None, ..small }, Read::Head),
        (ReadFacts { destination_empty: false, ..small }, Read::Head),
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
