//! Registry credentials from a docker config JSON (`--registry-auth FILE`), the format of
//! a `kubernetes.io/dockerconfigjson` secret's `.dockerconfigjson` key.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::SignatureError;

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Basic credentials by registry host (as written in image references).
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    by_host: HashMap<String, (String, String)>,
}

/// `https://index.docker.io/v1/` and friends all mean the host `docker.io`.
fn host_key(key: &str) -> String {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

impl Credentials {
    pub fn load(path: &Path) -> Result<Self, SignatureError> {
        let bad = |message: String| SignatureError::RegistryAuth {
            path: path.to_path_buf(),
            message,
        };
        let data = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        Self::parse(&data).map_err(bad)
    }

    pub fn parse(data: &[u8]) -> Result<Self, String> {
        let config: DockerConfig = serde_json::from_slice(data)
            .map_err(|e| format!("not a docker config JSON ({{\"auths\": {{...}}}}): {e}"))?;
        let mut by_host = HashMap::new();
        for (key, entry) in config.auths {
            let pair = match (entry.username, entry.password, entry.auth) {
                (Some(u), Some(p), _) => (u, p),
                (_, _, Some(auth)) => {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .map_err(|e| format!("auths.{key}.auth is not base64: {e}"))?;
                    let text = String::from_utf8(raw)
                        .map_err(|_| format!("auths.{key}.auth is not UTF-8"))?;
                    let (u, p) = text
                        .split_once(':')
                        .ok_or_else(|| format!("auths.{key}.auth must encode `user:password`"))?;
                    (u.to_string(), p.to_string())
                }
                _ => {
                    return Err(format!(
                        "auths.{key} needs `auth` or `username` and `password`"
                    ))
                }
            };
            by_host.insert(host_key(&key), pair);
        }
        Ok(Self { by_host })
    }

    /// The credentials for `registry`, anonymous when none are configured.
    pub fn for_registry(&self, registry: &str) -> RegistryAuth {
        match self.by_host.get(registry) {
            Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            None => RegistryAuth::Anonymous,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auth_and_username_forms() {
        let json = br#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"dTpw"},
            "127.0.0.1:5000":{"username":"alice","password":"s3:cret"}}}"#;
        let c = Credentials::parse(json).expect("valid");
        assert!(
            matches!(c.for_registry("docker.io"), RegistryAuth::Basic(u, p) if u == "u" && p == "p")
        );
        assert!(
            matches!(c.for_registry("127.0.0.1:5000"), RegistryAuth::Basic(u, p) if u == "alice" && p == "s3:cret")
        );
        assert!(matches!(c.for_registry("quay.io"), RegistryAuth::Anonymous));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let err = Credentials::parse(br#"{"auths":{"r.io":{"auth":"!!"}}}"#).expect_err("b64");
        assert!(err.contains("auths.r.io.auth"), "{err}");
        let err = Credentials::parse(b"nope").expect_err("json");
        assert!(err.contains("docker config JSON"), "{err}");
    }
}
