//! The HTTPS listener: rustls handshakes, HTTP/1.1 and HTTP/2 (ALPN) with keep-alive,
//! because the API server reuses connections; graceful drain on shutdown.

use std::{sync::Arc, time::Duration};

use axum::Router;
use guardrail_net::{Accepted, Listener};
use hyper_util::{server::graceful::GracefulShutdown, service::TowerToHyperService};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Accepts TLS connections until `shutdown`, then waits up to `drain` for in-flight
/// requests to finish. The listener's limits bound the handshake and every request
/// head (header timeout), idle keep-alive connections and open connections; a
/// connection beyond the limit is closed at once (the API server sees a refused call
/// and applies the webhook's failurePolicy, as it would on a 503).
pub async fn serve(
    mut listener: Listener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let base = guardrail_net::builder(listener.limits());
    loop {
        let conn = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Accepted::Open(conn) => conn,
                Accepted::Shed(tcp, peer) => {
                    debug!(%peer, "over maxConnections: closing");
                    drop(tcp);
                    continue;
                }
            },
        };
        debug!(peer = %conn.peer, "connection accepted");
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        let base = base.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let peer = conn.peer;
            let handshake = |tcp| async move {
                acceptor
                    .accept(tcp)
                    .await
                    .inspect_err(|e| debug!(%peer, error = %e, "TLS handshake failed"))
                    .ok()
            };
            guardrail_net::serve(conn, base, watcher, handshake, service).await;
        });
    }
    drop(listener);
    info!(connections = graceful.count(), "draining HTTPS connections");
    tokio::select! {
        _ = graceful.shutdown() => info!("HTTPS connections drained"),
        _ = tokio::time::sleep(drain) => warn!(?drain, "drain timed out; closing remaining connections"),
    }
}
