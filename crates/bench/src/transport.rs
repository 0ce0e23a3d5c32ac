//! How a bench poller sends its polls: through the client library's `Api`
//! (reqwest), or over one raw HTTP/1.1 connection per poller (hyper).
//!
//! The raw connection exists because a bench process on one core must answer
//! faster than the server it measures: at 10,000 pollers and more, reqwest's
//! pool, URL parsing and per-request machinery cost more CPU than the
//! server's own answer (see BENCHMARKS.md). Both speak the protocol crate's
//! types, so what is measured is the same protocol.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use talk_client::Api;
use talk_protocol::{ErrorBody, PollAnswer, PollRequest};
use tokio::net::TcpSocket;

/// Which HTTP stack pollers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PollTransport {
    /// One hyper HTTP/1.1 connection per poller, kept alive.
    #[default]
    Raw,
    /// `talk_client::Api` over a reqwest client shared by a worker's pollers.
    Api,
}

/// Why one poll failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PollError {
    /// The TCP connection could not be made.
    #[error("connect failed: {0}")]
    Connect(#[source] std::io::Error),
    /// The HTTP exchange failed (reset, closed, bad framing).
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The server answered with a protocol error.
    #[error("server said {status} {code}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The protocol error code.
        code: String,
    },
    /// The answer was not protocol JSON.
    #[error("undecodable answer (status {status}): {reason}")]
    Decode {
        /// The HTTP status.
        status: u16,
        /// What was wrong.
        reason: String,
    },
    /// The poll got no answer within the poll timeout and a margin.
    #[error("no answer in time")]
    Timeout,
    /// An error from the client library.
    #[error("{0}")]
    Client(#[from] talk_client::Error),
}

impl PollError {
    /// A short stable name for counting errors by kind.
    pub(crate) fn kind(&self) -> String {
        match self {
            PollError::Connect(_) => "connect".into(),
            PollError::Http(_) => "http".into(),
            PollError::Server { code, .. } => code.clone(),
            PollError::Decode { .. } => "decode".into(),
            PollError::Timeout => "timeout".into(),
            PollError::Client(error) => match error.code() {
                Some(code) => code.to_owned(),
                None => match error {
                    talk_client::Error::Transport(_) => "http".into(),
                    _ => "decode".into(),
                },
            },
        }
    }
}

/// One poller's way to the server.
pub(crate) enum PollLink {
    /// A raw connection, made on first use and remade after an error.
    Raw {
        server: SocketAddr,
        host: String,
        source: Option<IpAddr>,
        connection: Option<SendRequest<Full<Bytes>>>,
    },
    /// The shared client library.
    Api(Api),
}

impl PollLink {
    /// Sends one poll and waits at most `limit` for its answer.
    pub(crate) async fn poll(
        &mut self,
        request: &PollRequest,
        limit: Duration,
    ) -> Result<PollAnswer, PollError> {
        let outcome = tokio::time::timeout(limit, self.poll_unbounded(request)).await;
        match outcome {
            Ok(result) => result,
            Err(_) => {
                // A poll that hung may have left its connection mid-answer.
                self.forget_connection();
                Err(PollError::Timeout)
            }
        }
    }

    /// Drops the raw connection, so the next poll makes a new one.
    pub(crate) fn forget_connection(&mut self) {
        if let PollLink::Raw { connection, .. } = self {
            *connection = None;
        }
    }

    async fn poll_unbounded(&mut self, request: &PollRequest) -> Result<PollAnswer, PollError> {
        match self {
            PollLink::Api(api) => Ok(api.poll(request).await?),
            PollLink::Raw {
                server,
                host,
                source,
                connection,
            } => {
                let body = Bytes::from(talk_protocol::to_json(request));
                let result = raw_post(server, host, *source, connection, body).await;
                if result.is_err() {
                    *connection = None;
                }
                let (status, bytes) = result?;
                decode_answer(status, &bytes)
            }
        }
    }
}

async fn raw_post(
    server: &SocketAddr,
    host: &str,
    source: Option<IpAddr>,
    connection: &mut Option<SendRequest<Full<Bytes>>>,
    body: Bytes,
) -> Result<(u16, Bytes), PollError> {
    if connection.as_ref().is_none_or(|sender| sender.is_closed()) {
        *connection = Some(connect(*server, source).await?);
    }
    let sender = connection.as_mut().expect("connected just above");
    sender.ready().await?;
    let request = hyper::Request::post("/poll")
        .header(hyper::header::HOST, host)
        .header(hyper::header::CONTENT_TYPE, "text/plain;charset=UTF-8")
        .body(Full::new(body))
        .expect("a request from constant parts builds");
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

/// Opens a TCP connection from `source` (any port) and an HTTP/1.1 client on it.
async fn connect(
    server: SocketAddr,
    source: Option<IpAddr>,
) -> Result<SendRequest<Full<Bytes>>, PollError> {
    let socket = match server {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(PollError::Connect)?;
    if let Some(source) = source {
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(PollError::Connect)?;
    }
    let stream = socket.connect(server).await.map_err(PollError::Connect)?;
    stream.set_nodelay(true).map_err(PollError::Connect)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection task ends when the sender is dropped or the socket closes.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn decode_answer(status: u16, bytes: &[u8]) -> Result<PollAnswer, PollError> {
    let decode_error = |error: serde_json::Error| PollError::Decode {
        status,
        reason: error.to_string(),
    };
    if status == 200 {
        talk_protocol::from_json(bytes).map_err(decode_error)
    } else {
        let body: ErrorBody = talk_protocol::from_json(bytes).map_err(decode_error)?;
        Err(PollError::Server {
            status,
            code: body.error.code,
        })
    }
}

/// Builds the link a poller uses.
pub(crate) fn poll_link(
    transport: PollTransport,
    server: SocketAddr,
    source: Option<IpAddr>,
    shared_api: &Api,
) -> PollLink {
    match transport {
        PollTransport::Api => PollLink::Api(shared_api.clone()),
        PollTransport::Raw => PollLink::Raw {
            server,
            host: server.to_string(),
            source,
            connection: None,
        },
    }
}

/// A client-library `Api` whose requests leave from `source`, with a timeout
/// above the longest poll, keeping at most `idle_connections` connections
/// open between requests: every poller's with the `Api` transport, but few
/// for session starts, whose idle connections would otherwise take file
/// descriptors the server needs for held polls.
pub(crate) fn api_from(
    base_url: &str,
    source: Option<IpAddr>,
    timeout: Duration,
    idle_connections: usize,
) -> Api {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .pool_max_idle_per_host(idle_connections)
        .pool_idle_timeout(Duration::from_secs(600))
        .tcp_nodelay(true);
    if let Some(source) = source {
        builder = builder.local_address(source);
    }
    let http = builder.build().expect("a plain reqwest client builds");
    Api::with_http(base_url, http)
}
