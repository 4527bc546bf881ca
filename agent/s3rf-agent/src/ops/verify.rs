//! Operator commands for verifications (`s3rf-agent verify`): publish
//! one, read its summary and differing keys, and turn those into repair
//! jobs.

use super::*;

impl Operator {
    /// Publishes a verification; returns its id.
    pub async fn verify(&self, mut spec: s3rf_wire::VerifyJob) -> Result<String, OpsError> {
        self.check_endpoint(&spec.src)?;
        self.check_endpoint(&spec.dst)?;
        let id = match &spec.id {
            Some(id) => {
                migration::validate_id(id).map_err(|e| OpsError::Invalid(e.to_string()))?;
                id.clone()
            }
            None => format!(
                "v{}",
                migration::generate_id(std::time::SystemTime::now()).trim_start_matches('m')
            ),
        };
        spec.id = Some(id.clone());
        spec.page = None;
        let payload = serde_json::to_vec(&spec).unwrap_or_default();
        self.publish(JobKind::Verify, Some(&format!("verify:{id}")), payload)
            .await?;
        Ok(id)
    }

    /// A verification's summary so far.
    pub async fn verify_summary(&self, id: &str) -> Result<crate::verify::VerifySummary, OpsError> {
        Ok(crate::verifying::summary(&self.js, &self.names, id).await?)
    }

    /// A verification's differing keys.
    pub async fn verify_differences(
        &self,
        id: &str,
    ) -> Result<Vec<crate::verify::Difference>, OpsError> {
        Ok(crate::verifying::differences(&self.js, &self.names, id).await?)
    }

    /// Publishes a copy job for each key a verification found missing or
    /// different, and a delete job (if the source is still absent) for each
    /// extra one; returns (copies, deletes).
    pub async fn repair(&self, id: &str) -> Result<(usize, usize), OpsError> {
        use crate::verify::Kind;
        let Some((src, dst)) = self.verify_summary(id).await?.endpoints else {
            return Err(OpsError::Invalid(format!(
                "no verification {id}; start one with `s3rf-agent verify --src … --dst …`"
            )));
        };
        let (src, dst) = (src.as_str(), dst.as_str());
        self.check_endpoint(src)?;
        self.check_endpoint(dst)?;
        let (mut copies, mut deletes) = (0, 0);
        for d in self.verify_differences(id).await? {
            let source = s3rf_wire::SourceObject {
                endpoint: src.to_owned(),
                bucket: d.bucket.clone(),
                key: d.key.clone(),
                version_id: None,
            };
            let (kind, payload) = match d.kind {
                Kind::Missing | Kind::Different => {
                    copies += 1;
                    let job = s3rf_wire::CopyJob {
                        src: source,
                        dst: s3rf_wire::DestinationLocation {
                            endpoint: dst.to_owned(),
                            bucket: d.dst_bucket.clone(),
                            key: Some(d.key.clone()),
                        },
                        migration: None,
                        dry_run: false,
                        sequencer: None,
                        skip_if_source_missing: false,
                        attempted_since_ms: None,
                        listed_size: None,
                        listed_etag: None,
                        dst_bucket_new: false,
                    };
                    (JobKind::Copy, serde_json::to_vec(&job).unwrap_or_default())
                }
                Kind::Extra => {
                    deletes += 1;
                    let job = s3rf_wire::DeleteJob {
                        dst: s3rf_wire::DestinationObject {
                            endpoint: dst.to_owned(),
                            bucket: d.dst_bucket.clone(),
                            key: d.key.clone(),
                        },
                        src: Some(source),
                        sequencer: None,
                        migration: None,
                        if_source_absent: true,
                        dry_run: false,
                    };
                    (
                        JobKind::Delete,
                        serde_json::to_vec(&job).unwrap_or_default(),
                    )
                }
            };
            let msg_id = format!(
                "repair:{id}:{}",
                migration::entity_hash(&[&d.bucket, &d.key])
            );
            self.publish(kind, Some(&msg_id), payload).await?;
        }
        Ok((copies, deletes))
    }
}
