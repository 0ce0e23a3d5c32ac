//! Nchan, the pub/sub module for nginx, as a peer to compare talk with
//! ([`Nchan`]): its long-poll subscribers and its publisher, driven with the
//! bench's own lean connections and bench messages, so that both servers are
//! measured the same way (`nchan/nginx.conf` beside this crate's manifest
//! has the nginx configuration). Fan-out only.
//!
//! A subscriber asks `GET /sub/<channel>`. Nchan answers one message per
//! answer, named by its `Last-Modified` and `Etag` headers; the next request
//! sends them back as `If-Modified-Since` and `If-None-Match` and gets the
//! message after that one, from the channel's buffer if it is already
//! there, so none is missed between two polls. A 408 (or 304) says the poll
//! timed out with no message: the subscriber polls again with the same
//! headers. A message's body is a bench text; its number is the sequence
//! the poller checks, as talk's `seq`, and its stamp gives the latency.
//!
//! A subscriber without those headers gets the oldest message of the
//! channel's buffer (`nchan_subscriber_first_message oldest`). So the
//! publisher posts message 0 before the pollers start: it is every
//! poller's first answer, as a talk poller's first answer is the channel's
//! history, and it tells the poller where the stream starts.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use talk_bench::{
    bench_text, parse_bench_text, Answer, BenchEvent, Error, GroupSpec, LeanLink, PollError,
    Pollers, Protocol, Scenario, StreamPosition, Target,
};

use crate::publisher::PeerPublisher;

/// How long Nchan holds a subscriber's poll before it answers 408: the
/// `nchan_subscriber_timeout` of `nchan/nginx.conf`, which is talk's
/// default poll timeout.
const SUBSCRIBER_TIMEOUT: Duration = Duration::from_secs(25);

/// Nchan's protocol: long-poll subscribers on `/sub/<channel>`, a
/// publisher on `/pub/<channel>`.
#[derive(Debug, Clone, Copy)]
pub struct Nchan;

impl Protocol for Nchan {
    const NAME: &'static str = "nchan";
    type Pollers = NchanPollers;
    type Publisher = PeerPublisher;

    fn check_scenario(scenario: &Scenario) -> Result<(), Error> {
        crate::fanout_only(scenario)
    }

    /// Nchan has no sessions to probe; its poll timeout is the
    /// configuration's.
    async fn probe(_target: &Target, _run_id: &str) -> Result<Duration, Error> {
        Ok(SUBSCRIBER_TIMEOUT)
    }

    /// Publishes each channel's first message (number 0) at once: the
    /// message every poller gets first.
    async fn publisher(
        target: &Target,
        run_id: &str,
        channels: &[String],
        _rate_per_channel: f64,
    ) -> Result<PeerPublisher, Error> {
        let publisher = publisher(&target.base_url, channels);
        for channel_index in 0..channels.len() {
            publisher
                .publish(channel_index, bench_text(run_id, 0))
                .await
                .map_err(Error::Publish)?;
        }
        Ok(publisher)
    }

    fn pollers(spec: &GroupSpec, server: SocketAddr) -> Result<NchanPollers, Error> {
        let host = server.to_string();
        Ok(NchanPollers {
            server,
            source: spec.source_ip,
            starts: spec
                .channels
                .iter()
                .map(|channel| request_start(channel, &host))
                .collect(),
            run_id: spec.run_id.as_str().into(),
        })
    }
}

/// What a worker's Nchan subscribers share.
#[derive(Debug)]
pub struct NchanPollers {
    server: SocketAddr,
    source: Option<IpAddr>,
    /// Per channel index, the start of every request (see [`request_start`]).
    starts: Vec<Arc<[u8]>>,
    run_id: Arc<str>,
}

impl Pollers for NchanPollers {
    type Subscriber = Subscriber;

    fn subscriber(&self, _index: usize, channel_index: usize) -> Subscriber {
        Subscriber::new(
            self.server,
            self.source,
            self.starts[channel_index].clone(),
            self.run_id.clone(),
        )
    }
}

/// One bench message as a subscriber received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NchanMessage {
    /// The message's number: 0 for the first, then 1, 2, … per channel.
    seq: u64,
    /// When it was sent, in microseconds since 1970.
    sent_micros: u64,
}

/// What one poll brought: a message, or none when the poll timed out.
#[derive(Debug)]
pub struct NchanAnswer(Option<NchanMessage>);

impl Answer for NchanAnswer {
    /// A message is where the stream stands: the first one a poller gets
    /// (number 0, see above) starts its stream.
    fn position(&self) -> Option<StreamPosition<'_>> {
        self.0.map(|message| StreamPosition {
            epoch: "",
            seq: message.seq,
        })
    }

    fn events(&self) -> impl Iterator<Item = BenchEvent> + '_ {
        self.0.iter().map(|message| BenchEvent {
            seq: message.seq,
            sent_micros: Some(message.sent_micros),
        })
    }
}

/// The start of every subscriber request of `channel` to `host` (the `Host`
/// header's value), up to the headers that name the last message; built
/// once per channel and shared by a group's pollers.
fn request_start(channel: &str, host: &str) -> Arc<[u8]> {
    format!("GET /sub/{channel} HTTP/1.1\r\nHost: {host}\r\n")
        .into_bytes()
        .into()
}

/// The headers that name a message: what a subscriber sends back to get
/// the one after it.
#[derive(Debug, Default)]
struct Validators {
    last_modified: Vec<u8>,
    etag: Vec<u8>,
}

impl Validators {
    /// Keeps the header if it names the message.
    fn take_header(&mut self, name: &str, value: &[u8]) {
        if name.eq_ignore_ascii_case("last-modified") {
            self.last_modified.clear();
            self.last_modified.extend_from_slice(value);
        } else if name.eq_ignore_ascii_case("etag") {
            self.etag.clear();
            self.etag.extend_from_slice(value);
        }
    }

    /// An error unless both headers that name a message were there.
    fn require(&self) -> Result<(), PollError> {
        if self.last_modified.is_empty() || self.etag.is_empty() {
            return Err(PollError::Decode {
                status: 200,
                reason: "a message without Last-Modified and Etag".into(),
            });
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.last_modified.clear();
        self.etag.clear();
    }

    /// Writes the request headers that ask for the message after this one;
    /// nothing before the first message.
    fn write_to(&self, request: &mut Vec<u8>) {
        if !self.last_modified.is_empty() {
            request.extend_from_slice(b"If-Modified-Since: ");
            request.extend_from_slice(&self.last_modified);
            request.extend_from_slice(b"\r\n");
        }
        if !self.etag.is_empty() {
            request.extend_from_slice(b"If-None-Match: ");
            request.extend_from_slice(&self.etag);
            request.extend_from_slice(b"\r\n");
        }
    }
}

/// Writes a whole subscriber request: the shared start, the headers that
/// name the last message, and the empty line.
fn write_request(start: &[u8], last: &Validators, request: &mut Vec<u8>) {
    request.extend_from_slice(start);
    last.write_to(request);
    request.extend_from_slice(b"\r\n");
}

/// What an answer with `status` and `body` means: a message, or `None` when
/// the poll timed out and is to be sent again unchanged.
fn interpret(status: u16, body: &[u8], run_id: &str) -> Result<Option<NchanMessage>, PollError> {
    match status {
        200 => {
            let text = std::str::from_utf8(body).unwrap_or_default();
            let (seq, sent_micros) =
                parse_bench_text(run_id, text).ok_or_else(|| PollError::Decode {
                    status,
                    reason: format!(
                        "not a bench message of run {run_id}: {:?}",
                        String::from_utf8_lossy(&body[..body.len().min(80)])
                    ),
                })?;
            Ok(Some(NchanMessage { seq, sent_micros }))
        }
        304 | 408 => Ok(None),
        _ => Err(PollError::Server {
            status,
            code: format!("http_{status}"),
        }),
    }
}

/// One long-poll subscriber of a channel, over its own lean connection.
#[derive(Debug)]
pub struct Subscriber {
    link: LeanLink,
    /// The start of every request, shared by a group (see [`request_start`]).
    start: Arc<[u8]>,
    run_id: Arc<str>,
    /// The headers of the last message received.
    last: Validators,
    /// The headers of the answer being read, kept to reuse its buffers.
    named: Validators,
}

impl Subscriber {
    /// A subscriber that has received nothing yet.
    fn new(
        server: SocketAddr,
        source: Option<IpAddr>,
        start: Arc<[u8]>,
        run_id: Arc<str>,
    ) -> Subscriber {
        Subscriber {
            link: LeanLink::new(server, source),
            start,
            run_id,
            last: Validators::default(),
            named: Validators::default(),
        }
    }

    /// Sends one poll and waits for its answer, however long it takes: the
    /// next message, or `None` when the poll timed out.
    async fn next(&mut self) -> Result<Option<NchanMessage>, PollError> {
        let Subscriber {
            link,
            start,
            run_id,
            last,
            named,
        } = self;
        named.clear();
        let message = link
            .exchange(
                |request| write_request(start, last, request),
                |name, value| named.take_header(name, value),
                |answer| interpret(answer.status, answer.body, run_id),
            )
            .await??;
        if message.is_some() {
            named.require()?;
            std::mem::swap(last, named);
        }
        Ok(message)
    }
}

impl talk_bench::Subscriber for Subscriber {
    type Answer = NchanAnswer;

    async fn poll(&mut self) -> Result<NchanAnswer, PollError> {
        self.next().await.map(NchanAnswer)
    }

    fn forget_connection(&mut self) {
        self.link.forget_connection();
    }
}

/// The publisher of a run's channels: Nchan answers a publish with 201
/// (a new channel) or 202.
fn publisher(base_url: &str, channels: &[String]) -> PeerPublisher {
    PeerPublisher::new(base_url, channels, |status, _body| match status {
        201 | 202 => Ok(()),
        _ => Err(format!("publish: nchan answered {status}")),
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Interprets an answer whose head had `headers` and says what came of it.
    fn check(status: u16, headers: &[(&str, &str)], body: &str, expected: &str) {
        let mut named = Validators::default();
        for (name, value) in headers {
            named.take_header(name, value.as_bytes());
        }
        let outcome = interpret(status, body.as_bytes(), "r1").and_then(|message| {
            if message.is_some() {
                named.require()?;
            }
            Ok(message)
        });
        let got = match outcome {
            Ok(Some(message)) => format!("message {} at {}", message.seq, message.sent_micros),
            Ok(None) => "poll again".to_owned(),
            Err(error) => format!("{}: {error}", error.kind()),
        };
        assert_eq!(got, expected, "{status} {headers:?} {body}");
    }

    const NAMED: &[(&str, &str)] = &[
        ("Last-Modified", "Wed, 25 Nov 2026 16:58:35 GMT"),
        ("Etag", "2"),
    ];

    #[test]
    fn answers_are_messages_timeouts_or_errors() {
        check(200, NAMED, "bench r1 7 1700", "message 7 at 1700");
        check(
            200,
            &[
                ("last-modified", "x"),
                ("ETAG", "0"),
                ("Vary", "If-None-Match"),
            ],
            "bench r1 0 5",
            "message 0 at 5",
        );
        check(408, &[("Etag", "0")], "", "poll again");
        check(304, &[], "", "poll again");
        check(
            200,
            &[("Etag", "2")],
            "bench r1 7 1700",
            "decode: undecodable answer (status 200): a message without Last-Modified and Etag",
        );
        check(
            200,
            NAMED,
            "bench r2 7 1700",
            "decode: undecodable answer (status 200): not a bench message of run r1: \"bench r2 7 1700\"",
        );
        check(403, &[], "", "http_403: server said 403 http_403");
        check(502, &[], "<html>", "http_502: server said 502 http_502");
    }

    #[test]
    fn requests_name_the_last_message_once_there_is_one() {
        let start = request_start("bfab", "127.0.0.1:80");
        let mut last = Validators::default();
        let mut request = Vec::new();
        write_request(&start, &last, &mut request);
        assert_eq!(
            String::from_utf8(request).unwrap(),
            "GET /sub/bfab HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n"
        );
        for (name, value) in NAMED {
            last.take_header(name, value.as_bytes());
        }
        last.take_header("Content-Length", b"13");
        let mut request = Vec::new();
        write_request(&start, &last, &mut request);
        assert_eq!(
            String::from_utf8(request).unwrap(),
            "GET /sub/bfab HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\
             If-Modified-Since: Wed, 25 Nov 2026 16:58:35 GMT\r\nIf-None-Match: 2\r\n\r\n"
        );
    }

    /// An answer naming message `tag` of second `second`, with `body`.
    fn message_answer(second: u32, tag: u32, body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nLast-Modified: Wed, 25 Nov 2026 16:58:{second:02} GMT\r\n\
             Etag: {tag}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// A subscriber against a scripted server on a real local socket: each
    /// request must name the last message received, across timeouts.
    #[tokio::test]
    async fn a_subscriber_sends_back_what_named_the_last_message() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let first = bench_text("r1", 0);
        let second = bench_text("r1", 1);
        let third = bench_text("r1", 2);
        let script = vec![
            ("", message_answer(35, 0, &first)),
            (
                "If-Modified-Since: Wed, 25 Nov 2026 16:58:35 GMT\r\nIf-None-Match: 0\r\n",
                "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nEtag: 0\r\n\r\n".to_owned(),
            ),
            (
                "If-Modified-Since: Wed, 25 Nov 2026 16:58:35 GMT\r\nIf-None-Match: 0\r\n",
                message_answer(36, 4, &second),
            ),
            (
                "If-Modified-Since: Wed, 25 Nov 2026 16:58:36 GMT\r\nIf-None-Match: 4\r\n",
                "HTTP/1.1 304 Not Modified\r\n\r\n".to_owned(),
            ),
            (
                "If-Modified-Since: Wed, 25 Nov 2026 16:58:36 GMT\r\nIf-None-Match: 4\r\n",
                message_answer(36, 5, &third),
            ),
        ];
        let host = server.to_string();
        let serving = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            for (named, answer) in script {
                let expected = format!("GET /sub/c HTTP/1.1\r\nHost: {host}\r\n{named}\r\n");
                let mut received = vec![0; expected.len()];
                stream.read_exact(&mut received).await.unwrap();
                assert_eq!(String::from_utf8_lossy(&received), expected);
                stream.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let mut subscriber = Subscriber::new(
            server,
            None,
            request_start("c", &server.to_string()),
            "r1".into(),
        );
        let mut got = Vec::new();
        for _ in 0..5 {
            let next = tokio::time::timeout(Duration::from_secs(10), subscriber.next())
                .await
                .expect("an answer within 10 s")
                .unwrap();
            got.push(next.map(|message| message.seq));
        }
        assert_eq!(got, [Some(0), None, Some(1), None, Some(2)]);
        serving.await.unwrap();
    }
}
