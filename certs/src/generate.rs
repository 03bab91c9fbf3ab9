//! Creating a CA and serving certificates with rcgen (ECDSA P-256), and the
//! `guardrail-webhook certs generate` command that writes them to a directory.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::CertError;

/// Default validity of `certs generate` certificates, in days.
pub const DEFAULT_DAYS: u32 = 365;
/// Longest validity `certs generate` accepts (ten years).
pub const MAX_DAYS: u32 = 3650;
/// Certificates start being valid this long before "now", so a node whose clock is a
/// little behind does not reject a certificate that was just issued.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// Flags of `guardrail-webhook certs generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// Name of the Kubernetes Service in front of the webhook.
    #[arg(long, value_name = "NAME")]
    pub service: String,
    /// Namespace of that Service.
    #[arg(long, value_name = "NS")]
    pub namespace: String,
    /// Directory to write ca.crt, ca.key, tls.crt, tls.key and caBundle into (created
    /// if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Validity of the CA and the serving certificate, in days (1..=3650).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_DAYS)]
    pub days: u32,
    /// Overwrite an existing CA in --out (the caBundle of every WebhookConfiguration
    /// using the old CA must then be updated).
    #[arg(long)]
    pub force: bool,
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// Valid from (a little before) now for `days` days.
    pub fn days_from_now(days: u32) -> Self {
        let now = SystemTime::now();
        Self {
            not_before: now - CLOCK_SKEW,
            not_after: now + DAY * days,
        }
    }
}

/// A PEM certificate and its PEM (PKCS#8) private key.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate authority that can sign serving and client certificates.
pub struct Authority {
    issued: Issued,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    /// A new self-signed CA with a fresh ECDSA P-256 key.
    pub fn new(common_name: &str, validity: Validity) -> Result<Self, CertError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Guardrail");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, validity);
        let key = new_key("CA key")?;
        let cert = params
            .self_signed(&key)
            .map_err(|source| CertError::Generate {
                what: "CA certificate",
                source,
            })?;
        Ok(Self {
            issued: Issued {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            },
            issuer: Issuer::new(params, key),
        })
    }

    /// An existing CA from its PEM certificate and key (self-managed mode keeps them in
    /// a Secret). `origin` names where they came from, for error messages.
    pub fn from_pem(cert_pem: &str, key_pem: &str, origin: &str) -> Result<Self, CertError> {
        let stored = |message: String| CertError::Stored {
            object: origin.to_string(),
            message,
        };
        let key = KeyPair::from_pem(key_pem).map_err(|e| stored(format!("CA key: {e}")))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| stored(format!("CA certificate: {e}")))?;
        Ok(Self {
            issued: Issued {
                cert_pem: cert_pem.to_string(),
                key_pem: key_pem.to_string(),
            },
            issuer,
        })
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.issued.cert_pem
    }

    /// The CA private key in PEM.
    pub fn key_pem(&self) -> &str {
        &self.issued.key_pem
    }

    /// A serving certificate for `dns_names` (the first one is also the subject CN).
    pub fn issue_serving(
        &self,
        dns_names: &[String],
        validity: Validity,
    ) -> Result<Issued, CertError> {
        let mut params =
            CertificateParams::new(dns_names.to_vec()).map_err(|source| CertError::Generate {
                what: "serving certificate names",
                source,
            })?;
        if let Some(first) = dns_names.first() {
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, validity, "serving certificate")
    }

    /// A client certificate (for the API server side of mTLS).
    pub fn issue_client(&self, common_name: &str, validity: Validity) -> Result<Issued, CertError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, validity, "client certificate")
    }

    fn issue(
        &self,
        mut params: CertificateParams,
        validity: Validity,
        what: &'static str,
    ) -> Result<Issued, CertError> {
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, validity);
        let key = new_key(what)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| CertError::Generate { what, source })?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The names the API server may use to reach `service` in `namespace`.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// The `caBundle` value of a WebhookConfiguration: base64 of the PEM CA certificates.
pub fn ca_bundle_base64(ca_pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes())
}

/// `guardrail-webhook certs generate`: writes a CA, a serving certificate for the
/// Service and the caBundle to `args.out`, and prints what it wrote.
pub fn generate(args: &GenerateArgs) -> Result<(), CertError> {
    check_dns_label("--service", &args.service)?;
    check_dns_label("--namespace", &args.namespace)?;
    if !(1..=MAX_DAYS).contains(&args.days) {
        return Err(CertError::Argument {
            field: "--days",
            message: format!("{} is outside 1..={MAX_DAYS}", args.days),
        });
    }
    let ca_key_path = args.out.join("ca.key");
    if ca_key_path.exists() && !args.force {
        return Err(CertError::Argument {
            field: "--out",
            message: format!(
                "{} already exists; pass --force to replace the CA (and then update every caBundle)",
                ca_key_path.display()
            ),
        });
    }
    std::fs::create_dir_all(&args.out).map_err(|source| CertError::Write {
        path: args.out.clone(),
        source,
    })?;

    let validity = Validity::days_from_now(args.days);
    // The issue time makes each CA's subject unique, so a re-generated CA is never
    // confused with the one it replaces.
    let ca = Authority::new(
        &format!(
            "guardrail-webhook-ca {}/{} {}",
            args.namespace,
            args.service,
            crate::inspect::format_unix(crate::inspect::unix_now())
        ),
        validity,
    )?;
    let names = service_dns_names(&args.service, &args.namespace);
    let serving = ca.issue_serving(&names, validity)?;
    let bundle = ca_bundle_base64(ca.cert_pem());

    let files: [(&str, &str, bool); 5] = [
        ("ca.crt", ca.cert_pem(), false),
        ("ca.key", ca.key_pem(), true),
        ("tls.crt", &serving.cert_pem, false),
        ("tls.key", &serving.key_pem, true),
        ("caBundle", &bundle, false),
    ];
    for (name, content, secret) in files {
        let path = args.out.join(name);
        write_atomically(&path, content.as_bytes(), secret)?;
        println!("wrote {}", path.display());
    }
    println!(
        "serving certificate for {} valid for {} days; put the content of {} into the \
         caBundle of your ValidatingWebhookConfiguration",
        names.join(", "),
        args.days,
        args.out.join("caBundle").display()
    );
    Ok(())
}

fn set_validity(params: &mut CertificateParams, validity: Validity) {
    params.not_before = validity.not_before.into();
    params.not_after = validity.not_after.into();
}

fn new_key(what: &'static str) -> Result<KeyPair, CertError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|source| CertError::Generate { what, source })
}

/// RFC 1123 label, as Kubernetes requires for Service and Namespace names.
fn check_dns_label(field: &'static str, value: &str) -> Result<(), CertError> {
    let valid = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(CertError::Argument {
            field,
            message: format!(
                "{value:?} is not a DNS label (lowercase letters, digits and '-', at most 63)"
            ),
        })
    }
}

/// Writes through a temporary file and a rename, so a webhook watching the directory
/// never loads half a file. Private keys get mode 0600.
pub(crate) fn write_atomically(path: &Path, content: &[u8], secret: bool) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&tmp).map_err(err)?;
    file.write_all(content).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests;
