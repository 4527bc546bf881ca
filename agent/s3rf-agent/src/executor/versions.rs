//! The S3 calls of versioned migrations: bucket versioning, a page of
//! ListObjectVersions, one key's versions at either end, the source version
//! a destination version records, and delete markers.

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};

use super::*;
use crate::job::Version;
use crate::versions::PageEntry;

/// One page of ListObjectVersions, in listing order (keys ascending, each
/// key's versions newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionPage {
    /// Versions and delete markers.
    pub entries: Vec<PageEntry>,
    /// Where the next page starts (key, version id), when one follows.
    pub next: Option<(String, String)>,
}

impl Executor {
    /// Whether `bucket` on `endpoint` has versioning enabled: `Err` names
    /// its state when not.
    pub async fn check_versioning(&self, endpoint: &str, bucket: &str) -> Result<(), ExecError> {
        let store = self.named_store(endpoint)?;
        let t = Self::bucket_target(endpoint, bucket);
        let res = store
            .client
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await;
        let status = match res {
            Ok(out) => out.status().map(|s| s.as_str().to_owned()),
            // A body the SDK cannot read (moto wraps it in a
            // GetBucketVersioningResponse root): its <Status> says.
            Err(e) => {
                let raw = e
                    .raw_response()
                    .filter(|r| r.status().is_success())
                    .and_then(|r| r.body().bytes())
                    .map(<[u8]>::to_vec);
                match raw {
                    Some(body) => xml_element(&body, "Status"),
                    None => return Err(classify("GetBucketVersioning", &t, e)),
                }
            }
        };
        match status.as_deref() {
            Some("Enabled") => Ok(()),
            Some(s) => Err(ExecError::Unversioned {
                target: t,
                state: s.to_lowercase(),
            }),
            None => Err(ExecError::Unversioned {
                target: t,
                state: "never enabled".to_owned(),
            }),
        }
    }

    /// Enables versioning on a bucket s3rf just created; retries a few
    /// times, since a retry of the bucket job finds the bucket existing
    /// and would refuse it unversioned.
    pub(super) async fn enable_versioning(
        &self,
        endpoint: &str,
        bucket: &str,
    ) -> Result<(), ExecError> {
        let store = self.named_store(endpoint)?;
        let t = Self::bucket_target(endpoint, bucket);
        let mut attempt = 0;
        loop {
            let res = store
                .client
                .put_bucket_versioning()
                .bucket(bucket)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| classify("PutBucketVersioning", &t, e));
            match res {
                Ok(_) => {
                    info!(endpoint, bucket, "versioning enabled");
                    return Ok(());
                }
                Err(e) if e.disposition() == Disposition::Retry && attempt < 4 => {
                    attempt += 1;
                    warn!(error = %e, attempt, "enabling versioning failed; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(250 << attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One page of ListObjectVersions of `bucket` under `prefix`, after
    /// `marker` (key, version id).
    ///
    /// The SDK returns versions and delete markers in two lists, each in
    /// listing order; which came where is read from the response body
    /// ([`EntryOrder`]). Where the body is not in listing order (moto lists
    /// all versions, then all markers), they are merged by key, then newest
    /// first by LastModified, which S3 gives to the second: a delete marker
    /// and a version of one key written in the same second may then be
    /// swapped.
    pub async fn list_versions(
        &self,
        endpoint: &str,
        bucket: &str,
        prefix: Option<&str>,
        marker: Option<(&str, &str)>,
        max_keys: i32,
    ) -> Result<VersionPage, ExecError> {
        let store = self.named_store(endpoint)?;
        let t = Self::bucket_target(endpoint, bucket);
        let order = EntryOrder::default();
        let out = store
            .client
            .list_object_versions()
            .bucket(bucket)
            .set_prefix(prefix.filter(|p| !p.is_empty()).map(str::to_owned))
            .set_key_marker(marker.map(|(k, _)| k.to_owned()))
            .set_version_id_marker(marker.map(|(_, v)| v.to_owned()).filter(|v| !v.is_empty()))
            .max_keys(max_keys)
            .customize()
            .interceptor(order.clone())
            .send()
            .await
            .map_err(|e| classify("ListObjectVersions", &t, e))?;
        let when = |t: Option<&DateTime>| t.and_then(|t| t.to_millis().ok()).unwrap_or(0);
        let objects = out.versions().iter().filter_map(|v| {
            Some((
                when(v.last_modified()),
                PageEntry {
                    key: v.key()?.to_owned(),
                    version: Version {
                        id: v.version_id().unwrap_or("null").to_owned(),
                        delete_marker: false,
                        size: u64::try_from(v.size().unwrap_or(0)).unwrap_or(0),
                        etag: v.e_tag().map(strip_quotes),
                    },
                },
            ))
        });
        let markers = out.delete_markers().iter().filter_map(|m| {
            Some((
                when(m.last_modified()),
                PageEntry {
                    key: m.key()?.to_owned(),
                    version: Version {
                        id: m.version_id().unwrap_or("null").to_owned(),
                        delete_marker: true,
                        size: 0,
                        etag: None,
                    },
                },
            ))
        });
        let (objects, markers): (Vec<_>, Vec<_>) = (objects.collect(), markers.collect());
        let entries = match order.take() {
            Some(kinds) if kinds.len() == objects.len() + markers.len() => {
                let listed = interleave(&kinds, objects.clone(), markers.clone());
                if in_listing_order(&listed) {
                    listed.into_iter().map(|(_, e)| e).collect()
                } else {
                    // A server that writes all versions, then all markers
                    // (moto): order by time instead.
                    merge_listing(objects, markers)
                }
            }
            _ => merge_listing(objects, markers),
        };
        let next = match (
            out.is_truncated(),
            out.next_key_marker(),
            out.next_version_id_marker(),
        ) {
            (Some(true), Some(k), v) if !k.is_empty() => {
                Some((k.to_owned(), v.unwrap_or_default().to_owned()))
            }
            (Some(true), ..) => {
                return Err(ExecError::Internal {
                    op: "ListObjectVersions",
                    target: t,
                    detail: "a truncated page without NextKeyMarker".to_owned(),
                });
            }
            _ => None,
        };
        Ok(VersionPage { entries, next })
    }

    /// Every version of exactly `key`, newest first.
    pub async fn key_versions(
        &self,
        endpoint: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Vec<Version>, ExecError> {
        let mut all = Vec::new();
        let mut marker: Option<(String, String)> = None;
        loop {
            let page = self
                .list_versions(
                    endpoint,
                    bucket,
                    Some(key),
                    marker.as_ref().map(|(k, v)| (k.as_str(), v.as_str())),
                    1000,
                )
                .await?;
            let mut past = false;
            for e in page.entries {
                if e.key == key {
                    all.push(e.version);
                } else {
                    // Keys under `key` as a prefix ("a/b" after "a") come
                    // after all of its versions.
                    past = true;
                }
            }
            match page.next {
                Some(next) if !past && next.0 == key => marker = Some(next),
                _ => return Ok(all),
            }
        }
    }

    /// A HEAD of one version of `obj`.
    async fn head_version(
        &self,
        obj: &ObjectRef,
        version_id: &str,
    ) -> Result<aws_sdk_s3::operation::head_object::HeadObjectOutput, ExecError> {
        self.store(obj)?
            .client
            .head_object()
            .bucket(&obj.bucket)
            .key(&obj.key)
            .version_id(version_id)
            .send()
            .await
            .map_err(|e| classify("HeadObject", &target(obj), e))
    }

    /// The source version id a destination version records, if any.
    pub async fn recorded_source_version(
        &self,
        obj: &ObjectRef,
        version_id: &str,
    ) -> Result<Option<String>, ExecError> {
        match self.head_version(obj, version_id).await {
            Ok(h) => Ok(h
                .metadata()
                .and_then(|m| m.get(META_SOURCE_VERSION))
                .cloned()),
            // Deleted since it was listed: it records nothing.
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether source version `version_id` of `obj` still exists.
    pub async fn version_exists(
        &self,
        obj: &ObjectRef,
        version_id: &str,
    ) -> Result<bool, ExecError> {
        match self.head_version(obj, version_id).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            // A HEAD of a delete marker's version answers 405.
            Err(ExecError::Service { status: 405, .. }) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Writes a delete marker on `obj` (a DeleteObject without a version
    /// in a versioned bucket).
    pub async fn put_delete_marker(&self, obj: &ObjectRef) -> Result<(), ExecError> {
        let store = self.store(obj)?;
        let out = store
            .client
            .delete_object()
            .bucket(&obj.bucket)
            .key(&obj.key)
            .send()
            .await
            .map_err(|e| classify("DeleteObject", &target(obj), e))?;
        if out.delete_marker() != Some(true) {
            warn!(
                "the destination answered a delete without saying it wrote a delete marker; is versioning still enabled on bucket {}?",
                obj.bucket
            );
        }
        Ok(())
    }
}

/// Captures, from a ListObjectVersions response body, the order of its
/// `<Version>` and `<DeleteMarker>` entries (`true`: a delete marker), which
/// the SDK's two lists lose. Keys are escaped in XML, so neither tag can
/// occur inside one.
#[derive(Debug, Clone, Default)]
struct EntryOrder(Arc<std::sync::Mutex<Option<Vec<bool>>>>);

impl EntryOrder {
    fn take(&self) -> Option<Vec<bool>> {
        self.0.lock().ok().and_then(|mut o| o.take())
    }
}

impl aws_sdk_s3::config::Intercept for EntryOrder {
    fn name(&self) -> &'static str {
        "s3rf-version-entry-order"
    }

    fn read_after_deserialization(
        &self,
        context: &aws_sdk_s3::config::interceptors::AfterDeserializationInterceptorContextRef<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        if let Some(body) = context.response().body().bytes()
            && let Ok(mut slot) = self.0.lock()
        {
            *slot = Some(entry_kinds(body));
        }
        Ok(())
    }
}

/// The text of the first `<name>` element of an XML body.
fn xml_element(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find('<')? + start;
    Some(text[start..end].trim().to_owned())
}

/// The kinds of a ListVersionsResult's entries in document order.
fn entry_kinds(body: &[u8]) -> Vec<bool> {
    const VERSION: &[u8] = b"<Version>";
    const MARKER: &[u8] = b"<DeleteMarker>";
    let mut kinds = Vec::new();
    let mut i = 0;
    while let Some(at) = body[i..].iter().position(|&b| b == b'<') {
        let rest = &body[i + at..];
        if rest.starts_with(VERSION) {
            kinds.push(false);
        } else if rest.starts_with(MARKER) {
            kinds.push(true);
        }
        i += at + 1;
    }
    kinds
}

/// The two lists back in document order, as `kinds` says.
fn interleave(
    kinds: &[bool],
    objects: Vec<(i64, PageEntry)>,
    markers: Vec<(i64, PageEntry)>,
) -> Vec<(i64, PageEntry)> {
    let mut o = objects.into_iter();
    let mut m = markers.into_iter();
    kinds
        .iter()
        .filter_map(|&marker| if marker { m.next() } else { o.next() })
        .collect()
}

/// Whether entries are in ListObjectVersions order: keys ascending, each
/// key's entries newest first.
fn in_listing_order(entries: &[(i64, PageEntry)]) -> bool {
    entries.windows(2).all(|w| {
        let ((t0, a), (t1, b)) = (&w[0], &w[1]);
        match a.key.as_bytes().cmp(b.key.as_bytes()) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Equal => t0 >= t1,
            std::cmp::Ordering::Greater => false,
        }
    })
}

/// Merges ListObjectVersions' two lists by key, then newest first; at an
/// equal time, versions come before markers and each list keeps its order.
fn merge_listing(objects: Vec<(i64, PageEntry)>, markers: Vec<(i64, PageEntry)>) -> Vec<PageEntry> {
    let mut all = objects;
    all.extend(markers);
    all.sort_by(|(t0, a), (t1, b)| {
        a.key
            .as_bytes()
            .cmp(b.key.as_bytes())
            .then_with(|| t1.cmp(t0))
    });
    all.into_iter().map(|(_, e)| e).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(key: &str, id: &str, marker: bool) -> PageEntry {
        PageEntry {
            key: key.to_owned(),
            version: Version {
                id: id.to_owned(),
                delete_marker: marker,
                size: 0,
                etag: None,
            },
        }
    }

    #[test]
    fn the_response_body_says_where_the_delete_markers_were() {
        let body = br#"<?xml version="1.0"?><ListVersionsResult><Name>b</Name><VersionIdMarker></VersionIdMarker>
            <Version><Key>a</Key><VersionId>a3</VersionId></Version>
            <DeleteMarker><Key>a</Key><VersionId>a2</VersionId></DeleteMarker>
            <Version><Key>&lt;Version&gt;</Key><VersionId>a1</VersionId></Version>
            </ListVersionsResult>"#;
        assert_eq!(entry_kinds(body), [false, true, false]);
        assert_eq!(xml_element(body, "Name").as_deref(), Some("b"));
        assert_eq!(xml_element(body, "Status"), None);
        // All written in one second: the timestamps cannot order them.
        let objects = vec![(0, e("a", "a3", false)), (0, e("a", "a1", false))];
        let markers = vec![(0, e("a", "a2", true))];
        let listed = interleave(&entry_kinds(body), objects, markers);
        assert!(in_listing_order(&listed));
        let ids: Vec<&str> = listed.iter().map(|(_, e)| e.version.id.as_str()).collect();
        assert_eq!(ids, ["a3", "a2", "a1"]);
        // All versions, then all markers (moto): a marker newer than the
        // version before it shows the document is not in listing order.
        let late = vec![
            (30, e("a", "a3", false)),
            (10, e("a", "a1", false)),
            (20, e("a", "a2", true)),
        ];
        assert!(!in_listing_order(&late));
    }

    #[test]
    fn versions_and_markers_merge_back_into_listing_order() {
        let objects = vec![
            (30, e("a", "a3", false)),
            (10, e("a", "a1", false)),
            (5, e("b", "b1", false)),
        ];
        let markers = vec![(20, e("a", "a2", true)), (40, e("c", "c1", true))];
        let ids: Vec<String> = merge_listing(objects, markers)
            .into_iter()
            .map(|e| e.version.id)
            .collect();
        assert_eq!(ids, ["a3", "a2", "a1", "b1", "c1"]);
    }
}
