//! Wire JSON → validated [`Job`]: shape, field values, key and bucket
//! rules, and that every endpoint named exists in this agent's config.

use super::*;

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
                    migration: check.migration(w.migration)?,
                    dry_run: w.dry_run,
                    sequencer: check.optional("sequencer", w.sequencer)?,
                    skip_if_source_missing: w.skip_if_source_missing,
                    listed_size: w.listed_size,
                    listed_etag: check.optional("listed_etag", w.listed_etag)?,
                    // The worker clears it on redeliveries.
                    skip_destination_head: w.dst_bucket_new,
                    attempted_since_ms: w.attempted_since_ms,
                };
                Ok(Job::Copy(job))
            }
            JobKind::Delete => {
                let w: s3rf_wire::DeleteJob = serde_json::from_slice(payload).map_err(malformed)?;
                let src = match w.src {
                    Some(s) => Some(check.object(s.endpoint, s.bucket, s.key, "src")?),
                    None => None,
                };
                if w.if_source_absent && src.is_none() {
                    return Err(check.invalid("if_source_absent", "needs src to compare against"));
                }
                let job = DeleteJob {
                    dst: check.object(w.dst.endpoint, w.dst.bucket, w.dst.key, "dst")?,
                    src,
                    sequencer: check.optional("sequencer", w.sequencer)?,
                    migration: check.migration(w.migration)?,
                    if_source_absent: w.if_source_absent,
                    dry_run: w.dry_run,
                };
                Ok(Job::Delete(job))
            }
            JobKind::Migrate => {
                let w: s3rf_wire::MigrateJob =
                    serde_json::from_slice(payload).map_err(malformed)?;
                check.endpoint(&w.src)?;
                check.endpoint(&w.dst)?;
                if let Some(id) = &w.id {
                    crate::migration::validate_id(id)
                        .map_err(|e| check.invalid("id", e.to_string()))?;
                }
                crate::migration::select_buckets(&[], Some(&[]), &w.exclude_buckets, &w.bucket_map)
                    .map_err(|e| check.invalid("exclude_buckets", e.to_string()))?;
                // Every mapping is checked here, before the spec is stored:
                // a spec refused later would stay "starting" for ever.
                for (src, dst) in &w.bucket_map {
                    check.bucket(src, "bucket_map")?;
                    check.bucket(dst, "bucket_map")?;
                }
                if let Some(buckets) = &w.buckets {
                    for b in buckets {
                        check.bucket(b, "buckets")?;
                    }
                }
                Ok(Job::Migrate(MigrateJob { spec: w }))
            }
            JobKind::Bucket => {
                let w: s3rf_wire::BucketJob = serde_json::from_slice(payload).map_err(malformed)?;
                Ok(Job::Bucket(check.scope(w)?))
            }
            JobKind::List => {
                let w: s3rf_wire::ListJob = serde_json::from_slice(payload).map_err(malformed)?;
                let side = match w.side {
                    s3rf_wire::ListSide::Source => crate::migration::Side::Source,
                    s3rf_wire::ListSide::Destination => crate::migration::Side::Destination,
                };
                let scope = check.scope(w.scope)?;
                let prefix = match w.prefix {
                    None => None,
                    Some(p) => {
                        let under = scope.0.prefix.as_deref().unwrap_or("");
                        if !p.starts_with(under) {
                            return Err(check.invalid(
                                "prefix",
                                format!("{p:?} is not under the scope's prefix {under:?}"),
                            ));
                        }
                        if p.len() > MAX_KEY_BYTES {
                            return Err(check.invalid(
                                "prefix",
                                format!(
                                    "{} bytes is longer than S3's 1024-byte key limit",
                                    p.len()
                                ),
                            ));
                        }
                        Some(p)
                    }
                };
                if w.split > MAX_LIST_SPLIT {
                    return Err(check.invalid(
                        "split",
                        format!(
                            "{} is more than the limit of {MAX_LIST_SPLIT} levels",
                            w.split
                        ),
                    ));
                }
                Ok(Job::List(ListJob {
                    scope,
                    side,
                    page: w.page,
                    continuation_token: w.continuation_token,
                    prefix,
                    split: w.split,
                }))
            }
            JobKind::Batch => {
                let w: s3rf_wire::BatchJob = serde_json::from_slice(payload).map_err(malformed)?;
                let scope = check.scope(w.scope)?;
                if w.objects.is_empty() || w.objects.len() > MAX_BATCH_OBJECTS {
                    return Err(check.invalid(
                        "objects",
                        format!(
                            "{} objects; a batch carries 1 to {MAX_BATCH_OBJECTS}",
                            w.objects.len()
                        ),
                    ));
                }
                let mut seen = std::collections::HashSet::with_capacity(w.objects.len());
                let mut objects = Vec::with_capacity(w.objects.len());
                for o in w.objects {
                    check.key(&o.key, "objects.key")?;
                    if !seen.insert(o.key.clone()) {
                        return Err(check.invalid(
                            "objects.key",
                            format!("{:?} appears twice; list each object once", o.key),
                        ));
                    }
                    objects.push(BatchObject {
                        key: o.key,
                        size: o.size,
                        etag: check.optional("objects.etag", o.etag)?,
                    });
                }
                Ok(Job::Batch(BatchJob { scope, objects }))
            }
        }
    }

    /// The migration this job belongs to.
    pub fn migration(&self) -> Option<&str> {
        match self {
            Job::Copy(c) => c.migration.as_deref(),
            Job::Delete(d) => d.migration.as_deref(),
            Job::Migrate(m) => m.spec.id.as_deref(),
            Job::Bucket(s) => Some(&s.0.migration),
            Job::List(l) => Some(&l.scope.0.migration),
            Job::Batch(b) => Some(&b.scope.0.migration),
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

    fn bucket(&self, bucket: &str, field: &'static str) -> Result<(), JobError> {
        if bucket.is_empty() || bucket.len() > 255 || bucket.contains('/') {
            return Err(self.invalid(
                field,
                format!("{bucket:?} is not a bucket name (1-255 characters, no '/')"),
            ));
        }
        Ok(())
    }

    fn migration(&self, id: Option<String>) -> Result<Option<String>, JobError> {
        if let Some(id) = &id {
            crate::migration::validate_id(id)
                .map_err(|e| self.invalid("migration", e.to_string()))?;
        }
        Ok(id)
    }

    fn scope(&self, w: s3rf_wire::MigrationScope) -> Result<Scope, JobError> {
        self.endpoint(&w.src)?;
        self.endpoint(&w.dst)?;
        crate::migration::validate_id(&w.migration)
            .map_err(|e| self.invalid("migration", e.to_string()))?;
        self.bucket(&w.bucket, "bucket")?;
        self.bucket(&w.dst_bucket, "dst_bucket")?;
        Ok(Scope(w))
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
        self.bucket(&bucket, bucket_field)?;
        self.key(&key, key_field)?;
        Ok(ObjectRef {
            endpoint,
            bucket,
            key,
        })
    }

    fn key(&self, key: &str, field: &'static str) -> Result<(), JobError> {
        if key.is_empty() {
            return Err(self.invalid(field, "must not be empty"));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(self.invalid(
                field,
                format!("{} bytes is longer than S3's 1024-byte limit", key.len()),
            ));
        }
        Ok(())
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
        assert!(alone.skip_destination_head);
        assert_eq!(batch.copy_job(obj, 2), alone.clone().for_delivery(2));
        let again = alone.clone().for_delivery(3);
        assert!(!again.skip_destination_head);
        assert_eq!(
            again,
            CopyJob {
                skip_destination_head: false,
                ..alone.clone()
            }
        );
        assert_eq!(alone.dst.key, "d/k");
        assert_eq!(alone.dst.bucket, "y");
    }
}

/// Property tests: whatever arrives on a job subject, parsing returns a job
/// or a one-line reason, and a job only ever names configured endpoints.
#[cfg(test)]
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
            Job::Migrate(m) => vec![&m.spec.src, &m.spec.dst],
            Job::Bucket(b) => vec![&b.0.src, &b.0.dst],
            Job::List(l) => vec![&l.scope.0.src, &l.scope.0.dst],
            Job::Batch(b) => vec![&b.scope.0.src, &b.scope.0.dst],
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
