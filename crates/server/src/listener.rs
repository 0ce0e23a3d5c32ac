//! Accepting connections, and stopping them gracefully.
//!
//! The accept loop survives running out of file descriptors: it backs off
//! instead of spinning, and accepts again once connections close. Each
//! accepted connection is served by `http::connection`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioTimer;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::{connection, Connections, RequestClock};
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

/// Accepts and serves connections until `stop` resolves; returns the open
/// connections, to close them.
pub(crate) async fn serve(
    listener: TcpListener,
    app: crate::http::AppState,
    router: axum::Router,
    metrics: Arc<Metrics>,
    request_timeout: Duration,
    stop: impl Future<Output = ()>,
) -> Open {
    let graceful = GracefulShutdown::new();
    let closing = CancellationToken::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // The connection layer holds requests to their deadline itself, from
    // their first byte, whichever front reads them (`http::handover`).
    http.timer(TokioTimer::new()).header_read_timeout(None);
    let connections = Arc::new(Connections {
        app,
        router,
        http,
        clock: RequestClock {
            timeout: request_timeout,
            origin: tokio::time::Instant::now(),
        },
        closing: closing.clone(),
    });
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
        let open = metrics.open_connection();
        let watcher = graceful.watcher();
        let connections = connections.clone();
        tokio::spawn(async move {
            let _open = open;
            connection::serve(stream, peer, connections, watcher).await;
        });
    }
    Open { graceful, closing }
}
