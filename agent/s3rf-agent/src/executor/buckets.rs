//! Bucket and listing calls of control jobs: list buckets, create a
//! destination bucket (or accept one that is ours), one page of a listing.

use super::*;

/// One object of a listing page: key, size and ETag (unquoted).
pub use crate::verify::Entry as Listed;

/// One page of a bucket listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Objects, in the store's order (not necessarily sorted).
    pub objects: Vec<Listed>,
    /// Common prefixes (listing with a delimiter only).
    pub prefixes: Vec<String>,
    /// Token of the next page, if any.
    pub next: Option<String>,
}

impl Executor {
    // ----- buckets and listings ----------------------------------------------

    pub(super) fn bucket_target(endpoint: &str, bucket: &str) -> Target {
        Target {
            endpoint: endpoint.to_owned(),
            bucket: bucket.to_owned(),
            key: None,
        }
    }

    pub(super) fn named_store(&self, endpoint: &str) -> Result<&Store, ExecError> {
        self.stores
            .get(endpoint)
            .ok_or_else(|| ExecError::Internal {
                op: "lookup",
                target: Self::bucket_target(endpoint, ""),
                detail: "endpoint vanished after validation".to_owned(),
            })
    }

    /// Every bucket of `endpoint`.
    pub async fn list_buckets(&self, endpoint: &str) -> Result<Vec<String>, ExecError> {
        let store = self.named_store(endpoint)?;
        let t = Self::bucket_target(endpoint, "*");
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = store
                .client
                .list_buckets()
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| classify("ListBuckets", &t, e))?;
            names.extend(
                out.buckets()
                    .iter()
                    .filter_map(|b| b.name().map(str::to_owned)),
            );
            match out.continuation_token() {
                Some(next) if !next.is_empty() && Some(next) != token.as_deref() => {
                    token = Some(next.to_owned());
                }
                _ => return Ok(names),
            }
        }
    }

    /// Makes sure `bucket` exists on `endpoint` and is ours; creates it
    /// unless `dry_run`. With `versions`, a bucket it creates gets
    /// versioning enabled and one that exists must have it.
    pub async fn ensure_bucket(
        &self,
        endpoint: &str,
        bucket: &str,
        dry_run: bool,
        versions: bool,
    ) -> Result<BucketState, ExecError> {
        let state = self.settle_bucket(endpoint, bucket, dry_run).await?;
        if versions {
            match state {
                BucketState::Created => self.enable_versioning(endpoint, bucket).await?,
                BucketState::Existed | BucketState::WouldUse => {
                    self.check_versioning(endpoint, bucket).await?;
                }
                BucketState::WouldCreate | BucketState::Failed => {}
            }
        }
        Ok(state)
    }

    /// [`Self::ensure_bucket`] without the versioning.
    async fn settle_bucket(
        &self,
        endpoint: &str,
        bucket: &str,
        dry_run: bool,
    ) -> Result<BucketState, ExecError> {
        let store = self.named_store(endpoint)?;
        let t = Self::bucket_target(endpoint, bucket);
        let head = store.client.head_bucket().bucket(bucket).send().await;
        match head {
            Ok(_) => {
                return Ok(if dry_run {
                    BucketState::WouldUse
                } else {
                    BucketState::Existed
                });
            }
            Err(e) => match classify("HeadBucket", &t, e) {
                e if e.is_not_found() => {}
                ExecError::AccessDenied { .. } => {
                    return Err(ExecError::BucketTaken(t));
                }
                e => return Err(e),
            },
        }
        if dry_run {
            return Ok(BucketState::WouldCreate);
        }
        let mut req = store.client.create_bucket().bucket(bucket);
        if store.config.region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(
                        store.config.region.as_str(),
                    ))
                    .build(),
            );
        }
        match req
            .send()
            .await
            .map_err(|e| classify("CreateBucket", &t, e))
        {
            Ok(_) => {
                info!(endpoint, bucket, "bucket created");
                Ok(BucketState::Created)
            }
            Err(ExecError::Service { code, .. }) if code == "BucketAlreadyOwnedByYou" => {
                Ok(BucketState::Existed)
            }
            Err(ExecError::Service { code, .. }) if code == "BucketAlreadyExists" => {
                Err(ExecError::BucketTaken(t))
            }
            Err(e) => Err(e),
        }
    }

    /// One page (up to `max_keys`) of `bucket` under `prefix`.
    pub async fn list_page(
        &self,
        endpoint: &str,
        bucket: &str,
        prefix: Option<&str>,
        token: Option<&str>,
        max_keys: i32,
        delimiter: Option<&str>,
    ) -> Result<Page, ExecError> {
        self.list_objects(
            endpoint,
            bucket,
            ListQuery {
                prefix,
                token,
                start_after: None,
                max_keys,
                delimiter,
            },
        )
        .await
    }

    /// One ListObjectsV2 page; `next` is set exactly when more follow.
    pub(super) async fn list_objects(
        &self,
        endpoint: &str,
        bucket: &str,
        q: ListQuery<'_>,
    ) -> Result<Page, ExecError> {
        let store = self.named_store(endpoint)?;
        let t = Self::bucket_target(endpoint, bucket);
        let out = store
            .client
            .list_objects_v2()
            .bucket(bucket)
            .set_prefix(q.prefix.filter(|p| !p.is_empty()).map(str::to_owned))
            .set_continuation_token(q.token.map(str::to_owned))
            .set_start_after(q.start_after.map(str::to_owned))
            .max_keys(q.max_keys)
            .set_delimiter(q.delimiter.map(str::to_owned))
            .send()
            .await
            .map_err(|e| classify("ListObjectsV2", &t, e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(Listed {
                    key: o.key()?.to_owned(),
                    size: u64::try_from(o.size().unwrap_or(0)).unwrap_or(0),
                    etag: o.e_tag().map(strip_quotes),
                })
            })
            .collect();
        let prefixes = out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix().map(str::to_owned))
            .collect();
        let next = match (out.is_truncated(), out.next_continuation_token()) {
            (Some(true), Some(tok)) if !tok.is_empty() => Some(tok.to_owned()),
            _ => None,
        };
        Ok(Page {
            objects,
            prefixes,
            next,
        })
    }
}

/// What one ListObjectsV2 request asks for.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ListQuery<'a> {
    /// Only keys under this prefix.
    pub prefix: Option<&'a str>,
    /// The continuation token of a previous page.
    pub token: Option<&'a str>,
    /// Only keys after this one.
    pub start_after: Option<&'a str>,
    /// At most this many keys.
    pub max_keys: i32,
    /// Group keys by this delimiter into common prefixes.
    pub delimiter: Option<&'a str>,
}
