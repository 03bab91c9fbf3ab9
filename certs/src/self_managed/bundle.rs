//! The CA bundle: parsing and rendering the PEM list, and writing it into the
//! `caBundle` of WebhookConfigurations.

use std::{fmt::Debug, path::Path};

use k8s_openapi::{
    api::admissionregistration::v1::{
        MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
    },
    ByteString,
};
use kube::{
    api::{Api, PostParams},
    Resource,
};
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    inspect::{self, CertInfo},
    load, CertError,
};

/// Writes lost to concurrent updates before giving up for this round.
const MAX_ATTEMPTS: usize = 5;

/// Every certificate of a PEM bundle with its facts.
pub(super) fn parse(pem: &str, origin: &Path) -> Result<Vec<(String, CertInfo)>, CertError> {
    load::parse_chain(pem.as_bytes(), origin)?
        .iter()
        .map(|der| {
            let info = inspect::parse(origin, der)?;
            Ok((to_pem(der.as_ref()), info))
        })
        .collect()
}

/// Concatenated PEM, in order.
pub(super) fn render(bundle: &[(String, CertInfo)]) -> String {
    bundle.iter().map(|(pem, _)| pem.as_str()).collect()
}

fn to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A WebhookConfiguration kind whose webhooks carry a `caBundle`.
pub(super) trait WebhookConfiguration:
    Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned
{
    fn ca_bundles(&mut self) -> Vec<&mut Option<ByteString>>;
}

/// Both kinds hold their webhooks, each with a `clientConfig`, the same way.
macro_rules! webhook_configuration {
    ($($kind:ty),*) => {$(
        impl WebhookConfiguration for $kind {
            fn ca_bundles(&mut self) -> Vec<&mut Option<ByteString>> {
                self.webhooks
                    .iter_mut()
                    .flatten()
                    .map(|w| &mut w.client_config.ca_bundle)
                    .collect()
            }
        }
    )*};
}
webhook_configuration!(ValidatingWebhookConfiguration, MutatingWebhookConfiguration);

/// What [`update`] found for one kind.
#[derive(Debug)]
pub(super) enum Lookup {
    /// No configuration of this kind and name.
    Missing,
    /// Reading it was refused (403): fine when the install only uses the other kind,
    /// so the caller decides.
    Forbidden(CertError),
    /// Found; whether its caBundles had to be written.
    Found { written: bool },
}

/// Sets every `caBundle` of configuration `name` (of kind `K`) to `wanted`, with
/// resourceVersion preconditions.
pub(super) async fn update<K: WebhookConfiguration>(
    client: &kube::Client,
    name: &str,
    wanted: &ByteString,
) -> Result<Lookup, CertError> {
    let api: Api<K> = Api::all(client.clone());
    let object = format!("{} {name}", K::kind(&()));
    for attempt in 1..=MAX_ATTEMPTS {
        let mut config = match api.get_opt(name).await {
            Ok(Some(config)) => config,
            Ok(None) => return Ok(Lookup::Missing),
            Err(source) => {
                let forbidden = matches!(&source, kube::Error::Api(s) if s.code == 403);
                let error = CertError::Kube {
                    action: "get",
                    object,
                    source,
                };
                return match forbidden {
                    true => Ok(Lookup::Forbidden(error)),
                    false => Err(error),
                };
            }
        };
        let mut changed = false;
        for bundle in config.ca_bundles() {
            if bundle.as_ref() != Some(wanted) {
                *bundle = Some(wanted.clone());
                changed = true;
            }
        }
        if !changed {
            return Ok(Lookup::Found { written: false });
        }
        match api.replace(name, &PostParams::default(), &config).await {
            Ok(_) => {
                tracing::info!(%object, "caBundle updated");
                return Ok(Lookup::Found { written: true });
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::debug!(%object, attempt, "concurrent update; re-reading");
            }
            Err(source) => {
                return Err(CertError::Kube {
                    action: "update",
                    object,
                    source,
                })
            }
        }
    }
    Err(CertError::Stored {
        object,
        message: format!("still conflicting after {MAX_ATTEMPTS} updates; will retry"),
    })
}
