//! Integration tests: the real `s3rf-agent` binary against a real nats-server
//! and real S3 servers (moto and s3s-fs), all on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli;
mod cluster;
mod copy;
mod embedded;
mod failures;
mod faults;
mod filters;
mod harness;
mod integrity;
mod lifecycle;
mod limits;
mod migrate;
mod pause;
mod s3;
mod schedule;
mod sync;
mod verify;
mod versions;
