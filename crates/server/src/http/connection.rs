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

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::server::graceful::Watcher;
use talk_protocol::{BroadcastRequest, PollRequest};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::answer::{encode_answer, error_answer, ok_answer};
use super::cors::{self, OriginCheck};
use super::error::ApiError;
use super::handover;
use super::host::check_host;
use super::phase::{Activity, Phase};
use super::registry::HandedOver;
use super::request::{decode_json, forwarded_ip};
use super::routes::{broadcast, poll};
use super::socket_sink::SocketSink;
use super::Connections;
use crate::config::Config;
use crate::hub::{Polled, Waiter};

/// The most bytes read from the socket at once; the buffer that keeps them
/// is only as large as what arrived.
const READ_CHUNK: usize = 4096;

/// A request head longer than this goes to hyper, which has its own limits.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The spacing of the grid that long waits end on (see [`Alarm`]).
const DEADLINE_GRID: Duration = Duration::from_millis(250);

/// Waits shorter than this end when asked, not on the grid.
const SHORTEST_GRIDDED_WAIT: Duration = Duration::from_secs(1);

/// The most headers parsed here; a request with more goes to hyper.
const MAX_HEADERS: usize = 32;

/// How many bytes a client may send ahead while its poll is held (a
/// pipelined request); more, and the connection is closed.
const MAX_READ_AHEAD: usize = 64 * 1024;

/// The two chat endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChatRoute {
    Poll,
    Broadcast,
}

/// A chat request's head, with what the answer needs to know of it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ChatHead {
    pub(crate) route: ChatRoute,
    pub(crate) head_len: usize,
    pub(crate) body_len: usize,
    pub(crate) origin: OriginCheck,
    pub(crate) forwarded_ip: Option<IpAddr>,
    /// The client asked to close the connection after this answer.
    pub(crate) close: bool,
}

/// What the next request on a connection is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Head {
    Chat(ChatHead),
    /// A request for hyper and the router.
    Other,
}

/// The connection's one timer, for each wait it bounds in turn: the next
/// request's head, then the poll that request holds.
///
/// A timer per wait showed in fan-out profiles: each was entered into
/// tokio's timer wheel and taken out again, twice per poll. This one moves
/// only when a wait's deadline is earlier than the timer's, or when the
/// timer fires before the deadline of the wait at hand, so a busy
/// connection touches the wheel about once per timeout rather than twice
/// per request.
///
/// A wait of a second or more ends on a grid of [`DEADLINE_GRID`] shared by
/// every connection, up to one step before its deadline. Held polls time
/// out a few hundred a second at 19,000 pollers, each at its own moment,
/// and the server woke up for each of them and again for each poll that
/// followed (about 60 µs of CPU per idle answer, against 20 in a
/// broadcast's burst); on the grid they time out in batches.
///
/// The timer itself lives in the connection's future (pinned there), not
/// in an allocation of its own: that cost 0.1 KiB per held poll.
struct Alarm<'timer> {
    sleep: Pin<&'timer mut Sleep>,
    grid_origin: Instant,
}

impl Alarm<'_> {
    /// Completes at `deadline`, or on the grid step before it.
    async fn until(&mut self, deadline: Instant) {
        let deadline = on_grid(deadline, Instant::now(), self.grid_origin);
        if self.sleep.deadline() > deadline {
            self.sleep.as_mut().reset(deadline);
        }
        loop {
            self.sleep.as_mut().await;
            if Instant::now() >= deadline {
                return;
            }
            self.sleep.as_mut().reset(deadline);
        }
    }
}

/// `deadline` moved back to the grid step at or before it, when it is at
/// least [`SHORTEST_GRIDDED_WAIT`] after `now`.
fn on_grid(deadline: Instant, now: Instant, grid_origin: Instant) -> Instant {
    if deadline < now + SHORTEST_GRIDDED_WAIT {
        return deadline;
    }
    let since_origin = deadline.duration_since(grid_origin);
    let past_step =
        Duration::from_nanos((since_origin.as_nanos() % DEADLINE_GRID.as_nanos()) as u64);
    deadline - past_step
}

/// Serves one connection until it closes. `watcher` makes a graceful
/// shutdown wait for this connection.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    connections: Arc<Connections>,
    watcher: Watcher,
) {
    // The write half goes into the waiter the connection's polls park, so
    // that a publish can write their answers (see `socket_sink`).
    let (mut stream, write) = stream.into_split();
    let waiter = Arc::new(Waiter::new(SocketSink::new(write, connections.clone())));
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
    loop {
        let next = read_request(
            &mut stream,
            &mut pending,
            &mut alarm,
            closing.as_mut(),
            &connections,
            &waiter.sink().phase,
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
        let request = decode_request(&head, &pending[head.head_len..request_len]);
        pending.drain(..request_len);
        if pending.is_empty() {
            // A held poll should not keep the buffer of the request it answers.
            pending = Vec::new();
        }
        let app = &connections.app;
        let client_ip = head.forwarded_ip.unwrap_or(peer.ip());
        let answer = match request {
            Err(error) => error_answer(app, error),
            Ok(ChatRequest::Poll(request)) => {
                waiter.sink().hold(head.origin, head.close);
                let answer = poll::answer(app, request, &mut last_session, &waiter, |wait| {
                    poll_expiry(alarm.until(Instant::now() + wait), &read_ended)
                });
                // Pinned here, in this future, and lent to the watch: taken
                // by value, it would be kept twice in the connection's task
                // (the watch's argument and its pinned copy), and a held
                // poll costs what its task costs.
                let answer = std::pin::pin!(answer);
                let config = &app.config;
                match watch_while_held(&mut stream, &mut pending, &read_ended, config, answer).await
                {
                    Some(Ok(Polled::Answer(body))) => ok_answer(body.json),
                    // Written by the publish (which declines a poll that
                    // asked to close), perhaps only in part.
                    Some(Ok(Polled::Sent { finish })) => {
                        if finish && waiter.sink().finish().await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Some(Err(error)) => error_answer(app, error),
                    // The client hung up: its poll is dropped, and so is it.
                    None => return,
                }
            }
            Ok(ChatRequest::Broadcast(request)) => {
                // Boxed for the same reason: a send is rarer than a poll,
                // and its future larger than a held poll's.
                match Box::pin(broadcast::answer(app, client_ip, request)).await {
                    Ok(json) => ok_answer(json.into()),
                    Err(error) => error_answer(app, error),
                }
            }
        };
        let close = head.close || connections.closing.is_cancelled();
        let bytes = encode_answer(&answer, &app.config.allow_origins, head.origin, close);
        // Returning drops both halves: the write half shuts the socket down.
        if waiter.sink().write_all(&bytes).await.is_err() || close {
            return;
        }
    }
}

/// What reading the next request came to.
enum Next {
    /// A chat request, whole at the start of `pending`.
    Chat(ChatHead),
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
    stream: &mut OwnedReadHalf,
    pending: &mut Vec<u8>,
    alarm: &mut Alarm<'_>,
    mut closing: Pin<&mut WaitForCancellationFutureOwned>,
    connections: &Connections,
    phase: &Phase,
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
            match parse_head(pending, &connections.app.config) {
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
async fn reunite(read: OwnedReadHalf, mut waiter: Arc<Waiter<SocketSink>>) -> Option<TcpStream> {
    for _ in 0..1_000 {
        match Arc::try_unwrap(waiter) {
            Ok(waiter) => return read.reunite(waiter.into_sink().into_write_half()).ok(),
            Err(shared) => {
                waiter = shared;
                tokio::task::yield_now().await;
            }
        }
    }
    None
}

/// Parses the head in `bytes`: `None` while it is incomplete.
pub(crate) fn parse_head(bytes: &[u8], config: &Config) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(bytes) {
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Ok(httparse::Status::Partial) => return None,
        Err(_) => return Some(Head::Other),
    };
    let route = match (request.method, request.path, request.version) {
        (Some("POST"), Some("/poll"), Some(1)) => ChatRoute::Poll,
        (Some("POST"), Some("/broadcast"), Some(1)) => ChatRoute::Broadcast,
        _ => return Some(Head::Other),
    };
    let mut body_len = None;
    let mut origin = None;
    let mut forwarded = None;
    let mut close = false;
    let mut n_hosts = 0;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            n_hosts += 1;
        } else if name.eq_ignore_ascii_case("content-length") {
            // Digits only (`usize::from_str` would also take a sign).
            let length = Some(header.value)
                .filter(|value| !value.is_empty() && value.iter().all(u8::is_ascii_digit))
                .and_then(|value| std::str::from_utf8(value).ok()?.parse::<usize>().ok());
            match (body_len, length) {
                (None, Some(length)) => body_len = Some(length),
                // Repeated or unreadable: let hyper judge it.
                _ => return Some(Head::Other),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Some(Head::Other);
        } else if name.eq_ignore_ascii_case("connection") {
            // Any of them, as hyper reads them.
            close |= header
                .value
                .split(|byte| *byte == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if name.eq_ignore_ascii_case("origin") {
            // The first, as the router and the CORS layer read it.
            origin = origin.or(Some(header.value));
        } else if config
            .client_ip_header
            .as_deref()
            .is_some_and(|proxy_header| name.eq_ignore_ascii_case(proxy_header))
        {
            forwarded = forwarded_ip(header.value);
        }
    }
    // The router answers a request without exactly one `Host` (the route
    // is HTTP/1.1 only).
    if check_host(true, n_hosts).is_err() {
        return Some(Head::Other);
    }
    let body_len = match body_len {
        Some(length) if length <= config.max_body_bytes => length,
        // No length (hyper reads an empty body) or too long (hyper answers 413).
        _ => return Some(Head::Other),
    };
    let origin = cors::check_origin(&config.allow_origins, origin);
    if origin == OriginCheck::Refused {
        // The router writes the refusal (see `cors::grant_refusal`).
        return Some(Head::Other);
    }
    Some(Head::Chat(ChatHead {
        route,
        head_len,
        body_len,
        origin,
        forwarded_ip: forwarded,
        close,
    }))
}

/// A decoded chat request.
enum ChatRequest {
    Poll(PollRequest),
    Broadcast(BroadcastRequest),
}

fn decode_request(head: &ChatHead, body: &[u8]) -> Result<ChatRequest, ApiError> {
    Ok(match head.route {
        ChatRoute::Poll => ChatRequest::Poll(decode_json(body)?),
        ChatRoute::Broadcast => ChatRequest::Broadcast(decode_json(body)?),
    })
}

/// Appends what the socket has to `pending`; 0 when the client closed it.
async fn read_some(stream: &mut OwnedReadHalf, pending: &mut Vec<u8>) -> io::Result<usize> {
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
    stream: &mut OwnedReadHalf,
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
    stream: &mut OwnedReadHalf,
    pending: &mut Vec<u8>,
    read_ended: &AtomicBool,
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
                Poll::Ready(Ok(0)) if begins_whole_request(pending, config) => {
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
fn begins_whole_request(pending: &[u8], config: &Config) -> bool {
    match parse_head(pending, config) {
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

    /// `on_grid` for a deadline `wait_ms` after a `now` that is `now_ms`
    /// after the grid's origin, as milliseconds after `now`.
    fn check(now_ms: u64, wait_ms: u64, expected_ms: u64) {
        let origin = Instant::now();
        let now = origin + Duration::from_millis(now_ms);
        let deadline = on_grid(now + Duration::from_millis(wait_ms), now, origin);
        assert_eq!(
            deadline.duration_since(now),
            Duration::from_millis(expected_ms),
            "now {now_ms} ms, wait {wait_ms} ms"
        );
    }

    #[test]
    fn long_waits_end_on_the_grid_step_at_or_before_their_deadline() {
        // Short waits end when asked.
        check(0, 0, 0);
        check(130, 200, 200);
        check(130, 999, 999);
        // Long ones move back to the step at or before the deadline.
        check(0, 1_000, 1_000);
        check(130, 1_000, 870);
        check(130, 25_000, 24_870);
        check(100, 25_150, 25_150);
        check(100, 25_149, 24_900);
        check(7_777, 27_500, 27_473);
    }

    /// Checks what `parse_head` reads from a `POST /poll` head with these
    /// header lines: `(origin check, forwarded address, close)`; a refused
    /// origin's request goes to the router.
    fn check_head(header_lines: &str, expected: (OriginCheck, Option<IpAddr>, bool)) {
        let config = Config {
            allow_origins: vec!["https://chat.example".into()],
            client_ip_header: Some("x-forwarded-for".into()),
            ..Config::default()
        };
        let head =
            format!("POST /poll HTTP/1.1\r\nhost: t\r\n{header_lines}content-length: 2\r\n\r\n");
        let parsed = parse_head(head.as_bytes(), &config);
        if expected.0 == OriginCheck::Refused {
            assert_eq!(parsed, Some(Head::Other), "{header_lines:?}");
            return;
        }
        let Some(Head::Chat(chat)) = parsed else {
            panic!("{header_lines:?} is not a chat head");
        };
        assert_eq!(
            (chat.origin, chat.forwarded_ip, chat.close),
            expected,
            "{header_lines:?}"
        );
    }

    // Found by the fuzz target `request_head`: hyper closes when any
    // `Connection` line says `close`; this read the last line only.
    #[test]
    fn any_connection_header_can_ask_to_close() {
        let close = (OriginCheck::Listed(0), None, true);
        let keep = (OriginCheck::Listed(0), None, false);
        let origin = "origin: https://chat.example\r\n";
        check_head(&format!("{origin}connection: keep-alive\r\n"), keep);
        check_head(&format!("{origin}connection: keep-alive, Close\r\n"), close);
        check_head(
            &format!("{origin}connection: close\r\nconnection: keep-alive\r\n"),
            close,
        );
        check_head(
            &format!("{origin}connection: keep-alive\r\nconnection: close\r\n"),
            close,
        );
    }

    // Found by the fuzz target `request_head`: the router reads the first
    // `Origin`, and this read the last.
    #[test]
    fn a_repeated_origin_is_read_as_the_router_reads_it() {
        let refused = (OriginCheck::Refused, None, false);
        let listed = (OriginCheck::Listed(0), None, false);
        check_head("origin: https://chat.example\r\n", listed);
        check_head("origin: http://evil.example\r\n", refused);
        check_head(
            "origin: http://evil.example\r\norigin: https://chat.example\r\n",
            refused,
        );
        check_head(
            "origin: https://chat.example\r\norigin: http://evil.example\r\n",
            listed,
        );
    }
}
