//! Uploads in progress on a destination key: finding the one an earlier
//! delivery recorded and checking it with ListParts, which failures keep an
//! upload for resuming, aborting uploads no running copy owns, and giving
//! up a copy's uploads when its job is dead-lettered.

use std::collections::HashSet;

use super::multipart::{Resumed, Start};
use super::*;
use crate::resume::{self, Decision, ListedPart, Shape};

/// Whether an upload is worth keeping for the next delivery after `e`:
/// the parts it holds are good and the source is unchanged.
pub(super) fn keeps_upload(e: &ExecError) -> bool {
    match e {
        ExecError::Cancelled
        | ExecError::Transport { .. }
        | ExecError::Unreadable { .. }
        | ExecError::ShortRead { .. } => true,
        ExecError::Service {
            retryable: true,
            code,
            ..
        } => code != "NoSuchUpload",
        _ => false,
    }
}

impl Executor {
    /// The upload an earlier delivery of this copy recorded, if it can be
    /// resumed; a record that cannot is removed and its upload aborted.
    pub(super) async fn find_resumable(
        &self,
        store: &Store,
        job: &CopyJob,
        uploads: &Uploads,
        key: &str,
        shape: &Shape,
        hashing: bool,
    ) -> Result<Option<Resumed>, ExecError> {
        let loaded = match uploads.load(key).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "cannot read multipart resume records; starting a new upload");
                return Ok(None);
            }
        };
        let Some((record, parts)) = loaded else {
            return Ok(None);
        };
        let upload_id = record.upload_id.clone();
        let listed = match self.list_parts(store, &job.dst, &upload_id).await {
            Ok(l) => l,
            Err(e) if e.is_not_found() => {
                info!(upload_id, "the recorded upload is gone; starting over");
                uploads.remove(key, &record).await;
                return Ok(None);
            }
            Err(e @ ExecError::Unreadable { .. }) => {
                // moto 5.2 answers ListParts with a root element the SDK
                // rejects (ListPartsResponse); such a store cannot resume.
                warn!(upload_id, error = %e, "cannot read the parts of the recorded upload; starting the copy over instead of resuming it");
                self.abort_upload(store, &job.dst, &upload_id).await;
                uploads.remove(key, &record).await;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let mut decision = resume::decide(&record, &parts, &listed, shape, hashing);
        if let Decision::Resume {
            hashed: Some((k, state)),
            ..
        } = &decision
            && OrderedMd5::resume(state, *k).is_none()
        {
            decision = Decision::StartOver("the record's MD5 state is unusable");
        }
        match decision {
            Decision::Resume { done, hashed } => {
                info!(
                    upload_id,
                    parts_done = done.len(),
                    parts_total = shape.parts_total,
                    "resuming a multipart copy an earlier delivery began"
                );
                Ok(Some(Resumed {
                    record,
                    start: Start { done, hashed },
                }))
            }
            Decision::StartOver(why) => {
                info!(upload_id, why, "starting the multipart copy over");
                self.abort_upload(store, &job.dst, &upload_id).await;
                uploads.remove(key, &record).await;
                Ok(None)
            }
        }
    }

    /// Upload ids of other copies to `dst` that are running now (their
    /// records are fresh): not stale, whatever else they are. Records of
    /// copies that stopped long ago are removed; their uploads are stale.
    pub(super) async fn live_uploads(
        &self,
        uploads: &Uploads,
        dst: &ObjectRef,
        ours: &str,
    ) -> Vec<String> {
        let records = match uploads.for_destination(dst).await {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, "cannot list resume records of this key");
                return Vec::new();
            }
        };
        let mut live = Vec::new();
        for (key, record) in records {
            if key == ours {
                continue;
            }
            if uploads.is_live(&record) {
                live.push(record.upload_id);
            } else {
                uploads.remove(&key, &record).await;
            }
        }
        live
    }

    /// Every part the store holds for `upload_id`.
    pub(super) async fn list_parts(
        &self,
        store: &Store,
        dst: &ObjectRef,
        upload_id: &str,
    ) -> Result<Vec<ListedPart>, ExecError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = store
                .client
                .list_parts()
                .bucket(&dst.bucket)
                .key(&dst.key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .map_err(|e| classify("ListParts", &target(dst), e))?;
            for p in out.parts() {
                let Some(number) = p.part_number() else {
                    continue;
                };
                parts.push(ListedPart {
                    number,
                    etag: p.e_tag().map(str::to_owned),
                    size: p.size().and_then(|s| u64::try_from(s).ok()),
                });
            }
            let next = out.next_part_number_marker().map(str::to_owned);
            if out.is_truncated() != Some(true) || next.is_none() || next == marker {
                return Ok(parts);
            }
            marker = next;
        }
    }

    /// Aborts `upload_id`; a failure is logged (a lifecycle rule cleans up).
    pub(super) async fn abort_upload(&self, store: &Store, dst: &ObjectRef, upload_id: &str) {
        let abort = store
            .client
            .abort_multipart_upload()
            .bucket(&dst.bucket)
            .key(&dst.key)
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(ae) = abort {
            warn!(
                upload_id,
                error = %classify("AbortMultipartUpload", &target(dst), ae),
                "could not abort the multipart upload; a bucket lifecycle rule AbortIncompleteMultipartUpload cleans it up"
            );
        }
    }

    /// Gives up a copy for good (its job is dead-lettered): aborts the
    /// uploads its earlier deliveries kept for resuming, and their records.
    pub async fn abandon(&self, job: &CopyJob) {
        let (Some(uploads), Ok(store)) = (&self.uploads, self.store(&job.dst)) else {
            return;
        };
        let Ok(records) = uploads.for_destination(&job.dst).await else {
            return;
        };
        for (key, record) in records {
            let same_source = record.src
                == [
                    job.src.endpoint.clone(),
                    job.src.bucket.clone(),
                    job.src.key.clone(),
                ]
                && record.src_version == job.src_version;
            if same_source {
                info!(
                    upload_id = record.upload_id,
                    "aborting the upload of a copy given up"
                );
                self.abort_upload(store, &job.dst, &record.upload_id).await;
                uploads.remove(&key, &record).await;
            }
        }
    }

    /// Aborts uploads left for this exact key by an agent that died mid-copy,
    /// except those in `keep` (being resumed, or of a copy running now).
    /// s3rf owns in-progress uploads of the keys it writes.
    pub(super) async fn abort_stale_uploads(
        &self,
        store: &Store,
        dst: &ObjectRef,
        keep: &HashSet<String>,
    ) {
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
            if key != dst.key || keep.contains(id) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_failures_keep_an_upload_for_resuming() {
        let t = Target {
            endpoint: "e".into(),
            bucket: "b".into(),
            key: Some("k".into()),
        };
        let service = |code: &str, retryable| ExecError::Service {
            op: "UploadPart",
            target: t.clone(),
            status: 503,
            code: code.to_owned(),
            message: String::new(),
            hint: "",
            retryable,
        };
        assert!(keeps_upload(&ExecError::Cancelled));
        assert!(keeps_upload(&service("SlowDown", true)));
        assert!(keeps_upload(&ExecError::Transport {
            op: "UploadPart",
            target: t.clone(),
            detail: "reset".into()
        }));
        assert!(!keeps_upload(&service("NoSuchUpload", true)), "it is gone");
        assert!(!keeps_upload(&service("AccessDenied", false)));
        assert!(
            !keeps_upload(&ExecError::SourceChanged(t.clone())),
            "the parts hold the old bytes"
        );
        assert!(!keeps_upload(&ExecError::Corrupt {
            stage: "read from the source",
            target: t,
            expected: "a".into(),
            got: "b".into()
        }));
    }
}
