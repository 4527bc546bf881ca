//! Every subject, stream, consumer and header name s3rf uses, in one place.
//!
//! All names derive from the configured prefix (`s3rf` by default), so several
//! independent deployments can share one NATS account.

/// Header: the subject the job was originally published on.
pub const HDR_ORIGINAL_SUBJECT: &str = "S3rf-Original-Subject";
/// Header: how many times the job was delivered before it was dead-lettered.
pub const HDR_DELIVERIES: &str = "S3rf-Deliveries";
/// Header: human-readable reason the job was dead-lettered.
pub const HDR_REASON: &str = "S3rf-Reason";
/// Header: the job's sequence number in the job stream.
pub const HDR_STREAM_SEQ: &str = "S3rf-Stream-Seq";
/// Header: RFC 3339 time the job was dead-lettered.
pub const HDR_FAILED_AT: &str = "S3rf-Failed-At";
/// Header: the kind of job (`copy`, `delete`).
pub const HDR_JOB_KIND: &str = "S3rf-Job-Kind";
/// Header: the job's original `Nats-Msg-Id`, if it had one.
pub const HDR_ORIGINAL_MSG_ID: &str = "S3rf-Original-Msg-Id";
/// Header: the byte length of a job payload too large to dead-letter whole
/// (set only then; the dead letter keeps the payload's first bytes).
pub const HDR_PAYLOAD_BYTES: &str = "S3rf-Payload-Bytes";
/// Header: SHA-256 (hex) of that whole payload.
pub const HDR_PAYLOAD_SHA256: &str = "S3rf-Payload-Sha256";
/// Header: RFC 3339 time a job was parked by a pause.
pub const HDR_PARKED_AT: &str = "S3rf-Parked-At";
/// User metadata key recording the source ETag on copies whose ETag differs
/// from the source's (multipart layouts), so re-runs can recognise them.
pub const META_SOURCE_ETAG: &str = "s3rf-source-etag";
/// User metadata key recording the source version a copy was made from
/// (copies of a pinned version: versioned migrations), since destination
/// version ids differ from the source's.
pub const META_SOURCE_VERSION: &str = "s3rf-source-version-id";

/// The kinds of job an agent executes; each has its own subject and consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Copy one object.
    Copy,
    /// Delete one object.
    Delete,
    /// Start a migration: select buckets, publish bucket jobs.
    Migrate,
    /// Create one destination bucket, then start its listing.
    Bucket,
    /// List one page of a bucket and publish its object jobs.
    List,
    /// Copy several small objects of one listing.
    Batch,
    /// Compare one page of a destination with its source.
    Verify,
    /// Copy the missing versions of one key, oldest first.
    Versions,
}

impl JobKind {
    /// Every kind, in the order consumers are set up.
    pub const ALL: [JobKind; 8] = [
        JobKind::Copy,
        JobKind::Delete,
        JobKind::Migrate,
        JobKind::Bucket,
        JobKind::List,
        JobKind::Batch,
        JobKind::Verify,
        JobKind::Versions,
    ];

    /// The subject token after the prefix.
    pub const fn token(self) -> &'static str {
        match self {
            JobKind::Copy => "copy",
            JobKind::Delete => "delete",
            JobKind::Migrate => "migrate",
            JobKind::Bucket => "bucket",
            JobKind::List => "list",
            JobKind::Batch => "batch",
            JobKind::Verify => "verify",
            JobKind::Versions => "versions",
        }
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.token())
    }
}

/// Names derived from one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// Names under `prefix` (already validated to be a single subject token).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// Subject jobs of `kind` are published on: `s3rf.copy`.
    pub fn job_subject(&self, kind: JobKind) -> String {
        format!("{}.{}", self.prefix, kind.token())
    }

    /// Subject dead letters of `kind` go to: `s3rf.dead.copy`.
    pub fn dead_subject(&self, kind: JobKind) -> String {
        format!("{}.dead.{}", self.prefix, kind.token())
    }

    /// Every dead-letter subject: `s3rf.dead.>`.
    pub fn dead_subjects(&self) -> String {
        format!("{}.dead.>", self.prefix)
    }

    /// The WorkQueue stream holding jobs: `S3RF_JOBS`.
    pub fn jobs_stream(&self) -> String {
        format!("{}_JOBS", self.prefix.to_uppercase())
    }

    /// The Limits stream holding dead letters: `S3RF_DEAD`.
    pub fn dead_stream(&self) -> String {
        format!("{}_DEAD", self.prefix.to_uppercase())
    }

    /// The Limits stream recording migration events exactly once: `S3RF_LEDGER`.
    pub fn ledger_stream(&self) -> String {
        format!("{}_LEDGER", self.prefix.to_uppercase())
    }

    /// Every ledger subject: `s3rf.ledger.>`.
    pub fn ledger_subjects(&self) -> String {
        format!("{}.ledger.>", self.prefix)
    }

    /// Ledger subject of one event: `s3rf.ledger.<migration>.<entity>.<event>`.
    pub fn ledger_subject(&self, migration: &str, entity: &str, event: &str) -> String {
        format!("{}.ledger.{migration}.{entity}.{event}", self.prefix)
    }

    /// All events of one entity, for the exactly-once check.
    pub fn ledger_entity(&self, migration: &str, entity: &str) -> String {
        format!("{}.ledger.{migration}.{entity}.*", self.prefix)
    }

    /// All events of one migration.
    pub fn ledger_migration(&self, migration: &str) -> String {
        format!("{}.ledger.{migration}.>", self.prefix)
    }

    /// The KV bucket holding migration specs and tallies: `s3rf-migrations`.
    pub fn migrations_kv(&self) -> String {
        format!("{}-migrations", self.prefix)
    }

    /// The KV bucket of per-object event sequencers: `s3rf-sequencers`.
    pub fn sequencers_kv(&self) -> String {
        format!("{}-sequencers", self.prefix)
    }

    /// The KV bucket of multipart copies in progress: `s3rf-uploads`.
    pub fn uploads_kv(&self) -> String {
        format!("{}-uploads", self.prefix)
    }

    /// The KV bucket of pauses in force: `s3rf-pauses`.
    pub fn pauses_kv(&self) -> String {
        format!("{}-pauses", self.prefix)
    }

    /// The KV bucket of agent heartbeats: `s3rf-agents`.
    pub fn agents_kv(&self) -> String {
        format!("{}-agents", self.prefix)
    }

    /// The Limits stream of verification results and differences:
    /// `S3RF_VERIFY`.
    pub fn verify_stream(&self) -> String {
        format!("{}_VERIFY", self.prefix.to_uppercase())
    }

    /// Every verification subject: `s3rf.verified.>`.
    pub fn verify_subjects(&self) -> String {
        format!("{}.verified.>", self.prefix)
    }

    /// A verification's result for `entity` (`plan` or a page's hash):
    /// `s3rf.verified.<id>.r.<entity>`.
    pub fn verify_result(&self, id: &str, entity: &str) -> String {
        format!("{}.verified.{id}.r.{entity}", self.prefix)
    }

    /// A verification's claim of a destination key that the filters renamed
    /// a source key to (`entity`: a hash of the bucket and key):
    /// `s3rf.verified.<id>.c.<entity>`. A key claimed is not extra.
    pub fn verify_claim(&self, id: &str, entity: &str) -> String {
        format!("{}.verified.{id}.c.{entity}", self.prefix)
    }

    /// Every result of a verification: `s3rf.verified.<id>.r.>`.
    pub fn verify_results(&self, id: &str) -> String {
        format!("{}.verified.{id}.r.>", self.prefix)
    }

    /// A verification's differing keys: `s3rf.verified.<id>.d`.
    pub fn verify_differences(&self, id: &str) -> String {
        format!("{}.verified.{id}.d", self.prefix)
    }

    /// The KV bucket of migration schedules: `s3rf-schedules`.
    pub fn schedules_kv(&self) -> String {
        format!("{}-schedules", self.prefix)
    }

    /// The KV bucket of migrations' fleet-wide rates: `s3rf-rates`.
    pub fn rates_kv(&self) -> String {
        format!("{}-rates", self.prefix)
    }

    /// The WorkQueue stream holding jobs a pause parked: `S3RF_PARKED`.
    pub fn parked_stream(&self) -> String {
        format!("{}_PARKED", self.prefix.to_uppercase())
    }

    /// Every parked subject: `s3rf.parked.>`.
    pub fn parked_subjects(&self) -> String {
        format!("{}.parked.>", self.prefix)
    }

    /// Where a `kind` job held by the pause `key` (`PauseScope::key`)
    /// waits: `s3rf.parked.m.<id>.copy`.
    pub fn parked_subject(&self, key: &str, kind: JobKind) -> String {
        format!("{}.parked.{key}.{}", self.prefix, kind.token())
    }

    /// Every job parked under the pause `key`: `s3rf.parked.sync.*`.
    pub fn parked_scope(&self, key: &str) -> String {
        format!("{}.parked.{key}.*", self.prefix)
    }

    /// The configured prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Durable consumer for `kind`: `s3rf-copy`.
    pub fn consumer(&self, kind: JobKind) -> String {
        format!("{}-{}", self.prefix, kind.token())
    }

    /// Advisory published when a job of the job stream hits `max_deliver`.
    pub fn max_deliveries_advisory(&self) -> String {
        format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.*",
            self.jobs_stream()
        )
    }

    /// The job kind a consumer name belongs to.
    pub fn kind_of_consumer(&self, consumer: &str) -> Option<JobKind> {
        JobKind::ALL
            .into_iter()
            .find(|k| self.consumer(*k) == consumer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let n = Names::new("s3rf");
        assert_eq!(n.job_subject(JobKind::Copy), "s3rf.copy");
        assert_eq!(n.dead_subject(JobKind::Delete), "s3rf.dead.delete");
        assert_eq!(n.jobs_stream(), "S3RF_JOBS");
        assert_eq!(n.dead_stream(), "S3RF_DEAD");
        assert_eq!(n.consumer(JobKind::Copy), "s3rf-copy");
        assert_eq!(n.kind_of_consumer("s3rf-delete"), Some(JobKind::Delete));
        assert_eq!(
            n.parked_subject("m.m1", JobKind::Batch),
            "s3rf.parked.m.m1.batch"
        );
        assert_eq!(n.parked_scope("sync"), "s3rf.parked.sync.*");
        let t = Names::new("team-a");
        assert_eq!(t.jobs_stream(), "TEAM-A_JOBS");
        assert_eq!(t.job_subject(JobKind::Copy), "team-a.copy");
    }
}
