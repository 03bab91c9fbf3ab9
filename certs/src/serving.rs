//! [`ServingTls`]: the one `ServerConfig` of the process, wired to the hot-reloading
//! resolver and client verifier, fed from files or from self-managed mode.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use rustls::ServerConfig;
use tokio_util::sync::CancellationToken;

use crate::{
    client_auth::{self, ReloadingClientVerifier},
    inspect::{self, CertInfo},
    load::ServingSource,
    metrics::{self, CertMetrics},
    provider,
    reload::{self, Reloader, ServingResolver},
    self_managed::{SelfManaged, SelfManagedSettings},
    CertError, TlsArgs,
};

/// The serving certificate of the webhook, ready for a TLS listener.
pub struct ServingTls {
    config: Arc<ServerConfig>,
    resolver: Arc<ServingResolver>,
}

impl ServingTls {
    /// Loads (and validates) the serving material named by `args`, registers the
    /// certificate metrics in `registry` (pass the root registry: names are complete),
    /// and keeps the material fresh until `shutdown`.
    pub async fn start(
        args: &TlsArgs,
        registry: &mut Registry,
        shutdown: CancellationToken,
    ) -> Result<Self, CertError> {
        args.validate()?;
        let client = if args.self_managed() {
            Some(kube_client(args).await?)
        } else {
            None
        };
        Self::start_inner(args, registry, shutdown, client).await
    }

    /// [`ServingTls::start`] with a given Kubernetes client for self-managed mode.
    pub async fn start_with_client(
        args: &TlsArgs,
        registry: &mut Registry,
        shutdown: CancellationToken,
        client: kube::Client,
    ) -> Result<Self, CertError> {
        args.validate()?;
        Self::start_inner(args, registry, shutdown, Some(client)).await
    }

    async fn start_inner(
        args: &TlsArgs,
        registry: &mut Registry,
        shutdown: CancellationToken,
        client: Option<kube::Client>,
    ) -> Result<Self, CertError> {
        let metrics = CertMetrics::register(registry);
        // Everything that can refuse the start-up is checked before anything is
        // written to the cluster or any task is started.
        let client_ca = match &args.client_ca {
            Some(path) => Some((path, client_auth::load_client_ca(path)?)),
            None => None,
        };
        let mut manager = None;
        let mut source = None;
        let mut fingerprint = Vec::new();
        let material = match (client, &args.service_name, &args.service_namespace) {
            (Some(client), Some(service), Some(namespace)) if args.self_managed() => {
                let m = SelfManaged::new(
                    client,
                    SelfManagedSettings {
                        namespace: namespace.clone(),
                        service: service.clone(),
                        secret_name: args.secret_name.clone(),
                        webhook_configurations: args.manage_webhook_configurations.clone(),
                        ca_days: args.ca_days,
                        cert_days: args.cert_days,
                        renew_before_days: args.renew_before_days,
                    },
                    metrics.clone(),
                );
                // Nothing is served yet, so the Secret's certificate is used even if the
                // caBundle update failed (it is retried every round).
                let (material, _settled) = m.round().await?;
                manager = Some(m);
                material
            }
            _ => {
                let files = ServingSource {
                    cert: args.tls_cert.clone(),
                    key: args.tls_key.clone(),
                    required_names: args.required_names(),
                };
                let (material, read) = files.load()?;
                source = Some(files);
                fingerprint = read;
                material
            }
        };
        metrics.set_expiry(metrics::Certificate::Serving, material.leaf.not_after);
        reload::warn_if_expiring(&material.leaf, "serving certificate", args.warn_before());
        tracing::info!(
            serial = %material.leaf.serial,
            not_after = %inspect::format_unix(material.leaf.not_after),
            "serving certificate loaded"
        );
        let resolver = Arc::new(ServingResolver::new(material));
        let mut reloader = Reloader::new(
            resolver.clone(),
            metrics.clone(),
            args.warn_before(),
            args.tls_reload_interval,
        );
        reloader.serving = source;
        reloader.serving_fingerprint = fingerprint;

        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match client_ca {
            Some((path, ca)) => {
                metrics.set_expiry(metrics::Certificate::ClientCa, ca.earliest_expiry);
                let verifier = Arc::new(ReloadingClientVerifier::new(path.clone(), ca.verifier));
                reloader.client_ca = Some(verifier.clone());
                reloader.client_ca_fingerprint = ca.fingerprint;
                reloader.client_ca_expiry = ca.earliest_expiry;
                tracing::info!(client_ca = %path.display(), "client certificates required (mTLS)");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        reloader.spawn(shutdown.clone())?;
        if let Some(manager) = manager {
            manager.spawn(resolver.clone(), args.tls_reload_interval, shutdown);
        }
        Ok(Self {
            config: Arc::new(config),
            resolver,
        })
    }

    /// The rustls configuration to accept connections with (ALPN h2 and http/1.1).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// The serving certificate new handshakes currently get.
    pub fn serving_certificate(&self) -> CertInfo {
        self.resolver.current().leaf
    }
}

async fn kube_client(args: &TlsArgs) -> Result<kube::Client, CertError> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| CertError::KubeConfig(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|e| CertError::KubeConfig(format!("{}: {e}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| CertError::KubeConfig(e.to_string()))?,
    };
    kube::Client::try_from(config).map_err(|source| CertError::Kube {
        action: "connect to",
        object: "the Kubernetes API".into(),
        source,
    })
}
