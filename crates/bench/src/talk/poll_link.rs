//! How a bench poller sends its polls: through the client library's `Api`
//! (reqwest), or over one lean HTTP/1.1 connection per poller
//! (`poll_connection`).
//!
//! The lean connection exists because a bench process on one core must take
//! in answers for far less CPU than the server spends making them: reqwest's
//! pool, URL parsing and per-request machinery, and even a bare hyper client
//! connection with its connection task, cost about as much as the server's
//! own answer (see bench/HISTORY.md). Both speak the protocol crate's types, so
//! what is measured is the same protocol.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use talk_client::Api;
use talk_protocol::{Cursor, ErrorBody, PollAnswer, PollRequest, Reset};

use crate::poll_connection::{LeanLink, RequestPrefix};
use crate::poller::parse_bench_text;
use crate::protocol::{Answer, BenchEvent, PollError, StreamPosition};

/// Which HTTP stack pollers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PollTransport {
    /// One lean HTTP/1.1 connection per poller, kept alive and owned by
    /// the poller's task.
    #[default]
    Raw,
    /// `talk_client::Api` over a reqwest client shared by a worker's pollers.
    Api,
}

/// One poller's way to the server.
pub(crate) enum PollLink {
    /// A lean connection, made on first use and remade after an error.
    Raw {
        /// The fixed start of every poll request, shared by a group.
        prefix: RequestPrefix,
        link: LeanLink,
        /// The JSON body of the poll being sent, kept to reuse its allocation.
        body: Vec<u8>,
    },
    /// The shared client library.
    Api(Api),
}

impl PollLink {
    /// Drops the raw connection, so the next poll makes a new one.
    pub(crate) fn forget_connection(&mut self) {
        if let PollLink::Raw { link, .. } = self {
            link.forget_connection();
        }
    }

    /// Sends one poll and waits for its answer, however long it takes.
    /// `run_id` tells this run's bench messages from others.
    pub(crate) async fn poll(
        &mut self,
        request: &PollRequest,
        run_id: &str,
    ) -> Result<TalkAnswer, PollError> {
        match self {
            PollLink::Api(api) => Ok(TalkAnswer::from_answer(api.poll(request).await?, run_id)),
            PollLink::Raw { prefix, link, body } => {
                body.clear();
                // Into the poller's own buffer: `to_json` allocated a new one
                // for every poll. Writing plain fields to a Vec cannot fail.
                serde_json::to_writer(&mut *body, request).expect("a poll request always encodes");
                link.exchange(
                    |bytes| prefix.write_request(body, bytes),
                    |_, _| {},
                    |answer| decode_answer(answer.status, answer.body, run_id),
                )
                .await?
            }
        }
    }
}

/// A poll answer as a poller takes it in: what completeness and latency
/// are told from, nothing more.
#[derive(Debug, PartialEq)]
pub struct TalkAnswer {
    pub(crate) channel: String,
    pub(crate) cursor: Cursor,
    pub(crate) events: Vec<BenchEvent>,
    /// The answer replaces the client's view (`reset` is present).
    pub(crate) reset: bool,
    pub(crate) reconnect: bool,
}

impl TalkAnswer {
    /// The bench's view of an answer the client library decoded.
    fn from_answer(answer: PollAnswer, run_id: &str) -> TalkAnswer {
        let events = answer
            .events
            .iter()
            .map(|event| BenchEvent {
                seq: event.seq,
                sent_micros: sent_micros(run_id, event.message_text()),
            })
            .collect();
        TalkAnswer {
            channel: answer.channel,
            cursor: answer.cursor,
            events,
            reset: answer.reset.is_some(),
            reconnect: answer.reconnect,
        }
    }
}

impl Answer for TalkAnswer {
    fn position(&self) -> Option<StreamPosition<'_>> {
        Some(StreamPosition {
            epoch: &self.cursor.epoch,
            seq: self.cursor.seq,
        })
    }

    fn events(&self) -> impl Iterator<Item = BenchEvent> + '_ {
        self.events.iter().copied()
    }

    fn resets(&self) -> bool {
        self.reset
    }

    fn asks_to_reconnect(&self) -> bool {
        self.reconnect
    }
}

/// When a bench message of run `run_id` was sent, read from a message's text.
fn sent_micros(run_id: &str, message_text: Option<&str>) -> Option<u64> {
    parse_bench_text(run_id, message_text?).map(|(_, sent)| sent)
}

/// The fields of a poll answer the bench reads.
///
/// The protocol's `Event` flattens its kind, so serde first copies every
/// event into a map of its own. A bench core must take answers in for less
/// than the server spends making them, so the bench reads only the fields
/// it needs; unknown fields are skipped, as the protocol allows.
#[derive(Deserialize)]
struct AnswerFields<'a> {
    channel: String,
    cursor: Cursor,
    #[serde(borrow)]
    events: Vec<EventFields<'a>>,
    #[serde(default)]
    reset: Option<Reset>,
    #[serde(default)]
    reconnect: bool,
}

/// An event's fields the bench reads; its text is borrowed from the
/// answer (copied only when it has escapes), not copied for every event.
#[derive(Deserialize)]
struct EventFields<'a> {
    seq: u64,
    #[serde(rename = "type")]
    kind: EventType,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

/// An event's `type`, as far as the bench tells types apart.
#[derive(Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum EventType {
    Message,
    #[serde(other)]
    Other,
}

fn decode_answer(status: u16, bytes: &[u8], run_id: &str) -> Result<TalkAnswer, PollError> {
    let decode_error = |error: &dyn std::fmt::Display| PollError::Decode {
        status,
        reason: error.to_string(),
    };
    if status == 200 {
        // UTF-8 checked once for the whole body: `from_slice` checks every
        // string it reads again, which showed in the bench's instruction
        // counts.
        let text = std::str::from_utf8(bytes).map_err(|error| decode_error(&error))?;
        let fields: AnswerFields =
            serde_json::from_str(text).map_err(|error| decode_error(&error))?;
        let events = fields
            .events
            .iter()
            .map(|event| BenchEvent {
                seq: event.seq,
                sent_micros: sent_micros(
                    run_id,
                    event
                        .text
                        .as_deref()
                        .filter(|_| event.kind == EventType::Message),
                ),
            })
            .collect();
        Ok(TalkAnswer {
            channel: fields.channel,
            cursor: fields.cursor,
            events,
            reset: fields.reset.is_some(),
            reconnect: fields.reconnect,
        })
    } else {
        let body: ErrorBody =
            talk_protocol::from_json(bytes).map_err(|error| decode_error(&error))?;
        Err(PollError::Server {
            status,
            code: body.error.code,
        })
    }
}

/// Builds the link a poller uses; `prefix` is the start of every poll
/// request to `server` (see [`poll_request_prefix`]).
pub(crate) fn poll_link(
    transport: PollTransport,
    server: SocketAddr,
    source: Option<IpAddr>,
    prefix: &RequestPrefix,
    shared_api: &Api,
) -> PollLink {
    match transport {
        PollTransport::Api => PollLink::Api(shared_api.clone()),
        PollTransport::Raw => PollLink::Raw {
            prefix: prefix.clone(),
            link: LeanLink::new(server, source),
            body: Vec::new(),
        },
    }
}

/// The start of every poll request to `server`, to share between pollers.
pub(crate) fn poll_request_prefix(server: SocketAddr) -> RequestPrefix {
    RequestPrefix::new("/poll", &server.to_string())
}

/// A client-library `Api` whose requests leave from `source`, with a timeout
/// above the longest poll, keeping at most `idle_connections` connections
/// open between requests: every poller's with the `Api` transport, but few
/// for session starts, whose idle connections would otherwise take file
/// descriptors the server needs for held polls. Connections idle for longer
/// than the client library's limit are dropped: a send on a connection the
/// server was closing failed with a reset (30 of 10,000 sends, once).
pub(crate) fn api_from(
    base_url: &str,
    source: Option<IpAddr>,
    timeout: Duration,
    idle_connections: usize,
) -> Api {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .pool_max_idle_per_host(idle_connections)
        .pool_idle_timeout(talk_client::IDLE_CONNECTION_LIMIT)
        .tcp_nodelay(true);
    if let Some(source) = source {
        builder = builder.local_address(source);
    }
    let http = builder.build().expect("a plain reqwest client builds");
    Api::with_http(base_url, http)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `body` as an answer with `status` and says what came of it.
    fn check(status: u16, body: &str, expected: &str) {
        let got = match decode_answer(status, body.as_bytes(), "r1") {
            Ok(answer) => format!("{} events, cursor {}", answer.events.len(), answer.cursor),
            Err(error) => format!("{}: {error}", error.kind()),
        };
        assert_eq!(got, expected, "{status} {body}");
    }

    #[test]
    fn answers_decode_to_events_or_protocol_errors() {
        check(
            200,
            r#"{"channel":"lobby","cursor":"e1:4","events":[]}"#,
            "0 events, cursor e1:4",
        );
        check(
            404,
            r#"{"error":{"code":"unknown_session","message":"no such session"}}"#,
            "unknown_session: server said 404 unknown_session",
        );
        check(
            502,
            "<html>bad gateway</html>",
            "decode: undecodable answer (status 502): expected value at line 1 column 1",
        );
        check(
            200,
            r#"{"channel":"lobby"}"#,
            "decode: undecodable answer (status 200): missing field `cursor` at line 1 column 19",
        );
        // Bytes that are not UTF-8, checked once for the whole body.
        let not_utf8 = decode_answer(200, b"{\"channel\":\"\xff\"}", "r1");
        assert!(
            matches!(&not_utf8, Err(PollError::Decode { status: 200, reason }) if reason.contains("utf-8")),
            "{not_utf8:?}"
        );
    }

    #[test]
    fn the_lean_decoding_reads_what_the_protocol_types_read() {
        use talk_protocol::{Event, EventKind};
        let event = |seq, kind| Event {
            seq,
            ts: 1,
            from: "ada".into(),
            color: "ff8800".into(),
            kind,
        };
        let message = |text: &str| EventKind::Message {
            text: text.into(),
            id: "x".into(),
        };
        let answer = PollAnswer {
            channel: "lobby".into(),
            cursor: "e1:9".parse().unwrap(),
            events: vec![
                event(5, message("bench r1 1 1000")),
                event(6, EventKind::Join),
                // An escape in the text.
                event(7, message("bench r1 2 2000\n")),
                event(8, message("bench r2 3 3000")),
                event(
                    9,
                    EventKind::Me {
                        text: "bench r1 4 4000".into(),
                        id: "y".into(),
                    },
                ),
            ],
            reset: Some(Reset::Gap),
            reconnect: true,
        };
        let json = talk_protocol::to_json(&answer);
        let lean = decode_answer(200, &json, "r1").unwrap();
        assert_eq!(lean, TalkAnswer::from_answer(answer, "r1"));
        let stamps: Vec<_> = lean.events.iter().map(|event| event.sent_micros).collect();
        assert_eq!(stamps, [Some(1000), None, Some(2000), None, None]);
        assert!(lean.reset && lean.reconnect);
    }
}
