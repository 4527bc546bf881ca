//! S3 clients for the endpoints in the agent config, built once at start-up.
//!
//! Credentials are resolved here: named environment variables are read once and
//! handed to the SDK; their values never reach logs (the SDK's `Credentials`
//! redacts itself in `Debug`).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_sdk_s3::config::{
    Region, RequestChecksumCalculation, ResponseChecksumValidation, retry::RetryConfig,
    timeout::TimeoutConfig,
};

use crate::config::{ChecksumMode, CredentialSource, EndpointConfig};

/// Why an endpoint's client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "endpoint {endpoint}: environment variable {var} (endpoints.{endpoint}.{field}) is not set and no systemd credential {var} exists; export it, or pass it with LoadCredential={var}:FILE"
    )]
    MissingEnv {
        endpoint: String,
        var: String,
        field: &'static str,
    },
}

/// One endpoint: its config and its client.
#[derive(Debug, Clone)]
pub struct Store {
    /// The validated config.
    pub config: EndpointConfig,
    /// The S3 client.
    pub client: aws_sdk_s3::Client,
    /// Set once the store answered that it has no object tagging, so later
    /// copies skip the request.
    pub no_tagging: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Set once a GET has carried `x-amz-tagging-count`: from then on its
    /// absence means no tags, and untagged objects need no GetObjectTagging.
    pub counts_tags: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Set once the log said that some reads from this store cannot be
    /// checked (no plain-MD5 ETag, no full-object checksum).
    pub unverified_reads: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// All endpoints of the agent, by name.
#[derive(Debug, Clone, Default)]
pub struct Stores {
    stores: BTreeMap<String, Store>,
}

/// A secret named `var`: the environment variable, or else the systemd
/// credential of that name (`LoadCredential=VAR:FILE`, read from
/// `$CREDENTIALS_DIRECTORY`), trailing newline removed.
fn read_env(endpoint: &str, var: &str, field: &'static str) -> Result<String, StoreError> {
    if let Ok(v) = std::env::var(var) {
        return Ok(v);
    }
    let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
        .filter(|d| !d.is_empty() && !var.contains('/'))
        .and_then(|d| std::fs::read_to_string(std::path::Path::new(&d).join(var)).ok())
        .map(|v| v.trim_end_matches(['\n', '\r']).to_owned());
    credential.ok_or_else(|| StoreError::MissingEnv {
        endpoint: endpoint.to_owned(),
        var: var.to_owned(),
        field,
    })
}

impl Stores {
    /// Builds a client for every endpoint.
    pub async fn build(endpoints: &BTreeMap<String, EndpointConfig>) -> Result<Self, StoreError> {
        let mut stores = BTreeMap::new();
        for (name, config) in endpoints {
            let client = build_client(config).await?;
            stores.insert(
                name.clone(),
                Store {
                    config: config.clone(),
                    client,
                    no_tagging: Default::default(),
                    counts_tags: Default::default(),
                    unverified_reads: Default::default(),
                },
            );
        }
        Ok(Self { stores })
    }

    /// The store called `name`.
    pub fn get(&self, name: &str) -> Option<&Store> {
        self.stores.get(name)
    }

    /// Whether `name` is configured.
    pub fn contains(&self, name: &str) -> bool {
        self.stores.contains_key(name)
    }
}

/// An SQS client for an endpoint's url, region and credentials.
pub async fn sqs_client(cfg: &EndpointConfig) -> Result<aws_sdk_sqs::Client, StoreError> {
    let sdk = sdk_config(cfg).await?;
    let mut builder = aws_sdk_sqs::config::Builder::from(&sdk).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .build(),
    );
    if let Some(url) = &cfg.url {
        builder = builder.endpoint_url(url);
    }
    Ok(aws_sdk_sqs::Client::from_conf(builder.build()))
}

async fn sdk_config(cfg: &EndpointConfig) -> Result<aws_config::SdkConfig, StoreError> {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(cfg.region.clone()));
    match &cfg.credentials {
        CredentialSource::Env {
            access_key_id_env,
            secret_access_key_env,
            session_token_env,
        } => {
            let id = read_env(&cfg.name, access_key_id_env, "access_key_id_env")?;
            let secret = read_env(&cfg.name, secret_access_key_env, "secret_access_key_env")?;
            let token = match session_token_env {
                Some(var) => Some(read_env(&cfg.name, var, "session_token_env")?),
                None => None,
            };
            loader = loader.credentials_provider(Credentials::new(id, secret, token, None, "s3rf"));
        }
        CredentialSource::Profile(profile) => loader = loader.profile_name(profile),
        CredentialSource::DefaultChain => {}
    }
    Ok(loader.load().await)
}

async fn build_client(cfg: &EndpointConfig) -> Result<aws_sdk_s3::Client, StoreError> {
    let sdk = sdk_config(cfg).await?;
    let (request, response) = match cfg.checksums {
        ChecksumMode::WhenRequired => (
            RequestChecksumCalculation::WhenRequired,
            ResponseChecksumValidation::WhenRequired,
        ),
        ChecksumMode::WhenSupported => (
            RequestChecksumCalculation::WhenSupported,
            ResponseChecksumValidation::WhenSupported,
        ),
    };
    let mut builder = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(cfg.path_style)
        .request_checksum_calculation(request)
        .response_checksum_validation(response)
        // The SDK retries quick transient failures; JetStream redelivery with
        // backoff handles anything longer.
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_attempt_timeout(cfg.request_timeout)
                .build(),
        );
    if let Some(url) = &cfg.url {
        builder = builder.endpoint_url(url);
    }
    if let Some(gate) = crate::gate::Gate::new(&cfg.name, cfg.gate) {
        let inner = sdk.http_client().unwrap_or_else(default_https_client);
        builder = builder.http_client(gate.wrap(inner));
    }
    Ok(aws_sdk_s3::Client::from_conf(builder.build()))
}

/// The HTTP client the SDK would pick itself (hyper 1.x, rustls with
/// aws-lc, proxies from `HTTPS_PROXY`/`NO_PROXY`), built here so that the
/// endpoint's gate can wrap it; as in `aws-smithy-runtime`'s
/// `client::http::default_https_client`, which is not public.
fn default_https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    use aws_smithy_http_client::{Builder, ConnectorBuilder};
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut conn =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
        conn.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            conn.set_sleep_impl(components.sleep_impl());
        }
        conn.set_proxy_config(Some(ProxyConfig::from_env()));
        conn.build()
    })
}
