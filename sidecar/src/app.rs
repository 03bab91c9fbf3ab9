//! Wiring: builds the proxy, window, metrics and admin endpoints from the config and
//! serves both listeners until shutdown, then drains within a bound.

use std::{
    future::Future,
    sync::{atomic::AtomicBool, atomic::Ordering, Arc},
    time::Duration,
};

use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    admin::Admin, config::Config, error::SidecarError, guardrails, guardrails::GuardrailMetrics,
    identity::Identity, metrics::Metrics, proxy::Proxy, sanity::Checker, window::Window,
};

/// A configured sidecar, ready to serve.
pub struct Sidecar {
    config: Config,
    identity: Identity,
    metrics: Arc<Metrics>,
    window: Arc<Window>,
    proxy: Proxy,
    guardrail_metrics: GuardrailMetrics,
    local: Arc<guardrails::Local>,
}

impl Sidecar {
    pub fn new(config: Config, identity: Identity) -> Result<Self, SidecarError> {
        config.validate()?;
        let mut metrics = Metrics::new(identity.revision_label());
        let guardrail_metrics = GuardrailMetrics::register(metrics.registry_mut());
        let metrics = Arc::new(metrics);
        let reference = config
            .sanity
            .score
            .as_ref()
            .map(|s| (s.edges.as_slice(), s.reference.as_slice()));
        let window = Arc::new(
            Window::new(config.window.length, config.window.sub_windows, reference)
                .with_warmup(config.guardrails.warmup),
        );
        let local = Arc::new(guardrails::Local::new(identity.clone(), window.clone()));
        let checker = Arc::new(Checker::new(&config.sanity)?);
        let proxy = Proxy::new(&config, metrics.clone(), window.clone(), checker)?;
        Ok(Self {
            config,
            identity,
            metrics,
            window,
            proxy,
            guardrail_metrics,
            local,
        })
    }

    /// The window the guardrails judge.
    pub fn window(&self) -> Arc<Window> {
        self.window.clone()
    }

    /// The metrics registry owner (for components that add their own metrics).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Binds the configured listen and admin addresses.
    pub async fn bind(&self) -> Result<(TcpListener, TcpListener), SidecarError> {
        let bind = |what: &'static str, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| SidecarError::Bind { what, addr, source })
        };
        Ok((
            bind("listen", self.config.listen).await?,
            bind("admin-listen", self.config.admin_listen).await?,
        ))
    }

    /// Serves until `shutdown` resolves, then stops accepting, gives in-flight requests
    /// up to `drainTimeout` to finish, and returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        admin_listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), SidecarError> {
        let draining = Arc::new(AtomicBool::new(false));
        let upstream_host = self.config.upstream_authority()?.as_str().to_string();
        let admin = Admin::new(
            self.metrics.clone(),
            &self.config.upstream,
            upstream_host,
            self.config.readiness_path.clone(),
            draining.clone(),
            self.local.clone(),
        );
        let proxy_conns = GracefulShutdown::new();
        let admin_conns = GracefulShutdown::new();
        let builder = auto::Builder::new(TokioExecutor::new());
        tracing::info!(
            revision = %self.identity.revision,
            upstream = %self.config.upstream,
            "serving"
        );
        // The guardrail loop runs beside the data path and stops with it.
        let stop_guardrails = CancellationToken::new();
        let guardrails = guardrails::start(
            &self.config.guardrails,
            self.local.clone(),
            self.guardrail_metrics.clone(),
            stop_guardrails.clone(),
        )
        .await;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => {
                    let Ok((stream, _peer)) = accepted.inspect_err(|e| tracing::warn!(error = %e, "accept failed")) else {
                        continue;
                    };
                    // Small request/response exchanges must not wait on Nagle.
                    let _ = stream.set_nodelay(true);
                    let proxy = self.proxy.clone();
                    let service = service_fn(move |req| {
                        let proxy = proxy.clone();
                        async move { proxy.handle(req).await }
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    tokio::spawn(proxy_conns.watch(conn));
                }
                accepted = admin_listener.accept() => {
                    let Ok((stream, _peer)) = accepted.inspect_err(|e| tracing::warn!(error = %e, "admin accept failed")) else {
                        continue;
                    };
                    let admin = admin.clone();
                    let service = service_fn(move |req| {
                        let admin = admin.clone();
                        async move { admin.handle(req).await }
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    tokio::spawn(admin_conns.watch(conn));
                }
            }
        }
        draining.store(true, Ordering::Release);
        stop_guardrails.cancel();
        if let Some(task) = guardrails {
            // An in-flight API call is cancelled at its next await point.
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
        drop(listener);
        drop(admin_listener);
        drain(proxy_conns, self.config.drain_timeout).await;
        drain(admin_conns, Duration::from_millis(100)).await;
        Ok(())
    }
}

async fn drain(conns: GracefulShutdown, bound: Duration) {
    let open = conns.count();
    if tokio::time::timeout(bound, conns.shutdown()).await.is_err() {
        tracing::warn!(connections = open, timeout = ?bound, "drain timed out: closing the remaining connections");
    } else {
        tracing::info!(connections = open, "drained");
    }
}
