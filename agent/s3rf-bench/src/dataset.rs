//! Benchmark datasets: N objects of one size, with content that is
//! deterministic per key, so that any copy can be checked without keeping
//! the data around.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

/// `name=COUNTxSIZE`, e.g. `small=20000x4KiB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// Short name, also the source bucket's name.
    pub name: String,
    /// Objects.
    pub count: usize,
    /// Bytes per object.
    pub size: u64,
}

impl FromStr for Dataset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || format!("dataset {s:?}: expected NAME=COUNTxSIZE, e.g. small=20000x4KiB");
        let (name, rest) = s.split_once('=').ok_or_else(err)?;
        let (count, size) = rest.split_once('x').ok_or_else(err)?;
        let count: usize = count.trim().parse().map_err(|_| err())?;
        let size: bytesize::ByteSize = size.trim().parse().map_err(|_| err())?;
        let valid_name = !name.is_empty()
            && name.len() <= 20
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid_name || count == 0 {
            return Err(err());
        }
        Ok(Self {
            name: name.to_owned(),
            count,
            size: size.as_u64(),
        })
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} x {})",
            self.name,
            self.count,
            bytesize::ByteSize::b(self.size).display().iec_short()
        )
    }
}

/// The datasets of issue #7: small, medium, large.
pub fn defaults() -> Vec<Dataset> {
    ["small=20000x4KiB", "medium=200x8MiB", "large=4x512MiB"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The WAN profile's datasets: each run pays the link's latency, so fewer
/// objects give the same steady state in a fraction of the time.
pub fn wan_defaults() -> Vec<Dataset> {
    ["small=2000x4KiB", "medium=100x8MiB", "large=2x256MiB"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

impl Dataset {
    /// Total bytes.
    pub fn bytes(&self) -> u64 {
        self.size * self.count as u64
    }

    /// The key of object `i`: spread over 50 prefixes, like real buckets.
    pub fn key(&self, i: usize) -> String {
        format!("d{:02}/obj-{i:07}", i % 50)
    }

    fn seed(&self, i: usize) -> u64 {
        (i as u64 + 1).wrapping_mul(1_000_003) ^ self.size
    }

    /// The content of object `i`.
    pub fn content(&self, i: usize) -> Bytes {
        let len = usize::try_from(self.size).unwrap_or(usize::MAX);
        Bytes::from(s3rf_testkit::pattern_bytes(len, self.seed(i)))
    }

    /// Concurrency that fills quickly without holding gigabytes in memory.
    fn fill_concurrency(&self) -> usize {
        let budget = 1u64 << 30;
        usize::try_from((budget / self.size.max(1)).clamp(1, 64)).unwrap_or(1)
    }

    /// Writes every object into `bucket`.
    pub async fn fill(&self, s3: &aws_sdk_s3::Client, bucket: &str) -> Result<()> {
        futures::stream::iter(0..self.count)
            .map(|i| async move {
                s3.put_object()
                    .bucket(bucket)
                    .key(self.key(i))
                    .body(self.content(i).into())
                    .send()
                    .await
                    .with_context(|| format!("filling {bucket}/{}", self.key(i)))
                    .map(|_| ())
            })
            .buffer_unordered(self.fill_concurrency())
            .try_collect::<()>()
            .await
    }

    /// Checks that `bucket` holds exactly this dataset: the same keys and
    /// sizes, and the same bytes for an evenly spread sample of objects.
    pub async fn verify(&self, s3: &aws_sdk_s3::Client, bucket: &str) -> Result<()> {
        let mut found: Vec<(String, u64)> = Vec::with_capacity(self.count);
        let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.with_context(|| format!("listing {bucket}"))?;
            for o in page.contents() {
                let size = u64::try_from(o.size().unwrap_or(-1)).unwrap_or(u64::MAX);
                found.push((o.key().unwrap_or_default().to_owned(), size));
            }
        }
        found.sort();
        let mut want: Vec<(String, u64)> =
            (0..self.count).map(|i| (self.key(i), self.size)).collect();
        want.sort();
        if found != want {
            let missing = want.iter().filter(|w| found.binary_search(w).is_err());
            let extra = found.iter().filter(|f| want.binary_search(f).is_err());
            bail!(
                "{bucket} holds {} objects, want {}; first missing or wrong size: {:?}; first unexpected: {:?}",
                found.len(),
                self.count,
                missing.take(3).collect::<Vec<_>>(),
                extra.take(3).collect::<Vec<_>>()
            );
        }
        for i in self.sample() {
            let key = self.key(i);
            let got = s3
                .get_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .with_context(|| format!("reading {bucket}/{key}"))?
                .body
                .collect()
                .await
                .with_context(|| format!("reading {bucket}/{key}"))?
                .into_bytes();
            if got != self.content(i) {
                bail!("{bucket}/{key}: content differs from the source");
            }
        }
        Ok(())
    }

    /// Up to 16 objects and 1 GiB, evenly spread, first and last included.
    fn sample(&self) -> Vec<usize> {
        let by_bytes = usize::try_from((1u64 << 30) / self.size.max(1)).unwrap_or(1);
        let n = self.count.min(16).min(by_bytes.max(1));
        if n <= 1 {
            return vec![self.count - 1];
        }
        let mut v: Vec<usize> = (0..n).map(|j| j * (self.count - 1) / (n - 1)).collect();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let d: Dataset = "small=20000x4KiB".parse().unwrap();
        assert_eq!((d.name.as_str(), d.count, d.size), ("small", 20000, 4096));
        assert_eq!("big=2x1GiB".parse::<Dataset>().unwrap().size, 1 << 30);
        for bad in ["small", "small=20000", "Small=1x1", "s=0x1", "s=1xlots"] {
            assert!(bad.parse::<Dataset>().is_err(), "{bad}");
        }
        assert_eq!(defaults().len(), 3);
    }

    #[test]
    fn sample_is_spread_and_bounded() {
        let d: Dataset = "s=20000x4KiB".parse().unwrap();
        let s = d.sample();
        assert_eq!((s.len(), s[0], s[15]), (16, 0, 19999));
        let l: Dataset = "l=4x512MiB".parse().unwrap();
        assert_eq!(l.sample(), vec![0, 3]);
        assert_ne!(d.content(0), d.content(1));
    }
}
