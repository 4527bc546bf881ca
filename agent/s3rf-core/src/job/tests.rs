//! Tests of job parsing (`parse.rs`): a table per job kind, the origin
//! rules, the redelivery rule, and property tests of hostile payloads.

use super::*;

mod table {
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

    /// The wire's `migration`, `sequencer` and `skip_if_source_missing` make
    /// one origin; `dst_bucket_new` is a migration's hint only.
    #[test]
    fn copy_origins() {
        let job = |extra: &str| {
            let text = format!(
                r#"{{"src":{{"endpoint":"a","bucket":"p","key":"k"}},"dst":{{"endpoint":"b","bucket":"q"}}{extra}}}"#
            );
            match Job::parse(JobKind::Copy, text.as_bytes(), |_| true) {
                Ok(Job::Copy(c)) => Ok((c.origin.clone(), c.skips_missing_source(), c.hints)),
                Ok(other) => panic!("not a copy: {other:?}"),
                Err(e) => Err(e.to_string()),
            }
        };
        let event = |s: Option<&str>| Origin::Event {
            sequencer: s.map(str::to_owned),
        };
        /// Extra wire fields → (origin, skips a missing source), or the error.
        type Row = (&'static str, Result<(Origin, bool), &'static str>);
        let table: &[Row] = &[
            ("", Ok((Origin::Direct, false))),
            (
                r#","migration":"m1""#,
                Ok((Origin::Migration("m1".into()), false)),
            ),
            (r#","sequencer":"0A""#, Ok((event(Some("0A")), true))),
            (r#","skip_if_source_missing":true"#, Ok((event(None), true))),
            (
                r#","sequencer":"0A","skip_if_source_missing":true"#,
                Ok((event(Some("0A")), true)),
            ),
            (r#","migration":"m1","sequencer":"0A""#, Err("not both")),
            (
                r#","migration":"m1","skip_if_source_missing":true"#,
                Err("not both"),
            ),
            (
                r#","migration":"m1","dst_bucket_new":true"#,
                Ok((Origin::Migration("m1".into()), false)),
            ),
            (r#","dst_bucket_new":true"#, Err("invalid dst_bucket_new")),
            (
                r#","sequencer":"0A","dst_bucket_new":true"#,
                Err("invalid dst_bucket_new"),
            ),
        ];
        for (extra, want) in table {
            match (job(extra), want) {
                (Ok((origin, skips, _)), Ok((o, s))) => {
                    assert_eq!((&origin, skips), (o, *s), "{extra}");
                }
                (Err(e), Err(w)) => assert!(e.contains(w), "{extra}: {e}"),
                (got, want) => panic!("{extra}: got {got:?}, want {want:?}"),
            }
        }
        let Ok((_, _, hints)) = job(r#","migration":"m1","dst_bucket_new":true,"listed_size":5"#)
        else {
            panic!("refused");
        };
        assert_eq!(
            hints,
            Hints {
                size: Some(5),
                etag: None,
                destination_empty: true
            }
        );
    }

    /// A delete's origin: `if_source_absent` outside a migration is the
    /// bridge's delete (event sync, which `pause --sync` holds), with or
    /// without a sequencer; inside a migration it is the mirror's.
    #[test]
    fn delete_origins() {
        let origin = |extra: &str| {
            let text = format!(
                r#"{{"dst":{{"endpoint":"b","bucket":"q","key":"k"}},"src":{{"endpoint":"a","bucket":"p","key":"k"}}{extra}}}"#
            );
            match Job::parse(JobKind::Delete, text.as_bytes(), |_| true) {
                Ok(Job::Delete(d)) => d.origin,
                other => panic!("{extra}: {other:?}"),
            }
        };
        let event = |s: Option<&str>| Origin::Event {
            sequencer: s.map(str::to_owned),
        };
        assert_eq!(origin(""), Origin::Direct);
        assert_eq!(origin(r#","if_source_absent":true"#), event(None));
        assert_eq!(origin(r#","sequencer":"0B""#), event(Some("0B")));
        assert_eq!(
            origin(r#","if_source_absent":true,"migration":"m1""#),
            Origin::Migration("m1".into())
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
        check(
            d,
            r#"{"dst":{"endpoint":"b","bucket":"x","key":"k"},"if_source_absent":true}"#,
            Err("needs src"),
        );
    }

    #[test]
    fn migration_jobs() {
        check(
            JobKind::Migrate,
            r#"{"src":"a","dst":"b"}"#,
            Ok("src: \"a\""),
        );
        check(
            JobKind::Migrate,
            r#"{"src":"a","dst":"z"}"#,
            Err("unknown endpoint z"),
        );
        check(
            JobKind::Migrate,
            r#"{"id":"m 1","src":"a","dst":"b"}"#,
            Err("invalid id"),
        );
        check(
            JobKind::Migrate,
            r#"{"src":"a","dst":"b","exclude_buckets":["[x"]}"#,
            Err("invalid exclude_buckets"),
        );
        // Refused at parse time, before the spec is stored (issue #19, F8).
        check(
            JobKind::Migrate,
            r#"{"src":"a","dst":"b","buckets":["x"],"bucket_map":{"x":"y/z"}}"#,
            Err("\"y/z\" is not a bucket name"),
        );
        check(
            JobKind::Migrate,
            r#"{"src":"a","dst":"b","bucket_map":{"x":""}}"#,
            Err("invalid bucket_map"),
        );
        check(
            JobKind::Bucket,
            r#"{"migration":"m1","src":"a","dst":"b","bucket":"x","dst_bucket":"y"}"#,
            Ok("dst_bucket: \"y\""),
        );
        check(
            JobKind::List,
            r#"{"scope":{"migration":"m1","src":"a","dst":"c","bucket":"x","dst_bucket":"y"}}"#,
            Err("unknown endpoint c"),
        );
        check(
            JobKind::Copy,
            r#"{"src":{"endpoint":"a","bucket":"p","key":"k"},"dst":{"endpoint":"b","bucket":"q"},"migration":"bad id"}"#,
            Err("invalid migration"),
        );
    }

    #[test]
    fn batch_jobs() {
        let b = JobKind::Batch;
        let scope = r#""scope":{"migration":"m1","src":"a","dst":"b","bucket":"x","dst_bucket":"y","dst_bucket_new":true}"#;
        check(
            b,
            &format!(r#"{{{scope},"objects":[{{"key":"k1","size":3,"etag":"e"}}]}}"#),
            Ok(r#"BatchObject { key: "k1", size: 3, etag: Some("e") }"#),
        );
        check(
            b,
            &format!(r#"{{{scope},"objects":[]}}"#),
            Err("0 objects; a batch carries 1 to 1000"),
        );
        check(
            b,
            &format!(r#"{{{scope},"objects":[{{"key":"k","size":1}},{{"key":"k","size":1}}]}}"#),
            Err("\"k\" appears twice"),
        );
        check(
            b,
            &format!(r#"{{{scope},"objects":[{{"key":"","size":1}}]}}"#),
            Err("invalid objects.key"),
        );
        check(
            b,
            &format!(r#"{{{scope},"objects":[{{"key":"k","size":1,"etag":""}}]}}"#),
            Err("invalid objects.etag"),
        );
        check(
            b,
            r#"{"scope":{"migration":"m1","src":"a","dst":"c","bucket":"x","dst_bucket":"y"},"objects":[{"key":"k","size":1}]}"#,
            Err("unknown endpoint c"),
        );
    }

    #[test]
    fn versions_jobs() {
        let k = JobKind::Versions;
        let scope = r#""scope":{"migration":"m1","src":"a","dst":"b","bucket":"x","dst_bucket":"y","versions":true}"#;
        check(
            k,
            &format!(
                r#"{{{scope},"key":"k","versions":[{{"version_id":"v1","size":3,"etag":"e"}},{{"version_id":"v2","delete_marker":true}}]}}"#
            ),
            Ok(r#"Version { id: "v2", delete_marker: true, size: 0, etag: None }"#),
        );
        check(
            k,
            &format!(r#"{{{scope},"key":"k"}}"#),
            Ok("versions: None"),
        );
        check(
            k,
            &format!(r#"{{{scope},"key":"k","versions":[]}}"#),
            Err("0 versions; a job carries 1 to 1000"),
        );
        check(
            k,
            &format!(
                r#"{{{scope},"key":"k","versions":[{{"version_id":"v"}},{{"version_id":"v"}}]}}"#
            ),
            Err("\"v\" appears twice"),
        );
        check(
            k,
            &format!(r#"{{{scope},"key":"k","versions":[{{"version_id":""}}]}}"#),
            Err("invalid versions.version_id"),
        );
        check(
            k,
            r#"{"scope":{"migration":"m1","src":"a","dst":"b","bucket":"x","dst_bucket":"y"},"key":"k"}"#,
            Err("belongs to a versioned migration"),
        );
        check(
            JobKind::Migrate,
            r#"{"src":"a","dst":"b","versions":true,"delete_extraneous":true}"#,
            Err("cannot also delete extraneous keys"),
        );
        check(
            JobKind::List,
            r#"{"scope":{"migration":"m1","src":"a","dst":"b","bucket":"x","dst_bucket":"y"},"version_marker":{"key":"k","version_id":"v"}}"#,
            Err("only a versioned migration's listing"),
        );
    }

    #[test]
    fn a_version_is_always_written_and_pinned() {
        let payload = r#"{"scope":{"migration":"m1","src":"a","dst":"b","bucket":"x","dst_bucket":"y","versions":true},"key":"k","versions":[{"version_id":"v1","size":3,"etag":"e"}]}"#;
        let Ok(Job::Versions(job)) = Job::parse(JobKind::Versions, payload.as_bytes(), |_| true)
        else {
            panic!("versions job refused");
        };
        let v = &job.versions.as_ref().expect("listed")[0];
        let copy = job.copy_job(v, "k2");
        assert_eq!(copy.src_version.as_deref(), Some("v1"));
        assert_eq!(
            (copy.dst.bucket.as_str(), copy.dst.key.as_str()),
            ("y", "k2")
        );
        assert!(
            copy.hints.destination_empty,
            "never compared with the destination's latest version"
        );
        assert_eq!(copy.origin, Origin::Migration("m1".into()));
    }

    #[test]
    fn a_batch_object_copies_as_its_listing_would_publish_it() {
        let payload = r#"{"scope":{"migration":"m1","src":"a","dst":"b","bucket":"x","dst_bucket":"y","dst_bucket_new":true},"objects":[{"key":"d/k","size":7,"etag":"e"}]}"#;
        let Ok(Job::Batch(batch)) = Job::parse(JobKind::Batch, payload.as_bytes(), |_| true) else {
            panic!("batch refused");
        };
        let obj = &batch.objects[0];
        let wire = listed_copy(&batch.scope.0, &obj.key, obj.size, obj.etag.as_deref());
        let text = serde_json::to_vec(&wire).unwrap_or_default();
        let Ok(Job::Copy(alone)) = Job::parse(JobKind::Copy, &text, |_| true) else {
            panic!("copy refused");
        };
        assert_eq!(batch.copy_job(obj, 1), alone.clone().for_delivery(1));
        // The redelivery rule, one function for both: the "nothing at the
        // destination yet" hint holds on the first delivery only, and
        // nothing else changes.
        assert!(alone.hints.destination_empty);
        assert_eq!(batch.copy_job(obj, 2), alone.clone().for_delivery(2));
        let again = alone.clone().for_delivery(3);
        assert!(!again.hints.destination_empty);
        assert_eq!(
            again,
            CopyJob {
                hints: Hints {
                    destination_empty: false,
                    ..alone.hints.clone()
                },
                ..alone.clone()
            }
        );
        assert_eq!(alone.dst.key, "d/k");
        assert_eq!(alone.dst.bucket, "y");
    }
}

/// Property tests: whatever arrives on a job subject, parsing returns a job
/// or a one-line reason, and a job only ever names configured endpoints.
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Field names of every job kind, and `url`, so generated objects
    /// often look like jobs.
    const FIELDS: &[&str] = &[
        "src",
        "dst",
        "endpoint",
        "bucket",
        "key",
        "version_id",
        "migration",
        "dry_run",
        "sequencer",
        "listed_size",
        "listed_etag",
        "dst_bucket_new",
        "attempted_since_ms",
        "if_source_absent",
        "skip_if_source_missing",
        "id",
        "buckets",
        "bucket_map",
        "exclude_buckets",
        "prefix",
        "delete_extraneous",
        "scope",
        "objects",
        "size",
        "etag",
        "page",
        "token",
        "split",
        "dst_bucket",
        "url",
        "deep",
        "number",
        "start_after",
        "rate",
        "every",
        "objects_per_sec",
    ];

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "\\PC{0,24}".prop_map(serde_json::Value::from),
            prop::sample::select(vec![
                "a",
                "b",
                "z",
                "x",
                "k",
                "m1",
                "http://169.254.169.254/",
                "../..",
                "a\u{0}b",
            ])
            .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(5, 96, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map(
                    prop::sample::select(FIELDS.to_vec()).prop_map(str::to_owned),
                    inner,
                    0..8
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn configured(e: &str) -> bool {
        e == "a" || e == "b"
    }

    fn endpoints_of(job: &Job) -> Vec<&str> {
        match job {
            Job::Copy(c) => vec![&c.src.endpoint, &c.dst.endpoint],
            Job::Delete(d) => {
                let mut v = vec![d.dst.endpoint.as_str()];
                v.extend(d.src.as_ref().map(|s| s.endpoint.as_str()));
                v
            }
            Job::Control(ControlJob::Migrate(m)) => vec![&m.spec.src, &m.spec.dst],
            Job::Control(ControlJob::Bucket(b)) => vec![&b.0.src, &b.0.dst],
            Job::Control(ControlJob::List(l)) => vec![&l.scope.0.src, &l.scope.0.dst],
            Job::Batch(b) => vec![&b.scope.0.src, &b.scope.0.dst],
            Job::Versions(v) => vec![&v.scope.0.src, &v.scope.0.dst],
            Job::Control(ControlJob::Verify(v)) => vec![&v.spec.src, &v.spec.dst],
        }
    }

    fn check(kind: JobKind, payload: &[u8]) -> Result<(), TestCaseError> {
        match Job::parse(kind, payload, configured) {
            Ok(job) => {
                for e in endpoints_of(&job) {
                    prop_assert!(configured(e), "job names unconfigured endpoint {e:?}");
                }
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_are_refused_with_a_reason(
            kind in 0..JobKind::ALL.len(),
            payload in prop::collection::vec(any::<u8>(), 0..512),
        ) {
            check(JobKind::ALL[kind], &payload)?;
        }

        #[test]
        fn json_shaped_like_jobs_is_a_job_or_a_reason(kind in 0..JobKind::ALL.len(), v in json()) {
            let payload = serde_json::to_vec(&v).unwrap_or_default();
            check(JobKind::ALL[kind], &payload)?;
        }
    }
}
