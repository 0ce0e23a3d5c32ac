//! Accepting connections and serving HTTP/1.1 on them with hyper.
//!
//! The accept loop survives running out of file descriptors: it backs off
//! instead of spinning, and accepts again once connections close. Each
//! connection has a deadline for its request headers, so clients that
//! never finish them cannot hold a socket forever.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::metrics::Metrics;

/// How long to wait before accepting again after an accept error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Raises the soft open-files limit to the hard one, and returns it: the
/// number of connections (held polls) one process can have.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// Accepts and serves connections until `stop` resolves; returns the handle
/// that waits for the open connections to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    metrics: Arc<Metrics>,
    header_read_timeout: Duration,
    stop: impl Future<Output = ()>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
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
            },
        };
        let _ = stream.set_nodelay(true);
        let service =
            app.clone()
                .map_request(move |mut request: axum::extract::Request<Incoming>| {
                    request
                        .extensions_mut()
                        .insert(ConnectInfo::<SocketAddr>(peer));
                    request
                });
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        let open = metrics.open_connection();
        tokio::spawn(async move {
            let _open = open;
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    graceful
}
