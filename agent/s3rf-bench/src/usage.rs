//! What a run cost: wall time, CPU seconds and peak RSS of the processes that
//! did the copying, taken from the kernel (wait4's rusage for children,
//! /proc for long-running servers).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Cost of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Wall time of the copy.
    pub wall: Duration,
    /// User + system CPU time of the copying processes.
    pub cpu: Duration,
    /// The part of `cpu` spent by a job queue the tool needs (s3rf's
    /// nats-server); zero for a tool that runs alone.
    pub queue_cpu: Duration,
    /// Sum of the peak RSS of the copying processes, in KiB.
    pub peak_rss_kib: u64,
    /// What the shaping proxies saw (WAN profile), both endpoints summed.
    pub requests: Option<crate::shaper::Counts>,
}

/// CPU time of a reaped child. (Its `ru_maxrss` is not used: a forked
/// child inherits the parent's high-water mark at exec, so it would report
/// the benchmark's own memory; see [`HwmWatch`].)
#[derive(Debug, Clone, Copy)]
pub struct Rusage {
    pub cpu: Duration,
}

/// Polls a process's VmHWM (the peak RSS of its own image, reset at exec)
/// until it exits; the last value read is its peak.
pub struct HwmWatch {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl HwmWatch {
    /// Starts polling `pid` every 20 ms.
    pub fn start(pid: u32) -> Self {
        use std::sync::atomic::Ordering;
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let hwm = proc_kib(pid, "VmHWM:");
                p.fetch_max(hwm, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self { peak, stop }
    }

    /// The highest VmHWM seen, in KiB.
    pub fn peak_kib(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for HwmWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
        + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
}

/// Waits for `pid` (a child of this process) and returns its rusage.
/// Blocking: call it from `spawn_blocking`.
pub fn wait4(pid: u32) -> Result<(i32, Rusage)> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    let mut status: libc::c_int = 0;
    #[allow(unsafe_code)]
    // SAFETY: rusage is plain old data, fully written by wait4 on success;
    // both pointers are valid for the duration of the call.
    let (ret, ru) = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        let ret = libc::wait4(pid, &mut status, 0, &mut ru);
        (ret, ru)
    };
    if ret != pid {
        bail!("wait4({pid}): {}", std::io::Error::last_os_error());
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((
        code,
        Rusage {
            cpu: timeval(ru.ru_utime) + timeval(ru.ru_stime),
        },
    ))
}

/// Sends SIGTERM to `pid`.
pub fn terminate(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        #[allow(unsafe_code)]
        // SAFETY: kill has no memory effects; pid is our own child.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// CPU time (utime + stime) of a running process, from /proc/PID/stat.
pub fn proc_cpu(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return Duration::ZERO;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    #[allow(unsafe_code)]
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).unwrap_or(100).max(1);
    Duration::from_millis(ticks * 1000 / hz)
}

/// A field of /proc/PID/status in KiB (`VmHWM:`, `VmRSS:`).
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Spawns `cmd` with output to `log`; the child dies with this process.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> Result<Child> {
    let file = std::fs::File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    s3rf_testkit::spawn_tied(cmd).with_context(|| format!("cannot start {cmd:?}"))
}

/// The last lines of a log, for error messages.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// Runs `cmd` to completion and measures it. Exit codes in `ok_codes`
/// besides 0 count as success (the copy is verified afterwards anyway).
pub async fn run_measured(mut cmd: Command, log: &Path, ok_codes: &[i32]) -> Result<Usage> {
    let start = Instant::now();
    let child = spawn_logged(&mut cmd, log)?;
    let pid = child.id();
    let hwm = HwmWatch::start(pid);
    let (code, ru) = tokio::task::spawn_blocking(move || wait4(pid)).await??;
    // The child is reaped; forget the handle so nothing waits on it again.
    std::mem::forget(child);
    let wall = start.elapsed();
    if code != 0 && !ok_codes.contains(&code) {
        bail!(
            "{:?} exited with {code}; its log ({}) ends:\n{}",
            cmd.get_program(),
            log.display(),
            tail(log)
        );
    }
    Ok(Usage {
        wall,
        cpu: ru.cpu,
        queue_cpu: Duration::ZERO,
        peak_rss_kib: hwm.peak_kib(),
        requests: None,
    })
}
