//! One poller's HTTP/1.1 connection to the server: a TCP stream owned by the
//! poller's task, one request written at a time and one answer read back
//! into a buffer that is reused for every poll.
//!
//! The bench runs on one core and must take in answers for far less CPU than
//! the server spends making them, or the latencies it reports are its own.
//! A general HTTP client pays for a connection task, channels between it and
//! the caller, header maps and body streams on every request. A poll needs
//! none of that: the request is a handful of fixed bytes and a JSON body, and
//! the answer is a head and `Content-Length` bytes of JSON (the protocol
//! never chunks an answer). So this connection writes each request with one
//! write, reads the answer's head with `httparse`, then reads exactly the
//! body, and refuses anything else with an [`HttpError`] rather than guessing.
//!
//! The same connection serves the subscribers of other servers' protocols
//! (the peer bench's), whose requests may be `GET`s and whose answers may
//! name their message in headers: a caller may write any request and look
//! at each header of the answer.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The most headers an answer may have; the server sends about eight.
const MAX_HEADERS: usize = 32;

/// The largest answer (head and body) taken in. A poll answer carries at
/// most the history window of events, far below this; anything larger is a
/// broken server, and reading it would only grow the buffer without end.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// How much room the answer buffer has at least before each read of the
/// head, so that a usual answer (head and one event, well under 1 KiB)
/// arrives in one read.
const READ_ROOM: usize = 2048;

/// Why a poll over a `PollConnection` failed. Any of these leaves the
/// connection in an unknown state, so the caller drops it.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The TCP connection could not be made.
    #[error("connect failed: {0}")]
    Connect(#[source] std::io::Error),
    /// Reading or writing the socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The server closed the connection before the whole answer arrived.
    #[error("connection closed after {received} bytes of the answer")]
    Closed {
        /// How many bytes of the answer had arrived.
        received: usize,
    },
    /// The answer's head is not HTTP/1.x.
    #[error("malformed answer head: {0}")]
    MalformedHead(#[source] httparse::Error),
    /// The answer is valid HTTP, but framed in a way a poll answer never is.
    #[error("unsupported answer: {reason}")]
    Unsupported {
        /// What about the answer is not supported.
        reason: &'static str,
    },
    /// The answer's body is chunked, which a poll answer never is. Its
    /// status is kept: a peer's error answers may be chunked (Engine.IO
    /// sends its 400s so), and the status says what happened.
    #[error("unsupported answer: a Transfer-Encoding (chunked) answer with status {status}")]
    Chunked {
        /// The answer's HTTP status.
        status: u16,
    },
    /// The answer would be larger than the limit (16 MiB).
    #[error("answer of {bytes} bytes is over the limit of {MAX_ANSWER_BYTES}")]
    TooLarge {
        /// The answer's size as announced or read so far.
        bytes: usize,
    },
    /// More bytes arrived than the answer announced; with one request at a
    /// time there is nothing they could belong to.
    #[error("{extra} bytes after the end of the answer")]
    ExtraBytes {
        /// How many bytes came after the answer.
        extra: usize,
    },
}

/// An answer read from the connection; the body borrows the connection's
/// buffer until the next poll.
#[derive(Debug)]
pub struct HttpAnswer<'buffer> {
    /// The HTTP status.
    pub status: u16,
    /// The body, exactly `Content-Length` bytes.
    pub body: &'buffer [u8],
    /// False when the server said `Connection: close`, so the next poll
    /// must open a new connection.
    pub keep_alive: bool,
}

/// What the head of an answer says about the rest of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AnswerHead {
    status: u16,
    head_length: usize,
    body_length: usize,
    keep_alive: bool,
}

/// The start of every poll request up to the value of `Content-Length`,
/// built once per server and shared by all pollers of a group.
#[derive(Debug, Clone)]
pub(crate) struct RequestPrefix(std::sync::Arc<[u8]>);

impl RequestPrefix {
    /// Writes a whole request, this prefix and then `body` as its content,
    /// into `request`.
    pub(crate) fn write_request(&self, body: &[u8], request: &mut Vec<u8>) {
        request.extend_from_slice(&self.0);
        request.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        request.extend_from_slice(b"\r\n\r\n");
        request.extend_from_slice(body);
    }

    /// The prefix of `POST <path>` requests to `host` (the `Host` header's
    /// value, e.g. `127.0.0.1:8000`). The content type is the one a browser
    /// sends, which keeps a request a CORS "simple request".
    pub(crate) fn new(path: &str, host: &str) -> RequestPrefix {
        let text = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\n\
             Content-Type: text/plain;charset=UTF-8\r\nContent-Length: "
        );
        RequestPrefix(text.into_bytes().into())
    }
}

/// An open keep-alive connection, owned by one poller's task: there is no
/// connection task and no channel, so a poll costs its two system calls and
/// the parsing, and nothing else.
#[derive(Debug)]
pub(crate) struct PollConnection {
    stream: TcpStream,
    /// The request being written, kept to reuse its allocation.
    request: Vec<u8>,
    /// The answer being read, kept to reuse its allocation.
    answer: Vec<u8>,
}

impl PollConnection {
    /// Opens a connection to `server` from `source` (any port), with
    /// `TCP_NODELAY` so that a request leaves at once.
    pub(crate) async fn open(
        server: SocketAddr,
        source: Option<IpAddr>,
    ) -> Result<PollConnection, HttpError> {
        let socket = match server {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(HttpError::Connect)?;
        if let Some(source) = source {
            // A socket bound to port 0 before it connects otherwise takes a
            // port of its own at `bind`, from half of the ephemeral range:
            // one source address then ran out at about 14,000 connections,
            // with the ports of the other half found ever more slowly.
            // Chosen at `connect` instead, a port needs only to be unique
            // for its four-tuple.
            #[cfg(target_os = "linux")]
            nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::IpBindAddressNoPort,
                &true,
            )
            .map_err(|errno| HttpError::Connect(errno.into()))?;
            socket
                .bind(SocketAddr::new(source, 0))
                .map_err(HttpError::Connect)?;
        }
        let stream = socket.connect(server).await.map_err(HttpError::Connect)?;
        stream.set_nodelay(true).map_err(HttpError::Connect)?;
        Ok(PollConnection {
            stream,
            request: Vec::new(),
            answer: Vec::new(),
        })
    }

    /// Sends the request that `write_request` writes (into a buffer reused
    /// for every request) and reads its answer, showing each header of the
    /// answer's head to `on_header` (name, value) once the head is whole.
    pub(crate) async fn exchange_with(
        &mut self,
        write_request: impl FnOnce(&mut Vec<u8>),
        mut on_header: impl FnMut(&str, &[u8]),
    ) -> Result<HttpAnswer<'_>, HttpError> {
        self.request.clear();
        write_request(&mut self.request);
        self.stream.write_all(&self.request).await?;
        self.read_answer(&mut on_header).await
    }

    /// Reads one whole answer: the head, then exactly its body.
    async fn read_answer(
        &mut self,
        on_header: &mut impl FnMut(&str, &[u8]),
    ) -> Result<HttpAnswer<'_>, HttpError> {
        self.answer.clear();
        let head = loop {
            if let Some(head) = parse_head(&self.answer, on_header)? {
                break head;
            }
            if self.answer.len() >= MAX_ANSWER_BYTES {
                return Err(HttpError::TooLarge {
                    bytes: self.answer.len(),
                });
            }
            self.answer.reserve(READ_ROOM);
            self.read_more().await?;
        };
        let total = head.head_length + head.body_length;
        if total > MAX_ANSWER_BYTES {
            return Err(HttpError::TooLarge { bytes: total });
        }
        while self.answer.len() < total {
            self.answer.reserve_exact(total - self.answer.len());
            self.read_more().await?;
        }
        if self.answer.len() > total {
            return Err(HttpError::ExtraBytes {
                extra: self.answer.len() - total,
            });
        }
        Ok(HttpAnswer {
            status: head.status,
            body: &self.answer[head.head_length..total],
            keep_alive: head.keep_alive,
        })
    }

    /// Reads what the socket has into the buffer's spare room; an end of
    /// stream here is always early, as the answer is not complete yet.
    async fn read_more(&mut self) -> Result<(), HttpError> {
        let read = self.stream.read_buf(&mut self.answer).await?;
        if read == 0 {
            return Err(HttpError::Closed {
                received: self.answer.len(),
            });
        }
        Ok(())
    }
}

/// A `PollConnection` made on first use and made again after an error or
/// an answer that closes it: one poller's way to its server.
#[derive(Debug)]
pub struct LeanLink {
    server: SocketAddr,
    source: Option<IpAddr>,
    connection: Option<PollConnection>,
}

impl LeanLink {
    /// A link to `server` whose connections leave from `source`.
    pub fn new(server: SocketAddr, source: Option<IpAddr>) -> LeanLink {
        LeanLink {
            server,
            source,
            connection: None,
        }
    }

    /// Makes one exchange (see `PollConnection::exchange_with`) and returns
    /// what `read` makes of the answer, which borrows the connection's buffer.
    pub async fn exchange<T>(
        &mut self,
        write_request: impl FnOnce(&mut Vec<u8>),
        on_header: impl FnMut(&str, &[u8]),
        read: impl FnOnce(&HttpAnswer<'_>) -> T,
    ) -> Result<T, HttpError> {
        let connection = &mut self.connection;
        let open = match connection {
            Some(open) => open,
            None => connection.insert(PollConnection::open(self.server, self.source).await?),
        };
        match open.exchange_with(write_request, on_header).await {
            Ok(answer) => {
                let keep_alive = answer.keep_alive;
                let value = read(&answer);
                if !keep_alive {
                    *connection = None;
                }
                Ok(value)
            }
            Err(error) => {
                *connection = None;
                Err(error)
            }
        }
    }

    /// Drops the connection (after a poll that hung, say), so the next
    /// exchange makes a new one.
    pub fn forget_connection(&mut self) {
        self.connection = None;
    }
}

/// Parses an answer's head from the start of `bytes`: `None` while it is
/// incomplete. Only what a poll answer may be is accepted: HTTP/1.1 or 1.0,
/// a final status, a `Content-Length` (or a status that never has a body)
/// and no `Transfer-Encoding`. Once the head is whole, each of its headers
/// is shown to `on_header`.
fn parse_head(
    bytes: &[u8],
    on_header: &mut impl FnMut(&str, &[u8]),
) -> Result<Option<AnswerHead>, HttpError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_length = match response.parse(bytes).map_err(HttpError::MalformedHead)? {
        httparse::Status::Complete(length) => length,
        httparse::Status::Partial => return Ok(None),
    };
    let status = response.code.expect("a complete head has a status");
    if status < 200 {
        return Err(HttpError::Unsupported {
            reason: "an interim (1xx) answer",
        });
    }
    // HTTP/1.0 closes after each answer unless it says otherwise; 1.1 keeps
    // the connection unless it says `close`.
    let mut keep_alive = response.version == Some(1);
    let mut body_length: Option<usize> = None;
    for header in response.headers.iter() {
        on_header(header.name, header.value);
        if header.name.eq_ignore_ascii_case("content-length") {
            let length = parse_content_length(header.value)?;
            if body_length.is_some_and(|earlier| earlier != length) {
                return Err(HttpError::Unsupported {
                    reason: "two different Content-Length headers",
                });
            }
            body_length = Some(length);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::Chunked { status });
        } else if header.name.eq_ignore_ascii_case("connection") {
            for option in header.value.split(|byte| *byte == b',') {
                let option = option.trim_ascii();
                if option.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    // A 204 or 304 answer never has a body, whatever its headers say
    // (RFC 9112, 6.3); Nchan answers 304 to a subscriber now and then.
    if status == 204 || status == 304 {
        body_length = Some(0);
    }
    let body_length = body_length.ok_or(HttpError::Unsupported {
        reason: "an answer without Content-Length",
    })?;
    Ok(Some(AnswerHead {
        status,
        head_length,
        body_length,
        keep_alive,
    }))
}

/// A `Content-Length` value: decimal digits only, as RFC 9110 says.
fn parse_content_length(value: &[u8]) -> Result<usize, HttpError> {
    let invalid = HttpError::Unsupported {
        reason: "an invalid Content-Length",
    };
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(invalid);
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|digits| digits.parse().ok())
        .ok_or(invalid)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::*;

    const BODY: &[u8] = br#"{"token":"t"}"#;

    /// The request a poll with `BODY` puts on the wire, byte for byte.
    fn expected_request() -> Vec<u8> {
        let mut request = format!(
            "POST /poll HTTP/1.1\r\nHost: test:1\r\n\
             Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
            BODY.len()
        )
        .into_bytes();
        request.extend_from_slice(BODY);
        request
    }

    /// A server on a real local socket that takes one connection and, for
    /// each answer in `answers`, reads one whole request (checking its bytes)
    /// and writes the answer's pieces with a pause between them, so that the
    /// client sees them in separate reads. It then closes the connection.
    async fn serve(answers: Vec<Vec<&'static [u8]>>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let request = expected_request();
            for pieces in answers {
                let mut received = vec![0; request.len()];
                if stream.read_exact(&mut received).await.is_err() {
                    return;
                }
                assert_eq!(
                    String::from_utf8_lossy(&received),
                    String::from_utf8_lossy(&request)
                );
                for piece in pieces {
                    stream.write_all(piece).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        address
    }

    /// What an exchange came to, in words, to compare with the expected.
    fn describe(result: Result<HttpAnswer<'_>, HttpError>) -> String {
        match result {
            Ok(answer) => format!(
                "{} {} {}",
                answer.status,
                if answer.keep_alive { "keep" } else { "close" },
                String::from_utf8_lossy(answer.body)
            ),
            Err(error) => format!("error: {error}"),
        }
    }

    /// Runs one poll per answer over one connection and checks what each
    /// came to.
    async fn check(answers: Vec<Vec<&'static [u8]>>, expected: &[&str]) {
        let server = serve(answers).await;
        let prefix = RequestPrefix::new("/poll", "test:1");
        let mut connection = PollConnection::open(server, None).await.unwrap();
        for want in expected {
            let exchange =
                connection.exchange_with(|request| prefix.write_request(BODY, request), |_, _| {});
            let got = tokio::time::timeout(Duration::from_secs(10), exchange)
                .await
                .expect("an exchange ends within 10 s");
            assert_eq!(describe(got), *want);
        }
    }

    #[tokio::test]
    async fn whole_and_split_answers_are_read() {
        check(
            vec![vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"]],
            &["200 keep {}"],
        )
        .await;
        check(
            vec![vec![
                b"HTTP/1.1 200 OK\r\nContent-Le",
                b"ngth: 13\r\nCache-Control: no-store\r\n",
                b"\r\n{\"even",
                b"ts\":[]}",
            ]],
            &["200 keep {\"events\":[]}"],
        )
        .await;
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_connection_from_a_source_address_takes_its_port_at_connect() {
        use nix::sys::socket::{getsockopt, sockopt::IpBindAddressNoPort};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let source = "127.0.0.1".parse().unwrap();
        let from_source = PollConnection::open(server, Some(source)).await.unwrap();
        assert!(getsockopt(&from_source.stream, IpBindAddressNoPort).unwrap());
        assert_eq!(from_source.stream.local_addr().unwrap().ip(), source);
        let anywhere = PollConnection::open(server, None).await.unwrap();
        assert!(!getsockopt(&anywhere.stream, IpBindAddressNoPort).unwrap());
    }

    #[tokio::test]
    async fn a_connection_serves_poll_after_poll() {
        let answer: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n[1]";
        check(
            vec![vec![answer], vec![answer], vec![answer]],
            &["200 keep [1]", "200 keep [1]", "200 keep [1]"],
        )
        .await;
    }

    #[tokio::test]
    async fn error_answers_are_answers() {
        check(
            vec![vec![
                b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 59\r\n\r\n",
                br#"{"error":{"code":"unknown_session","message":"no session"}}"#,
            ]],
            &[r#"404 keep {"error":{"code":"unknown_session","message":"no session"}}"#],
        )
        .await;
    }

    #[tokio::test]
    async fn connection_close_is_honoured() {
        check(
            vec![vec![
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
            ]],
            &["200 close {}"],
        )
        .await;
        check(
            vec![vec![b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}"]],
            &["200 close {}"],
        )
        .await;
    }

    #[tokio::test]
    async fn answers_framed_otherwise_are_refused() {
        check(
            vec![vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            ]],
            &["error: unsupported answer: a Transfer-Encoding (chunked) answer with status 200"],
        )
        .await;
        check(
            vec![vec![b"HTTP/1.1 200 OK\r\n\r\n{}"]],
            &["error: unsupported answer: an answer without Content-Length"],
        )
        .await;
        check(
            vec![vec![b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n{}"]],
            &["error: unsupported answer: an invalid Content-Length"],
        )
        .await;
        check(
            vec![vec![b"HTTP/1.1 100 Continue\r\n\r\n"]],
            &["error: unsupported answer: an interim (1xx) answer"],
        )
        .await;
        check(
            vec![vec![b"SMTP ready\r\n\r\n"]],
            &["error: malformed answer head: invalid HTTP version"],
        )
        .await;
        check(
            vec![vec![b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n"]],
            &["error: answer of 100000044 bytes is over the limit of 16777216"],
        )
        .await;
    }

    #[tokio::test]
    async fn bodiless_statuses_need_no_content_length() {
        check(
            vec![
                vec![b"HTTP/1.1 304 Not Modified\r\nEtag: 3\r\n\r\n"],
                vec![b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"],
                vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"],
            ],
            &["304 keep ", "304 keep ", "200 keep {}"],
        )
        .await;
    }

    #[tokio::test]
    async fn every_header_of_the_answer_is_shown_once() {
        let server = serve(vec![vec![
            b"HTTP/1.1 200 OK\r\nLast-Modified: Wed, 25 Nov 2026 16:58:35 GMT\r\n",
            b"Content-Length: 2\r\nEtag: 7\r\n\r\n{}",
        ]])
        .await;
        let prefix = RequestPrefix::new("/poll", "test:1");
        let mut connection = PollConnection::open(server, None).await.unwrap();
        let mut seen = Vec::new();
        let answer = connection
            .exchange_with(
                |request| prefix.write_request(BODY, request),
                |name, value| seen.push(format!("{name}={}", String::from_utf8_lossy(value))),
            )
            .await
            .unwrap();
        assert_eq!((answer.status, answer.body), (200, &b"{}"[..]));
        assert_eq!(
            seen,
            [
                "Last-Modified=Wed, 25 Nov 2026 16:58:35 GMT",
                "Content-Length=2",
                "Etag=7"
            ]
        );
    }

    #[tokio::test]
    async fn early_ends_and_extra_bytes_are_errors() {
        check(
            vec![vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n{\"events\"",
            ]],
            &["error: connection closed after 48 bytes of the answer"],
        )
        .await;
        check(
            vec![vec![b"HTTP/1.1 200 OK\r\nContent-"]],
            &["error: connection closed after 25 bytes of the answer"],
        )
        .await;
        check(
            vec![vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra"]],
            &["error: 5 bytes after the end of the answer"],
        )
        .await;
    }
}
