//! Multipart copies: one upload whose parts are copied by the store
//! (UploadPartCopy) or streamed (ranged GET into UploadPart, checked by MD5)
//! with at most `part_concurrency` in flight, then completed and checked, or
//! aborted: never left behind.

use super::*;

impl Executor {
    pub(super) async fn multipart(
        &self,
        job: &CopyJob,
        src: &Source,
        plan: &CopyPlan,
        cancel: &CancellationToken,
    ) -> Result<(), ExecError> {
        let tags = self.tags_for(job, plan).await?;
        let store = self.store(&job.dst)?;
        let t = target(&job.dst);
        self.abort_stale_uploads(store, &job.dst).await;
        let a = &src.attrs;
        let mut req = store
            .client
            .create_multipart_upload()
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
        let created = req
            .send()
            .await
            .map_err(|e| classify("CreateMultipartUpload", &t, e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| ExecError::Internal {
                op: "CreateMultipartUpload",
                target: t.clone(),
                detail: "the store returned no upload id".to_owned(),
            })?
            .to_owned();
        debug!(upload_id, "multipart upload created");
        let uploaded = tokio::select! {
            r = self.upload_parts(job, src, plan, &upload_id) => r,
            () = cancel.cancelled() => Err(ExecError::Cancelled),
        };
        let result = match uploaded {
            Ok((parts, expected)) => tokio::select! {
                r = self.complete(store, job, src, &upload_id, parts, expected.as_deref()) => r,
                () = cancel.cancelled() => Err(ExecError::Cancelled),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            debug!(error = %e, upload_id, "aborting multipart upload");
            let abort = store
                .client
                .abort_multipart_upload()
                .bucket(&job.dst.bucket)
                .key(&job.dst.key)
                .upload_id(&upload_id)
                .send()
                .await;
            if let Err(ae) = abort {
                warn!(
                    upload_id,
                    error = %classify("AbortMultipartUpload", &t, ae),
                    "could not abort the multipart upload; a bucket lifecycle rule AbortIncompleteMultipartUpload cleans it up"
                );
            }
        } else {
            self.verify_tags(&job.dst, &tags).await;
            // A CreateMultipartUpload whose response was lost made the SDK
            // create a second upload; the first is left for no one.
            self.abort_stale_uploads(store, &job.dst).await;
        }
        result
    }

    /// Uploads every part; returns them in order with the ETag the
    /// completed object must have (streamed parts only: the MD5 of their
    /// MD5s). A streamed copy of a source whose ETag is its MD5 hashes the
    /// parts in order too, and fails before completion if the bytes read
    /// were not the source's.
    async fn upload_parts(
        &self,
        job: &CopyJob,
        src: &Source,
        plan: &CopyPlan,
        upload_id: &str,
    ) -> Result<(Vec<CompletedPart>, Option<String>), ExecError> {
        let parts = plan.method.parts(src.facts.size);
        let count = i32::try_from(parts.len()).unwrap_or(i32::MAX);
        let server_side = matches!(plan.method, Method::ServerSideMultipart { .. });
        let whole = (!server_side && src.md5.is_some()).then(OrderedMd5::default);
        let whole = whole.as_ref();
        if !server_side && src.md5.is_none() {
            self.note_unverified_read(self.store(&job.src)?, src);
        }
        // Streamed parts take their buffer permits in part order (see
        // `OrderedMd5`): part n waits for part n-1 to hold its permit.
        let turn = tokio::sync::watch::Sender::new(1i32);
        let turn = &turn;
        let mut done: Vec<(CompletedPart, Option<Md5>)> = futures::stream::iter(parts)
            .map(|part| async move {
                if server_side {
                    let done = self.copy_part(job, src, upload_id, &part).await?;
                    return Ok((done, None));
                }
                let permit = self.part_permit(&part, turn).await?;
                let done = self.stream_part(job, src, upload_id, &part, whole).await;
                drop(permit);
                done
            })
            .buffer_unordered(self.copy.part_concurrency)
            .try_collect()
            .await?;
        done.sort_by_key(|(p, _)| p.part_number());
        if let (Some(whole), Some(want)) = (whole, src.md5) {
            let got = whole.finish(count).ok_or_else(|| ExecError::Internal {
                op: "UploadPart",
                target: target(&job.src),
                detail: "not every part was hashed".to_owned(),
            })?;
            if got != want {
                return Err(ExecError::Corrupt {
                    stage: "read from the source",
                    target: target(&job.src),
                    expected: integrity::hex(&want),
                    got: integrity::hex(&got),
                });
            }
        }
        let digests: Option<Vec<Md5>> = done.iter().map(|(_, d)| *d).collect();
        let expected = digests.map(|d| integrity::multipart_etag(&d));
        Ok((done.into_iter().map(|(p, _)| p).collect(), expected))
    }

    /// The buffer permit of a streamed part, taken after the part before
    /// it took its own.
    async fn part_permit(
        &self,
        part: &Part,
        turn: &tokio::sync::watch::Sender<i32>,
    ) -> Result<OwnedSemaphorePermit, ExecError> {
        let mut rx = turn.subscribe();
        rx.wait_for(|n| *n >= part.number)
            .await
            .map_err(|_| ExecError::Cancelled)?;
        let permit = self.buffer_permit(part.len()).await;
        turn.send_modify(|n| *n = part.number + 1);
        permit
    }

    /// Completes the upload and checks its ETag against `expected`. A
    /// completion whose response was lost (the SDK's retry then gets an
    /// error for an upload that no longer exists) is confirmed by a HEAD.
    async fn complete(
        &self,
        store: &Store,
        job: &CopyJob,
        src: &Source,
        upload_id: &str,
        parts: Vec<CompletedPart>,
        expected: Option<&str>,
    ) -> Result<(), ExecError> {
        let res = store
            .client
            .complete_multipart_upload()
            .bucket(&job.dst.bucket)
            .key(&job.dst.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("CompleteMultipartUpload", &target(&job.dst), e));
        let out = match res {
            Ok(out) => out,
            Err(e) => {
                // The completion may have happened even though its response
                // was lost: if the object is there, it is done.
                let now = self.head_destination(store, &job.dst).await;
                let confirmed = matches!(&now, Ok(Some(now))
                    if expected.is_some_and(|want| now.etag.as_deref() == Some(want))
                        || plan::identical(&src.facts, now));
                if confirmed {
                    info!(upload_id, error = %e, "completion confirmed by HEAD after a failed response");
                    return Ok(());
                }
                return Err(e);
            }
        };
        let Some(expected) = expected else {
            return Ok(());
        };
        let ctx = written_context(store, &job.dst, out.server_side_encryption(), false);
        self.check_stored(store, &job.dst, out.e_tag(), expected, ctx)
            .await
    }

    async fn stream_part(
        &self,
        job: &CopyJob,
        src: &Source,
        upload_id: &str,
        part: &Part,
        whole: Option<&OrderedMd5>,
    ) -> Result<(CompletedPart, Option<Md5>), ExecError> {
        let bytes = self.get_bytes(job, src, Some(part)).await?;
        let store = self.store(&job.dst)?;
        let verify = store.config.verify == Verify::Auto;
        let digest = match verify {
            true => Some(integrity::md5_of(&bytes).await),
            false => None,
        };
        let req = store
            .client
            .upload_part()
            .bucket(&job.dst.bucket)
            .key(&job.dst.key)
            .upload_id(upload_id)
            .part_number(part.number)
            .set_content_md5(digest.map(|d| integrity::content_md5(&d)))
            .content_length(i64::try_from(bytes.len()).unwrap_or(i64::MAX))
            .body(ByteStream::from(bytes.clone()));
        let upload = async {
            if store.config.sign_payload {
                req.send().await
            } else {
                req.customize().disable_payload_signing().send().await
            }
            .map_err(|e| classify("UploadPart", &target(&job.dst), e))
        };
        let feed = async {
            if let Some(whole) = whole {
                whole.feed(part.number, bytes).await;
            }
        };
        let (out, ()) = tokio::join!(upload, feed);
        let out = out?;
        let ctx = written_context(
            store,
            &job.dst,
            out.server_side_encryption(),
            out.sse_customer_algorithm().is_some(),
        );
        if let Some(digest) = &digest
            && let Written::Mismatch { expected, got } =
                integrity::check_written(out.e_tag(), &integrity::hex(digest), ctx)
        {
            return Err(ExecError::Corrupt {
                stage: "stored at the destination",
                target: target(&job.dst),
                expected: format!("{expected} (part {})", part.number),
                got,
            });
        }
        let part = CompletedPart::builder()
            .part_number(part.number)
            .set_e_tag(out.e_tag().map(str::to_owned))
            .set_checksum_crc32(out.checksum_crc32().map(str::to_owned))
            .set_checksum_crc32_c(out.checksum_crc32_c().map(str::to_owned))
            .set_checksum_crc64_nvme(out.checksum_crc64_nvme().map(str::to_owned))
            .set_checksum_sha256(out.checksum_sha256().map(str::to_owned))
            .build();
        Ok((part, digest))
    }

    async fn copy_part(
        &self,
        job: &CopyJob,
        src: &Source,
        upload_id: &str,
        part: &Part,
    ) -> Result<CompletedPart, ExecError> {
        let store = self.store(&job.dst)?;
        let mut req = store
            .client
            .upload_part_copy()
            .bucket(&job.dst.bucket)
            .key(&job.dst.key)
            .upload_id(upload_id)
            .part_number(part.number)
            .copy_source(copy_source(
                &job.src.bucket,
                &job.src.key,
                job.src_version.as_deref(),
            ))
            .copy_source_range(part.http_range());
        if let Some(etag) = &src.facts.etag {
            req = req.copy_source_if_match(format!("\"{etag}\""));
        }
        let out = req
            .send()
            .await
            .map_err(|e| classify("UploadPartCopy", &target(&job.dst), e))?;
        let result = out.copy_part_result();
        Ok(CompletedPart::builder()
            .part_number(part.number)
            .set_e_tag(result.and_then(|r| r.e_tag()).map(str::to_owned))
            .set_checksum_crc32(result.and_then(|r| r.checksum_crc32()).map(str::to_owned))
            .set_checksum_crc32_c(result.and_then(|r| r.checksum_crc32_c()).map(str::to_owned))
            .set_checksum_crc64_nvme(
                result
                    .and_then(|r| r.checksum_crc64_nvme())
                    .map(str::to_owned),
            )
            .set_checksum_sha256(result.and_then(|r| r.checksum_sha256()).map(str::to_owned))
            .build())
    }

    /// Aborts uploads left for this exact key by an agent that died mid-copy.
    /// s3rf owns in-progress uploads of the keys it writes.
    async fn abort_stale_uploads(&self, store: &Store, dst: &ObjectRef) {
        let listed = store
            .client
            .list_multipart_uploads()
            .bucket(&dst.bucket)
            .prefix(&dst.key)
            .send()
            .await;
        let uploads = match listed {
            Ok(out) => out.uploads.unwrap_or_default(),
            Err(e) => {
                debug!(error = %classify("ListMultipartUploads", &target(dst), e), "cannot list in-progress uploads; skipping stale-upload cleanup");
                return;
            }
        };
        for upload in uploads {
            let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                continue;
            };
            if key != dst.key {
                continue;
            }
            let res = store
                .client
                .abort_multipart_upload()
                .bucket(&dst.bucket)
                .key(key)
                .upload_id(id)
                .send()
                .await;
            match res {
                Ok(_) => info!(
                    upload_id = id,
                    "aborted a stale multipart upload left by an earlier attempt"
                ),
                Err(e) => {
                    debug!(upload_id = id, error = %classify("AbortMultipartUpload", &target(dst), e), "could not abort stale upload")
                }
            }
        }
    }
}
