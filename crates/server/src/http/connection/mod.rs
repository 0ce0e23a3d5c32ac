//! One client connection: chat requests answered directly, everything else
//! handed to hyper and the router.
//!
//! Held polls are nearly all of what a busy server holds, and each costs
//! what its connection costs. hyper keeps an 8 KiB read buffer per
//! connection and the router's futures for each request, with no setting to
//! shrink them. So `POST /poll` and `POST /broadcast` are read here: the head
//! is parsed by `httparse` from a buffer sized to the request, which is
//! dropped while a poll is held; the answer goes out in one write. While a
//! poll is held the socket is watched, so a client that hangs up frees its
//! poll at once instead of at the poll timeout.
//!
//! Anything this module does not serve in full — other paths and methods,
//! chunked or oversized bodies, `Expect`, upgrades, HTTP/1.0, heads it cannot
//! parse, heads without exactly one `Host` — goes to hyper with the bytes
//! read so far, and hyper serves the rest of the connection. The answers
//! are the router's, so both paths answer alike.
//!
//! A request must arrive whole, head and body, within the request timeout
//! of its first byte, whichever front ends up reading it: a connection
//! handed over mid-request keeps the deadline this module started
//! (`handover.rs`).
//!
//! The parts, each importing only those below it: `head.rs` reads a
//! request head; `alarm.rs` is the timer that bounds each wait;
//! `socket_sink.rs` is the write half that a publish writes a held poll's
//! answer to; `handover.rs` serves the rest of a connection with hyper.
//! This file is the connection's loop.

mod alarm;
mod handover;
mod head;
mod socket_sink;
mod stream;

pub(crate) use self::head::{parse_head, Head};

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFutureOwned;

use self::alarm::Alarm;
use self::head::{LeanHead, MAX_HEAD_BYTES};
use self::socket_sink::SocketSink;
pub(crate) use self::stream::LeanStream;
use crate::config::Config;
use crate::http::answer::JsonAnswer;
use crate::http::chat_request::{decode_chat_body, ChatBody};
use crate::http::phase::{Activity, Phase};
use crate::http::registry::HandedOver;
use crate::http::routes::{broadcast, poll};
use crate::http::state::{App, Connections};
use crate::hub::{Polled, Session, Waiter};

/// The most bytes read from the socket at once; the buffer that keeps them
/// is only as large as what arrived.
const READ_CHUNK: usize = 4096;

/// How many bytes a client may send ahead while its poll is held (a
/// pipelined request); more, and the connection is closed.
const MAX_READ_AHEAD: usize = 64 * 1024;

/// Serves one connection until it closes. `watcher` makes a graceful
/// shutdown wait for this connection.
pub(crate) async fn serve<S: LeanStream>(
    stream: S,
    peer: SocketAddr,
    connections: Arc<Connections>,
    watcher: Watcher,
) {
    // The write half goes into the waiter the connection's polls park, so
    // that a publish can write their answers (see `socket_sink`).
    let (mut stream, write) = stream.split();
    let waiter = Arc::new(Waiter::new(SocketSink::<S>::new(
        write,
        connections.clone(),
    )));
    let registration = connections.registry.register(&waiter);
    // Bytes read and not yet used; empty (and unallocated) between requests.
    let mut pending: Vec<u8> = Vec::new();
    // The session of the last poll, to skip the token map's lock next time.
    let mut last_session = None;
    // The client has stopped sending (a half-close seen while a poll was
    // held): what it sent before is answered, and then the connection ends.
    let read_ended = AtomicBool::new(false);
    // One wait for the shutdown per connection, not one per request: each
    // new wait would join (and leave) the token's list of waiters.
    let closing = connections.closing.clone().cancelled_owned();
    tokio::pin!(closing);
    let sleep = tokio::time::sleep(connections.clock.timeout);
    tokio::pin!(sleep);
    let mut alarm = Alarm {
        sleep,
        grid_origin: connections.clock.origin,
    };
    'requests: loop {
        let next = read_request(
            &mut stream,
            &mut pending,
            &mut alarm,
            closing.as_mut(),
            &connections,
            &waiter.sink().phase,
            peer.ip(),
        )
        .await;
        let head = match next {
            Next::Chat(head) => head,
            Next::HandOver { deadline } => {
                let Some(stream) = reunite(stream, waiter).await else {
                    return;
                };
                let deadline = connections.clock.deadline(deadline);
                let handed_over = Arc::new(HandedOver::reading(deadline));
                if !registration.hand_over(&handed_over) {
                    return;
                }
                let read_ended = read_ended.into_inner();
                // Boxed: hyper's connection is large, and in this future it
                // would make every connection's task, held polls included,
                // as large as the rare one handed over.
                let handed = handover::serve(
                    stream,
                    pending,
                    handed_over,
                    peer,
                    &connections,
                    read_ended,
                    watcher,
                );
                return Box::pin(handed).await;
            }
            Next::End => return,
        };
        let request_len = head.head_len + head.body_len;
        let body = decode_chat_body(head.route, &pending[head.head_len..request_len]);
        pending.drain(..request_len);
        if pending.is_empty() {
            // A held poll should not keep the buffer of the request it answers.
            pending = Vec::new();
        }
        let app = &connections.app;
        let answer = 'answer: {
            match body {
                Err(error) => JsonAnswer::error(app, error),
                Ok(ChatBody::Poll(request)) => {
                    // A `let`, not a `match` on the lookup: the task would keep
                    // the matched `Result` for as long as the poll is held. The
                    // error is answered by the one write below, not by a write
                    // of its own: each await point's state adds to the task,
                    // which every held poll keeps.
                    let session = match session_of(app, &mut last_session, &request.token) {
                        Ok(session) => session,
                        Err(error) => break 'answer JsonAnswer::error(app, error.into()),
                    };
                    waiter.sink().hold(head.origin, head.close);
                    let answer = poll::answer(app, &session, request, &waiter, |wait| {
                        poll_expiry(alarm.until(Instant::now() + wait), &read_ended)
                    });
                    // Pinned here, in this future, and lent to the watch: taken
                    // by value, it would be kept twice in the connection's task
                    // (the watch's argument and its pinned copy), and a held
                    // poll costs what its task costs.
                    let answer = std::pin::pin!(answer);
                    let config = &app.config;
                    match watch_while_held(
                        &mut stream,
                        &mut pending,
                        &read_ended,
                        peer.ip(),
                        config,
                        answer,
                    )
                    .await
                    {
                        Some(Ok(Polled::Answer(body))) => JsonAnswer::ok(body.json),
                        // Written by the publish (which declines a poll that
                        // asked to close), perhaps only in part.
                        Some(Ok(Polled::Sent { finish })) => {
                            if finish && waiter.sink().finish().await.is_err() {
                                return;
                            }
                            continue 'requests;
                        }
                        Some(Err(error)) => JsonAnswer::error(app, error),
                        // The client hung up: its poll is dropped, and so is it.
                        None => return,
                    }
                }
                Ok(ChatBody::Broadcast(request)) => {
                    // Boxed for the same reason: a send is rarer than a poll,
                    // and its future larger than a held poll's.
                    let answer = Box::pin(broadcast::answer(app, head.client_ip, request)).await;
                    JsonAnswer::of(app, answer)
                }
            }
        };
        // Returning drops both halves: the write half shuts the socket down.
        if !waiter
            .sink()
            .write_answer(&answer, head.origin, head.close)
            .await
        {
            return;
        }
    }
}

/// The session a poll's token names. A connection nearly always polls for
/// one session, and the token map behind its lock showed in fan-out
/// profiles, so the session of the connection's last poll is tried first.
/// A session that has ended since is refused by the hub all the same.
fn session_of(
    app: &App,
    last_session: &mut Option<Arc<Session>>,
    token: &str,
) -> Result<Arc<Session>, crate::hub::Error> {
    if let Some(session) = last_session {
        if same_token(&session.token, token) {
            return Ok(session.clone());
        }
    }
    let session = app.hub.session(token)?;
    *last_session = Some(session.clone());
    Ok(session)
}

/// Compares tokens in time that does not depend on where they differ: the
/// connection may be a proxy's, carrying other people's polls.
fn same_token(known: &str, asked: &str) -> bool {
    known.len() == asked.len()
        && known
            .bytes()
            .zip(asked.bytes())
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
}

/// What reading the next request came to.
enum Next {
    /// A chat request, whole at the start of `pending`.
    Chat(LeanHead),
    /// A request for hyper and the router, begun in `pending`, which must
    /// be whole by `deadline`.
    HandOver { deadline: Instant },
    /// The end of the connection: the client closed it, the request did
    /// not arrive in time, no request came, or the server is stopping.
    End,
}

/// Reads the next request: waits for its first byte, then reads it whole,
/// within the request timeout of that byte. A request the client sent
/// ahead (pipelined) starts its clock when its turn comes. `phase` tells
/// the registry of connections which of these the connection is doing.
async fn read_request(
    stream: &mut (impl AsyncRead + Unpin),
    pending: &mut Vec<u8>,
    alarm: &mut Alarm<'_>,
    mut closing: Pin<&mut WaitForCancellationFutureOwned>,
    connections: &Connections,
    phase: &Phase,
    peer: IpAddr,
) -> Next {
    let clock = connections.clock;
    let mut began = !pending.is_empty();
    // While nothing has arrived, the deadline of the wait for a request.
    let mut deadline = Instant::now() + clock.timeout;
    let activity = if began {
        Activity::Reading(clock.deadline(deadline))
    } else {
        Activity::Idle(clock.deadline(deadline))
    };
    // Chosen to be closed for room (the registry shuts the socket down).
    if phase.enter(activity).is_err() {
        return Next::End;
    }
    let head = loop {
        if began {
            match parse_head(pending, peer, &connections.app.config) {
                Some(Head::Chat(head)) => break head,
                Some(Head::Other) => return Next::HandOver { deadline },
                None if pending.len() >= MAX_HEAD_BYTES => return Next::HandOver { deadline },
                None => {}
            }
        }
        // The deadline first: what arrives after it is too late, even if it
        // is there to be read when this task gets to run.
        let read = tokio::select! {
            biased;
            () = alarm.until(deadline) => {
                if began {
                    connections.app.metrics.request_timeouts.inc();
                }
                return Next::End;
            }
            _ = &mut closing => return Next::End,
            read = read_some(stream, pending) => read,
        };
        match read {
            // A request cut short by the client is not worth hyper's time.
            Ok(0) | Err(_) => return Next::End,
            Ok(_) => {}
        }
        if !began {
            began = true;
            deadline = Instant::now() + clock.timeout;
            if phase
                .enter(Activity::Reading(clock.deadline(deadline)))
                .is_err()
            {
                return Next::End;
            }
        }
    };
    let request_len = head.head_len + head.body_len;
    while pending.len() < request_len {
        let read = tokio::select! {
            biased;
            () = alarm.until(deadline) => {
                connections.app.metrics.request_timeouts.inc();
                return Next::End;
            }
            read = read_some(stream, pending) => read,
        };
        match read {
            Ok(0) | Err(_) => return Next::End,
            Ok(_) => {}
        }
    }
    // From here on (a poll held, say), nothing closes the connection for room.
    if phase.enter(Activity::Answering).is_err() {
        return Next::End;
    }
    Next::Chat(head)
}

/// The connection whole again, to hand it to hyper: the waiter is this
/// connection's alone between polls, but a publish on another thread may
/// still hold it for a moment after writing its last answer.
async fn reunite<S: LeanStream>(
    read: S::Read,
    mut waiter: Arc<Waiter<SocketSink<S>>>,
) -> Option<S> {
    for _ in 0..1_000 {
        match Arc::try_unwrap(waiter) {
            Ok(waiter) => return S::reunite(read, waiter.into_sink().into_write_half()),
            Err(shared) => {
                waiter = shared;
                tokio::task::yield_now().await;
            }
        }
    }
    None
}

/// Appends what the socket has to `pending`; 0 when the client closed it.
async fn read_some(
    stream: &mut (impl AsyncRead + Unpin),
    pending: &mut Vec<u8>,
) -> io::Result<usize> {
    std::future::poll_fn(|cx| poll_read_into(stream, pending, cx)).await
}

/// Reads what the socket has into `pending`.
///
/// The chunk lives on the stack of one poll, not in the connection's
/// future, so an idle connection holds no read buffer. Reading through
/// `poll_read` (not `readable` and `try_read`) lets tokio note a short read
/// as "drained", which saves the system call that would otherwise only
/// find the socket empty.
fn poll_read_into(
    stream: &mut (impl AsyncRead + Unpin),
    pending: &mut Vec<u8>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    // Uninitialised: zeroing 4 KiB for every read showed in profiles.
    let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
    let mut buf = ReadBuf::uninit(&mut chunk);
    match Pin::new(stream).poll_read(cx, &mut buf) {
        Poll::Ready(Ok(())) => {
            pending.extend_from_slice(buf.filled());
            Poll::Ready(Ok(buf.filled().len()))
        }
        Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
        Poll::Pending => Poll::Pending,
    }
}

/// Runs `answer` (a held poll) while watching the socket: `None` if the
/// client hangs up first. Bytes it sends meanwhile (a pipelined request)
/// are kept. If the client stops sending (a half-close) after whole
/// requests, the poll is not dropped: `read_ended` is set, which ends it at
/// once, so that it and the requests behind it are answered in order.
async fn watch_while_held<T>(
    stream: &mut (impl AsyncRead + Unpin),
    pending: &mut Vec<u8>,
    read_ended: &AtomicBool,
    peer: IpAddr,
    config: &Config,
    mut answer: Pin<&mut impl Future<Output = T>>,
) -> Option<T> {
    std::future::poll_fn(|cx| loop {
        if let Poll::Ready(answer) = answer.as_mut().poll(cx) {
            return Poll::Ready(Some(answer));
        }
        // The socket has nothing more; the poll is ending.
        if read_ended.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        // Read until the socket has nothing more, so that its readiness is
        // armed again and a hang-up wakes this task.
        loop {
            match poll_read_into(stream, pending, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(n)) if n > 0 && pending.len() <= MAX_READ_AHEAD => {}
                Poll::Ready(Ok(0)) if begins_whole_request(pending, peer, config) => {
                    read_ended.store(true, Ordering::Relaxed);
                    // Look at the poll again: it ends now.
                    break;
                }
                // Hung up, failed, or sending far more than one request ahead.
                Poll::Ready(_) => return Poll::Ready(None),
            }
        }
    })
    .await
}

/// Whether `pending` begins with a whole request: a chat request with all
/// its body, or one for hyper (which judges it).
fn begins_whole_request(pending: &[u8], peer: IpAddr, config: &Config) -> bool {
    match parse_head(pending, peer, config) {
        Some(Head::Chat(head)) => pending.len() >= head.head_len + head.body_len,
        Some(Head::Other) => true,
        None => false,
    }
}

/// The end of a held poll: its deadline, or at once once the client has
/// stopped sending (`read_ended`), so that the requests it sent behind the
/// poll are answered.
async fn poll_expiry(deadline: impl Future<Output = ()>, read_ended: &AtomicBool) {
    tokio::pin!(deadline);
    std::future::poll_fn(|cx| {
        if read_ended.load(Ordering::Relaxed) {
            return Poll::Ready(());
        }
        deadline.as_mut().poll(cx)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_the_same_only_when_every_byte_is() {
        assert!(same_token("abc123", "abc123"));
        assert!(!same_token("abc123", "abc124"));
        assert!(!same_token("abc123", "xbc123"));
        assert!(!same_token("abc123", "abc12"));
        assert!(!same_token("", "a"));
    }
}
