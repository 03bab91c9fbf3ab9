//! What a certificate says about itself (x509-parser) and the start-up checks built on
//! it: validity window, subject alternative names.

use std::path::Path;

use rustls_pki_types::CertificateDer;
use x509_parser::{certificate::X509Certificate, extensions::GeneralName, prelude::FromDer};

use crate::CertError;

/// The facts about one certificate that the checks, logs and metrics need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial number, lowercase hex with colons (as `openssl x509 -serial` prints it,
    /// modulo case and separators).
    pub serial: String,
    /// Subject distinguished name.
    pub subject: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// DNS names of the subjectAltName extension.
    pub dns_names: Vec<String>,
    /// Whether basicConstraints says this is a CA.
    pub is_ca: bool,
}

/// Parses one DER certificate; `path` is only used in the error message.
pub fn parse(path: &Path, der: &CertificateDer<'_>) -> Result<CertInfo, CertError> {
    let invalid = |message: String| CertError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| invalid(format!("not a valid X.509 certificate: {e}")))?;
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some(dns.to_string()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(invalid(format!("unreadable subjectAltName extension: {e}"))),
    };
    Ok(CertInfo {
        serial: cert.raw_serial_as_string(),
        subject: cert.subject().to_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        dns_names,
        is_ca: cert.is_ca(),
    })
}

/// The facts of one DER certificate (e.g. the one a TLS peer presented).
pub fn inspect_certificate(der: &[u8]) -> Result<CertInfo, CertError> {
    parse(Path::new("<DER certificate>"), &CertificateDer::from(der))
}

/// How far in the future a certificate's `notBefore` may be: the issuer's clock (cert-
/// manager's pod, a CI machine) may run minutes ahead of this node's, and refusing the
/// certificate for those minutes would stop the webhook. Expiry gets no such allowance.
pub const NOT_BEFORE_SKEW_SECONDS: i64 = 5 * 60;

/// Refuses a certificate that is not valid at `now` (Unix seconds), allowing a
/// `notBefore` up to [`NOT_BEFORE_SKEW_SECONDS`] ahead.
pub fn check_current(path: &Path, info: &CertInfo, now: i64) -> Result<(), CertError> {
    let invalid = |message: String| CertError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    if info.not_after <= now {
        return Err(invalid(format!(
            "certificate {} (serial {}) expired at {}; issue a new one (for example with \
             `guardrail-webhook certs generate`) and update the caBundle if the CA changed",
            info.subject,
            info.serial,
            format_unix(info.not_after)
        )));
    }
    if info.not_before > now + NOT_BEFORE_SKEW_SECONDS {
        return Err(invalid(format!(
            "certificate {} (serial {}) is not valid before {}; check the clock of this node \
             and of the machine that issued it",
            info.subject,
            info.serial,
            format_unix(info.not_before)
        )));
    }
    Ok(())
}

/// Refuses a serving certificate whose SANs do not cover every name in `required`.
pub fn check_names(path: &Path, info: &CertInfo, required: &[String]) -> Result<(), CertError> {
    let missing: Vec<&str> = required
        .iter()
        .filter(|name| !info.dns_names.iter().any(|san| san_matches(san, name)))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(CertError::Invalid {
        path: path.to_path_buf(),
        message: format!(
            "certificate SANs [{}] do not cover [{}], the names the API server uses for the \
             configured service; issue a certificate for them (`guardrail-webhook certs \
             generate --service NAME --namespace NS`) or fix --service-name/--service-namespace",
            info.dns_names.join(", "),
            missing.join(", ")
        ),
    })
}

/// RFC 6125 matching: exact (case-insensitive) or a left-most `*` label covering
/// exactly one label.
fn san_matches(san: &str, name: &str) -> bool {
    if san.eq_ignore_ascii_case(name) {
        return true;
    }
    match (san.strip_prefix("*."), name.split_once('.')) {
        (Some(suffix), Some((label, rest))) => {
            !label.is_empty() && suffix.eq_ignore_ascii_case(rest)
        }
        _ => false,
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// RFC 3339 rendering of Unix seconds for messages.
pub fn format_unix(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs} (Unix seconds)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_covers_exactly_one_label() {
        assert!(san_matches("*.ns.svc", "hook.ns.svc"));
        assert!(san_matches("Hook.NS.svc", "hook.ns.svc"));
        assert!(!san_matches("*.ns.svc", "a.hook.ns.svc"));
        assert!(!san_matches("*.ns.svc", "ns.svc"));
        assert!(!san_matches("hook.ns", "hook.ns.svc"));
    }

    #[test]
    fn check_names_lists_what_is_missing() {
        let info = CertInfo {
            serial: "01".into(),
            subject: "CN=x".into(),
            not_before: 0,
            not_after: 10,
            dns_names: vec!["a.ns.svc".into()],
            is_ca: false,
        };
        let err = check_names(
            Path::new("tls.crt"),
            &info,
            &["b.ns.svc".into(), "a.ns.svc".into()],
        )
        .expect_err("b missing");
        let text = err.to_string();
        assert!(
            text.contains("tls.crt") && text.contains("do not cover [b.ns.svc]"),
            "{text}"
        );
        assert!(check_current(Path::new("tls.crt"), &info, 10).is_err());
        assert!(check_current(Path::new("tls.crt"), &info, 5).is_ok());
    }

    #[test]
    fn an_issuer_clock_minutes_ahead_is_tolerated_expiry_is_not() {
        let now = 1_700_000_000;
        let info = |not_before: i64, not_after: i64| CertInfo {
            serial: "01".into(),
            subject: "CN=x".into(),
            not_before,
            not_after,
            dns_names: vec![],
            is_ca: false,
        };
        let path = Path::new("tls.crt");
        // Issued by a machine whose clock runs 3 minutes ahead of ours.
        assert!(check_current(path, &info(now + 180, now + 86_400), now).is_ok());
        // An hour ahead is not skew: refused, naming the clocks.
        let e = check_current(path, &info(now + 3600, now + 86_400), now).expect_err("future");
        assert!(e.to_string().contains("check the clock"), "{e}");
        // Expired a minute ago: refused (no allowance).
        assert!(check_current(path, &info(now - 86_400, now - 60), now).is_err());
    }
}
