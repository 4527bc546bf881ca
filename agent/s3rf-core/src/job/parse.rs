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
                    origin: check.origin(w.migration, w.sequencer, w.skip_if_source_missing)?,
                    mode: Mode::from_dry_run(w.dry_run),
                    hints: Hints {
                        size: w.listed_size,
                        etag: check.optional("listed_etag", w.listed_etag)?,
                        // The worker clears it on redeliveries.
                        destination_empty: w.dst_bucket_new,
                    },
                    attempted_since_ms: w.attempted_since_ms,
                };
                if job.hints.destination_empty && job.origin.migration().is_none() {
                    return Err(check.invalid(
                        "dst_bucket_new",
                        "only a migration's listing sets it; drop it or set `migration`",
                    ));
                }
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
                    // The bridge's deletes say `if_source_absent` (S3 may
                    // give no sequencer): outside a migration, that makes
                    // a delete event sync.
                    origin: {
                        let event = w.if_source_absent && w.migration.is_none();
                        check.origin(w.migration, w.sequencer, event)?
                    },
                    if_source_absent: w.if_source_absent,
                    mode: Mode::from_dry_run(w.dry_run),
                };
                Ok(Job::Delete(job))
            }
            JobKind::Migrate => {
                let w: s3rf_wire::MigrateJob =
                    serde_json::from_slice(payload).map_err(malformed)?;
                check.selection(Selection {
                    src: &w.src,
                    dst: &w.dst,
                    id: w.id.as_deref(),
                    buckets: w.buckets.as_deref(),
                    exclude: &w.exclude_buckets,
                    bucket_map: &w.bucket_map,
                })?;
                if let Some(every) = &w.every {
                    crate::schedule::parse_every(every)
                        .map_err(|e| check.invalid("every", e.to_string()))?;
                    if let Some(id) = &w.id {
                        crate::schedule::check_base(id)
                            .map_err(|e| check.invalid("id", e.to_string()))?;
                    }
                }
                if let Some(rate) = &w.rate {
                    crate::rate::validate(rate)
                        .map_err(|e| check.invalid("rate", e.to_string()))?;
                }
                if w.versions && w.delete_extraneous {
                    return Err(check.invalid(
                        "versions",
                        "a versioned migration replays the source's delete markers and cannot \
                         also delete extraneous keys; drop delete_extraneous",
                    ));
                }
                Ok(Job::Control(ControlJob::Migrate(MigrateJob { spec: w })))
            }
            JobKind::Verify => {
                let w: s3rf_wire::VerifyJob = serde_json::from_slice(payload).map_err(malformed)?;
                check.selection(Selection {
                    src: &w.src,
                    dst: &w.dst,
                    id: w.id.as_deref(),
                    buckets: w.buckets.as_deref(),
                    exclude: &w.exclude_buckets,
                    bucket_map: &w.bucket_map,
                })?;
                if let Some(p) = &w.page {
                    if w.id.is_none() {
                        return Err(check.invalid("page", "a page job names its verification's id"));
                    }
                    check.bucket(&p.bucket, "page.bucket")?;
                    check.bucket(&p.dst_bucket, "page.dst_bucket")?;
                }
                Ok(Job::Control(ControlJob::Verify(VerifyJob { spec: w })))
            }
            JobKind::Bucket => {
                let w: s3rf_wire::BucketJob = serde_json::from_slice(payload).map_err(malformed)?;
                Ok(Job::Control(ControlJob::Bucket(check.scope(w)?)))
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
                let version_marker = match w.version_marker {
                    Some(_) if !scope.0.versions => {
                        return Err(check.invalid(
                            "version_marker",
                            "only a versioned migration's listing has one",
                        ));
                    }
                    Some(m) => {
                        check.key(&m.key, "version_marker.key")?;
                        let id = check
                            .optional("version_marker.version_id", Some(m.version_id))?
                            .unwrap_or_default();
                        Some((m.key, id))
                    }
                    None => None,
                };
                Ok(Job::Control(ControlJob::List(ListJob {
                    scope,
                    side,
                    page: w.page,
                    continuation_token: w.continuation_token,
                    version_marker,
                    prefix,
                    split: w.split,
                })))
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
            JobKind::Versions => {
                let w: s3rf_wire::VersionsJob =
                    serde_json::from_slice(payload).map_err(malformed)?;
                let scope = check.scope(w.scope)?;
                if !scope.0.versions {
                    return Err(check.invalid(
                        "scope.versions",
                        "a versions job belongs to a versioned migration; set it",
                    ));
                }
                check.key(&w.key, "key")?;
                let versions = match w.versions {
                    None => None,
                    Some(list) => {
                        if list.is_empty() || list.len() > MAX_JOB_VERSIONS {
                            return Err(check.invalid(
                                "versions",
                                format!(
                                    "{} versions; a job carries 1 to {MAX_JOB_VERSIONS} (or none: it lists them)",
                                    list.len()
                                ),
                            ));
                        }
                        let mut seen = std::collections::HashSet::with_capacity(list.len());
                        let mut out = Vec::with_capacity(list.len());
                        for v in list {
                            let id = check
                                .optional("versions.version_id", Some(v.version_id))?
                                .unwrap_or_default();
                            if !seen.insert(id.clone()) {
                                return Err(check.invalid(
                                    "versions.version_id",
                                    format!("{id:?} appears twice; list each version once"),
                                ));
                            }
                            out.push(Version {
                                id,
                                delete_marker: v.delete_marker,
                                size: v.size,
                                etag: check.optional("versions.etag", v.etag)?,
                            });
                        }
                        Some(out)
                    }
                };
                Ok(Job::Versions(VersionsJob {
                    scope,
                    key: w.key,
                    versions,
                }))
            }
        }
    }

    /// The migration this job belongs to.
    pub fn migration(&self) -> Option<&str> {
        match self {
            Job::Copy(c) => c.origin.migration(),
            Job::Delete(d) => d.origin.migration(),
            Job::Control(ControlJob::Migrate(m)) => m.spec.id.as_deref(),
            Job::Control(ControlJob::Bucket(s)) => Some(&s.0.migration),
            Job::Control(ControlJob::List(l)) => Some(&l.scope.0.migration),
            Job::Batch(b) => Some(&b.scope.0.migration),
            Job::Versions(v) => Some(&v.scope.0.migration),
            Job::Control(ControlJob::Verify(_)) => None,
        }
    }
}

/// What a migrate or verify job selects: endpoints, id and buckets.
struct Selection<'a> {
    src: &'a str,
    dst: &'a str,
    id: Option<&'a str>,
    buckets: Option<&'a [String]>,
    exclude: &'a [String],
    bucket_map: &'a std::collections::BTreeMap<String, String>,
}

struct Checker<'a, F> {
    kind: JobKind,
    endpoint_exists: &'a F,
}

impl<F: Fn(&str) -> bool> Checker<'_, F> {
    /// Checks a selection before anything is stored: every mapping and
    /// name now, since a spec refused later would stay "starting" for ever.
    fn selection(&self, s: Selection<'_>) -> Result<(), JobError> {
        self.endpoint(s.src)?;
        self.endpoint(s.dst)?;
        if let Some(id) = s.id {
            crate::migration::validate_id(id).map_err(|e| self.invalid("id", e.to_string()))?;
        }
        crate::migration::select_buckets(&[], Some(&[]), s.exclude, s.bucket_map)
            .map_err(|e| self.invalid("exclude_buckets", e.to_string()))?;
        for (src, dst) in s.bucket_map {
            self.bucket(src, "bucket_map")?;
            self.bucket(dst, "bucket_map")?;
        }
        for b in s.buckets.into_iter().flatten() {
            self.bucket(b, "buckets")?;
        }
        Ok(())
    }

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

    /// One origin from the wire's `migration`, `sequencer` and
    /// `skip_if_source_missing`: a job comes from a migration or from an
    /// event, not both.
    fn origin(
        &self,
        migration: Option<String>,
        sequencer: Option<String>,
        event: bool,
    ) -> Result<Origin, JobError> {
        let migration = self.migration(migration)?;
        let sequencer = self.optional("sequencer", sequencer)?;
        let event = event || sequencer.is_some();
        match (migration, event) {
            (Some(_), true) => Err(self.invalid(
                "migration",
                "a job comes from a migration or from an S3 event, not both; \
                 drop `sequencer` and `skip_if_source_missing`, or `migration`",
            )),
            (Some(id), false) => Ok(Origin::Migration(id)),
            (None, true) => Ok(Origin::Event { sequencer }),
            (None, false) => Ok(Origin::Direct),
        }
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
