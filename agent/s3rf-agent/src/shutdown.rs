//! The process lifecycle: the first SIGTERM/SIGINT stops pulling and starts
//! the grace period; when it ends, jobs in flight are aborted. A second
//! signal exits at once. systemd hears READY, WATCHDOG and STOPPING
//! (`sd_notify`).

use std::time::Duration;

use futures::StreamExt;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Exit code for a second signal.
pub const EXIT_FORCED: i32 = 130;

/// The two stages of shutdown.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Stop pulling new jobs.
    pub stop: CancellationToken,
    /// Abort jobs in flight.
    pub abort: CancellationToken,
}

impl Shutdown {
    /// Starts the stop stage now and the abort stage after `grace`.
    pub fn begin(&self, grace: Duration) {
        if self.stop.is_cancelled() {
            return;
        }
        // Tell systemd (if it runs us) that we are stopping.
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        self.stop.cancel();
        let abort = self.abort.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if !abort.is_cancelled() {
                warn!(
                    grace_secs = grace.as_secs(),
                    "grace period over; aborting jobs in flight"
                );
                abort.cancel();
            }
        });
    }
}

/// Listens for signals and drives `shutdown`.
pub fn install(shutdown: Shutdown, grace: Duration) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    tokio::spawn(async move {
        let mut seen = 0;
        while let Some(sig) = signals.next().await {
            seen += 1;
            if seen == 1 {
                info!(
                    signal = sig,
                    grace_secs = grace.as_secs(),
                    "shutting down: no new jobs; jobs in flight get the grace period"
                );
                shutdown.begin(grace);
            } else {
                warn!(signal = sig, "second signal: exiting now");
                std::process::exit(EXIT_FORCED);
            }
        }
    });
    Ok(())
}

/// sd_notify: READY now, and WATCHDOG pings while running when systemd set
/// `WatchdogSec`. Without `NOTIFY_SOCKET` these are no-ops.
pub fn notify_ready(stop: tokio_util::sync::CancellationToken) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval / 2);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                    }
                    () = stop.cancelled() => return,
                }
            }
        });
    }
}
