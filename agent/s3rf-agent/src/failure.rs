//! A job handler's failure, whichever layer it came from (executor,
//! control, ledger, batch, verification, versions), with the disposition that decides its ack.

use crate::batch::BatchError;
use crate::control::ControlError;
use crate::outcome::Disposition;

/// A job's failure, whichever layer it came from; its message is the
/// layer's own.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error(transparent)]
    Exec(#[from] crate::executor::ExecError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Ledger(#[from] crate::jetstream::QueueError),
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Verify(#[from] crate::verifying::VerifyError),
    #[error(transparent)]
    Versions(#[from] crate::versioning::VersionsError),
}

impl Failure {
    pub(crate) fn disposition(&self) -> Disposition {
        match self {
            Failure::Exec(e) => e.disposition(),
            Failure::Control(e) => e.disposition(),
            Failure::Ledger(_) => Disposition::QueueDown,
            Failure::Batch(e) => e.disposition(),
            Failure::Verify(e) => e.disposition(),
            Failure::Versions(e) => e.disposition(),
        }
    }
}
