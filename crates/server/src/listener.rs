//! Accepting connections, and stopping them gracefully.
//!
//! The accept loop survives running out of file descriptors: it backs off
//! instead of spinning, and accepts again once connections close. Each
//! connection accepted on the public listener is served by
//! `http::connection`; each one on the internal listener (for operators)
//! goes straight to hyper and the router given for it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::http::connection::{self, Connections};
use crate::metrics::Metrics;

/// How long to wait before accepting again after an accept error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Raises the soft open-files limit to the hard one, and returns it: the
/// number of connections (held polls) one process can have.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The open connections, once the server stopped accepting.
pub(crate) struct Open {
    graceful: GracefulShutdown,
    closing: CancellationToken,
}

impl Open {
    /// Closes idle connections, lets busy ones finish their answer, and
    /// resolves when every connection is closed.
    pub(crate) async fn shutdown(self) {
        self.closing.cancel();
        self.graceful.shutdown().await;
    }
}

/// Accepts and serves connections until `stop` resolves: the chat's on
/// `listener` (with `router` for what `http::connection` hands over), and
/// the operators' on `internal`, each with its router; returns the open
/// connections, to close them.
pub(crate) async fn serve(
    listener: TcpListener,
    internal: Option<(TcpListener, axum::Router)>,
    app: crate::http::AppState,
    router: axum::Router,
    metrics: Arc<Metrics>,
    header_read_timeout: Duration,
    stop: impl Future<Output = ()>,
) -> Open {
    let graceful = GracefulShutdown::new();
    let closing = CancellationToken::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let connections = Arc::new(Connections {
        app,
        router,
        http,
        header_read_timeout,
        deadline_grid_origin: tokio::time::Instant::now(),
        closing: closing.clone(),
    });
    let (internal_listener, internal_router) = internal.unzip();
    tokio::pin!(stop);
    loop {
        let (accepted, on_internal) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => (accepted, false),
            accepted = accept_if_any(internal_listener.as_ref()) => (accepted, true),
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                metrics.accept_errors.inc();
                // Out of descriptors (EMFILE/ENFILE) or a connection reset
                // before it was accepted: wait, so that the loop does not
                // spin while nothing can be accepted.
                tracing::warn!(%error, "accept failed; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let open = metrics.open_connection();
        let watcher = graceful.watcher();
        match (on_internal, &internal_router) {
            (true, Some(router)) => {
                let service = TowerToHyperService::new(router.clone());
                let http = connections.http.clone();
                tokio::spawn(async move {
                    let _open = open;
                    serve_internal(stream, peer, service, http, watcher).await;
                });
            }
            _ => {
                let connections = connections.clone();
                tokio::spawn(async move {
                    let _open = open;
                    connection::serve(stream, peer, connections, watcher).await;
                });
            }
        }
    }
    Open { graceful, closing }
}

/// The next connection on `listener`; never, when there is none.
async fn accept_if_any(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Serves an operator's connection: every request goes to hyper and the
/// internal router, none to the chat's own connection layer.
async fn serve_internal(
    stream: TcpStream,
    peer: SocketAddr,
    service: TowerToHyperService<axum::Router>,
    http: http1::Builder,
    watcher: Watcher,
) {
    let connection = http.serve_connection(TokioIo::new(stream), service);
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%error, %peer, "internal connection ended with an error");
    }
}
