//! A connection handed over to hyper and the router, held to the same
//! request deadline as the lean path.
//!
//! hyper bounds only the wait for a request's head, from the moment it
//! starts waiting (so a connection idle for most of the timeout had little
//! left for its head), and never a body. Here its reads are bounded
//! instead: the connection's [`Phase`] says whether it waits for a request
//! or reads one, and until when; a read still waiting at the deadline fails,
//! which ends the connection. The deadline runs from a request's first
//! byte, also when the lean path read that byte and then handed the
//! connection over. The service marks a request answered once its body has
//! all arrived, so that a held poll has no deadline, and the connection
//! waiting again once the answer is made. A request cut off gets no
//! answer.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::ConnectInfo;
use axum::http::{header, Version};
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use super::stream::LeanStream;
use crate::http::answer::JsonAnswer;
use crate::http::host::check_host;
use crate::http::phase::{Activity, RequestClock};
use crate::http::registry::HandedOver;
use crate::http::state::Connections;

/// Serves the rest of the connection with hyper and the router; hyper
/// reads `read_first` (what the lean path read of the request) first.
/// `read_ended`: the client has already stopped sending, and hyper is to
/// answer what it sent all the same.
pub(crate) async fn serve<S: LeanStream>(
    stream: S,
    read_first: Vec<u8>,
    handed_over: Arc<HandedOver>,
    peer: SocketAddr,
    connections: &Connections,
    read_ended: bool,
    watcher: Watcher,
) {
    let clock = connections.clock;
    let router = connections.router.clone();
    let app = connections.app.clone();
    let shared = handed_over.clone();
    let service = tower::service_fn(move |mut request: axum::extract::Request<Incoming>| {
        request
            .extensions_mut()
            .insert(ConnectInfo::<SocketAddr>(peer));
        let handed_over = shared.clone();
        let router = router.clone();
        let app = app.clone();
        async move {
            let request = request.map(|body| RequestBody::new(body, handed_over.clone()));
            let hosts = request.headers().get_all(header::HOST).iter().count();
            let host = check_host(request.version() == Version::HTTP_11, hosts);
            let answer = async move {
                match host {
                    Ok(()) => router.oneshot(request).await,
                    // Outside the router and its CORS layer, as the request
                    // may be for any route.
                    Err(error) => Ok(JsonAnswer::error(&app, error.into()).into_response(None)),
                }
            };
            tokio::pin!(answer);
            // A request cut off (its body too late, or the connection closed
            // for room) gets no answer: the error ends the connection before
            // the handler can answer the read error it sees.
            let response = std::future::poll_fn(|cx| {
                if handed_over.phase.seen().activity() == Activity::Closing {
                    return Poll::Ready(Err(closing()));
                }
                answer.as_mut().poll(cx).map(|Ok(response)| Ok(response))
            })
            .await?;
            // The answer is made: from now on the connection waits for the
            // next request. A connection chosen to be closed stays so.
            let _ = handed_over
                .phase
                .enter(Activity::Idle(clock.deadline_from_now()));
            Ok::<_, io::Error>(response)
        }
    });
    let io = TokioIo::new(HandedOverStream {
        read_first,
        position: 0,
        stream,
        alarm: Box::pin(tokio::time::sleep_until(Instant::now() + clock.timeout)),
        handed_over,
        clock,
        metrics_timeouts: connections.app.metrics.request_timeouts.clone(),
    });
    // By default hyper drops a request whose client stops sending before
    // the answer: the lean path read this one in full before that.
    let half_closed;
    let http = if read_ended {
        let mut http = connections.http.clone();
        http.half_close(true);
        half_closed = http;
        &half_closed
    } else {
        &connections.http
    };
    let connection = http.serve_connection(io, TowerToHyperService::new(service));
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%error, %peer, "connection ended with an error");
    }
}

/// The error that ends a connection being closed: its request came too
/// late, or it was chosen to make room for new connections.
fn closing() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the connection is being closed",
    )
}

/// A request's body, which marks the request answered once it has all
/// arrived (at once, for a request without one).
struct RequestBody {
    body: Incoming,
    /// Cleared once the request is marked answered.
    handed_over: Option<Arc<HandedOver>>,
}

impl RequestBody {
    fn new(body: Incoming, handed_over: Arc<HandedOver>) -> Self {
        let mut this = RequestBody {
            body,
            handed_over: Some(handed_over),
        };
        this.mark_answering_if_whole();
        this
    }

    fn mark_answering_if_whole(&mut self) {
        if self.body.is_end_stream() {
            if let Some(handed_over) = self.handed_over.take() {
                let _ = handed_over.phase.enter(Activity::Answering);
            }
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => {
                if let Some(handed_over) = self.handed_over.take() {
                    let _ = handed_over.phase.enter(Activity::Answering);
                }
            }
            Poll::Ready(Some(Ok(_))) => self.mark_answering_if_whole(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The connection as hyper reads and writes it: the bytes the lean path
/// read come first, and reads are held to the request deadline.
struct HandedOverStream<S> {
    read_first: Vec<u8>,
    position: usize,
    stream: S,
    /// Wakes a read that waits at the deadline; moved only when the
    /// deadline changes.
    alarm: Pin<Box<Sleep>>,
    handed_over: Arc<HandedOver>,
    clock: RequestClock,
    metrics_timeouts: prometheus_client::metrics::counter::Counter,
}

impl<S> HandedOverStream<S> {
    /// The end of a read at the deadline: an idle connection ends as if
    /// the client had closed it; a request that has not arrived whole is
    /// an error that ends the connection without an answer.
    fn past_deadline(&self, activity: Activity) -> Poll<io::Result<()>> {
        match activity {
            Activity::Reading(_) => {
                self.metrics_timeouts.inc();
                // So that the service does not answer the read error.
                let _ = self.handed_over.phase.enter(Activity::Closing);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request did not arrive whole within the request timeout",
                )))
            }
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HandedOverStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let activity = this.handed_over.phase.seen().activity();
        let deadline = match activity {
            Activity::Idle(deadline) | Activity::Reading(deadline) => {
                Some(this.clock.instant(deadline))
            }
            Activity::Answering => None,
            Activity::Closing => return Poll::Ready(Err(closing())),
        };
        // What arrives after the deadline is too late, even if it is there
        // to be read when this task gets to run.
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return this.past_deadline(activity);
        }
        let filled_before = buf.filled().len();
        let read = if this.position < this.read_first.len() {
            let rest = &this.read_first[this.position..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.position += n;
            if this.position == this.read_first.len() {
                this.read_first = Vec::new();
                this.position = 0;
            }
            Poll::Ready(Ok(()))
        } else {
            Pin::new(&mut this.stream).poll_read(cx, buf)
        };
        match read {
            Poll::Ready(Ok(())) => {
                // The first byte of a request starts its deadline.
                if buf.filled().len() > filled_before && matches!(activity, Activity::Idle(_)) {
                    let _ = this
                        .handed_over
                        .phase
                        .enter(Activity::Reading(this.clock.deadline_from_now()));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                this.handed_over.wake_on_close(cx.waker());
                let Some(deadline) = deadline else {
                    return Poll::Pending;
                };
                if this.alarm.deadline() != deadline {
                    this.alarm.as_mut().reset(deadline);
                }
                match this.alarm.as_mut().poll(cx) {
                    Poll::Ready(()) => this.past_deadline(activity),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HandedOverStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
