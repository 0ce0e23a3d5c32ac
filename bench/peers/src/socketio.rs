//! Socket.IO, over its HTTP long-polling transport, as a peer to compare
//! talk with: the Engine.IO v4 polling client of a poller and the publisher,
//! driven with the bench's own lean connections and bench messages, so that
//! both servers are measured the same way (`socketio/` beside this crate's
//! manifest has the Node server). Fan-out only ([`Socketio`]).
//!
//! A poller starts an Engine.IO session with a handshake, `GET
//! /socket.io/?EIO=4&transport=polling&channel=<channel>`, answered by the
//! open packet `0{"sid":…}`. It connects the Socket.IO socket by posting the
//! connect packet `40` with the session's `sid`, and its first long-poll,
//! `GET /socket.io/?EIO=4&transport=polling&sid=<sid>`, brings the connect
//! acknowledgement `40{"sid":…}`: from then on the socket is in its
//! channel's room. Every later long-poll is held until the server has
//! packets for it; an answer carries one or more, separated by the record
//! separator (0x1e): events `42["message","<bench text>"]`, whose bench
//! text gives the number the poller checks (as talk's `seq`) and the stamp
//! that gives the latency, and the server's pings `2`, every 25 s. A poller
//! answers each ping with a pong `3`, posted while its next long-poll is
//! already on its way, as Socket.IO's own client does; a socket that does
//! not answer within the ping timeout is closed by the server.
//!
//! As a browser does, a poller keeps two connections: one for its
//! long-polls, one for its posts. Node closes an idle connection after 5 s
//! and pings come every 25 s, so a browser's post connection is gone by the
//! time of the next pong; a poller's posts say `Connection: close` and
//! make a connection each, which is the same on the server's side (and
//! keeps the server's open files at one per poller, as with talk).
//!
//! Socket.IO keeps no history and cannot resume a stream: a socket gets the
//! messages emitted while it is in the room, and only those. So the
//! publisher sends nothing until every poller has its acknowledgement (the
//! scenario's ramp waits for that), and a poller's stream starts after
//! message 0, which is never sent: the first message is number 1. A session
//! the server closes (a close packet, a 400 to a poll, a disconnect packet)
//! is the end of that poller ([`PollError::SessionClosed`]); the messages
//! it did not get are counted missing.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use talk_bench::{
    parse_bench_text, Answer, BenchEvent, Error, GroupSpec, HttpError, LeanLink, PollError,
    Pollers, Protocol, Scenario, StreamPosition, Target,
};

use crate::publisher::PeerPublisher;

/// The path of Socket.IO's requests, with the query every one of them has.
const ENGINE_PATH: &str = "/socket.io/?EIO=4&transport=polling";

/// What separates the packets of one long-polling payload (Engine.IO v4).
const RECORD_SEPARATOR: char = '\x1e';

/// One bench message as a poller received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SocketioMessage {
    /// The message's number within its channel: 1 for the first.
    pub(crate) seq: u64,
    /// When it was sent, in microseconds since 1970.
    pub(crate) sent_micros: u64,
}

/// What one long-poll answer brought a poller.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// The answer carried the Socket.IO connect acknowledgement: the socket
    /// is in its channel's room, and its stream starts here.
    pub(crate) connected: bool,
    /// The bench messages, in the order of the payload.
    pub(crate) messages: Vec<SocketioMessage>,
    /// Pings, each to be answered with a pong.
    pub(crate) pings: usize,
}

/// A poller's handshake request to `host` (the `Host` header's value),
/// naming `channel`; built once per channel and shared by a group's
/// pollers.
pub(crate) fn handshake_request(channel: &str, host: &str) -> Arc<[u8]> {
    format!("GET {ENGINE_PATH}&channel={channel} HTTP/1.1\r\nHost: {host}\r\n\r\n")
        .into_bytes()
        .into()
}

/// The fields of Engine.IO's open packet that the bench reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenFields {
    sid: String,
    upgrades: Vec<String>,
    ping_interval: u64,
}

/// An Engine.IO session, as its open packet describes it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Open {
    /// The session id, which every later request carries.
    pub(crate) sid: String,
    /// How often the server pings; a long-poll is held at most about this
    /// long, as a ping answers it.
    pub(crate) ping_interval: Duration,
}

/// The open packet of a handshake's answer, with `status` and `body`.
fn read_open(status: u16, body: &[u8]) -> Result<Open, PollError> {
    let decode = |reason: String| PollError::Decode { status, reason };
    if status != 200 {
        return Err(PollError::Server {
            status,
            code: format!("http_{status}"),
        });
    }
    let json = body
        .strip_prefix(b"0")
        .ok_or_else(|| decode(format!("not an open packet: {}", excerpt(body))))?;
    let fields: OpenFields = serde_json::from_slice(json)
        .map_err(|error| decode(format!("a bad open packet ({error}): {}", excerpt(body))))?;
    if !fields.upgrades.is_empty() {
        return Err(decode(format!(
            "the server offers upgrades to {:?}; the bench's server allows polling only",
            fields.upgrades
        )));
    }
    let sid_is_plain = !fields.sid.is_empty()
        && fields
            .sid
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if !sid_is_plain {
        return Err(decode(format!("an unusual session id {:?}", fields.sid)));
    }
    Ok(Open {
        sid: fields.sid,
        ping_interval: Duration::from_millis(fields.ping_interval),
    })
}

/// Checks the answer to a post of packets: Engine.IO says `ok`.
fn read_post_answer(status: u16, body: &[u8]) -> Result<(), PollError> {
    match (status, body) {
        (200, b"ok") => Ok(()),
        (200, _) => Err(PollError::Decode {
            status,
            reason: format!("a post answered {} instead of ok", excerpt(body)),
        }),
        (400, _) => Err(session_refused(status)),
        _ => Err(PollError::Server {
            status,
            code: format!("http_{status}"),
        }),
    }
}

/// What a long-poll answer with `status` and `body` brought; `connected`
/// says whether the socket had its acknowledgement before this answer.
fn read_poll_answer(
    status: u16,
    body: &[u8],
    run_id: &str,
    connected: bool,
) -> Result<Delivery, PollError> {
    match status {
        200 => read_payload(body, run_id, connected),
        400 => Err(session_refused(status)),
        _ => Err(PollError::Server {
            status,
            code: format!("http_{status}"),
        }),
    }
}

/// Engine.IO answers 400 to a request whose session it does not know (it
/// was closed) or that breaks the session's rules, and closes the session
/// in the second case too: either way, the session is over.
fn session_refused(status: u16) -> PollError {
    PollError::SessionClosed {
        reason: format!("Engine.IO refused the session's request with {status}"),
    }
}

/// The packets of one long-polling payload, taken in order. Anything a
/// polling-only socket of the bench's server does not send is an error.
fn read_payload(body: &[u8], run_id: &str, connected: bool) -> Result<Delivery, PollError> {
    let decode = |reason: String| PollError::Decode {
        status: 200,
        reason,
    };
    let text = std::str::from_utf8(body)
        .map_err(|_| decode(format!("a payload that is not UTF-8: {}", excerpt(body))))?;
    let mut delivery = Delivery {
        connected: false,
        messages: Vec::new(),
        pings: 0,
    };
    let mut connected = connected;
    for packet in text.split(RECORD_SEPARATOR) {
        let unexpected = || decode(format!("an unexpected packet {:?}", shorten(packet)));
        match packet.as_bytes().first() {
            None => return Err(decode(format!("an empty packet in {:?}", shorten(text)))),
            // A ping; "2probe" belongs to the WebSocket upgrade, which the
            // bench's server does not offer.
            Some(b'2') if packet.len() == 1 => delivery.pings += 1,
            // Carries nothing; the server ends a poll with it before it
            // closes the session.
            Some(b'6') if packet.len() == 1 => {}
            Some(b'1') if packet.len() == 1 => {
                return Err(PollError::SessionClosed {
                    reason: "the server closed the Engine.IO session".into(),
                })
            }
            Some(b'4') => match &packet[1..] {
                event if event.starts_with("2[") => {
                    if !connected {
                        return Err(decode(format!(
                            "an event before the connect acknowledgement: {:?}",
                            shorten(packet)
                        )));
                    }
                    delivery.messages.push(read_event(&event[1..], run_id)?);
                }
                acknowledgement if acknowledgement.starts_with("0{") => {
                    if connected {
                        return Err(decode(format!(
                            "a second connect acknowledgement: {:?}",
                            shorten(packet)
                        )));
                    }
                    let _: ConnectFields =
                        serde_json::from_str(&acknowledgement[1..]).map_err(|error| {
                            decode(format!(
                                "a bad connect acknowledgement ({error}): {:?}",
                                shorten(packet)
                            ))
                        })?;
                    connected = true;
                    delivery.connected = true;
                }
                "1" => {
                    return Err(PollError::SessionClosed {
                        reason: "the server disconnected the socket".into(),
                    })
                }
                refusal if refusal.starts_with('4') => {
                    return Err(PollError::SessionClosed {
                        reason: format!("the server refused to connect: {:?}", shorten(packet)),
                    })
                }
                _ => return Err(unexpected()),
            },
            Some(_) => return Err(unexpected()),
        }
    }
    Ok(delivery)
}

/// The fields of a connect acknowledgement, `40{"sid":…}`.
#[derive(Deserialize)]
struct ConnectFields {
    #[serde(rename = "sid")]
    _sid: String,
}

/// An event's arguments, `["message","<text>"]`; the strings borrow the
/// payload unless they have escapes.
#[derive(Deserialize)]
struct EventArguments<'a>(#[serde(borrow)] Cow<'a, str>, #[serde(borrow)] Cow<'a, str>);

/// The bench message of an event's JSON array.
fn read_event(json: &str, run_id: &str) -> Result<SocketioMessage, PollError> {
    let decode = |reason: String| PollError::Decode {
        status: 200,
        reason,
    };
    let EventArguments(name, text) = serde_json::from_str(json)
        .map_err(|error| decode(format!("a bad event ({error}): {:?}", shorten(json))))?;
    if name != "message" {
        return Err(decode(format!("an event named {name:?}")));
    }
    let (seq, sent_micros) = parse_bench_text(run_id, &text).ok_or_else(|| {
        decode(format!(
            "not a bench message of run {run_id}: {:?}",
            shorten(&text)
        ))
    })?;
    Ok(SocketioMessage { seq, sent_micros })
}

/// The first 80 characters of `text`, for error messages.
fn shorten(text: &str) -> &str {
    match text.char_indices().nth(80) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// The first 80 bytes of `body` as text, for error messages.
fn excerpt(body: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(&body[..body.len().min(80)]))
}

/// Maps a failed exchange's HTTP error: Engine.IO sends its 400 answers
/// chunked, which the lean connection does not read, but their status says
/// enough (see [`session_refused`]).
fn from_http(error: HttpError) -> PollError {
    match error {
        HttpError::Chunked { status: 400 } => session_refused(400),
        error => PollError::Http(error),
    }
}

/// The requests of one Engine.IO session, written once.
#[derive(Debug)]
struct Session {
    /// The whole long-poll request.
    poll: Vec<u8>,
    /// The start of a post, up to the value of `Content-Length`.
    post_start: Vec<u8>,
    /// The socket has its connect acknowledgement.
    connected: bool,
}

impl Session {
    fn new(sid: &str, host: &str) -> Session {
        let path = format!("{ENGINE_PATH}&sid={sid}");
        Session {
            poll: format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
            // The content type is the one Socket.IO's client sends.
            post_start: format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain;charset=UTF-8\r\n\
                 Connection: close\r\nContent-Length: "
            )
            .into_bytes(),
            connected: false,
        }
    }

    /// Writes a post of `packets` (a payload) into `request`.
    fn write_post(&self, packets: &str, request: &mut Vec<u8>) {
        request.extend_from_slice(&self.post_start);
        request.extend_from_slice(packets.len().to_string().as_bytes());
        request.extend_from_slice(b"\r\n\r\n");
        request.extend_from_slice(packets.as_bytes());
    }
}

/// The payload that answers `pings` pings: a pong each.
fn pongs(pings: usize) -> String {
    let mut payload = String::with_capacity(2 * pings);
    for index in 0..pings {
        if index > 0 {
            payload.push(RECORD_SEPARATOR);
        }
        payload.push('3');
    }
    payload
}

/// One Socket.IO socket in a channel's room, polling over its own lean
/// connection and posting over another.
#[derive(Debug)]
pub struct Subscriber {
    /// The long-polls.
    polls: LeanLink,
    /// The posts: the connect packet and the pongs.
    posts: LeanLink,
    /// The handshake request, shared by a group (see [`handshake_request`]).
    handshake: Arc<[u8]>,
    /// The server's address as the `Host` header gives it.
    host: Arc<str>,
    run_id: Arc<str>,
    /// The current session, once the handshake is done.
    session: Option<Session>,
    /// Pings received and not answered yet.
    pings_due: usize,
    /// A pong that failed while the long-poll beside it was answered: told
    /// at the next call, so that neither is lost.
    pong_error: Option<PollError>,
}

impl Subscriber {
    /// A socket that has not connected yet.
    pub(crate) fn new(
        server: SocketAddr,
        source: Option<IpAddr>,
        handshake: Arc<[u8]>,
        host: Arc<str>,
        run_id: Arc<str>,
    ) -> Subscriber {
        Subscriber {
            polls: LeanLink::new(server, source),
            posts: LeanLink::new(server, source),
            handshake,
            host,
            run_id,
            session: None,
            pings_due: 0,
            pong_error: None,
        }
    }

    /// The first call connects the socket (handshake, connect packet, the
    /// long-poll that acknowledges it) and returns the acknowledging answer;
    /// each later call sends one long-poll, with the pongs that are due
    /// beside it, and waits for its answer however long it takes.
    pub(crate) async fn next(&mut self) -> Result<Delivery, PollError> {
        if let Some(error) = self.pong_error.take() {
            return Err(error);
        }
        match &self.session {
            Some(session) if session.connected => self.poll().await,
            _ => self.connect().await,
        }
    }

    async fn connect(&mut self) -> Result<Delivery, PollError> {
        self.session = None;
        self.pings_due = 0;
        let Subscriber {
            polls,
            posts,
            handshake,
            host,
            run_id,
            ..
        } = self;
        let open = polls
            .exchange(
                |request| request.extend_from_slice(handshake),
                |_, _| {},
                |answer| read_open(answer.status, answer.body),
            )
            .await
            .map_err(from_http)??;
        let mut session = Session::new(&open.sid, host);
        posts
            .exchange(
                |request| session.write_post("40", request),
                |_, _| {},
                |answer| read_post_answer(answer.status, answer.body),
            )
            .await
            .map_err(from_http)??;
        let delivery = polls
            .exchange(
                |request| request.extend_from_slice(&session.poll),
                |_, _| {},
                |answer| read_poll_answer(answer.status, answer.body, run_id, false),
            )
            .await
            .map_err(from_http)??;
        if !delivery.connected {
            return Err(PollError::Decode {
                status: 200,
                reason: "the first long-poll did not acknowledge the connect packet".into(),
            });
        }
        session.connected = true;
        self.session = Some(session);
        self.pings_due = delivery.pings;
        Ok(delivery)
    }

    async fn poll(&mut self) -> Result<Delivery, PollError> {
        let Subscriber {
            polls,
            posts,
            run_id,
            session,
            pings_due,
            pong_error,
            ..
        } = self;
        let session = session.as_ref().expect("a connected session");
        let poll = polls.exchange(
            |request| request.extend_from_slice(&session.poll),
            |_, _| {},
            |answer| read_poll_answer(answer.status, answer.body, run_id, true),
        );
        let answered = if *pings_due > 0 {
            let payload = pongs(*pings_due);
            let pong = posts.exchange(
                |request| session.write_post(&payload, request),
                |_, _| {},
                |answer| read_post_answer(answer.status, answer.body),
            );
            // Both leave at once (the pong on a new connection), and each
            // answer is read as it comes.
            let (ponged, answered) = tokio::join!(pong, poll);
            *pings_due = 0;
            if let Err(error) = ponged.map_err(from_http).and_then(|checked| checked) {
                *pong_error = Some(error);
            }
            answered
        } else {
            poll.await
        };
        let delivery = answered.map_err(from_http)??;
        *pings_due = delivery.pings;
        Ok(delivery)
    }
}

impl talk_bench::Subscriber for Subscriber {
    type Answer = Delivery;

    async fn poll(&mut self) -> Result<Delivery, PollError> {
        self.next().await
    }

    /// Drops both connections (after a poll that hung), so the next call
    /// makes new ones. Engine.IO closes a session whose long-poll
    /// connection closes, so a connected socket's next poll learns that its
    /// session is over; one still connecting starts again.
    fn forget_connection(&mut self) {
        self.polls.forget_connection();
        self.posts.forget_connection();
    }
}

impl Answer for Delivery {
    /// The connect acknowledgement starts the stream: the socket is in the
    /// room from here on, and the publisher sends nothing before every
    /// poller has it, so the stream starts before message 1.
    fn position(&self) -> Option<StreamPosition<'_>> {
        self.connected
            .then_some(StreamPosition { epoch: "", seq: 0 })
    }

    fn events(&self) -> impl Iterator<Item = BenchEvent> + '_ {
        self.messages.iter().map(|message| BenchEvent {
            seq: message.seq,
            sent_micros: Some(message.sent_micros),
        })
    }
}

/// Socket.IO's protocol over HTTP long-polling: each poller a socket in
/// its channel's room, a publisher on `/pub/<channel>` of the peer bench's
/// server.
#[derive(Debug, Clone, Copy)]
pub struct Socketio;

impl Protocol for Socketio {
    const NAME: &'static str = "socketio";
    type Pollers = SocketioPollers;
    type Publisher = PeerPublisher;

    fn check_scenario(scenario: &Scenario) -> Result<(), Error> {
        crate::fanout_only(scenario)
    }

    /// A handshake, whose ping interval is the longest a long-poll is held.
    async fn probe(target: &Target, _run_id: &str) -> Result<Duration, Error> {
        let server = talk_bench::server_address(&target.base_url)?;
        tokio::time::timeout(Duration::from_secs(10), probe(server))
            .await
            .map_err(|_| Error::Handshake("no answer within 10 s".into()))?
            .map_err(|error| Error::Handshake(error.to_string()))
    }

    /// Publishes nothing now: Socket.IO has no history, so a channel's
    /// messages start once every poller is in its room.
    async fn publisher(
        target: &Target,
        _run_id: &str,
        channels: &[String],
        _rate_per_channel: f64,
    ) -> Result<PeerPublisher, Error> {
        Ok(publisher(&target.base_url, channels))
    }

    fn pollers(spec: &GroupSpec, server: SocketAddr) -> Result<SocketioPollers, Error> {
        let host = server.to_string();
        Ok(SocketioPollers {
            server,
            source: spec.source_ip,
            handshakes: spec
                .channels
                .iter()
                .map(|channel| handshake_request(channel, &host))
                .collect(),
            host: host.into(),
            run_id: spec.run_id.as_str().into(),
        })
    }
}

/// What a worker's Socket.IO pollers share.
#[derive(Debug)]
pub struct SocketioPollers {
    server: SocketAddr,
    source: Option<IpAddr>,
    /// Per channel index, the handshake request (see [`handshake_request`]).
    handshakes: Vec<Arc<[u8]>>,
    host: Arc<str>,
    run_id: Arc<str>,
}

impl Pollers for SocketioPollers {
    type Subscriber = Subscriber;

    fn subscriber(&self, _index: usize, channel_index: usize) -> Subscriber {
        Subscriber::new(
            self.server,
            self.source,
            self.handshakes[channel_index].clone(),
            self.host.clone(),
            self.run_id.clone(),
        )
    }
}

/// Checks that the server at `server` speaks Engine.IO v4 over polling
/// only, and learns its ping interval; the session it opens is closed at
/// once.
pub(crate) async fn probe(server: SocketAddr) -> Result<Duration, PollError> {
    let host: Arc<str> = server.to_string().into();
    let mut link = LeanLink::new(server, None);
    let handshake = format!("GET {ENGINE_PATH} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let open = link
        .exchange(
            |request| request.extend_from_slice(handshake.as_bytes()),
            |_, _| {},
            |answer| read_open(answer.status, answer.body),
        )
        .await
        .map_err(from_http)??;
    let session = Session::new(&open.sid, &host);
    link.exchange(
        |request| session.write_post("1", request),
        |_, _| {},
        |answer| read_post_answer(answer.status, answer.body),
    )
    .await
    .map_err(from_http)??;
    Ok(open.ping_interval)
}

/// The publisher of a run's channels, to the bench's Socket.IO server
/// (`socketio/server.js`), which emits each message to the
/// channel's room and answers `200 ok` once it has.
pub(crate) fn publisher(base_url: &str, channels: &[String]) -> PeerPublisher {
    PeerPublisher::new(base_url, channels, |status, body| match (status, body) {
        (200, b"ok") => Ok(()),
        _ => Err(format!(
            "publish: the Socket.IO server answered {status} {}",
            excerpt(body)
        )),
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Says what came of reading a long-poll answer, in words.
    fn describe(outcome: Result<Delivery, PollError>) -> String {
        match outcome {
            Ok(delivery) => {
                let mut words = Vec::new();
                if delivery.connected {
                    words.push("connected".to_owned());
                }
                for message in &delivery.messages {
                    words.push(format!(
                        "message {} at {}",
                        message.seq, message.sent_micros
                    ));
                }
                if delivery.pings > 0 {
                    words.push(format!("pings {}", delivery.pings));
                }
                if words.is_empty() {
                    "nothing".to_owned()
                } else {
                    words.join(", ")
                }
            }
            Err(error) => format!("{}: {error}", error.kind()),
        }
    }

    /// Reads a long-poll answer with `status` and `body` for a socket that
    /// is `connected` or not, and checks what came of it.
    fn check(status: u16, body: &str, connected: bool, expected: &str) {
        let got = describe(read_poll_answer(status, body.as_bytes(), "r1", connected));
        assert_eq!(got, expected, "{status} {body:?} (connected: {connected})");
    }

    #[test]
    fn payloads_split_into_events_pings_and_the_acknowledgement() {
        check(
            200,
            r#"42["message","bench r1 7 1700"]"#,
            true,
            "message 7 at 1700",
        );
        check(
            200,
            "42[\"message\",\"bench r1 7 1700\"]\x1e42[\"message\",\"bench r1 8 1800\"]",
            true,
            "message 7 at 1700, message 8 at 1800",
        );
        check(200, "2", true, "pings 1");
        check(
            200,
            "2\x1e42[\"message\",\"bench r1 9 1900\"]\x1e2",
            true,
            "message 9 at 1900, pings 2",
        );
        check(
            200,
            r#"40{"sid":"qel7QjTK4II3R6UVAAAA"}"#,
            false,
            "connected",
        );
        check(
            200,
            "40{\"sid\":\"s\"}\x1e42[\"message\",\"bench r1 1 100\"]",
            false,
            "connected, message 1 at 100",
        );
        check(200, "6", true, "nothing");
        // Escapes in the text; the bench text's words are read as before.
        check(
            200,
            r#"42["message","bench r1 3 300\n"]"#,
            true,
            "message 3 at 300",
        );
        check(
            200,
            r#"42["message","bench\u0020r1 4 400"]"#,
            true,
            "message 4 at 400",
        );
    }

    #[test]
    fn the_end_of_a_session_stops_the_poller() {
        let closed = "session_closed: session closed: ";
        check(
            200,
            "1",
            true,
            &format!("{closed}the server closed the Engine.IO session"),
        );
        check(
            200,
            "6\x1e1",
            true,
            &format!("{closed}the server closed the Engine.IO session"),
        );
        check(
            200,
            "41",
            true,
            &format!("{closed}the server disconnected the socket"),
        );
        check(
            200,
            r#"44{"message":"not allowed"}"#,
            false,
            &format!("{closed}the server refused to connect: \"44{{\\\"message\\\":\\\"not allowed\\\"}}\""),
        );
        check(
            400,
            r#"{"code":1,"message":"Session ID unknown"}"#,
            true,
            &format!("{closed}Engine.IO refused the session's request with 400"),
        );
        assert_eq!(
            describe(Err(from_http(HttpError::Chunked { status: 400 }))),
            format!("{closed}Engine.IO refused the session's request with 400")
        );
        assert_eq!(
            describe(Err(from_http(HttpError::Chunked { status: 500 }))),
            "http: http: unsupported answer: a Transfer-Encoding (chunked) answer with status 500"
        );
    }

    #[test]
    fn malformed_or_unexpected_payloads_are_errors() {
        let bad = "decode: undecodable answer (status 200): ";
        check(200, "", true, &format!("{bad}an empty packet in \"\""));
        check(
            200,
            "2\x1e",
            true,
            &format!("{bad}an empty packet in \"2\\u{{1e}}\""),
        );
        check(
            200,
            r#"42["message","bench r1 1 100"]"#,
            false,
            &format!("{bad}an event before the connect acknowledgement: \"42[\\\"message\\\",\\\"bench r1 1 100\\\"]\""),
        );
        check(
            200,
            r#"40{"sid":"s"}"#,
            true,
            &format!("{bad}a second connect acknowledgement: \"40{{\\\"sid\\\":\\\"s\\\"}}\""),
        );
        check(
            200,
            "40{}",
            false,
            &format!("{bad}a bad connect acknowledgement (missing field `sid` at line 1 column 2): \"40{{}}\""),
        );
        check(
            200,
            r#"42["chat","bench r1 1 100"]"#,
            true,
            &format!("{bad}an event named \"chat\""),
        );
        check(
            200,
            r#"42["message","bench r2 1 100"]"#,
            true,
            &format!("{bad}not a bench message of run r1: \"bench r2 1 100\""),
        );
        check(
            200,
            r#"42["message","bench r1 1 100",3]"#,
            true,
            &format!("{bad}a bad event (trailing characters at line 1 column 29): \"[\\\"message\\\",\\\"bench r1 1 100\\\",3]\""),
        );
        check(
            200,
            r#"42["message"]"#,
            true,
            &format!("{bad}a bad event (invalid length 1, expected tuple struct EventArguments with 2 elements at line 1 column 11): \"[\\\"message\\\"]\""),
        );
        check(
            200,
            r#"42["message",7]"#,
            true,
            &format!("{bad}a bad event (invalid type: integer `7`, expected a string at line 1 column 12): \"[\\\"message\\\",7]\""),
        );
        for packet in [
            r#"42/chat,["message","bench r1 1 100"]"#,
            r#"421["message","bench r1 1 100"]"#,
            "451-[\"message\",{\"_placeholder\":true,\"num\":0}]",
            "bAQID",
            "3",
            "2probe",
            "0{}",
            "9",
            "4",
        ] {
            check(
                200,
                packet,
                true,
                &format!("{bad}an unexpected packet {packet:?}"),
            );
        }
        assert_eq!(
            describe(read_poll_answer(200, b"42\xff", "r1", true)),
            format!("{bad}a payload that is not UTF-8: \"42\u{fffd}\"")
        );
        check(500, "", true, "http_500: server said 500 http_500");
    }

    #[test]
    fn open_packets_give_the_session_and_the_ping_interval() {
        let check = |status: u16, body: &str, expected: &str| {
            let got = match read_open(status, body.as_bytes()) {
                Ok(open) => format!("{} every {:?}", open.sid, open.ping_interval),
                Err(error) => format!("{}: {error}", error.kind()),
            };
            assert_eq!(got, expected, "{status} {body}");
        };
        check(
            200,
            r#"0{"sid":"Y4Xyc0f8Sehs-N0xAAAA","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#,
            "Y4Xyc0f8Sehs-N0xAAAA every 25s",
        );
        check(
            200,
            r#"0{"sid":"a","upgrades":["websocket"],"pingInterval":25000}"#,
            "decode: undecodable answer (status 200): the server offers upgrades to [\"websocket\"]; the bench's server allows polling only",
        );
        check(
            200,
            r#"0{"sid":"a b","upgrades":[],"pingInterval":25000}"#,
            "decode: undecodable answer (status 200): an unusual session id \"a b\"",
        );
        check(
            200,
            r#"0{"sid":"a"}"#,
            "decode: undecodable answer (status 200): a bad open packet (missing field `upgrades` at line 1 column 11): \"0{\\\"sid\\\":\\\"a\\\"}\"",
        );
        check(
            200,
            "ok",
            "decode: undecodable answer (status 200): not an open packet: \"ok\"",
        );
        check(403, "", "http_403: server said 403 http_403");
    }

    #[test]
    fn posts_are_answered_ok() {
        let check = |status: u16, body: &str, expected: &str| {
            let got = match read_post_answer(status, body.as_bytes()) {
                Ok(()) => "ok".to_owned(),
                Err(error) => format!("{}: {error}", error.kind()),
            };
            assert_eq!(got, expected, "{status} {body}");
        };
        check(200, "ok", "ok");
        check(
            200,
            "nope",
            "decode: undecodable answer (status 200): a post answered \"nope\" instead of ok",
        );
        check(
            400,
            "",
            "session_closed: session closed: Engine.IO refused the session's request with 400",
        );
        check(502, "", "http_502: server said 502 http_502");
        assert_eq!(pongs(1), "3");
        assert_eq!(pongs(2), "3\x1e3");
    }

    /// Reads one whole request (head and `Content-Length` body) from
    /// `stream`, as text.
    async fn read_request(stream: &mut TcpStream) -> String {
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let length = text[..head_end]
                    .lines()
                    .find_map(|line| line.strip_prefix("Content-Length: "))
                    .map_or(0, |value| value.parse::<usize>().unwrap());
                if bytes.len() >= head_end + 4 + length {
                    return text;
                }
            }
            let read = stream.read(&mut chunk).await.unwrap();
            assert!(read > 0, "the client closed mid-request: {bytes:?}");
            bytes.extend_from_slice(&chunk[..read]);
        }
    }

    /// A 200 answer with `body`, kept alive or closing.
    fn answer(body: &str, close: bool) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        )
    }

    /// A subscriber against a scripted server on a real local socket: it
    /// connects, answers a ping with a pong posted beside its next
    /// long-poll, reads the events, and stops at a 400.
    #[tokio::test]
    async fn a_subscriber_connects_pongs_and_reads_events() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let host = server.to_string();
        let sid_path = "/socket.io/?EIO=4&transport=polling&sid=s1";
        let handshake = format!(
            "GET /socket.io/?EIO=4&transport=polling&channel=c HTTP/1.1\r\nHost: {host}\r\n\r\n"
        );
        let post_host = host.clone();
        let post_head = move |length: usize| {
            let host = &post_host;
            format!(
                "POST {sid_path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain;charset=UTF-8\r\n\
                 Connection: close\r\nContent-Length: {length}\r\n\r\n"
            )
        };
        let poll = format!("GET {sid_path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let first = talk_bench::bench_text("r1", 1);
        let second = talk_bench::bench_text("r1", 2);
        let events = format!("42[\"message\",\"{first}\"]\x1e42[\"message\",\"{second}\"]");
        let serving = tokio::spawn(async move {
            let (mut polls, _) = listener.accept().await.unwrap();
            assert_eq!(read_request(&mut polls).await, handshake);
            let open = r#"0{"sid":"s1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
            polls
                .write_all(answer(open, false).as_bytes())
                .await
                .unwrap();
            let (mut posts, _) = listener.accept().await.unwrap();
            assert_eq!(read_request(&mut posts).await, post_head(2) + "40");
            posts
                .write_all(answer("ok", true).as_bytes())
                .await
                .unwrap();
            drop(posts);
            assert_eq!(read_request(&mut polls).await, poll);
            polls
                .write_all(answer(r#"40{"sid":"k"}"#, false).as_bytes())
                .await
                .unwrap();
            assert_eq!(read_request(&mut polls).await, poll);
            polls
                .write_all(answer("2", false).as_bytes())
                .await
                .unwrap();
            // The pong and the next long-poll come together; the long-poll
            // is held until the pong is answered.
            let (mut posts, _) = listener.accept().await.unwrap();
            assert_eq!(read_request(&mut posts).await, post_head(1) + "3");
            assert_eq!(read_request(&mut polls).await, poll);
            posts
                .write_all(answer("ok", true).as_bytes())
                .await
                .unwrap();
            polls
                .write_all(answer(&events, false).as_bytes())
                .await
                .unwrap();
            assert_eq!(read_request(&mut polls).await, poll);
            polls
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                )
                .await
                .unwrap();
        });
        let mut subscriber = Subscriber::new(
            server,
            None,
            handshake_request("c", &server.to_string()),
            server.to_string().into(),
            "r1".into(),
        );
        let mut got = Vec::new();
        for _ in 0..4 {
            let next = tokio::time::timeout(Duration::from_secs(10), subscriber.next())
                .await
                .expect("an answer within 10 s");
            got.push(describe(next.map(|mut delivery| {
                // Stamps vary; the numbers are what is checked.
                for message in &mut delivery.messages {
                    message.sent_micros = 0;
                }
                delivery
            })));
        }
        assert_eq!(
            got,
            [
                "connected",
                "pings 1",
                "message 1 at 0, message 2 at 0",
                "session_closed: session closed: Engine.IO refused the session's request with 400"
            ]
        );
        serving.await.unwrap();
    }
}
