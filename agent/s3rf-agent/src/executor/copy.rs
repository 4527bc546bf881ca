//! Copy orchestration: the copy-as-listed shortcut, HEADs, the filter
//! verdict, the plan, and the method it picks; server-side `CopyObject`;
//! the destination's HEAD, metadata and tags.

use super::*;

impl Executor {
    // ----- copy -------------------------------------------------------------

    pub(super) async fn copy(
        &self,
        job: &CopyJob,
        cancel: &CancellationToken,
    ) -> Result<Outcome, ExecError> {
        let src_store = self.store(&job.src)?;
        let dst_store = self.store(&job.dst)?;
        let same_endpoint = job.src.endpoint == job.dst.endpoint;
        let facts = plan::ReadFacts {
            same_endpoint,
            listed_size: job.hints.size,
            listed_multipart_etag: job
                .hints
                .etag
                .as_deref()
                .is_some_and(plan::is_multipart_etag),
            destination_empty: job.hints.destination_empty,
            dry_run: job.mode.is_dry_run(),
            express: is_express(dst_store, &job.dst.bucket)
                || plan::is_directory_bucket(&job.src.bucket),
            filters: !self.filters.chain().is_empty(),
        };
        let read = plan::plan_read(&facts, &self.copy);
        // A pinned version's copy records its version id: metadata the
        // server cannot add to a copy as listed.
        if read == Read::AsListed
            && job.src_version.is_none()
            && let Some(outcome) = self.copy_as_listed(dst_store, job).await?
        {
            return Ok(outcome);
        }
        // A small object across endpoints is read at once: its GET answers
        // what the HEAD would have, one request instead of two.
        let read = match (read, job.hints.size) {
            (Read::GetWhole, Some(size)) => self.get_source(src_store, job, size).await,
            _ => self.head_source(src_store, job).await.map(|s| (s, None)),
        };
        let (src, mut prefetched) = match read {
            Err(ExecError::NoSuchKey(_)) if job.skips_missing_source() => {
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
        let dst = if job.hints.destination_empty {
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
        if job.mode.is_dry_run() {
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

    /// [`Read::AsListed`] (see [`plan::plan_read`] for when): one
    /// CopyObject of the object as listed,
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
    pub(super) async fn copy_as_listed(
        &self,
        store: &Store,
        job: &CopyJob,
    ) -> Result<Option<Outcome>, ExecError> {
        let Some(size) = job.hints.size else {
            return Ok(None);
        };
        let etag = job.hints.etag.as_deref();
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

    /// After a 404 on an object: is it the key or the whole bucket?
    pub(super) async fn which_missing(&self, store: &Store, obj: &ObjectRef) -> ExecError {
        let bucket = store.client.head_bucket().bucket(&obj.bucket).send().await;
        match bucket {
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                ExecError::NoSuchBucket(target(obj))
            }
            _ => ExecError::NoSuchKey(target(obj)),
        }
    }

    pub(super) async fn head_destination(
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

    /// The metadata the destination gets, with s3rf's own records set or
    /// cleared: the source ETag where the plan records it, and the source
    /// version of a pinned version's copy.
    pub(super) fn destination_metadata(
        &self,
        job: &CopyJob,
        src: &Source,
        plan: &CopyPlan,
    ) -> HashMap<String, String> {
        let mut metadata = src.attrs.metadata.clone();
        metadata.remove(META_SOURCE_ETAG);
        metadata.remove(META_SOURCE_VERSION);
        if plan.record_source_etag
            && let Some(etag) = &src.facts.etag
        {
            metadata.insert(META_SOURCE_ETAG.to_owned(), etag.clone());
        }
        if let Some(version) = &job.src_version {
            metadata.insert(META_SOURCE_VERSION.to_owned(), version.clone());
        }
        metadata
    }

    /// Whether a server-side copy must replace the metadata rather than
    /// copy it: s3rf's records change.
    fn replaces_metadata(job: &CopyJob, src: &Source, plan: &CopyPlan) -> bool {
        plan.record_source_etag
            || job.src_version.is_some()
            || src.attrs.metadata.contains_key(META_SOURCE_ETAG)
            || src.attrs.metadata.contains_key(META_SOURCE_VERSION)
    }

    /// Checks that tags we sent arrived; a store without tagging drops them.
    pub(super) async fn verify_tags(&self, dst: &ObjectRef, sent: &[(String, String)]) {
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

    pub(super) async fn server_side_copy(
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
        req = if Self::replaces_metadata(job, src, plan) {
            let req = req.metadata_directive(MetadataDirective::Replace);
            with_attributes!(req, self.destination_metadata(job, src, plan), &src.attrs)
        } else {
            req.metadata_directive(MetadataDirective::Copy)
        };
        req.send()
            .await
            .map_err(|e| classify("CopyObject", &target(&job.dst), e))?;
        Ok(())
    }

    /// The tags to write: the source's, or none for a directory bucket (logged).
    pub(super) async fn tags_for(
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
}
