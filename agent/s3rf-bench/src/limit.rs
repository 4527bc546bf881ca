//! What the servers themselves sustain, measured from this process with many
//! connections and no bookkeeping: GET of every object into the void, PUT of
//! the same amount from memory, and (on one endpoint) CopyObject.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};

use crate::dataset::Dataset;

/// Wall time of one raw pass over a dataset.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limit {
    /// GET of every object, bodies drained and dropped.
    pub get: Duration,
    /// PUT of as many objects of the same size, from memory.
    pub put: Duration,
    /// CopyObject of every object within the source server.
    pub copy: Duration,
}

/// GET of every object of `bucket`.
pub async fn get_all(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    d: &Dataset,
    concurrency: usize,
) -> Result<Duration> {
    let t = Instant::now();
    futures::stream::iter(0..d.count)
        .map(|i| async move {
            let key = d.key(i);
            let mut body = s3
                .get_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .with_context(|| format!("GET {bucket}/{key}"))?
                .body;
            let mut n = 0u64;
            while let Some(chunk) = body.try_next().await.context("GET body")? {
                n += chunk.len() as u64;
            }
            anyhow::ensure!(
                n == d.size,
                "GET {bucket}/{key}: {n} bytes, want {}",
                d.size
            );
            Ok(())
        })
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await?;
    Ok(t.elapsed())
}

/// PUT of `d.count` objects of `d.size` into `bucket`, from memory.
pub async fn put_all(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    d: &Dataset,
    concurrency: usize,
) -> Result<Duration> {
    let bodies: Vec<bytes::Bytes> = (0..d.count.min(8)).map(|i| d.content(i)).collect();
    let bodies = &bodies;
    let t = Instant::now();
    futures::stream::iter(0..d.count)
        .map(|i| async move {
            s3.put_object()
                .bucket(bucket)
                .key(d.key(i))
                .body(bodies[i % bodies.len()].clone().into())
                .send()
                .await
                .with_context(|| format!("PUT {bucket}/{}", d.key(i)))
                .map(|_| ())
        })
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await?;
    Ok(t.elapsed())
}

/// CopyObject of every object from `src` into `dst` on one server.
pub async fn copy_all(
    s3: &aws_sdk_s3::Client,
    src: &str,
    dst: &str,
    d: &Dataset,
    concurrency: usize,
) -> Result<Duration> {
    let t = Instant::now();
    futures::stream::iter(0..d.count)
        .map(|i| async move {
            s3.copy_object()
                .bucket(dst)
                .key(d.key(i))
                .copy_source(format!("{src}/{}", d.key(i)))
                .send()
                .await
                .with_context(|| format!("CopyObject {src}/{}", d.key(i)))
                .map(|_| ())
        })
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await?;
    Ok(t.elapsed())
}
