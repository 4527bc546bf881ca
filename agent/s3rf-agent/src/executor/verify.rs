//! The S3 calls of verification jobs: a page of keys after a key, an
//! object's entry or ETags from a HEAD (its own and the source ETag s3rf recorded
//! on it), and the MD5 of an object's bytes read through (`--deep`).

use super::buckets::{ListQuery, Page};
use super::*;

impl Executor {
    /// Up to `max_keys` keys of `bucket` under `prefix` after `start_after`
    /// (`next` is set when more follow). A missing bucket lists as empty
    /// when `missing_is_empty` (the destination side of a verification).
    pub async fn list_after(
        &self,
        endpoint: &str,
        bucket: &str,
        prefix: Option<&str>,
        start_after: Option<&str>,
        max_keys: i32,
        missing_is_empty: bool,
    ) -> Result<Page, ExecError> {
        let q = ListQuery {
            prefix,
            start_after,
            max_keys,
            ..ListQuery::default()
        };
        match self.list_objects(endpoint, bucket, q).await {
            Err(ExecError::NoSuchBucket(_)) if missing_is_empty => Ok(Page {
                objects: Vec::new(),
                prefixes: Vec::new(),
                next: None,
            }),
            other => other,
        }
    }

    /// An object's ETag and the source ETag s3rf recorded on it, from a
    /// HEAD (both `None` if it is gone).
    pub async fn head_etags(
        &self,
        endpoint: &str,
        bucket: &str,
        key: &str,
    ) -> Result<(Option<String>, Option<String>), ExecError> {
        let store = self.named_store(endpoint)?;
        let obj = ObjectRef {
            endpoint: endpoint.to_owned(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        };
        Ok(self
            .head_destination(store, &obj)
            .await?
            .map(|f| (f.etag, f.recorded_source_etag))
            .unwrap_or_default())
    }

    /// An object as a listing would show it, and the source ETag s3rf
    /// recorded on it, from a HEAD (`None` if it is gone).
    pub async fn head_entry(
        &self,
        endpoint: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(crate::verify::Entry, Option<String>)>, ExecError> {
        let store = self.named_store(endpoint)?;
        let obj = ObjectRef {
            endpoint: endpoint.to_owned(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        };
        Ok(self.head_destination(store, &obj).await?.map(|f| {
            let entry = crate::verify::Entry {
                key: key.to_owned(),
                size: f.size,
                etag: f.etag,
            };
            (entry, f.recorded_source_etag)
        }))
    }

    /// The MD5 and length of an object's bytes, read through without
    /// holding them.
    pub async fn read_md5(
        &self,
        endpoint: &str,
        bucket: &str,
        key: &str,
    ) -> Result<(integrity::Md5, u64), ExecError> {
        use ::md5::Digest as _;
        let store = self.named_store(endpoint)?;
        let t = Target {
            endpoint: endpoint.to_owned(),
            bucket: bucket.to_owned(),
            key: Some(key.to_owned()),
        };
        let out = store
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify("GetObject", &t, e))?;
        let mut body = out.body;
        let mut hasher = ::md5::Md5::new();
        let mut n = 0u64;
        while let Some(chunk) = body.try_next().await.map_err(|e| ExecError::Transport {
            op: "GetObject",
            target: t.clone(),
            detail: e.to_string(),
        })? {
            n += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok((hasher.finalize().into(), n))
    }
}
