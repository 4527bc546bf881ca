//! `[endpoints.<name>]`: one S3 endpoint: URL, region, credentials (named
//! environment variables, never the keys), addressing, signing, checksums
//! and verification, rate limits and adaptive pacing.

use super::*;

/// `[endpoints.<name>]`
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    /// Base URL, e.g. `http://127.0.0.1:9000`. Absent means AWS's own endpoint for `region`.
    #[serde(default)]
    pub url: Option<String>,
    /// SigV4 region.
    #[serde(default = "default_region")]
    pub region: String,
    /// Address buckets as `url/bucket` instead of `bucket.url`.
    #[serde(default)]
    pub path_style: bool,
    /// Environment variable holding the access key id.
    #[serde(default)]
    pub access_key_id_env: Option<String>,
    /// Environment variable holding the secret access key.
    #[serde(default)]
    pub secret_access_key_env: Option<String>,
    /// Environment variable holding a session token.
    #[serde(default)]
    pub session_token_env: Option<String>,
    /// A profile from the shared AWS config files.
    #[serde(default)]
    pub profile: Option<String>,
    /// When the SDK adds request checksums.
    #[serde(default)]
    pub checksums: ChecksumMode,
    /// SHA-256 the body of every PUT and UploadPart into its signature.
    #[serde(default)]
    pub sign_payload: bool,
    /// `auto`: send Content-MD5 with every write to this endpoint, compare
    /// the ETags it returns, and check reads from it against MD5 ETags.
    /// `off`: for stores that refuse Content-MD5 or whose ETags are not MD5s.
    #[serde(default)]
    pub verify: Verify,
    /// Request timeout for one S3 call, in seconds.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// `s3` or `s3-express` (directory buckets); also detected from `--x-s3` bucket names.
    #[serde(default)]
    pub kind: EndpointKind,
    /// Requests per second this agent sends to the endpoint, reads and
    /// writes; unlimited when absent.
    #[serde(default)]
    pub max_requests_per_sec: Option<u32>,
    /// Bytes per second this agent sends to and receives from the endpoint
    /// (a size such as `50MiB`); unlimited when absent.
    #[serde(default)]
    pub max_bytes_per_sec: Option<ByteSize>,
    /// Fewer requests in flight and a slower pace when the endpoint answers
    /// SlowDown (503) or 429, recovering slowly.
    #[serde(default = "default_adaptive")]
    pub adaptive: bool,
}

const fn default_adaptive() -> bool {
    true
}

/// What kind of store an endpoint is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointKind {
    /// General-purpose S3 or an S3-compatible store.
    #[default]
    S3,
    /// S3 Express One Zone directory buckets.
    S3Express,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

const fn default_request_timeout_secs() -> u64 {
    300
}

/// Whether s3rf checks the bytes it reads from and writes to an endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verify {
    /// Content-MD5 on writes, ETags compared after writes, reads checked
    /// against plain-MD5 ETags.
    #[default]
    Auto,
    /// No checks (stores that refuse Content-MD5 or have non-MD5 ETags).
    Off,
}

/// When the AWS SDK computes request checksums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumMode {
    /// Only where the operation requires one. Safe for most S3-compatible stores.
    #[default]
    WhenRequired,
    /// Whenever the operation supports one (the SDK default; AWS S3).
    WhenSupported,
}

/// A validated `[endpoints.<name>]`.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// The name jobs use.
    pub name: String,
    /// Base URL, or `None` for AWS.
    pub url: Option<String>,
    /// SigV4 region.
    pub region: String,
    /// Path-style addressing.
    pub path_style: bool,
    /// Credentials.
    pub credentials: CredentialSource,
    /// Checksum policy.
    pub checksums: ChecksumMode,
    /// Sign request bodies (else `UNSIGNED-PAYLOAD`).
    pub sign_payload: bool,
    /// Integrity checks on this endpoint's reads and writes.
    pub verify: Verify,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Store kind.
    pub kind: EndpointKind,
    /// Rate limits and adaptive pacing of every request (`gate.rs`).
    pub gate: crate::gate::GateConfig,
}

pub(super) fn validate_endpoint(
    name: &str,
    raw: RawEndpoint,
) -> Result<EndpointConfig, ConfigError> {
    let key = |field: &str| format!("endpoints.{name}.{field}");
    if !is_token(name) {
        return Err(invalid(
            format!("endpoints.{name}"),
            "endpoint names are letters, digits, '-' or '_'",
        ));
    }
    if let Some(url) = &raw.url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(invalid(
            key("url"),
            format!("{url:?} must start with http:// or https://"),
        ));
    }
    if raw.region.trim().is_empty() {
        return Err(invalid(key("region"), "must not be empty"));
    }
    let credentials = match (
        raw.access_key_id_env,
        raw.secret_access_key_env,
        raw.session_token_env,
        raw.profile,
    ) {
        (Some(access_key_id_env), Some(secret_access_key_env), session_token_env, None) => {
            CredentialSource::Env {
                access_key_id_env,
                secret_access_key_env,
                session_token_env,
            }
        }
        (None, None, None, Some(profile)) => CredentialSource::Profile(profile),
        (None, None, None, None) => CredentialSource::DefaultChain,
        (Some(_), Some(_), _, Some(_)) => {
            return Err(invalid(
                key("profile"),
                "use either profile or access_key_id_env/secret_access_key_env, not both",
            ));
        }
        _ => {
            return Err(invalid(
                key("access_key_id_env"),
                "access_key_id_env and secret_access_key_env go together (session_token_env needs both)",
            ));
        }
    };
    if raw.request_timeout_secs == 0 {
        return Err(invalid(key("request_timeout_secs"), "must be at least 1"));
    }
    if raw.max_requests_per_sec == Some(0) {
        return Err(invalid(
            key("max_requests_per_sec"),
            "must be at least 1; leave it out for no limit",
        ));
    }
    let max_bytes_per_sec = raw.max_bytes_per_sec.map(|b| b.as_u64());
    if max_bytes_per_sec.is_some_and(|b| b < 1024) {
        return Err(invalid(
            key("max_bytes_per_sec"),
            "must be at least 1KiB; leave it out for no limit",
        ));
    }
    Ok(EndpointConfig {
        name: name.to_owned(),
        url: raw.url.map(|u| u.trim_end_matches('/').to_owned()),
        region: raw.region,
        path_style: raw.path_style,
        credentials,
        checksums: raw.checksums,
        sign_payload: raw.sign_payload,
        verify: raw.verify,
        request_timeout: Duration::from_secs(raw.request_timeout_secs),
        kind: raw.kind,
        gate: crate::gate::GateConfig {
            max_requests_per_sec: raw.max_requests_per_sec,
            max_bytes_per_sec,
            adaptive: raw.adaptive,
        },
    })
}
