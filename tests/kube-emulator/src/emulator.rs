//! The public handle: start/stop/restart, clients and kubeconfigs, seeding, reading
//! state, the audit log and faults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditEntry, AuditLog};
use crate::faults::Faults;
use crate::kinds::Kinds;
use crate::meta::meta_str;
use crate::server::{self, Shared};
use crate::state::State;
use crate::tls::{self, Tls};
use crate::Error;

/// Namespaces that exist at start (as in a fresh cluster).
pub const DEFAULT_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];
/// The identity RBAC denials name.
pub const DEFAULT_USER: &str = "system:serviceaccount:default:guardrail";

/// How to start an emulator. `Options::default()` suits tests.
#[derive(Debug, Clone)]
pub struct Options {
    /// Listen address (default `127.0.0.1:0`, an ephemeral port kept bound).
    pub listen: SocketAddr,
    /// Bearer token clients must present (default: a random UUID).
    pub token: Option<String>,
    /// Namespaces that exist at start (default: default, kube-system, kube-public).
    pub namespaces: Vec<String>,
    /// User name in 403 messages (default `system:serviceaccount:default:guardrail`).
    pub user: String,
    /// Give every new Revision a Pod, built as Knative's reconciler builds it and
    /// created through the admission chain (default false: most tests run their own
    /// sidecars and must not see pods nobody runs).
    pub revision_pods: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: None,
            namespaces: DEFAULT_NAMESPACES.iter().map(|s| s.to_string()).collect(),
            user: DEFAULT_USER.to_string(),
            revision_pods: false,
        }
    }
}

/// Files and environment for the in-cluster layout.
#[derive(Debug, Clone)]
pub struct InCluster {
    /// Directory holding `token`, `ca.crt` and `namespace`.
    pub dir: PathBuf,
    /// `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`.
    pub env: Vec<(String, String)>,
}

struct Running {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// A running (or stopped) emulated API server. Dropping it stops the server.
pub struct Emulator {
    shared: Shared,
    tls: Tls,
    config: kube::Config,
    running: Mutex<Option<Running>>,
}

impl Emulator {
    /// Generates TLS material, binds the listener and starts serving.
    pub async fn start(options: Options) -> Result<Emulator, Error> {
        let kinds = Kinds::shared()?;
        let tls = tls::generate()?;
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: options.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: options.listen,
            source,
        })?;
        let token = options
            .token
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut state = State::new(kinds, &options.namespaces);
        state.revision_pods = options.revision_pods;
        let shared = Shared {
            state: Arc::new(Mutex::new(state)),
            services: Default::default(),
            pods_wanted: Default::default(),
            faults: Faults::default(),
            audit: AuditLog::default(),
            token: token.into(),
            user: options.user.into(),
            addr,
        };
        let kubeconfig = kubeconfig_yaml(addr, &tls.ca_pem, &shared.token);
        let parsed = kube::config::Kubeconfig::from_yaml(&kubeconfig)
            .map_err(|e| Error::Kube(e.to_string()))?;
        let config = kube::Config::from_custom_kubeconfig(
            parsed,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| Error::Kube(e.to_string()))?;
        kube::Client::try_from(config.clone()).map_err(|e| Error::Kube(e.to_string()))?;
        let emulator = Emulator {
            shared,
            tls,
            config,
            running: Mutex::new(None),
        };
        emulator.serve(listener);
        Ok(emulator)
    }

    fn serve(&self, listener: TcpListener) {
        let cancel = CancellationToken::new();
        // The pod creator (the ReplicaSet controller's part): woken after writes that
        // queued pods, stopped with the server.
        let shared = self.shared.clone();
        let stop = cancel.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = shared.pods_wanted.notified() => server::admit::create_pending_pods(&shared).await,
                }
            }
        });
        let task = tokio::spawn(server::serve(
            listener,
            self.tls.server.clone(),
            self.shared.clone(),
            cancel.clone(),
        ));
        *self.lock_running() = Some(Running { cancel, task });
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The server goes away: the listener closes and open connections (watches
    /// included) are cut. State is kept, like etcd behind a crashed API server.
    pub async fn stop(&self) {
        let running = self.lock_running().take();
        if let Some(r) = running {
            r.cancel.cancel();
            // The task ends promptly once cancelled; a panic in it is already logged.
            let _ = r.task.await;
        }
    }

    /// Comes back on the same address after [`Emulator::stop`], with the same state,
    /// certificate and token.
    pub async fn restart(&self) -> Result<(), Error> {
        self.stop().await;
        let addr = self.shared.addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        self.serve(listener);
        Ok(())
    }

    /// A real `kube::Client` for this server (TLS verified against the emulator's CA,
    /// bearer token), built from the same kubeconfig [`Emulator::write_kubeconfig`] writes.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config.clone())
            .expect("the kube config was validated by Emulator::start")
    }

    /// The `kube::Config` behind [`Emulator::client`], to adjust timeouts or retries.
    pub fn kube_config(&self) -> kube::Config {
        self.config.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.shared.addr)
    }

    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// PEM of the CA that signed the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.tls.ca_pem
    }

    /// DER of the CA certificate.
    pub fn ca_der(&self) -> &[u8] {
        &self.tls.ca_der
    }

    /// A kubeconfig (context `kube-emulator`, namespace `default`) for this server.
    pub fn kubeconfig(&self) -> String {
        kubeconfig_yaml(self.shared.addr, &self.tls.ca_pem, &self.shared.token)
    }

    /// Writes [`Emulator::kubeconfig`] to `path`, for child processes (`KUBECONFIG=path`).
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), Error> {
        // Written aside then renamed, so a process polling for the file never reads half of it.
        let partial = path.with_extension("partial");
        let write_err = |source| Error::Write {
            path: path.to_path_buf(),
            source,
        };
        std::fs::write(&partial, self.kubeconfig()).map_err(write_err)?;
        std::fs::rename(&partial, path).map_err(write_err)
    }

    /// Writes the service-account files (`token`, `ca.crt`, `namespace`) into `dir` and
    /// returns the `KUBERNETES_SERVICE_HOST`/`PORT` variables. kube 5 reads the files
    /// from the fixed path `/var/run/secrets/kubernetes.io/serviceaccount`, so a binary
    /// under test must be told about `dir` itself (or tests use a kubeconfig).
    pub fn write_in_cluster(&self, dir: &Path) -> Result<InCluster, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        for (file, contents) in [
            ("token", self.token()),
            ("ca.crt", self.ca_pem()),
            ("namespace", "default"),
        ] {
            let path = dir.join(file);
            std::fs::write(&path, contents).map_err(|source| Error::Write { path, source })?;
        }
        Ok(InCluster {
            dir: dir.to_path_buf(),
            env: vec![
                (
                    "KUBERNETES_SERVICE_HOST".into(),
                    self.shared.addr.ip().to_string(),
                ),
                (
                    "KUBERNETES_SERVICE_PORT".into(),
                    self.shared.addr.port().to_string(),
                ),
            ],
        })
    }

    /// Seeds every document of a (multi-document) YAML string; see [`Emulator::put`].
    pub fn apply_yaml(&self, yaml: &str) -> Result<Vec<Value>, Error> {
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(yaml).map_err(|e| Error::Yaml(e.to_string()))?;
        docs.into_iter()
            .filter(|d| !d.is_null())
            .map(|d| self.put(d))
            .collect()
    }

    /// Routes webhook calls to `clientConfig.service` `namespace/name:port` to `addr`
    /// (the test's loopback server), as the Service's endpoints would.
    pub fn register_service(&self, namespace: &str, name: &str, port: u16, addr: SocketAddr) {
        self.shared
            .services
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((namespace.to_string(), name.to_string(), port), addr);
    }

    /// Creates or replaces an object directly (no resourceVersion check; `status` is
    /// taken as given), creating its namespace if needed. Schema validation, Knative
    /// rules and controllers apply as for API writes.
    /// Admission webhooks are not called for it (it is the test's seed), but pods it
    /// makes controllers create are.
    pub fn put(&self, object: Value) -> Result<Value, Error> {
        let what = format!(
            "{}/{} {}/{}",
            object
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            object.get("kind").and_then(Value::as_str).unwrap_or("?"),
            meta_str(&object, "namespace"),
            meta_str(&object, "name")
        );
        let mut state = self.shared.lock();
        let seeded = state.seed(object).map_err(|source| Error::Rejected {
            what,
            source: Box::new(source),
        });
        if !state.pending_pods.is_empty() {
            self.shared.pods_wanted.notify_one();
        }
        seeded
    }

    /// The stored object, or `None`. `resource` is kubectl-style: `secrets`, `ksvc`,
    /// `services.serving.knative.dev`, `InferenceService`; `namespace` is "" for
    /// cluster-scoped kinds.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let state = self.shared.lock();
        let kind = state.kinds.by_name(resource)?;
        state
            .store
            .get(&kind, namespace, name)
            .map(|s| s.object.clone())
    }

    /// Like [`Emulator::get`], but an unknown resource name is an error, not `None`.
    pub fn try_get(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, Error> {
        let state = self.shared.lock();
        let kind = state
            .kinds
            .by_name(resource)
            .ok_or_else(|| Error::UnknownResource(resource.to_string()))?;
        Ok(state
            .store
            .get(&kind, namespace, name)
            .map(|s| s.object.clone()))
    }

    /// Objects of a kind in a namespace ("" = all namespaces).
    pub fn list(&self, resource: &str, namespace: &str) -> Result<Vec<Value>, Error> {
        let state = self.shared.lock();
        let kind = state
            .kinds
            .by_name(resource)
            .ok_or_else(|| Error::UnknownResource(resource.to_string()))?;
        let ns = (!namespace.is_empty()).then_some(namespace);
        Ok(state
            .store
            .list(&kind, ns)
            .into_iter()
            .map(|s| s.object.clone())
            .collect())
    }

    /// Every request so far, oldest first.
    pub fn audit(&self) -> Vec<AuditEntry> {
        self.shared.audit.entries()
    }

    pub fn clear_audit(&self) {
        self.shared.audit.clear();
    }

    /// Fault injection for this emulator.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(r) = self.lock_running().take() {
            r.cancel.cancel();
        }
    }
}

fn kubeconfig_yaml(addr: SocketAddr, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-emulator\n  cluster:\n    server: https://{addr}\n    certificate-authority-data: {ca}\n\
         users:\n- name: kube-emulator\n  user:\n    token: {token}\ncontexts:\n- name: kube-emulator\n  context:\n    cluster: kube-emulator\n    user: kube-emulator\n    namespace: default\n\
         current-context: kube-emulator\npreferences: {{}}\n"
    )
}
