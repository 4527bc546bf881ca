//! s3rf-agent: stateless agents that copy objects between S3-compatible stores,
//! pulling jobs from NATS JetStream.
//!
//! The pipeline reads: wire JSON ([`s3rf_wire`]) → validated [`job::Job`] →
//! pure [`plan`] → [`executor`] (the only code that calls S3) → [`outcome`]
//! (ack, delayed nak, or dead letter) in [`worker`]. See ARCHITECTURE.md.

// Errors are the cold path and carry endpoint/bucket/key context on purpose.
#![allow(clippy::result_large_err)]

pub use s3rf_core::{
    aimd, events, job, migration, names, outcome, pause, plan, rate, schedule, verify, versions,
};

pub mod agent;
pub mod batch;
pub mod bridge;
pub mod cli;
pub mod clock;
pub mod config;
pub mod context;
pub mod control;
pub mod embedded;
pub mod executor;
pub mod failure;
pub mod filter;
pub mod fleet;
pub mod gate;
pub mod health;
pub mod jetstream;
pub mod ledger;
pub mod metrics;
#[cfg(test)]
mod module_graph;
pub mod object;
pub mod ops;
pub mod ordering;
pub mod pausing;
pub mod resume;
pub mod scheduler;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod verifying;
pub mod versioning;
pub mod worker;
