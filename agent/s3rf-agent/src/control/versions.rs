//! The listing of a versioned migration: one ListObjectVersions page, its
//! ledger event, the next page, then one `versions` job per key that first
//! appears on it, so every key's history is copied by one job, oldest first.

use tracing::info;

use super::{Control, ControlError, Listing};
use crate::job::ListJob;
use crate::migration::{self, LedgerEvent, Side};
use crate::names::JobKind;

impl Control<'_> {
    /// `list` of a versioned migration: one ListObjectVersions page. Its
    /// ledger event (`objects`: the keys it hands to versions jobs), the
    /// next page, then one versions job per key that first appears on it
    /// (`versions::page_keys`).
    pub(super) async fn list_versions(&self, job: &ListJob) -> Result<(), ControlError> {
        let s = &job.scope.0;
        self.wait_for_room(Side::Source).await?;
        let started = std::time::Instant::now();
        let marker = job
            .version_marker
            .as_ref()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let page = self
            .executor
            .list_versions(
                &s.src,
                &s.bucket,
                s.prefix.as_deref(),
                marker,
                self.page_size,
            )
            .await?;
        let entries = page.entries.len();
        let bytes = page.entries.iter().map(|e| e.version.size).sum::<u64>();
        let truncated = page.next.is_some();
        let continues = job.version_marker.as_ref().map(|(k, _)| k.as_str());
        let keys = crate::versions::page_keys(page.entries, continues, truncated);
        let event = LedgerEvent::Page {
            bucket: s.bucket.clone(),
            side: Side::Source,
            page: job.page,
            objects: keys.len() as u64,
            bytes,
            last: !truncated,
            listings: 0,
        };
        self.ledger
            .record(
                &s.migration,
                &migration::page_entity(&s.bucket, Side::Source, None, job.page),
                &event,
                0,
            )
            .await?;
        if let Some(next) = page.next {
            let listing = Listing {
                prefix: None,
                split: 0,
                page: job.page + 1,
            };
            let ahead = self.list_job(&job.scope, Side::Source, listing, None, Some(next));
            self.publish_all(vec![ahead]).await?;
        }
        let published = keys.len();
        let jobs = keys
            .into_iter()
            .map(|k| {
                let entity = migration::object_entity(&s.bucket, Side::Source, &k.key);
                let wire = s3rf_wire::VersionsJob {
                    scope: s.clone(),
                    key: k.key,
                    versions: k.versions.map(|vs| {
                        vs.into_iter()
                            .map(|v| s3rf_wire::ListedVersion {
                                version_id: v.id,
                                delete_marker: v.delete_marker,
                                size: v.size,
                                etag: v.etag,
                            })
                            .collect()
                    }),
                };
                self.outgoing(
                    JobKind::Versions,
                    format!("{}:versions:{entity}", s.migration),
                    &wire,
                )
            })
            .collect();
        self.publish_all(jobs).await?;
        info!(
            migration = %s.migration,
            bucket = %s.bucket,
            endpoint = %s.src,
            page = job.page,
            versions = entries,
            keys = published,
            last = !truncated,
            total_ms = started.elapsed().as_millis(),
            "listed versions page"
        );
        Ok(())
    }
}
