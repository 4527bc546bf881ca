//! s3rf-core: the pure rules of s3rf, with no tokio, AWS SDK, NATS client
//! or wasmtime among its dependencies, so that "planning is pure" is a
//! fact of Cargo.toml. Validated jobs ([`job`]) and how a copy is planned
//! ([`plan`]), what a job did and what that means for its message
//! ([`outcome`]), migration accounting ([`migration`]), S3 event parsing
//! ([`events`]), every NATS name ([`names`]) and the filter ABI codec
//! ([`filter_abi`]), what a pause holds ([`pause`]), adaptive pacing
//! ([`aimd`]), fleet rate shares ([`rate`]), scheduled re-runs
//! ([`schedule`]), verification ([`verify`]) and versioned migrations
//! ([`versions`]). `s3rf-agent` does the IO and re-exports these under the
//! same paths (`s3rf_agent::plan`, …).

pub mod aimd;
pub mod events;
pub mod filter_abi;
pub mod job;
pub mod migration;
pub mod names;
pub mod outcome;
pub mod pause;
pub mod plan;
pub mod rate;
pub mod schedule;
pub mod settings;
pub mod verify;
pub mod versions;
