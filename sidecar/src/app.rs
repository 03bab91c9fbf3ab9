//! Wiring: builds the proxy, window, metrics and admin endpoints from the config and
//! serves both listeners until shutdown, then drains within a bound.

use std::{
    convert::Infallible,
    future::Future,
    sync::{atomic::AtomicBool, atomic::Ordering, Arc},
    time::Duration,
};

use bytes::Bytes;
use guardrail_net::{overloaded, Accepted, HoldPermit, InFlight, Listener, ListenerMetrics};
use hyper::{body::Incoming, service::service_fn, Request, Response};
use hyper_util::{
    rt::TokioExecutor,
    server::{
        conn::auto,
        graceful::{GracefulShutdown, Watcher},
    },
};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::{
    admin::Admin,
    config::{self, Config},
    error::SidecarError,
    guardrails,
    guardrails::GuardrailMetrics,
    identity::Identity,
    metrics::Metrics,
    proxy::Proxy,
    readiness::{self, Readiness, UpstreamProbe},
    sanity::Checker,
    window::Window,
};

/// The plain-TCP connection as served (the sidecar's listeners have no TLS).
async fn plain(stream: TcpStream) -> Option<TcpStream> {
    Some(stream)
}

/// Serves one accepted connection of a listener: `handle` answers each request within
/// the listener's in-flight bound. Beyond it, and for connections beyond the
/// connection bound, a 503 with `Retry-After` that `handle` never sees: on the proxy,
/// a request the model never got is no evidence against the revision (only counted).
fn serve_plain<H, Fut, B>(
    accepted: Accepted,
    base: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    in_flight: &InFlight,
    handle: H,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + From<Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = match accepted {
        Accepted::Open(conn) => conn,
        Accepted::Shed(stream, _) => {
            tokio::spawn(guardrail_net::shed(stream));
            return;
        }
    };
    let in_flight = in_flight.clone();
    let service = service_fn(move |req| {
        let handle = handle.clone();
        let permit = in_flight.try_enter();
        async move {
            match permit {
                Some(p) => handle(req)
                    .await
                    .map(|r| r.map(|b| HoldPermit::new(b, Some(p)))),
                None => Ok(overloaded::<B>().map(|b| HoldPermit::new(b, None))),
            }
        }
    });
    let builder = base.clone();
    tokio::spawn(async move {
        guardrail_net::serve(conn, builder, watcher, plain, service).await;
    });
}

/// A configured sidecar, ready to serve.
pub struct Sidecar {
    config: Config,
    identity: Identity,
    metrics: Arc<Metrics>,
    window: Arc<Window>,
    proxy: Proxy,
    guardrail_metrics: GuardrailMetrics,
    listener_metrics: ListenerMetrics,
    local: Arc<guardrails::Local>,
}

impl Sidecar {
    pub fn new(config: Config, identity: Identity) -> Result<Self, SidecarError> {
        config.validate()?;
        let mut metrics = Metrics::new(identity.revision_label());
        let guardrail_metrics = GuardrailMetrics::register(metrics.registry_mut());
        let listener_metrics = ListenerMetrics::register(metrics.registry_mut());
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
        metrics.initialise_checks(checker.check_names());
        let proxy = Proxy::new(
            &config,
            identity.revision_label(),
            metrics.clone(),
            window.clone(),
            checker,
        )?;
        Ok(Self {
            config,
            identity,
            metrics,
            window,
            proxy,
            guardrail_metrics,
            listener_metrics,
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
        let stop_probe = CancellationToken::new();
        let model = match &self.config.upstream_probe {
            Some(probe) => {
                let probe = UpstreamProbe::from_probe(probe)?;
                let readiness = Arc::new(Readiness::default());
                tokio::spawn(readiness::run(probe, readiness.clone(), stop_probe.clone()));
                Some(readiness)
            }
            None => None,
        };
        let admin = Admin::new(
            self.metrics.clone(),
            &self.config.upstream,
            upstream_host,
            self.config.readiness_path.clone(),
            draining.clone(),
            self.local.clone(),
            model,
        );
        let proxy_conns = GracefulShutdown::new();
        let admin_conns = GracefulShutdown::new();
        let limits = self.config.limits.clone();
        let admin_limits = config::admin_limits(&limits);
        let net = self.listener_metrics.clone();
        let proxy_base = guardrail_net::builder(&limits);
        let admin_base = guardrail_net::builder(&admin_limits);
        let proxy_in_flight = InFlight::new(limits.max_in_flight, "proxy", net.clone());
        let admin_in_flight = InFlight::new(admin_limits.max_in_flight, "admin", net.clone());
        let mut listener = Listener::new(listener, "proxy", limits, net.clone());
        let mut admin_listener = Listener::new(admin_listener, "admin", admin_limits, net);
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
                    let proxy = self.proxy.clone();
                    serve_plain(accepted, &proxy_base, proxy_conns.watcher(), &proxy_in_flight, move |req| {
                        let proxy = proxy.clone();
                        async move { proxy.handle(req).await }
                    });
                }
                accepted = admin_listener.accept() => {
                    let admin = admin.clone();
                    serve_plain(accepted, &admin_base, admin_conns.watcher(), &admin_in_flight, move |req| {
                        let admin = admin.clone();
                        async move { admin.handle(req).await }
                    });
                }
            }
        }
        draining.store(true, Ordering::Release);
        stop_guardrails.cancel();
        stop_probe.cancel();
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
