//! Multipart copies: one upload whose parts are copied by the store
//! (UploadPartCopy) or streamed (ranged GET into UploadPart, checked by MD5)
//! with at most `part_concurrency` in flight, then completed and checked.
//!
//! With resume records ([`crate::resume`]) each finished part is recorded,
//! an upload is kept on a retryable failure, and a redelivery uploads only
//! the parts that are missing. Otherwise (or on a failure a retry cannot
//! mend) the upload is aborted: never left behind.

use std::collections::{BTreeMap, HashSet};

use super::uploads::keeps_upload;
use super::*;
use crate::resume::{self, PartDone, Record, Recorder, Shape};

/// Where the parts of a copy start: parts an earlier delivery finished,
/// and the MD5 state of the source bytes of parts `1..=n`.
#[derive(Debug, Default)]
pub(super) struct Start {
    pub(super) done: BTreeMap<i32, PartDone>,
    pub(super) hashed: Option<(i32, String)>,
}

/// The upload streamed parts go into: its id, the whole-object MD5 their
/// bytes feed (when checked), the record they are written to, and the gate
/// their GETs pass (see [`reads_in_flight`]).
#[derive(Clone, Copy)]
struct Sink<'a> {
    upload_id: &'a str,
    whole: Option<&'a OrderedMd5>,
    recorder: Option<&'a Recorder>,
    reading: &'a Semaphore,
}

/// How many of a streamed copy's `part_concurrency` parts may be reading
/// from the source at once: half of them, rounded up. A part is read
/// whole, then sent; with every part allowed to read at once, parts that
/// start together share the source link, finish reading together and then
/// share the destination link, so each link idles while the other works
/// (half the bandwidth across two capped links: 63 MB/s of 125 at rtt
/// 20 ms). Reading half keeps one half sending while the other reads.
fn reads_in_flight(part_concurrency: usize) -> usize {
    part_concurrency.div_ceil(2).max(1)
}

/// An upload a redelivery picks up.
pub(super) struct Resumed {
    pub(super) record: Record,
    pub(super) start: Start,
}

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
        let server_side = matches!(plan.method, Method::ServerSideMultipart { .. });
        let hashing = !server_side && src.md5.is_some();
        let shape = shape_of(plan, src.facts.size);
        // Records need the source ETag: without one a changed source could
        // not be told apart.
        let records = match (&self.uploads, &src.facts.etag, shape) {
            (Some(u), Some(etag), Some(shape)) => Some((
                u,
                resume::key_of(&job.dst, &job.src, job.src_version.as_deref(), etag),
                shape,
            )),
            _ => None,
        };
        let resumed = match &records {
            Some((u, key, shape)) => {
                self.find_resumable(store, job, u, key, shape, hashing)
                    .await?
            }
            None => None,
        };
        let mut keep: HashSet<String> =
            resumed.iter().map(|r| r.record.upload_id.clone()).collect();
        if let Some((u, key, _)) = &records {
            keep.extend(self.live_uploads(u, &job.dst, key).await);
        }
        self.abort_stale_uploads(store, &job.dst, &keep).await;
        let (upload_id, start, record) = match resumed {
            Some(r) => (r.record.upload_id.clone(), r.start, Some(r.record)),
            None => {
                let id = self.create_upload(job, src, plan, &tags).await?;
                let record = records.as_ref().map(|(_, _, shape)| Record {
                    upload_id: id.clone(),
                    dst: [
                        job.dst.endpoint.clone(),
                        job.dst.bucket.clone(),
                        job.dst.key.clone(),
                    ],
                    src: [
                        job.src.endpoint.clone(),
                        job.src.bucket.clone(),
                        job.src.key.clone(),
                    ],
                    src_version: job.src_version.clone(),
                    src_etag: src.facts.etag.clone().unwrap_or_default(),
                    shape: *shape,
                    started_ms: crate::clock::now_ms_signed(),
                    updated_ms: 0,
                    parts_done: 0,
                    hashed_through: 0,
                    md5_state: None,
                });
                (id, Start::default(), record)
            }
        };
        let recorder = match (&records, record) {
            (Some((u, key, _)), Some(record)) => {
                Some(u.begin(key.clone(), record, start.done.clone()).await)
            }
            _ => None,
        };
        let uploaded = tokio::select! {
            r = self.upload_parts(job, src, plan, &upload_id, start, recorder.as_ref()) => r,
            () = cancel.cancelled() => Err(ExecError::Cancelled),
        };
        let result = match uploaded {
            Ok((parts, expected)) => tokio::select! {
                r = self.complete(store, job, src, &upload_id, parts, expected.as_deref()) => r,
                () = cancel.cancelled() => Err(ExecError::Cancelled),
            },
            Err(e) => Err(e),
        };
        let kept = match (&result, &recorder) {
            (Err(e), Some(recorder)) if keeps_upload(e) => {
                recorder.flush().await;
                info!(
                    upload_id,
                    error = %e,
                    "multipart upload kept for the next delivery to resume"
                );
                true
            }
            _ => false,
        };
        if kept {
            return result;
        }
        // Done with the record: stop its writer, then remove it.
        let record = recorder.as_ref().and_then(Recorder::record);
        drop(recorder);
        if let Err(e) = &result {
            debug!(error = %e, upload_id, "aborting multipart upload");
            self.abort_upload(store, &job.dst, &upload_id).await;
        }
        if let (Some((u, key, _)), Some(record)) = (&records, record) {
            u.remove(key, &record).await;
        }
        if result.is_ok() {
            self.verify_tags(&job.dst, &tags).await;
            // A CreateMultipartUpload whose response was lost made the SDK
            // create a second upload; the first is left for no one.
            let mut keep = HashSet::new();
            if let Some((u, key, _)) = &records {
                keep.extend(self.live_uploads(u, &job.dst, key).await);
            }
            self.abort_stale_uploads(store, &job.dst, &keep).await;
        }
        result
    }

    async fn create_upload(
        &self,
        job: &CopyJob,
        src: &Source,
        plan: &CopyPlan,
        tags: &[(String, String)],
    ) -> Result<String, ExecError> {
        let store = self.store(&job.dst)?;
        let t = target(&job.dst);
        let req = store
            .client
            .create_multipart_upload()
            .bucket(&job.dst.bucket)
            .key(&job.dst.key);
        let mut req = with_attributes!(req, self.destination_metadata(job, src, plan), &src.attrs);
        if !tags.is_empty() {
            req = req.tagging(tagging(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
        }
        // Streamed parts into a directory bucket carry CRC32Cs; the object
        // gets a full-object CRC32C a later run can compare.
        let streamed = matches!(plan.method, Method::StreamedMultipart { .. });
        if streamed && write_check(store, &job.dst.bucket).crc32c {
            req = req
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .checksum_type(ChecksumType::FullObject);
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
        Ok(upload_id)
    }

    /// Uploads every part not in `start.done`; returns all parts in order
    /// with the ETag the completed object must have (when every part's MD5
    /// is known: the MD5 of their MD5s). A streamed copy of a source whose
    /// ETag is its MD5 hashes the parts in order too (continuing from
    /// `start.hashed`), and fails before completion if the bytes read were
    /// not the source's.
    async fn upload_parts(
        &self,
        job: &CopyJob,
        src: &Source,
        plan: &CopyPlan,
        upload_id: &str,
        start: Start,
        recorder: Option<&Recorder>,
    ) -> Result<(Vec<CompletedPart>, Option<String>), ExecError> {
        let parts = plan.method.parts(src.facts.size);
        let count = i32::try_from(parts.len()).unwrap_or(i32::MAX);
        let server_side = matches!(plan.method, Method::ServerSideMultipart { .. });
        let whole =
            match (&start.hashed, !server_side && src.md5.is_some()) {
                (_, false) => None,
                (None, true) => Some(OrderedMd5::default()),
                (Some((k, state)), true) => Some(OrderedMd5::resume(state, *k).ok_or_else(
                    || ExecError::Internal {
                        op: "UploadPart",
                        target: target(&job.dst),
                        detail: "the resume record's MD5 state is unusable".to_owned(),
                    },
                )?),
            };
        let whole = whole.as_ref();
        if !server_side && src.md5.is_none() {
            self.note_unverified_read(self.store(&job.src)?, src);
        }
        // With the whole-object MD5 on, parts done past the hashed prefix
        // are read again to hash them (`rehash_part`), not sent again.
        let hashed_through = start.hashed.as_ref().map_or(0, |(k, _)| *k);
        let rehash = |n: i32| whole.is_some() && n > hashed_through;
        let mut done: Vec<(CompletedPart, Option<Md5>)> = start
            .done
            .iter()
            .filter(|(n, _)| !rehash(**n))
            .map(|(n, p)| {
                let part = CompletedPart::builder()
                    .part_number(*n)
                    .e_tag(p.etag.clone())
                    .set_checksum_crc32_c(p.crc32c.clone())
                    .build();
                let md5 = p.md5.as_deref().and_then(integrity::parse_plain);
                (part, md5)
            })
            .collect();
        let todo: Vec<(Part, Option<PartDone>)> = parts
            .into_iter()
            .filter_map(|p| match start.done.get(&p.number) {
                None => Some((p, None)),
                Some(d) if rehash(p.number) => Some((p, Some(d.clone()))),
                Some(_) => None,
            })
            .collect();
        // Streamed parts take their buffer permits in part order (see
        // `OrderedMd5`): the n-th part to send waits for the one before it.
        let turn = tokio::sync::watch::Sender::new(0usize);
        let turn = &turn;
        let reading = Semaphore::new(reads_in_flight(self.copy.part_concurrency));
        let reading = &reading;
        let sent: Vec<(CompletedPart, Option<Md5>)> =
            futures::stream::iter(todo.into_iter().enumerate())
                .map(|(i, (part, recorded))| async move {
                    if server_side {
                        let done = self.copy_part(job, src, upload_id, &part).await?;
                        if let Some(r) = recorder {
                            let part_done = PartDone {
                                etag: done.e_tag().unwrap_or_default().to_owned(),
                                md5: None,
                                crc32c: done.checksum_crc32_c().map(str::to_owned),
                            };
                            r.part_done(part.number, part_done, None).await;
                        }
                        return Ok((done, None));
                    }
                    let permit = self.part_permit(i, &part, turn).await?;
                    let sink = Sink {
                        upload_id,
                        whole,
                        recorder,
                        reading,
                    };
                    let done = match recorded {
                        Some(recorded) => self.rehash_part(job, src, &part, &recorded, sink).await,
                        None => self.stream_part(job, src, &part, sink).await,
                    };
                    drop(permit);
                    done
                })
                .buffer_unordered(self.copy.part_concurrency)
                .try_collect()
                .await?;
        done.extend(sent);
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
        index: usize,
        part: &Part,
        turn: &tokio::sync::watch::Sender<usize>,
    ) -> Result<OwnedSemaphorePermit, ExecError> {
        let mut rx = turn.subscribe();
        rx.wait_for(|n| *n >= index)
            .await
            .map_err(|_| ExecError::Cancelled)?;
        let permit = self.buffer_permit(part.len()).await;
        turn.send_modify(|n| *n = index + 1);
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
        part: &Part,
        sink: Sink<'_>,
    ) -> Result<(CompletedPart, Option<Md5>), ExecError> {
        let started = std::time::Instant::now();
        let bytes = self.read_part(job, src, part, sink).await?;
        let read = started.elapsed();
        let sent = self.send_part(job, part, bytes, sink).await;
        debug!(
            part = part.number,
            read_ms = read.as_millis(),
            send_ms = (started.elapsed() - read).as_millis(),
            "part streamed"
        );
        sent
    }

    /// The bytes of `part`, read while holding a place at `sink.reading`.
    async fn read_part(
        &self,
        job: &CopyJob,
        src: &Source,
        part: &Part,
        sink: Sink<'_>,
    ) -> Result<Bytes, ExecError> {
        let _reading = sink
            .reading
            .acquire()
            .await
            .map_err(|_| ExecError::Cancelled)?;
        self.get_bytes(job, src, Some(part)).await
    }

    /// A part an earlier delivery stored, past the hashed prefix of its
    /// record: read again so the whole-object MD5 goes on, not sent again
    /// when its bytes are the ones recorded (their MD5 matches the
    /// record's); sent again when they are not.
    async fn rehash_part(
        &self,
        job: &CopyJob,
        src: &Source,
        part: &Part,
        recorded: &PartDone,
        sink: Sink<'_>,
    ) -> Result<(CompletedPart, Option<Md5>), ExecError> {
        let bytes = self.read_part(job, src, part, sink).await?;
        let digest = integrity::md5_of(&bytes).await;
        let stored = recorded.md5.as_deref().and_then(integrity::parse_plain);
        if stored.is_some_and(|m| m != digest) {
            return self.send_part(job, part, bytes, sink).await;
        }
        let state = match sink.whole {
            Some(whole) => whole.feed(part.number, bytes).await,
            None => None,
        };
        if let Some(r) = sink.recorder {
            r.part_done(part.number, recorded.clone(), state).await;
        }
        let done = CompletedPart::builder()
            .part_number(part.number)
            .e_tag(recorded.etag.clone())
            .set_checksum_crc32_c(recorded.crc32c.clone())
            .build();
        Ok((done, stored.or(Some(digest))))
    }

    /// Uploads the bytes of `part`, checked by the store and by its ETag,
    /// and records it.
    async fn send_part(
        &self,
        job: &CopyJob,
        part: &Part,
        bytes: Bytes,
        sink: Sink<'_>,
    ) -> Result<(CompletedPart, Option<Md5>), ExecError> {
        let Sink {
            upload_id,
            whole,
            recorder,
            ..
        } = sink;
        let store = self.store(&job.dst)?;
        let WriteCheck {
            md5: verify,
            crc32c,
        } = write_check(store, &job.dst.bucket);
        let digest = match verify {
            true => Some(integrity::md5_of(&bytes).await),
            false => None,
        };
        let crc = match crc32c {
            true => Some(integrity::crc32c_of(&bytes).await),
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
            .set_checksum_crc32_c(crc.clone())
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
            match whole {
                Some(whole) => whole.feed(part.number, bytes).await,
                None => None,
            }
        };
        let (out, md5_state) = tokio::join!(upload, feed);
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
            .set_checksum_crc32_c(out.checksum_crc32_c().map(str::to_owned).or(crc))
            .set_checksum_crc64_nvme(out.checksum_crc64_nvme().map(str::to_owned))
            .set_checksum_sha256(out.checksum_sha256().map(str::to_owned))
            .build();
        if let Some(r) = recorder {
            let done = PartDone {
                etag: part.e_tag().unwrap_or_default().to_owned(),
                md5: digest.as_ref().map(integrity::hex),
                crc32c: part.checksum_crc32_c().map(str::to_owned),
            };
            r.part_done(part.part_number().unwrap_or(0), done, md5_state)
                .await;
        }
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
}

/// The part layout of a multipart plan.
fn shape_of(plan: &CopyPlan, size: u64) -> Option<Shape> {
    match plan.method {
        Method::ServerSideMultipart { part_size, parts }
        | Method::StreamedMultipart { part_size, parts } => Some(Shape {
            size,
            part_size,
            parts_total: i32::try_from(parts).ok()?,
            server_side: matches!(plan.method, Method::ServerSideMultipart { .. }),
        }),
        Method::ServerSideCopy | Method::Put => None,
    }
}

#[cfg(test)]
mod tests {
    use super::reads_in_flight;

    #[test]
    fn half_the_parts_read_while_the_rest_send() {
        assert_eq!(reads_in_flight(1), 1);
        assert_eq!(reads_in_flight(2), 1);
        assert_eq!(reads_in_flight(4), 2);
        assert_eq!(reads_in_flight(5), 3);
        assert_eq!(reads_in_flight(16), 8);
    }
}
