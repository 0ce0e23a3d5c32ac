//! One raw HTTP/1.1 connection to the server, for tests about the
//! connection itself: requests in pieces, pipelining, slow or broken
//! clients, and what the server writes back byte for byte.

use std::io::ErrorKind;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{HeldClock, TestServer};

/// One raw HTTP/1.1 connection to the server.
pub(crate) struct Raw {
    pub(crate) stream: TcpStream,
    /// Bytes read past the last answer.
    unread: Vec<u8>,
}

/// An answer read off a raw connection.
#[derive(Debug)]
pub(crate) struct RawAnswer {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) json: serde_json::Value,
}

impl Raw {
    pub(crate) async fn connect(server: &TestServer) -> Raw {
        Raw {
            stream: TcpStream::connect(server.address).await.unwrap(),
            unread: Vec::new(),
        }
    }

    /// A connection whose receive buffer is as small as the system allows,
    /// so that the server's socket fills up while the client does not read.
    pub(crate) async fn connect_with_small_window(server: &TestServer) -> Raw {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        Raw {
            stream: socket.connect(server.address).await.unwrap(),
            unread: Vec::new(),
        }
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads one answer with a `content-length` body, within 10 s.
    pub(crate) async fn answer(&mut self) -> RawAnswer {
        tokio::time::timeout(Duration::from_secs(10), self.read_answer())
            .await
            .expect("an answer within 10 s")
    }

    async fn read_answer(&mut self) -> RawAnswer {
        loop {
            if let Some(end) = find(&self.unread, b"\r\n\r\n") {
                let head = String::from_utf8(self.unread[..end].to_vec()).unwrap();
                let length: usize = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().unwrap())
                    })
                    .expect("a content-length");
                let body_start = end + 4;
                if self.unread.len() >= body_start + length {
                    let body = self.unread[body_start..body_start + length].to_vec();
                    self.unread.drain(..body_start + length);
                    let status = head[9..12].parse().unwrap();
                    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                    return RawAnswer { status, head, json };
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the server closed the connection mid-answer");
            self.unread.extend_from_slice(&chunk[..n]);
        }
    }

    /// True when the server closes the connection (within 10 s) without
    /// sending anything more.
    pub(crate) async fn closed_by_server(&mut self) -> bool {
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), self.stream.read_to_end(&mut rest));
        matches!(read.await, Ok(Ok(_))) && rest.is_empty() && self.unread.is_empty()
    }

    /// As `closed_by_server`, for a test that holds the clock: moves it on
    /// by `step` at a time until the server closes the connection.
    pub(crate) async fn closed_by_server_as_time_passes(
        &mut self,
        clock: &HeldClock,
        step: Duration,
    ) -> bool {
        let rest = self.read_until_closed_as_time_passes(clock, step).await;
        rest.is_some_and(|rest| rest.is_empty()) && self.unread.is_empty()
    }

    /// With the clock held, moves it on by `step` at a time until the
    /// server closes the connection, and returns what it sent meanwhile;
    /// `None` if it is still open after 10 s of real time.
    pub(crate) async fn read_until_closed_as_time_passes(
        &mut self,
        clock: &HeldClock,
        step: Duration,
    ) -> Option<Vec<u8>> {
        let mut received = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if self.read_what_arrived(&mut received).await {
                return Some(received);
            }
            clock.advance(step).await;
        }
        None
    }

    /// Reads what the server has sent, without waiting for more; true once
    /// it has closed the connection.
    pub(crate) async fn read_what_arrived(&mut self, received: &mut Vec<u8>) -> bool {
        // A pause in real time (the test's clock is held), so that the
        // runtime takes in what the loopback has delivered: this bounds
        // how often the callers' loops look, it waits for nothing.
        let pause = || std::thread::sleep(Duration::from_millis(5));
        tokio::task::spawn_blocking(pause).await.unwrap();
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.try_read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                Err(error) if error.kind() == ErrorKind::WouldBlock => return false,
                // A close with bytes of ours still unread is a reset.
                Err(error) if error.kind() == ErrorKind::ConnectionReset => return true,
                Err(error) => panic!("reading the connection: {error}"),
            }
        }
    }
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

pub(crate) fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub(crate) async fn start_session(raw: &mut Raw, name: &str) -> String {
    raw.send(&post(
        "/broadcast",
        &format!(r#"{{"op":"start","name":"{name}"}}"#),
    ))
    .await;
    let answer = raw.answer().await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.json["token"].as_str().unwrap().to_owned()
}

/// Starts a session on `raw`, reads its first poll and sends the next,
/// which the server holds: nothing new has happened in the lobby. Returns
/// the session's token.
pub(crate) async fn hold_a_poll(raw: &mut Raw, name: &str) -> String {
    let token = start_session(raw, name).await;
    raw.send(&post("/poll", &format!(r#"{{"token":"{token}"}}"#)))
        .await;
    let first = raw.answer().await;
    let cursor = &first.json["cursor"];
    let next = format!(r#"{{"token":"{token}","channel":"lobby","cursor":{cursor}}}"#);
    raw.send(&post("/poll", &next)).await;
    token
}

/// Which front of the server reads the request under test.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Front {
    /// The connection layer's own reader of chat requests.
    Lean,
    /// hyper and the router, which serve a connection once the lean path
    /// has handed it over.
    Router,
}

pub(crate) const FRONTS: [Front; 2] = [Front::Lean, Front::Router];

/// A connection whose next request `front` reads: a fresh one for the lean
/// path; for the router, one whose first request (`GET /healthz`) made the
/// lean path hand it over, so that hyper reads all that follows.
pub(crate) async fn connect(server: &TestServer, front: Front) -> Raw {
    let mut raw = Raw::connect(server).await;
    if let Front::Router = front {
        raw.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert_eq!(raw.answer().await.status, 200);
    }
    raw
}
