//! Deletes: `delete` jobs (mirror deletes keep objects the source still
//! has) and the reconcile of an event-driven copy overtaken by a newer
//! event.

use super::*;

impl Executor {
    // ----- delete -----------------------------------------------------------

    pub(super) async fn delete(&self, job: &DeleteJob) -> Result<Outcome, ExecError> {
        let renamed;
        let job = match self.filter_delete(job)? {
            Verdict::Skip { filter, reason } => {
                return Ok(Outcome::Filtered {
                    filter,
                    reason,
                    bytes: 0,
                });
            }
            Verdict::Proceed { renamed: false, .. } => job,
            // A mirror delete names a destination key; we cannot tell which
            // source a renamed object came from, so never delete on a guess.
            Verdict::Proceed { .. } if job.if_source_absent => {
                warn!("mirror delete of a key the filters would rename; kept");
                return Ok(Outcome::Kept);
            }
            Verdict::Proceed { bucket, key, .. } => {
                renamed = DeleteJob {
                    dst: job.dst.moved_to(bucket, key),
                    ..job.clone()
                };
                &renamed
            }
        };
        if job.if_source_absent
            && let Some(src) = &job.src
        {
            let store = self.store(src)?;
            let head = store
                .client
                .head_object()
                .bucket(&src.bucket)
                .key(&src.key)
                .send()
                .await
                .map_err(|e| classify("HeadObject", &target(src), e));
            match head {
                Ok(_) => {
                    debug!("source still exists; kept");
                    return Ok(Outcome::Kept);
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        if job.mode.is_dry_run() {
            info!("dry run: would delete");
            return Ok(Outcome::WouldDelete);
        }
        let store = self.store(&job.dst)?;
        let res = store
            .client
            .delete_object()
            .bucket(&job.dst.bucket)
            .key(&job.dst.key)
            .send()
            .await
            .map_err(|e| classify("DeleteObject", &target(&job.dst), e));
        match res {
            Ok(_) | Err(ExecError::NoSuchKey(_)) => {
                info!("deleted");
                Ok(Outcome::Deleted)
            }
            Err(e) => Err(e),
        }
    }

    /// Makes `dst` match `src` as it is now: copy it if it exists, delete the
    /// destination if it does not.
    pub async fn reconcile(
        &self,
        src: &ObjectRef,
        dst: &ObjectRef,
        cancel: &CancellationToken,
    ) -> Result<Outcome, ExecError> {
        // As a copy from an event: a source gone by now is skipped.
        let copy = CopyJob::new(src.clone(), dst.clone(), Origin::Event { sequencer: None });
        match self.copy(&copy, cancel).await? {
            Outcome::Skipped {
                reason: SkipReason::SourceGone,
                ..
            } => {
                let delete = DeleteJob {
                    dst: dst.clone(),
                    src: Some(src.clone()),
                    origin: Origin::Event { sequencer: None },
                    if_source_absent: true,
                    mode: Mode::Apply,
                };
                self.delete(&delete).await
            }
            other => Ok(other),
        }
    }
}
