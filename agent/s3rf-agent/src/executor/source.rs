//! Reading the source: HEAD, the GET of a small object that stands in
//! for its HEAD, whole and ranged GETs (all conditioned on the source's
//! ETag), the check of what was read against the source's MD5, and the
//! source's tags.

use super::*;
use aws_sdk_s3::primitives::DateTimeFormat;

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

/// Reads a body of `expected` bytes into one buffer of exactly that size
/// (no reallocation, no second copy: a part costs its own size in memory);
/// a body that ends early or runs long is a short read.
pub(super) async fn read_body(
    body: &mut ByteStream,
    expected: u64,
    t: &Target,
) -> Result<Bytes, ExecError> {
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

impl Executor {
    pub(super) async fn head_source(
        &self,
        store: &Store,
        job: &CopyJob,
    ) -> Result<Source, ExecError> {
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
    pub(super) async fn get_source(
        &self,
        store: &Store,
        job: &CopyJob,
        listed_size: u64,
    ) -> Result<(Source, Option<Prefetched>), ExecError> {
        self.charge_bytes(job, listed_size).await;
        let body = plan::plan_body(listed_size, self.pipeable(&job.dst), self.copy.read_ahead);
        let window = match body {
            Body::Piped { window } => window,
            Body::Whole => listed_size,
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
        if matches!(body, Body::Piped { .. }) && expected > plan::PIPE_ABOVE {
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

    /// Checks bytes read whole against the source's MD5 (when its ETag
    /// states one) and returns their MD5, when either that check or the
    /// destination (`write_checked`) needs it. A checking destination is
    /// given the source's MD5 as `Content-MD5`, which checks the read and
    /// the write at once: then nothing is hashed here.
    pub(super) async fn verify_read(
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
    pub(super) fn note_unverified_read(&self, store: &Store, src: &Source) {
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

    /// The source's tags, or none when the source store has no tagging.
    pub(super) async fn source_tags(
        &self,
        job: &CopyJob,
    ) -> Result<Vec<(String, String)>, ExecError> {
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

    /// A GET of the source, pinned to its version and ETag.
    pub(super) fn source_get(
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
    pub(super) async fn open_body(
        &self,
        job: &CopyJob,
        src: &Source,
    ) -> Result<ByteStream, ExecError> {
        self.charge_bytes(job, src.facts.size).await;
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
    pub(super) async fn get_bytes(
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
        self.charge_bytes(job, expected).await;
        let mut out = req.send().await.map_err(|e| classify("GetObject", &t, e))?;
        read_body(&mut out.body, expected, &t).await
    }
}
