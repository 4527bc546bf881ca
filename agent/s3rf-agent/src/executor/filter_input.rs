//! What the filter chain sees of a copy or a delete.

use super::*;

impl Executor {
    /// Runs the filter chain for a delete: only names are known.
    pub(super) fn filter_delete(&self, job: &DeleteJob) -> Result<Verdict, ExecError> {
        let src = job.src.as_ref().unwrap_or(&job.dst);
        let input = ObjectInput {
            kind: Some(FilterKind::Delete),
            src_endpoint: src.endpoint.clone(),
            src_bucket: src.bucket.clone(),
            src_key: src.key.clone(),
            bucket: job.dst.bucket.clone(),
            key: job.dst.key.clone(),
            ..ObjectInput::default()
        };
        Ok(self.filters.decide(input)?)
    }

    /// Runs the filter chain for a copy.
    pub(super) fn filter_copy(&self, job: &CopyJob, src: &Source) -> Result<Verdict, ExecError> {
        let mut metadata: Vec<(String, String)> = src
            .attrs
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        metadata.sort();
        let input = ObjectInput {
            kind: Some(FilterKind::Copy),
            size: Some(src.facts.size),
            last_modified_ms: src.last_modified_ms,
            src_endpoint: job.src.endpoint.clone(),
            src_bucket: job.src.bucket.clone(),
            src_key: job.src.key.clone(),
            bucket: job.dst.bucket.clone(),
            key: job.dst.key.clone(),
            etag: src.facts.etag.clone(),
            content_type: src.attrs.content_type.clone(),
            metadata,
        };
        Ok(self.filters.decide(input)?)
    }

    /// Where the filters send the copy `job` (HEADing its source for what
    /// they see), or `None` when they skip it. Without filters, the job's
    /// own destination. A versioned key's history goes where its newest
    /// version goes; `verify --filters` compares a source object there.
    pub async fn filtered_destination(
        &self,
        job: &CopyJob,
    ) -> Result<Option<ObjectRef>, ExecError> {
        if self.filters.chain().is_empty() {
            return Ok(Some(job.dst.clone()));
        }
        let store = self.store(&job.src)?;
        let src = self.head_source(store, job).await?;
        Ok(match self.filter_copy(job, &src)? {
            Verdict::Skip { .. } => None,
            Verdict::Proceed { renamed: false, .. } => Some(job.dst.clone()),
            Verdict::Proceed { bucket, key, .. } => Some(job.dst.moved_to(bucket, key)),
        })
    }
}
