//! The CA bundle: parsing and rendering the PEM list, and writing it into the
//! `caBundle` of WebhookConfigurations.

use std::{fmt::Debug, path::Path};

use k8s_openapi::ByteString;
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

/// Sets every `caBundle` of configuration `name` (of kind `kind`) to `wanted`, with
/// resourceVersion preconditions. Returns None when no such configuration exists,
/// otherwise whether it had to be written.
pub(super) async fn update<K>(
    api: &Api<K>,
    name: &str,
    kind: &str,
    bundles: impl Fn(&mut K) -> Vec<&mut Option<ByteString>>,
    wanted: &ByteString,
) -> Result<Option<bool>, CertError>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let object = format!("{kind} {name}");
    for attempt in 1..=MAX_ATTEMPTS {
        let Some(mut config) = api.get_opt(name).await.map_err(|source| CertError::Kube {
            action: "get",
            object: object.clone(),
            source,
        })?
        else {
            return Ok(None);
        };
        let mut changed = false;
        for bundle in bundles(&mut config) {
            if bundle.as_ref() != Some(wanted) {
                *bundle = Some(wanted.clone());
                changed = true;
            }
        }
        if !changed {
            return Ok(Some(false));
        }
        match api.replace(name, &PostParams::default(), &config).await {
            Ok(_) => {
                tracing::info!(%object, "caBundle updated");
                return Ok(Some(true));
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
