//! The TLS flags of `guardrail-webhook serve`, their defaults and their checks.

use std::{path::PathBuf, time::Duration};

use crate::{generate::service_dns_names, CertError};

/// Default days before expiry from which a warning is logged.
pub const DEFAULT_EXPIRY_WARNING_DAYS: u32 = 7;
/// Default period of the re-read that backs up the file watcher.
pub const DEFAULT_RELOAD_INTERVAL: &str = "30s";
/// Default serving certificate path (where the chart mounts the Secret).
pub const DEFAULT_TLS_CERT: &str = "/etc/guardrail/tls/tls.crt";
/// Default serving key path.
pub const DEFAULT_TLS_KEY: &str = "/etc/guardrail/tls/tls.key";
/// Default Secret of self-managed mode.
pub const DEFAULT_SECRET_NAME: &str = "guardrail-webhook-tls";
/// Default CA lifetime in self-managed mode (days).
pub const DEFAULT_CA_DAYS: u32 = 1825;
/// Default serving certificate lifetime in self-managed mode (days).
pub const DEFAULT_CERT_DAYS: u32 = 365;
/// Default renewal margin in self-managed mode (days before expiry).
pub const DEFAULT_RENEW_BEFORE_DAYS: u32 = 30;

/// TLS flags of `guardrail-webhook serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// PEM certificate chain served to the API server (leaf first). Reloaded when it
    /// changes (including kubelet's `..data` symlink swap of a mounted Secret).
    /// Ignored in self-managed mode.
    #[arg(long, value_name = "PEM", env = "GUARDRAIL_TLS_CERT", default_value = DEFAULT_TLS_CERT)]
    pub tls_cert: PathBuf,
    /// PEM private key matching --tls-cert.
    #[arg(long, value_name = "PEM", env = "GUARDRAIL_TLS_KEY", default_value = DEFAULT_TLS_KEY)]
    pub tls_key: PathBuf,
    /// PEM CA bundle; when set, clients (the API server) must present a certificate
    /// issued by one of these CAs (mTLS). Reloaded when it changes.
    #[arg(long, value_name = "PEM", env = "GUARDRAIL_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Name of the Service the API server calls. With --service-namespace, start-up
    /// refuses a serving certificate whose SANs do not cover its DNS names.
    #[arg(long, value_name = "NAME", env = "GUARDRAIL_SERVICE_NAME")]
    pub service_name: Option<String>,
    /// Namespace of that Service.
    #[arg(long, value_name = "NS", env = "GUARDRAIL_SERVICE_NAMESPACE")]
    pub service_namespace: Option<String>,
    /// Warn (log) when a certificate expires within this many days.
    #[arg(long, value_name = "DAYS", env = "GUARDRAIL_CERT_EXPIRY_WARNING_DAYS",
          default_value_t = DEFAULT_EXPIRY_WARNING_DAYS)]
    pub cert_expiry_warning_days: u32,
    /// How often the certificate files are re-read in addition to watching them.
    #[arg(long, value_name = "DURATION", env = "GUARDRAIL_TLS_RELOAD_INTERVAL",
          default_value = DEFAULT_RELOAD_INTERVAL, value_parser = humantime::parse_duration)]
    pub tls_reload_interval: Duration,
    /// Self-managed mode: keep the CA and serving certificate in --secret-name and write
    /// the CA bundle into these Validating/MutatingWebhookConfigurations (comma
    /// separated). Needs --service-name and --service-namespace.
    #[arg(
        long,
        value_name = "NAME[,NAME]",
        env = "GUARDRAIL_MANAGE_WEBHOOK_CONFIGURATIONS",
        value_delimiter = ','
    )]
    pub manage_webhook_configurations: Vec<String>,
    /// Self-managed mode: the Secret (in --service-namespace) holding the certificates.
    #[arg(long, value_name = "NAME", env = "GUARDRAIL_SECRET_NAME", default_value = DEFAULT_SECRET_NAME)]
    pub secret_name: String,
    /// Self-managed mode: lifetime of a new CA, in days.
    #[arg(long, value_name = "DAYS", env = "GUARDRAIL_CA_DAYS", default_value_t = DEFAULT_CA_DAYS)]
    pub ca_days: u32,
    /// Self-managed mode: lifetime of a new serving certificate, in days.
    #[arg(long, value_name = "DAYS", env = "GUARDRAIL_CERT_DAYS", default_value_t = DEFAULT_CERT_DAYS)]
    pub cert_days: u32,
    /// Self-managed mode: renew the CA or serving certificate this many days before it
    /// expires (a CA renewal keeps the old CA in the bundle until it expires).
    #[arg(long, value_name = "DAYS", env = "GUARDRAIL_RENEW_BEFORE_DAYS",
          default_value_t = DEFAULT_RENEW_BEFORE_DAYS)]
    pub renew_before_days: u32,
    /// Self-managed mode: kubeconfig to use instead of the in-cluster service account
    /// (or $KUBECONFIG).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

impl TlsArgs {
    /// Serving files only, everything else at its default (for tests and embedding).
    pub fn files(tls_cert: impl Into<PathBuf>, tls_key: impl Into<PathBuf>) -> Self {
        Self {
            tls_cert: tls_cert.into(),
            tls_key: tls_key.into(),
            client_ca: None,
            service_name: None,
            service_namespace: None,
            cert_expiry_warning_days: DEFAULT_EXPIRY_WARNING_DAYS,
            tls_reload_interval: Duration::from_secs(30),
            manage_webhook_configurations: Vec::new(),
            secret_name: DEFAULT_SECRET_NAME.to_string(),
            ca_days: DEFAULT_CA_DAYS,
            cert_days: DEFAULT_CERT_DAYS,
            renew_before_days: DEFAULT_RENEW_BEFORE_DAYS,
            kubeconfig: None,
        }
    }

    /// Whether self-managed mode is on.
    pub fn self_managed(&self) -> bool {
        !self.manage_webhook_configurations.is_empty()
    }

    /// Checks flag combinations; errors name the flag.
    pub fn validate(&self) -> Result<(), CertError> {
        if self.service_name.is_some() != self.service_namespace.is_some() {
            return Err(CertError::Argument {
                field: "--service-name/--service-namespace",
                message: "set both or neither".into(),
            });
        }
        if self.self_managed() {
            if self.service_name.is_none() {
                return Err(CertError::Argument {
                    field: "--service-name/--service-namespace",
                    message: "self-managed mode (--manage-webhook-configurations) issues \
                              certificates for the Service; name it"
                        .into(),
                });
            }
            if let Some(empty) = self
                .manage_webhook_configurations
                .iter()
                .find(|n| n.trim().is_empty())
            {
                return Err(CertError::Argument {
                    field: "--manage-webhook-configurations",
                    message: format!("empty name {empty:?} in the list"),
                });
            }
            if self.secret_name.is_empty() {
                return Err(CertError::Argument {
                    field: "--secret-name",
                    message: "must not be empty".into(),
                });
            }
            if self.cert_days == 0 || self.cert_days > self.ca_days {
                return Err(CertError::Argument {
                    field: "--cert-days",
                    message: format!(
                        "{} must be between 1 and --ca-days ({})",
                        self.cert_days, self.ca_days
                    ),
                });
            }
            if self.renew_before_days == 0 || self.renew_before_days >= self.cert_days {
                return Err(CertError::Argument {
                    field: "--renew-before-days",
                    message: format!(
                        "{} must be at least 1 and shorter than --cert-days ({})",
                        self.renew_before_days, self.cert_days
                    ),
                });
            }
        }
        if self.tls_reload_interval < Duration::from_secs(1) {
            return Err(CertError::Argument {
                field: "--tls-reload-interval",
                message: format!(
                    "{:?} is too short; use at least 1s",
                    self.tls_reload_interval
                ),
            });
        }
        Ok(())
    }

    /// DNS names the serving certificate must cover (empty when no Service is named).
    pub(crate) fn required_names(&self) -> Vec<String> {
        match (&self.service_name, &self.service_namespace) {
            (Some(name), Some(ns)) => service_dns_names(name, ns),
            _ => Vec::new(),
        }
    }

    pub(crate) fn warn_before(&self) -> Duration {
        Duration::from_secs(u64::from(self.cert_expiry_warning_days) * 86_400)
    }
}
