//! Single-request writes: one GET into one `PutObject`, whole or piped
//! through the read-ahead window, with `Content-MD5` (or a CRC32C for a
//! directory bucket), and what happens after: the returned ETag checked,
//! bytes a store kept despite refusing them deleted.

use super::*;

/// Whether a store refused a write because its bytes did not match their
/// checksum.
pub(super) fn is_digest_error(e: &ExecError) -> bool {
    matches!(e, ExecError::Service { code, .. }
        if matches!(code.as_str(), "BadDigest" | "XAmzContentChecksumMismatch" | "XAmzContentSHA256Mismatch"))
}

impl Executor {
    /// Whether writes to `dst` are checked (`verify = "auto"`).
    pub(super) fn verifies(&self, dst: &ObjectRef) -> bool {
        self.store(dst)
            .is_ok_and(|s| s.config.verify == Verify::Auto)
    }

    /// Whether a PUT to `dst` can take a piped body: its length is known,
    /// but nothing can hash it in advance (a signed payload) or append a
    /// checksum trailer to it (checksums when supported).
    pub(super) fn pipeable(&self, dst: &ObjectRef) -> bool {
        self.store(dst).is_ok_and(|s| {
            !s.config.sign_payload
                && s.config.checksums == crate::config::ChecksumMode::WhenRequired
                // A directory bucket's PUT carries the CRC32C of the
                // whole body in its headers: it is read whole first.
                && !write_check(s, &dst.bucket).crc32c
        })
    }

    pub(super) async fn put(
        &self,
        job: &CopyJob,
        src: &Source,
        plan: &CopyPlan,
        prefetched: Option<Prefetched>,
    ) -> Result<(), ExecError> {
        let tags = if src.tag_count == Some(0) {
            Vec::new()
        } else {
            self.tags_for(job, plan).await?
        };
        let store = self.store(&job.dst)?;
        let WriteCheck {
            md5: verify,
            crc32c,
        } = write_check(store, &job.dst.bucket);
        let size = src.facts.size;
        let prefetched = match prefetched {
            None => match plan::plan_body(size, self.pipeable(&job.dst), self.copy.read_ahead) {
                Body::Piped { window } => {
                    let permit = self.buffer_permit(window).await?;
                    Some(Prefetched::Open {
                        body: self.open_body(job, src).await?,
                        window,
                        permit,
                    })
                }
                Body::Whole => None,
            },
            other => other,
        };
        let (bytes, digest, _permit) = match prefetched {
            Some(Prefetched::Whole(bytes, digest, permit)) => (bytes, digest, permit),
            Some(Prefetched::Open {
                body,
                window,
                permit,
            }) => {
                debug!(window, "piping the GET into the PUT");
                if src.md5.is_none() {
                    self.note_unverified_read(self.store(&job.src)?, src);
                }
                // The source's own MD5 is known before the first byte: the
                // destination checks the body against it (as rclone does),
                // which checks the read and the write at once, and the
                // reader need not hash. Without it, the reader hashes for
                // the ETag comparison; without a checking destination, it
                // checks the read itself.
                let (check_read, hash) = match (src.md5, verify) {
                    (Some(_), true) => (None, false),
                    (Some(md5), false) => (Some(md5), false),
                    (None, verify) => (None, verify),
                };
                let (body, reader) =
                    read_ahead::pipe(body, size, window, target(&job.src), check_read, hash);
                let req = self
                    .put_request(store, job, src, plan, &tags)
                    .set_content_md5(
                        src.md5
                            .filter(|_| verify)
                            .map(|d| integrity::content_md5(&d)),
                    )
                    .content_length(i64::try_from(size).unwrap_or(i64::MAX))
                    .body(body);
                let put = async {
                    req.customize()
                        .disable_payload_signing()
                        .send()
                        .await
                        .map_err(|e| classify("PutObject", &target(&job.dst), e))
                };
                let (read, put) = tokio::join!(reader, put);
                let (digest, out) = match (read, put) {
                    (Ok(digest), Ok(out)) => (digest.or(src.md5), out),
                    (Ok(digest), Err(e)) => {
                        let sent = digest.or(src.md5);
                        return Err(self
                            .after_failed_write(store, &job.dst, sent.as_ref(), e)
                            .await);
                    }
                    // The PUT stopped reading: its own error says why.
                    (
                        Err(ExecError::Transport {
                            op: "PutObject", ..
                        }),
                        Err(e),
                    ) => {
                        if is_digest_error(&e) {
                            self.discard_unverified(store, &job.dst, src.md5.as_ref())
                                .await;
                        }
                        return Err(e);
                    }
                    // A broken, short or corrupt GET explains a failed PUT
                    // best; whatever the store kept of it goes.
                    (Err(e), put) => {
                        if put.is_ok() || put.as_ref().is_err_and(is_digest_error) {
                            self.discard_unverified(store, &job.dst, src.md5.as_ref())
                                .await;
                        }
                        return Err(e);
                    }
                };
                drop(permit);
                return self.after_put(store, &job.dst, &out, digest, &tags).await;
            }
            None => {
                let permit = self.buffer_permit(src.facts.size).await?;
                let bytes = self.get_bytes(job, src, None).await?;
                let digest = self
                    .verify_read(
                        self.store(&job.src)?,
                        src,
                        &bytes,
                        &target(&job.src),
                        verify,
                    )
                    .await?;
                (bytes, digest, permit)
            }
        };
        let crc = match crc32c {
            true => Some(integrity::crc32c_of(&bytes).await),
            false => None,
        };
        let req = self
            .put_request(store, job, src, plan, &tags)
            .set_content_md5(
                digest
                    .filter(|_| verify)
                    .map(|d| integrity::content_md5(&d)),
            )
            .set_checksum_crc32_c(crc)
            .content_length(i64::try_from(bytes.len()).unwrap_or(i64::MAX))
            .body(ByteStream::from(bytes));
        // SHA-256 of the body was a fifth of the CPU of a streamed copy;
        // Content-MD5 lets the store check the bytes instead, and
        // Content-Length their size.
        let sent = if store.config.sign_payload {
            req.send().await
        } else {
            req.customize().disable_payload_signing().send().await
        }
        .map_err(|e| classify("PutObject", &target(&job.dst), e));
        let out = match sent {
            Ok(out) => out,
            Err(e) => {
                return Err(self
                    .after_failed_write(store, &job.dst, digest.as_ref(), e)
                    .await);
            }
        };
        self.after_put(store, &job.dst, &out, digest, &tags).await
    }

    /// After a PUT the store accepted: its ETag against the MD5 of what was
    /// sent (when known), then the tags.
    pub(super) async fn after_put(
        &self,
        store: &Store,
        dst: &ObjectRef,
        out: &aws_sdk_s3::operation::put_object::PutObjectOutput,
        sent: Option<Md5>,
        tags: &[(String, String)],
    ) -> Result<(), ExecError> {
        if let Some(sent) = sent {
            let ctx = written_context(
                store,
                dst,
                out.server_side_encryption(),
                out.sse_customer_algorithm().is_some(),
            );
            self.check_stored(store, dst, out.e_tag(), &integrity::hex(&sent), ctx)
                .await?;
        }
        self.verify_tags(dst, tags).await;
        Ok(())
    }

    /// Compares the ETag a write returned with the one the bytes sent must
    /// have. A mismatch means the store holds other bytes than were sent:
    /// they are deleted, so nothing corrupt stays at the key, and the copy
    /// is retried.
    pub(super) async fn check_stored(
        &self,
        store: &Store,
        dst: &ObjectRef,
        returned: Option<&str>,
        expected: &str,
        ctx: EtagContext<'_>,
    ) -> Result<(), ExecError> {
        match integrity::check_written(returned, expected, ctx) {
            Written::Match | Written::Unchecked => Ok(()),
            Written::Mismatch { expected, got } => {
                warn!(
                    expected,
                    got, "the destination stored other bytes than were sent; deleting them"
                );
                self.delete_corrupt(store, dst).await;
                Err(ExecError::Corrupt {
                    stage: "stored at the destination",
                    target: target(dst),
                    expected,
                    got,
                })
            }
        }
    }

    /// After a failed single PUT: a store that refused the bytes as corrupt
    /// may have kept them anyway (s3s-fs does), so an object at the key
    /// whose ETag is not the MD5 of what was sent is deleted.
    pub(super) async fn after_failed_write(
        &self,
        store: &Store,
        dst: &ObjectRef,
        sent: Option<&Md5>,
        e: ExecError,
    ) -> ExecError {
        if is_digest_error(&e) {
            self.discard_unverified(store, dst, sent).await;
        }
        e
    }

    /// Deletes the object at `dst` unless its ETag is `good`'s hex (a
    /// `None` deletes whatever is there).
    pub(super) async fn discard_unverified(
        &self,
        store: &Store,
        dst: &ObjectRef,
        good: Option<&Md5>,
    ) {
        if store.config.verify == Verify::Off {
            return;
        }
        let now = self.head_destination(store, dst).await;
        let keep = match (&now, good) {
            (Ok(None), _) => true,
            (Ok(Some(facts)), Some(good)) => {
                facts.etag.as_deref().and_then(integrity::parse_plain) == Some(*good)
            }
            (Ok(Some(_)), None) => false,
            // Cannot tell: the retry overwrites it, the last one leaves it.
            (Err(_), _) => true,
        };
        if !keep {
            warn!("the destination kept bytes it refused or that did not match; deleting them");
            self.delete_corrupt(store, dst).await;
        }
    }

    pub(super) async fn delete_corrupt(&self, store: &Store, dst: &ObjectRef) {
        let res = store
            .client
            .delete_object()
            .bucket(&dst.bucket)
            .key(&dst.key)
            .send()
            .await;
        if let Err(e) = res {
            warn!(error = %classify("DeleteObject", &target(dst), e), "could not delete corrupt bytes at the destination; the retry overwrites them");
        }
    }

    /// A PutObject of `job`'s destination with the source's attributes and
    /// `tags`; the caller adds the body and its length.
    pub(super) fn put_request(
        &self,
        store: &Store,
        job: &CopyJob,
        src: &Source,
        plan: &CopyPlan,
        tags: &[(String, String)],
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        let req = store
            .client
            .put_object()
            .bucket(&job.dst.bucket)
            .key(&job.dst.key);
        let mut req = with_attributes!(req, self.destination_metadata(job, src, plan), &src.attrs);
        if !tags.is_empty() {
            req = req.tagging(tagging(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
        }
        req
    }
}
