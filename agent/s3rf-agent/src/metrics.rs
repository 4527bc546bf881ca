//! Prometheus metrics: names in one place, recording helpers, and the
//! recorder. Names follow `s3rf_<noun>_<unit>_total`.

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Jobs finished, by `kind` and `outcome` (`ok`, `retry`, `dead_letter`,
/// `released`, `parked`: held by a pause).
pub const JOBS: &str = "s3rf_jobs_total";
/// Object bytes copied.
pub const COPIED_BYTES: &str = "s3rf_copied_bytes_total";
/// Copy jobs running now.
pub const COPIES_IN_FLIGHT: &str = "s3rf_copies_in_flight";
/// Copy job duration.
pub const COPY_DURATION: &str = "s3rf_copy_duration_seconds";
/// Jobs written to the dead-letter stream.
pub const DEAD_LETTERS: &str = "s3rf_dead_letters_total";
/// NATS reconnects.
pub const NATS_RECONNECTS: &str = "s3rf_nats_reconnects_total";
/// Filter decisions, by `filter` and `verdict` (`keep`, `skip`, `rename`, `error`).
pub const FILTER_DECISIONS: &str = "s3rf_filter_decisions_total";
/// SQS messages, by `action` (`received`, `published`, `deleted`, `skipped`).
pub const SQS_MESSAGES: &str = "s3rf_sqs_messages_total";

/// Pauses in force, by `scope` (`all`, `sync`, `migration`: how many).
pub const PAUSES: &str = "s3rf_pauses";
/// Parked jobs moved back to the queue after a pause ended.
pub const UNPARKED: &str = "s3rf_unparked_jobs_total";

/// Requests in flight an endpoint's adaptive gate allows, by `endpoint`.
pub const ENDPOINT_CONCURRENCY: &str = "s3rf_endpoint_concurrency_limit";
/// Requests per second the adaptive gate paces an endpoint to (0: unpaced).
pub const ENDPOINT_RATE: &str = "s3rf_endpoint_rate_limit";
/// 503 (SlowDown) and 429 answers, by `endpoint`.
pub const ENDPOINT_THROTTLED: &str = "s3rf_endpoint_throttled_total";

/// Agents with a fresh heartbeat, as this agent last counted them.
pub const LIVE_AGENTS: &str = "s3rf_live_agents";
/// This agent's share of a migration's fleet rate, by `migration` and
/// `unit` (`objects`, `bytes` per second).
pub const RATE_SHARE: &str = "s3rf_migration_rate_share";
/// Scheduled runs this agent started, by `migration` (the schedule's id).
pub const SCHEDULED_RUNS: &str = "s3rf_scheduled_runs_total";

/// Versions of versioned migrations, by `outcome` (`copied`, `marker`:
/// a delete marker written, `present`: already at the destination).
pub const VERSIONS: &str = "s3rf_versions_total";

/// A versioned key's versions reached their outcomes.
pub fn versions(counts: &crate::migration::VersionCounts) {
    counter!(VERSIONS, "outcome" => "copied").increment(counts.copied);
    counter!(VERSIONS, "outcome" => "marker").increment(counts.markers);
    counter!(VERSIONS, "outcome" => "present").increment(counts.present);
}

/// Objects verification pages compared, by `result` (`matching`,
/// `size_only`, `missing`, `different`, `extra`: as the page saw it, before
/// claims by renamed objects; `filtered`, `renamed`: `verify --filters`).
pub const VERIFIED: &str = "s3rf_verified_objects_total";

/// A verification page's counts, once per page.
pub fn verified(c: &crate::verify::VerifyCounts) {
    for (result, n) in [
        ("matching", c.matching),
        ("size_only", c.size_only),
        ("missing", c.missing),
        ("different", c.different),
        ("extra", c.extra),
        ("filtered", c.filtered),
        ("renamed", c.renamed),
    ] {
        counter!(VERIFIED, "result" => result).increment(n);
    }
}

/// Installs the global recorder (once per process) and returns its handle.
pub fn install() -> Option<PrometheusHandle> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(COPY_DURATION.to_owned()),
            &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 1800.0],
        )
        .ok()?
        .install_recorder()
        .ok()
}

/// A job finished.
pub fn job(kind: &'static str, outcome: &'static str) {
    counter!(JOBS, "kind" => kind, "outcome" => outcome).increment(1);
}

/// Bytes were copied.
pub fn copied(bytes: u64) {
    counter!(COPIED_BYTES).increment(bytes);
}

/// A copy started (`+1`) or ended (`-1`).
pub fn in_flight(delta: f64) {
    gauge!(COPIES_IN_FLIGHT).increment(delta);
}

/// A copy job took `d`.
pub fn copy_duration(d: Duration) {
    histogram!(COPY_DURATION).record(d.as_secs_f64());
}

/// A job was dead-lettered.
pub fn dead_letter(kind: &'static str) {
    counter!(DEAD_LETTERS, "kind" => kind).increment(1);
}

/// NATS reconnected.
pub fn nats_reconnect() {
    counter!(NATS_RECONNECTS).increment(1);
}

/// An SQS message was handled.
pub fn sqs(action: &'static str) {
    counter!(SQS_MESSAGES, "action" => action).increment(1);
}

/// A filter decided.
pub fn filter_decision(filter: &str, verdict: &'static str) {
    counter!(FILTER_DECISIONS, "filter" => filter.to_owned(), "verdict" => verdict).increment(1);
}

/// The pauses in force changed.
pub fn pauses(p: &crate::pause::Pauses) {
    let (mut all, mut sync, mut migrations) = (0.0, 0.0, 0.0);
    for (scope, _) in p.iter() {
        match scope {
            crate::pause::PauseScope::All => all += 1.0,
            crate::pause::PauseScope::Sync => sync += 1.0,
            crate::pause::PauseScope::Migration(_) => migrations += 1.0,
        }
    }
    gauge!(PAUSES, "scope" => "all").set(all);
    gauge!(PAUSES, "scope" => "sync").set(sync);
    gauge!(PAUSES, "scope" => "migration").set(migrations);
}

/// An endpoint's adaptive levels changed.
pub fn endpoint_levels(endpoint: &str, limit: u32, rate: Option<f64>) {
    gauge!(ENDPOINT_CONCURRENCY, "endpoint" => endpoint.to_owned()).set(f64::from(limit));
    gauge!(ENDPOINT_RATE, "endpoint" => endpoint.to_owned()).set(rate.unwrap_or(0.0));
}

/// An endpoint answered 503 or 429.
pub fn endpoint_throttled(endpoint: &str) {
    counter!(ENDPOINT_THROTTLED, "endpoint" => endpoint.to_owned()).increment(1);
}

/// This agent counted `n` live agents.
pub fn live_agents(n: usize) {
    gauge!(LIVE_AGENTS).set(n as f64);
}

/// This agent's share of migration `id`'s rate.
pub fn rate_share(id: &str, share: &crate::rate::Share) {
    gauge!(RATE_SHARE, "migration" => id.to_owned(), "unit" => "objects")
        .set(share.objects_per_sec.unwrap_or(0.0));
    gauge!(RATE_SHARE, "migration" => id.to_owned(), "unit" => "bytes")
        .set(share.bytes_per_sec.unwrap_or(0.0));
}

/// This agent started a scheduled run of `id`.
pub fn scheduled_run(id: &str) {
    counter!(SCHEDULED_RUNS, "migration" => id.to_owned()).increment(1);
}

/// A parked job went back to the queue.
pub fn unparked() {
    counter!(UNPARKED).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `s3rf_*` series the shipped dashboard and alert rules query is
    /// one the agent exports (histograms add `_bucket`, `_sum`, `_count`).
    #[test]
    fn dashboard_and_alerts_use_exported_metrics() {
        let known = [
            JOBS,
            PAUSES,
            UNPARKED,
            ENDPOINT_CONCURRENCY,
            ENDPOINT_RATE,
            ENDPOINT_THROTTLED,
            LIVE_AGENTS,
            RATE_SHARE,
            SCHEDULED_RUNS,
            VERSIONS,
            VERIFIED,
            COPIED_BYTES,
            COPIES_IN_FLIGHT,
            COPY_DURATION,
            DEAD_LETTERS,
            NATS_RECONNECTS,
            FILTER_DECISIONS,
            SQS_MESSAGES,
        ];
        let dashboard = include_str!("../../../systemd/monitoring/s3rf-dashboard.json");
        let alerts = include_str!("../../../systemd/monitoring/s3rf-alerts.yml");
        let json: serde_json::Value = serde_json::from_str(dashboard).unwrap();
        assert_eq!(json["panels"].as_array().map(Vec::len), Some(14));
        let mut seen = 0;
        for text in [dashboard, alerts] {
            let mut rest = text;
            while let Some(i) = rest.find("s3rf_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                rest = &rest[i + name.len()..];
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| *b == COPY_DURATION))
                    .unwrap_or(&name);
                assert!(known.contains(&base), "{name} is not exported by the agent");
                seen += 1;
            }
        }
        assert!(seen >= 15, "only {seen} metric references found");
    }
}
