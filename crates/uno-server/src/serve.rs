//! Listening, and stopping without dropping requests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::connection::{Limits, Listener, serve_connection};
use crate::metrics::connections::ConnectionMetrics;

/// A bound listener with its app, ready to serve.
pub struct BoundServer {
    listener: TcpListener,
    app: Arc<Listener>,
}

impl BoundServer {
    /// Binds `addr` (port 0 picks a free port) to serve `router` under
    /// `limits` (see [`crate::connection`]), counting into `metrics`.
    pub async fn bind(
        addr: SocketAddr,
        router: Router,
        limits: Limits,
        metrics: Arc<ConnectionMetrics>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await.map_err(|err| {
            std::io::Error::new(
                err.kind(),
                format!("cannot listen on {addr}: {err}; choose another address with server.listen or UNO_LISTEN"),
            )
        })?;
        Ok(Self::from_listener(listener, router, limits, metrics))
    }

    /// Binds `addr` to serve the whole app of `state` ([`crate::build_router`])
    /// under the limits of `server`, counting into the app's metrics.
    pub async fn bind_app(
        addr: SocketAddr,
        state: &crate::AppState,
        server: &uno_core::config::ServerConfig,
    ) -> std::io::Result<Self> {
        let router = crate::build_router(state.clone());
        let metrics = state.metrics().connections.clone();
        Self::bind(addr, router, Limits::from_config(server), metrics).await
    }

    /// [`BoundServer::bind`] on a listener already bound.
    pub fn from_listener(
        listener: TcpListener,
        router: Router,
        limits: Limits,
        metrics: Arc<ConnectionMetrics>,
    ) -> Self {
        BoundServer {
            listener,
            app: Arc::new(Listener::new(router, limits, metrics)),
        }
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets
    /// in-flight requests (streams included) finish for up to the grace
    /// period before returning anyway.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let limits = *self.app.limits();
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            let permit = match slots.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    // At the limit: stop accepting until a connection ends.
                    self.app.metrics().limit_reached();
                    if let Some(more) = self.app.limit_warnings.allow() {
                        tracing::warn!(
                            limit = limits.max_connections,
                            also_reached = more,
                            "server.max_connections client connections are open; new ones wait \
                             until one closes (raise server.max_connections and the open-file limit \
                             if this is real traffic)"
                        );
                    }
                    tokio::select! {
                        permit = slots.clone().acquire_owned() => match permit {
                            Ok(permit) => permit,
                            Err(_) => break,
                        },
                        () = &mut shutdown => break,
                    }
                }
            };
            let (tcp, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        accept_failed(&err).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(%err, "could not set TCP_NODELAY on an accepted connection");
            }
            tokio::spawn(serve_connection(
                tcp,
                peer,
                self.app.clone(),
                stop_rx.clone(),
                permit,
            ));
        }
        drop(self.listener);
        tracing::info!("shutting down: no new connections; finishing in-flight requests");
        let _ = stop_tx.send(true);
        // Each connection holds one slot until it has ended.
        let every_slot = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(limits.shutdown_grace, slots.acquire_many(every_slot));
        if drained.await.is_err() {
            tracing::warn!(
                grace = ?limits.shutdown_grace,
                "in-flight requests did not finish within the grace period; stopping anyway"
            );
        }
        Ok(())
    }
}

/// An `accept` that failed: a connection that died in the backlog is
/// skipped; anything else (out of file descriptors, of memory) is logged
/// and retried after a pause, rather than spinning.
async fn accept_failed(err: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionReset | Interrupted
    ) {
        return;
    }
    tracing::warn!(%err, "cannot accept a connection; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
