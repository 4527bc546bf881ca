//! `[nats]`: servers, authentication, TLS, the subject prefix, JetStream
//! limits and replicas; embedded mode.

use super::*;

/// `[nats]`
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNats {
    /// Server URL(s), comma separated, e.g. `nats://127.0.0.1:4222`; or
    /// `embedded` (the default): the agent runs its own nats-server on
    /// loopback with its store under `store_dir`.
    #[serde(default = "default_nats_url")]
    pub url: String,
    /// Embedded mode: where the JetStream store lives. Default:
    /// `$STATE_DIRECTORY/nats` under systemd, else `/var/lib/s3rf/nats` for
    /// root, else `$XDG_STATE_HOME/s3rf/nats` (`~/.local/state/s3rf/nats`).
    #[serde(default)]
    pub store_dir: Option<PathBuf>,
    /// Embedded mode: the nats-server binary; found on PATH or next to
    /// s3rf-agent when absent.
    #[serde(default)]
    pub server_bin: Option<PathBuf>,
    /// Namespace for subjects (`<prefix>.copy`) and streams (`<PREFIX>_JOBS`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// A `.creds` file (JWT + nkey seed).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// A file holding an nkey seed.
    #[serde(default)]
    pub nkey_seed_file: Option<PathBuf>,
    /// User name for user/password auth; the password comes from `password_env`.
    #[serde(default)]
    pub user: Option<String>,
    /// Environment variable holding the NATS password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Environment variable holding a NATS token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// CA bundle used to verify the server.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate for mutual TLS.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// Client key for mutual TLS.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// How long a job may run without a progress ack before redelivery.
    #[serde(default = "default_ack_wait_secs")]
    pub ack_wait_secs: u64,
    /// Deliveries before a job is dead-lettered with its last error.
    #[serde(default = "default_max_deliver")]
    pub max_deliver: u32,
    /// Jobs in flight across the whole fleet, per job kind.
    #[serde(default = "default_max_ack_pending")]
    pub max_ack_pending: u32,
    /// Job stream replicas (1 for a single server, 3 for a cluster).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
}

impl Default for RawNats {
    fn default() -> Self {
        Self {
            url: default_nats_url(),
            store_dir: None,
            server_bin: None,
            prefix: default_prefix(),
            credentials_file: None,
            nkey_seed_file: None,
            user: None,
            password_env: None,
            token_env: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            ack_wait_secs: default_ack_wait_secs(),
            max_deliver: default_max_deliver(),
            max_ack_pending: default_max_ack_pending(),
            replicas: default_replicas(),
        }
    }
}

fn default_nats_url() -> String {
    EMBEDDED.to_owned()
}

/// The `[nats] url` that selects embedded mode.
pub const EMBEDDED: &str = "embedded";
fn default_prefix() -> String {
    "s3rf".to_owned()
}

const fn default_ack_wait_secs() -> u64 {
    30
}

const fn default_max_deliver() -> u32 {
    5
}

const fn default_max_ack_pending() -> u32 {
    1000
}

const fn default_replicas() -> usize {
    1
}

/// How the agent authenticates to NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsAuth {
    /// No authentication.
    None,
    /// A `.creds` file.
    CredentialsFile(PathBuf),
    /// An nkey seed file.
    NkeySeedFile(PathBuf),
    /// User name plus a password read from an environment variable.
    UserPassword { user: String, password_env: String },
    /// A token read from an environment variable.
    Token { token_env: String },
}

/// Validated `[nats]`.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Server URL(s); `embedded` until the embedded server is resolved.
    pub url: String,
    /// Embedded mode: run (agent) or find (CLI, bridge) a local nats-server.
    pub embedded: Option<EmbeddedNatsConfig>,
    /// Subject and stream namespace.
    pub prefix: String,
    /// Authentication.
    pub auth: NatsAuth,
    /// CA bundle.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// Consumer ack wait.
    pub ack_wait: Duration,
    /// Consumer max deliveries.
    pub max_deliver: u32,
    /// Consumer max ack pending.
    pub max_ack_pending: u32,
    /// Stream replicas.
    pub replicas: usize,
}

/// Validated embedded-mode settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedNatsConfig {
    /// Store directory, when configured (else resolved from the environment).
    pub store_dir: Option<PathBuf>,
    /// nats-server binary, when configured.
    pub server_bin: Option<PathBuf>,
}

/// Where an endpoint's credentials come from.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// Named environment variables.
    Env {
        access_key_id_env: String,
        secret_access_key_env: String,
        session_token_env: Option<String>,
    },
    /// A shared-config profile.
    Profile(String),
    /// The AWS default chain (environment, files, IMDS, ...).
    DefaultChain,
}

impl fmt::Debug for CredentialSource {
    // Only ever names where secrets live, never their values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env {
                access_key_id_env,
                secret_access_key_env,
                ..
            } => write!(f, "env({access_key_id_env}, {secret_access_key_env})"),
            Self::Profile(p) => write!(f, "profile({p})"),
            Self::DefaultChain => f.write_str("default-chain"),
        }
    }
}

/// The servers of a `[nats] url`: one URL, or several separated by commas
/// (a cluster's seeds). async-nats takes a list as a slice, not as one
/// string, so the list is split and each entry parsed here.
pub fn nats_servers(url: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    url.split(',')
        .map(str::trim)
        .enumerate()
        .map(|(i, entry)| {
            if entry.is_empty() {
                return Err(format!(
                    "entry {} of {url:?} is empty; separate URLs with single commas",
                    i + 1
                ));
            }
            entry.parse::<async_nats::ServerAddr>().map_err(|e| {
                format!(
                    "entry {} ({entry:?}) is not a NATS server URL: {e}; write nats://host:port, several separated by commas",
                    i + 1
                )
            })
        })
        .collect()
}

pub(super) fn validate_nats(raw: RawNats) -> Result<NatsConfig, ConfigError> {
    if raw.url.trim().is_empty() {
        return Err(invalid(
            "nats.url",
            "must not be empty; leave it out (or set \"embedded\") to run a local nats-server",
        ));
    }
    let embedded = (raw.url.trim() == EMBEDDED).then(|| EmbeddedNatsConfig {
        store_dir: raw.store_dir.clone(),
        server_bin: raw.server_bin.clone(),
    });
    if embedded.is_none() {
        nats_servers(&raw.url).map_err(|why| invalid("nats.url", why))?;
    }
    if embedded.is_none() && (raw.store_dir.is_some() || raw.server_bin.is_some()) {
        return Err(invalid(
            "nats.store_dir",
            "store_dir and server_bin only apply to url = \"embedded\"; remove them or the url",
        ));
    }
    if !is_token(&raw.prefix) {
        return Err(invalid(
            "nats.prefix",
            format!(
                "{:?} must be letters, digits, '-' or '_' (it becomes a subject token and a stream name)",
                raw.prefix
            ),
        ));
    }
    let auth = match (
        raw.credentials_file,
        raw.nkey_seed_file,
        raw.user,
        raw.password_env,
        raw.token_env,
    ) {
        (None, None, None, None, None) => NatsAuth::None,
        (Some(f), None, None, None, None) => NatsAuth::CredentialsFile(f),
        (None, Some(f), None, None, None) => NatsAuth::NkeySeedFile(f),
        (None, None, Some(user), Some(password_env), None) => {
            NatsAuth::UserPassword { user, password_env }
        }
        (None, None, None, None, Some(token_env)) => NatsAuth::Token { token_env },
        (None, None, Some(_), None, None) | (None, None, None, Some(_), None) => {
            return Err(invalid(
                "nats.user",
                "user and password_env go together; set both or neither",
            ));
        }
        _ => {
            return Err(invalid(
                "nats",
                "choose one of credentials_file, nkey_seed_file, user+password_env or token_env",
            ));
        }
    };
    let tls_client = match (raw.tls_cert_file, raw.tls_key_file) {
        (None, None) => None,
        (Some(c), Some(k)) => Some((c, k)),
        _ => {
            return Err(invalid(
                "nats.tls_cert_file",
                "tls_cert_file and tls_key_file go together; set both or neither",
            ));
        }
    };
    if raw.ack_wait_secs == 0 {
        return Err(invalid("nats.ack_wait_secs", "must be at least 1"));
    }
    if raw.max_deliver == 0 {
        return Err(invalid("nats.max_deliver", "must be at least 1"));
    }
    if raw.max_ack_pending == 0 {
        return Err(invalid("nats.max_ack_pending", "must be at least 1"));
    }
    if !(1..=5).contains(&raw.replicas) {
        return Err(invalid("nats.replicas", "must be between 1 and 5"));
    }
    if embedded.is_some() && auth != NatsAuth::None {
        return Err(invalid(
            "nats",
            "the embedded nats-server listens on loopback without authentication; remove the credentials or set url",
        ));
    }
    Ok(NatsConfig {
        url: raw.url,
        embedded,
        prefix: raw.prefix,
        auth,
        tls_ca_file: raw.tls_ca_file,
        tls_client,
        ack_wait: Duration::from_secs(raw.ack_wait_secs),
        max_deliver: raw.max_deliver,
        max_ack_pending: raw.max_ack_pending,
        replicas: raw.replicas,
    })
}
