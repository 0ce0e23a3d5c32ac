//! Accepting connections, making room for them, and stopping them
//! gracefully.
//!
//! At 95% of the open-files limit the accept loop closes connections that
//! are stalled in a request, then idle ones (never a held poll), down to
//! 90%, so that new clients still get in when slow or idle clients hold
//! most of the files (`http::registry` chooses which). If it runs out of
//! file descriptors all the same, it makes room the same way and backs off
//! instead of spinning. Each connection accepted on the public listener is
//! served by `http::connection`; each one on the internal listener (for
//! operators) goes straight to hyper and the router given for it.

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

use crate::http::{connection, Closed, Connections, Registry, RequestClock};
use crate::metrics::Metrics;

/// How long to wait before accepting again after an accept error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Raises the soft open-files limit to the hard one, and returns it: the
/// number of connections (held polls) one process can have.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// When to close connections for room, and how many.
struct Room {
    /// 95% of the open-files limit: from here on, connections are closed.
    mark: usize,
    /// 90% of it: what closing brings the files in use back down to.
    target: usize,
    /// Files the process had open before its first connection: the store,
    /// the listener, the runtime's own.
    baseline: usize,
    /// How many more files to wait for before looking again when a look
    /// found too few connections to close (held polls are never closed):
    /// each look reads every connection.
    step: usize,
    /// The files in use at which to look next.
    next_look: usize,
}

impl Room {
    /// Room for a process with `limit` open files, `baseline` of them open
    /// now; `None` if the limit is unknown.
    fn new(limit: usize, baseline: usize) -> Option<Room> {
        if limit == 0 {
            return None;
        }
        let mark = limit * 95 / 100;
        Some(Room {
            mark,
            target: limit * 90 / 100,
            baseline,
            step: (limit / 100).max(1),
            next_look: mark,
        })
    }

    /// Called after each accept: closes connections if files run short.
    fn after_accept(&mut self, metrics: &Metrics, registry: &Registry) {
        let connections = usize::try_from(metrics.connections.get()).unwrap_or(0);
        let in_use = (self.baseline + connections).saturating_sub(registry.n_closing());
        if in_use < self.mark {
            self.next_look = self.mark;
            return;
        }
        if in_use < self.next_look {
            return;
        }
        let wanted = in_use - self.target;
        let closed = close_for_room(registry, metrics, wanted);
        self.next_look = if closed.total() < wanted {
            in_use + self.step
        } else {
            self.mark
        };
    }
}

/// Closes up to `count` connections to make room, and says so.
fn close_for_room(registry: &Registry, metrics: &Metrics, count: usize) -> Closed {
    let closed = registry.close_for_room(count);
    metrics
        .connections_closed_for_room
        .inc_by(closed.total() as u64);
    tracing::warn!(
        stalled = closed.reading,
        idle = closed.idle,
        "open files near the limit: closed {} connections to make room",
        closed.total()
    );
    closed
}

/// How many files the process has open (Linux); `None` where it cannot
/// tell.
fn files_open_now() -> Option<usize> {
    // The directory's own listing takes a file of its own.
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(entries.count().saturating_sub(1))
}

/// Files a process opens besides its connections, where they cannot be
/// counted: a guess on the high side.
const BASELINE_GUESS: usize = 64;

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
    request_timeout: Duration,
    stop: impl Future<Output = ()>,
) -> Open {
    let graceful = GracefulShutdown::new();
    let closing = CancellationToken::new();
    let mut http = http1::Builder::new();
    // The connection layer holds requests to their deadline itself, from
    // their first byte, whichever front reads them (`http::handover`).
    http.timer(TokioTimer::new()).header_read_timeout(None);
    // The internal listener's connections are hyper's alone, with hyper's
    // own bound on their heads (they carry no bodies).
    let mut internal_http = http1::Builder::new();
    internal_http
        .timer(TokioTimer::new())
        .header_read_timeout(request_timeout);
    let (internal_listener, internal_router) = internal.unzip();
    let connections = Arc::new(Connections {
        app,
        router,
        http,
        clock: RequestClock {
            timeout: request_timeout,
            origin: tokio::time::Instant::now(),
        },
        registry: Registry::default(),
        closing: closing.clone(),
    });
    let limit = usize::try_from(metrics.open_files_limit.get()).unwrap_or(0);
    let mut room = Room::new(limit, files_open_now().unwrap_or(BASELINE_GUESS));
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
                if let Some(room) = &room {
                    if is_out_of_files(&error) {
                        close_for_room(&connections.registry, &metrics, room.step);
                    }
                }
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
        if let Some(room) = &mut room {
            room.after_accept(&metrics, &connections.registry);
        }
        let watcher = graceful.watcher();
        match (on_internal, &internal_router) {
            (true, Some(router)) => {
                let service = TowerToHyperService::new(router.clone());
                let http = internal_http.clone();
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

/// Whether an accept failed for want of file descriptors.
fn is_out_of_files(error: &std::io::Error) -> bool {
    // EMFILE (the process's limit) and ENFILE (the system's), on Linux.
    matches!(error.raw_os_error(), Some(24 | 23))
}
