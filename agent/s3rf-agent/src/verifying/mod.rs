//! Verification jobs (`s3rf-agent verify`, subject `<prefix>.verify`): an
//! independent comparison of a destination with its source, like
//! `rclone check`, run by the fleet page by page.
//!
//! - The first job selects the bucket pairs, records them (`plan`) and
//!   publishes page 0 of each.
//! - A page job lists one source page after `start_after`, publishes the
//!   next page first (so listing runs ahead), then lists the destination's
//!   keys of the same range a page at a time and merges them with the
//!   source page (`verify::Merge`, pure): missing, extra, or a pair judged
//!   by size and comparable checksums. A pair whose checksums the listings
//!   cannot compare is settled by HEADs (for stores that list no ETags),
//!   by the source ETag s3rf recorded on the destination object, or with
//!   `deep` by reading both; else it matches by size only. Differing keys go to `<prefix>.verified.<id>.d`, then the
//!   page's counts are recorded once at `<prefix>.verified.<id>.r.<page>`.
//!
//! With `filters` (`verify --filters`) each source object first goes
//! through the agent's filter chain, as a copy would (`route`): one the
//! filters skip is left out, and so is a destination object of the same
//! key; one they rename is compared with the object under its new name
//! (a HEAD), which is then claimed at `<prefix>.verified.<id>.c.<hash>`
//! so that the page listing that key does not count it as extra (claims
//! are settled when the results are read: `summary`, `differences`).
//!
//! A job holds one source page and one destination page, whatever the
//! bucket's size. Listings must be in key order, as S3's are (directory
//! buckets, which list unordered, are not supported).

use std::collections::HashSet;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind};
use futures::StreamExt;
use tracing::info;

use crate::context::{Delivery, Shared};
use crate::executor::ExecError;
use crate::jetstream::{Outgoing, QueueError, publish_all, publish_failed, publish_stored};
use crate::job::{CopyJob, ObjectRef, Origin, VerifyJob};
use crate::migration::{self, entity_hash};
use crate::names::{JobKind, Names};
use crate::outcome::Disposition;
mod results;

pub use results::{differences, summary};

use crate::verify::{
    Difference, Entry, Kind, Merge, Merged, Verdict, VerifyCounts, VerifyEvent, judge,
};

/// Pairs settled at once by HEADs (or reads, `deep`) within a page.
const SETTLE_CONCURRENCY: usize = 32;
/// Destination keys listed per request.
const DST_PAGE: i32 = 1000;
/// Differences published at once.
const DIFF_BATCH: usize = 500;

/// Why a verification job failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Spec(String),
}

impl VerifyError {
    /// Whether retrying can help.
    pub fn disposition(&self) -> Disposition {
        match self {
            VerifyError::Exec(e) => e.disposition(),
            VerifyError::Queue(_) => Disposition::QueueDown,
            VerifyError::Spec(_) => Disposition::DeadLetter,
        }
    }
}

fn queue_err(what: &'static str, name: &str, e: impl std::fmt::Display) -> QueueError {
    QueueError::Setup {
        what,
        name: name.to_owned(),
        detail: e.to_string(),
    }
}

/// Runs a verification job (the handler shape of `object::handle`; it
/// holds its pull slot throughout and returns no outcome).
pub(crate) async fn handle(
    shared: &Shared,
    job: &VerifyJob,
    delivery: Delivery,
    _slot: &mut tokio::sync::OwnedSemaphorePermit,
) -> Result<Option<crate::executor::Outcome>, VerifyError> {
    let spec = &job.spec;
    match &spec.page {
        None => {
            let id = spec
                .id
                .clone()
                .unwrap_or_else(|| format!("v-{}", delivery.seq));
            plan(shared, spec, &id).await?;
        }
        Some(page) => {
            let id = spec.id.clone().unwrap_or_default();
            compare_page(shared, spec, &id, page).await?;
        }
    }
    Ok(None)
}

/// Publishes `payload` at `subject` unless something is there already;
/// returns whether this was the first.
async fn publish_once(
    js: &jetstream::Context,
    subject: &str,
    payload: Vec<u8>,
) -> Result<bool, QueueError> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
    match publish_stored(js, subject, headers, payload).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(false),
        Err(e) => Err(publish_failed(subject, &e)),
    }
}

fn page_job(
    names: &Names,
    spec: &s3rf_wire::VerifyJob,
    id: &str,
    page: s3rf_wire::VerifyPage,
) -> Outgoing {
    let msg_id = format!(
        "verify:{id}:{}:{}",
        entity_hash(&[&page.bucket]),
        page.number
    );
    let job = s3rf_wire::VerifyJob {
        id: Some(id.to_owned()),
        page: Some(page),
        ..spec.clone()
    };
    Outgoing {
        subject: names.job_subject(JobKind::Verify),
        msg_id,
        payload: serde_json::to_vec(&job).unwrap_or_default(),
    }
}

async fn plan(shared: &Shared, spec: &s3rf_wire::VerifyJob, id: &str) -> Result<(), VerifyError> {
    let available = match &spec.buckets {
        Some(_) => Vec::new(),
        None => shared.executor.list_buckets(&spec.src).await?,
    };
    let pairs = migration::select_buckets(
        &available,
        spec.buckets.as_deref(),
        &spec.exclude_buckets,
        &spec.bucket_map,
    )
    .map_err(|e| VerifyError::Spec(e.to_string()))?;
    let event = VerifyEvent::Planned {
        src: spec.src.clone(),
        dst: spec.dst.clone(),
        buckets: pairs.clone(),
    };
    publish_once(
        &shared.js,
        &shared.names.verify_result(id, "plan"),
        serde_json::to_vec(&event).unwrap_or_default(),
    )
    .await?;
    let jobs = pairs
        .into_iter()
        .map(|(bucket, dst_bucket)| {
            page_job(
                &shared.names,
                spec,
                id,
                s3rf_wire::VerifyPage {
                    bucket,
                    dst_bucket,
                    number: 0,
                    start_after: None,
                },
            )
        })
        .collect();
    publish_all(&shared.js, jobs).await?;
    info!(verification = %id, "verification planned");
    Ok(())
}

/// What a page found so far, and the differences not yet published.
struct Tallying<'a> {
    shared: &'a Shared,
    spec: &'a s3rf_wire::VerifyJob,
    id: &'a str,
    page: &'a s3rf_wire::VerifyPage,
    counts: VerifyCounts,
    pending: Vec<Outgoing>,
}

impl Tallying<'_> {
    fn differ(&mut self, key: &str, kind: Kind, why: Option<&str>) {
        self.differ_at(key, kind, why, None);
    }

    /// A difference of a source key the filters renamed to `renamed`
    /// (`None`: compared under its own name).
    fn differ_at(&mut self, key: &str, kind: Kind, why: Option<&str>, renamed: Option<&ObjectRef>) {
        match kind {
            Kind::Missing => self.counts.missing += 1,
            Kind::Different => self.counts.different += 1,
            Kind::Extra => self.counts.extra += 1,
        }
        let d = Difference {
            bucket: self.page.bucket.clone(),
            dst_bucket: renamed.map_or_else(|| self.page.dst_bucket.clone(), |r| r.bucket.clone()),
            key: key.to_owned(),
            dst_key: renamed.map(|r| r.key.clone()),
            kind,
            why: why.map(str::to_owned),
        };
        let hash = match renamed {
            None => entity_hash(&[&self.page.bucket, key]),
            Some(r) => entity_hash(&[&self.page.bucket, key, &r.bucket, &r.key]),
        };
        self.pending.push(Outgoing {
            subject: self.shared.names.verify_differences(self.id),
            msg_id: format!("vd:{}:{hash}", self.id),
            payload: serde_json::to_vec(&d).unwrap_or_default(),
        });
    }

    async fn take(&mut self, merged: Vec<Merged>) -> Result<(), VerifyError> {
        let mut unsure = Vec::new();
        for m in merged {
            match m {
                Merged::Missing(s) => self.differ(&s.key, Kind::Missing, None),
                Merged::Extra(d) => self.differ(&d.key, Kind::Extra, None),
                Merged::Pair(s, d) => match judge(&s, &d) {
                    Verdict::Same => self.counts.matching += 1,
                    Verdict::Differ(why) => self.differ(&s.key, Kind::Different, Some(why)),
                    Verdict::Unsure => unsure.push((s, d)),
                },
            }
        }
        let (shared, spec, page) = (self.shared, self.spec, self.page);
        let mut settled = futures::stream::iter(unsure)
            .map(|(s, d)| async move {
                let r = settle(shared, spec, page, &page.dst_bucket, &s, &d).await;
                (s.key, r)
            })
            .buffer_unordered(SETTLE_CONCURRENCY);
        while let Some((key, r)) = settled.next().await {
            self.count(&key, r?, None);
        }
        if self.pending.len() >= DIFF_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Counts a pair as settled (compared under a new name if `renamed`).
    fn count(&mut self, key: &str, settled: Settled, renamed: Option<&ObjectRef>) {
        match settled {
            Settled::Matching { read } => {
                self.counts.matching += 1;
                self.counts.read += u64::from(read);
            }
            Settled::SizeOnly => self.counts.size_only += 1,
            Settled::Differ { why, read } => {
                self.counts.read += u64::from(read);
                self.differ_at(key, Kind::Different, Some(why), renamed);
            }
        }
    }

    /// Compares each source object the filters renamed with the object
    /// under its new name, and claims the names found.
    async fn take_renamed(&mut self, renamed: Vec<(Entry, ObjectRef)>) -> Result<(), VerifyError> {
        let (shared, spec, page) = (self.shared, self.spec, self.page);
        let mut compared = futures::stream::iter(renamed)
            .map(|(s, to)| async move {
                let r = compare_renamed(shared, spec, page, &s, &to).await;
                (s.key, to, r)
            })
            .buffer_unordered(SETTLE_CONCURRENCY);
        while let Some((key, to, r)) = compared.next().await {
            self.counts.renamed += 1;
            let Some(settled) = r? else {
                self.differ_at(&key, Kind::Missing, None, Some(&to));
                continue;
            };
            let entity = entity_hash(&[&to.bucket, &to.key]);
            self.pending.push(Outgoing {
                subject: shared.names.verify_claim(self.id, &entity),
                msg_id: format!("vc:{}:{entity}", self.id),
                payload: serde_json::to_vec(&(&page.bucket, &key)).unwrap_or_default(),
            });
            self.count(&key, settled, Some(&to));
        }
        if self.pending.len() >= DIFF_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), QueueError> {
        publish_all(&self.shared.js, std::mem::take(&mut self.pending)).await
    }
}

/// How a pair the listings could not compare was settled.
enum Settled {
    /// The same (by HEAD ETags, the recorded source ETag, or the bytes).
    Matching { read: bool },
    /// Same size; nothing more to compare.
    SizeOnly,
    /// Not the same.
    Differ { why: &'static str, read: bool },
}

/// Where the filters send one source object (`verify --filters`).
enum Route {
    /// To the destination object of the same key.
    Same,
    /// To another key (or bucket) at the destination.
    Renamed(ObjectRef),
    /// Nowhere: a filter skips it.
    Skip,
}

/// Runs the filter chain over a listed source object as its copy would.
async fn route(
    shared: &Shared,
    spec: &s3rf_wire::VerifyJob,
    page: &s3rf_wire::VerifyPage,
    e: &Entry,
) -> Result<Route, ExecError> {
    let at = |endpoint: &str, bucket: &str| ObjectRef {
        endpoint: endpoint.to_owned(),
        bucket: bucket.to_owned(),
        key: e.key.clone(),
    };
    let dst = at(&spec.dst, &page.dst_bucket);
    let job = CopyJob::new(at(&spec.src, &page.bucket), dst.clone(), Origin::Direct);
    match shared.executor.filtered_destination(&job).await {
        Ok(None) => Ok(Route::Skip),
        Ok(Some(to)) if to == dst => Ok(Route::Same),
        Ok(Some(to)) => Ok(Route::Renamed(to)),
        // Gone since it was listed: compared as listed, like any other.
        Err(e) if e.is_not_found() => Ok(Route::Same),
        Err(e) => Err(e),
    }
}

/// Compares a source object with the object the filters renamed it to;
/// `None` when that is missing.
async fn compare_renamed(
    shared: &Shared,
    spec: &s3rf_wire::VerifyJob,
    page: &s3rf_wire::VerifyPage,
    src: &Entry,
    to: &ObjectRef,
) -> Result<Option<Settled>, ExecError> {
    let Some((dst, _)) = shared
        .executor
        .head_entry(&spec.dst, &to.bucket, &to.key)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(match judge(src, &dst) {
        Verdict::Same => Settled::Matching { read: false },
        Verdict::Differ(why) => Settled::Differ { why, read: false },
        Verdict::Unsure => settle(shared, spec, page, &to.bucket, src, &dst).await?,
    }))
}

/// Settles a pair whose checksums the listings cannot compare: with the
/// ETags a HEAD gives where a listing gave none, then the source ETag s3rf
/// recorded on the destination, then (`deep`) the bytes.
async fn settle(
    shared: &Shared,
    spec: &s3rf_wire::VerifyJob,
    page: &s3rf_wire::VerifyPage,
    dst_bucket: &str,
    src: &Entry,
    dst: &Entry,
) -> Result<Settled, ExecError> {
    let ex = &shared.executor;
    let (dst_etag, recorded) = ex.head_etags(&spec.dst, dst_bucket, &dst.key).await?;
    let src_etag = match &src.etag {
        Some(e) => Some(e.clone()),
        None => ex.head_etags(&spec.src, &page.bucket, &src.key).await?.0,
    };
    let src = Entry {
        etag: src_etag,
        ..src.clone()
    };
    let dst = Entry {
        etag: dst_etag.or_else(|| dst.etag.clone()),
        ..dst.clone()
    };
    match judge(&src, &dst) {
        Verdict::Same => return Ok(Settled::Matching { read: false }),
        Verdict::Differ(why) => return Ok(Settled::Differ { why, read: false }),
        Verdict::Unsure => {}
    }
    if let (Some(r), Some(s)) = (recorded.as_deref(), src.etag.as_deref())
        && r.eq_ignore_ascii_case(s)
    {
        return Ok(Settled::Matching { read: false });
    }
    if !spec.deep {
        return Ok(Settled::SizeOnly);
    }
    let (a, b) = tokio::try_join!(
        ex.read_md5(&spec.src, &page.bucket, &src.key),
        ex.read_md5(&spec.dst, dst_bucket, &dst.key),
    )?;
    Ok(if a == b {
        Settled::Matching { read: true }
    } else {
        Settled::Differ {
            why: "bytes",
            read: true,
        }
    })
}

async fn compare_page(
    shared: &Shared,
    spec: &s3rf_wire::VerifyJob,
    id: &str,
    page: &s3rf_wire::VerifyPage,
) -> Result<(), VerifyError> {
    let ex = &shared.executor;
    let prefix = spec.prefix.as_deref();
    let size = shared.migrate.page_size;
    let src = ex
        .list_after(
            &spec.src,
            &page.bucket,
            prefix,
            page.start_after.as_deref(),
            size,
            false,
        )
        .await?;
    let last = src.next.is_none() || src.objects.is_empty();
    let bound = if last {
        None
    } else {
        src.objects.iter().map(|e| &e.key).max().cloned()
    };
    if let Some(after) = &bound {
        let next = s3rf_wire::VerifyPage {
            number: page.number + 1,
            start_after: Some(after.clone()),
            ..page.clone()
        };
        publish_all(&shared.js, vec![page_job(&shared.names, spec, id, next)]).await?;
    }
    let (kept, renamed, skipped) = if spec.filters {
        routes(shared, spec, page, src.objects).await?
    } else {
        (src.objects, Vec::new(), HashSet::new())
    };
    let mut merge = Merge::new(kept);
    let mut t = Tallying {
        shared,
        spec,
        id,
        page,
        counts: VerifyCounts {
            filtered: skipped.len() as u64,
            ..VerifyCounts::default()
        },
        pending: Vec::new(),
    };
    t.take_renamed(renamed).await?;
    let mut after = page.start_after.clone();
    loop {
        let mut dst = ex
            .list_after(
                &spec.dst,
                &page.dst_bucket,
                prefix,
                after.as_deref(),
                DST_PAGE,
                true,
            )
            .await?;
        dst.objects.sort_by(|a, b| a.key.cmp(&b.key));
        let mut done = dst.next.is_none() || dst.objects.is_empty();
        let mut merged = Vec::new();
        for d in dst.objects {
            if bound.as_deref().is_some_and(|b| d.key.as_str() > b) {
                done = true;
                break;
            }
            after = Some(d.key.clone());
            if !skipped.contains(&d.key) {
                merge.feed(d, &mut merged);
            }
        }
        t.take(merged).await?;
        if done {
            break;
        }
    }
    let mut rest = Vec::new();
    merge.finish(&mut rest);
    t.take(rest).await?;
    t.flush().await?;
    let event = VerifyEvent::Page {
        bucket: page.bucket.clone(),
        page: page.number,
        last,
        counts: t.counts,
    };
    let entity = format!(
        "p{}",
        entity_hash(&[&page.bucket, &page.number.to_string()])
    );
    let first = publish_once(
        &shared.js,
        &shared.names.verify_result(id, &entity),
        serde_json::to_vec(&event).unwrap_or_default(),
    )
    .await?;
    if first {
        crate::metrics::verified(&t.counts);
    }
    Ok(())
}

/// A page's source objects by where the filters send them: compared
/// under their own key, renamed (with where to), and the keys skipped.
async fn routes(
    shared: &Shared,
    spec: &s3rf_wire::VerifyJob,
    page: &s3rf_wire::VerifyPage,
    objects: Vec<Entry>,
) -> Result<(Vec<Entry>, Vec<(Entry, ObjectRef)>, HashSet<String>), ExecError> {
    let mut routed = futures::stream::iter(objects)
        .map(|e| async move {
            let r = route(shared, spec, page, &e).await;
            (e, r)
        })
        .buffer_unordered(SETTLE_CONCURRENCY);
    let (mut kept, mut renamed, mut skipped) = (Vec::new(), Vec::new(), HashSet::new());
    while let Some((e, r)) = routed.next().await {
        match r? {
            Route::Same => kept.push(e),
            Route::Renamed(to) => renamed.push((e, to)),
            Route::Skip => {
                skipped.insert(e.key);
            }
        }
    }
    Ok((kept, renamed, skipped))
}
