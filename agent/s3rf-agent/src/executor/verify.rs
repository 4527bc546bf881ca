//! The S3 calls of verification jobs: a page of keys after a key, an
//! object's ETags from a HEAD (its own and the source ETag s3rf recorded
//! on it), and the MD5 of an object's bytes read through (`--deep`).

use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;

use super::*;
use crate::verify::Entry;

/// One page of keys in ascending order, and whether more follow.
#[derive(Debug, Clone, Default)]
pub struct KeyPage {
    /// Objects of the page.
    pub entries: Vec<Entry>,
    /// More keys follow.
    pub truncated: bool,
}

fn entries(out: &ListObjectsV2Output) -> Vec<Entry> {
    out.contents()
        .iter()
        .filter_map(|o| {
            Some(Entry {
                key: o.key()?.to_owned(),
                size: u64::try_from(o.size().unwrap_or(0)).unwrap_or(0),
                etag: o.e_tag().map(strip_quotes),
            })
        })
        .collect()
}

impl Executor {
    /// Up to `max_keys` keys of `bucket` under `prefix` after `start_after`.
    /// A missing bucket lists as empty when `missing_is_empty` (the
    /// destination side of a verification).
    pub async fn list_after(
        &self,
        endpoint: &str,
        bucket: &str,
        prefix: Option<&str>,
        start_after: Option<&str>,
        max_keys: i32,
        missing_is_empty: bool,
    ) -> Result<KeyPage, ExecError> {
        let store = self.named_store(endpoint)?;
        let t = Self::bucket_target(endpoint, bucket);
        let out = store
            .client
            .list_objects_v2()
            .bucket(bucket)
            .set_prefix(prefix.filter(|p| !p.is_empty()).map(str::to_owned))
            .set_start_after(start_after.map(str::to_owned))
            .max_keys(max_keys)
            .send()
            .await
            .map_err(|e| classify("ListObjectsV2", &t, e));
        match out {
            Ok(out) => Ok(KeyPage {
                entries: entries(&out),
                truncated: out.is_truncated() == Some(true),
            }),
            Err(ExecError::NoSuchBucket(_)) if missing_is_empty => Ok(KeyPage::default()),
            Err(e) => Err(e),
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
