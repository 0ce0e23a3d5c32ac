//! One HTTP request per protocol operation, with no state and no retries.
//!
//! `Api` is the thin layer every other part of the client builds on; tests
//! use it directly when they want to see exactly what the server answers.

use std::time::Duration;

use talk_protocol::{
    BroadcastRequest, ErrorBody, ErrorDetail, PollAnswer, PollRequest, SendAnswer, StartAnswer,
    WhoAnswer,
};

/// How long an unused connection is kept for the next request. The server
/// closes a connection that sends no request for 10 s (by default); a
/// request sent as it does so is lost to a reset ("connection reset by
/// peer"), and a busy client may not see the close in time. Letting go
/// well before keeps the client out of that race.
pub const IDLE_CONNECTION_LIMIT: Duration = Duration::from_secs(5);

/// What can go wrong with one request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a protocol error.
    #[error("server said {status}: {} ({})", .detail.message, .detail.code)]
    Server {
        /// The HTTP status.
        status: u16,
        /// The error body.
        detail: ErrorDetail,
    },
    /// The request did not get an answer: connection refused, reset, timed out.
    #[error("no answer from the server: {}", with_causes(.0))]
    Transport(#[from] reqwest::Error),
    /// The answer was not what the protocol says.
    #[error("the server's answer (status {status}) is not protocol JSON: {reason}")]
    Decode {
        /// The HTTP status.
        status: u16,
        /// What was wrong with it.
        reason: String,
    },
}

/// `error` and its causes on one line: reqwest's own message ("error
/// sending request for url …") does not say what went wrong.
fn with_causes(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

impl Error {
    /// The protocol error code, when the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Server { detail, .. } => Some(&detail.code),
            _ => None,
        }
    }
}

/// The talk endpoints of one server.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    poll_url: String,
    broadcast_url: String,
}

impl Api {
    /// The endpoints under `base_url` (e.g. `http://localhost:8000`), with a
    /// default HTTP client.
    pub fn new(base_url: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_idle_timeout(IDLE_CONNECTION_LIMIT)
            .build()
            .expect("a default reqwest client builds");
        Self::with_http(base_url, http)
    }

    /// The endpoints under `base_url`, with a client you built (to bind a
    /// source address, say). Give it a `pool_idle_timeout` of at most
    /// [`IDLE_CONNECTION_LIMIT`]: reqwest's default keeps idle connections
    /// for 90 s.
    pub fn with_http(base_url: &str, http: reqwest::Client) -> Self {
        let base = base_url.trim_end_matches('/');
        Api {
            http,
            poll_url: format!("{base}/poll"),
            broadcast_url: format!("{base}/broadcast"),
        }
    }

    /// `start`: begins a session.
    pub async fn start(
        &self,
        name: Option<&str>,
        color: Option<&str>,
        channel: Option<&str>,
    ) -> Result<StartAnswer, Error> {
        let request = BroadcastRequest::Start {
            name: name.map(str::to_owned),
            color: color.map(str::to_owned),
            channel: channel.map(str::to_owned),
        };
        self.post(&self.broadcast_url, talk_protocol::to_json(&request))
            .await
    }

    /// `send`: says `text` (or runs it as a command) under the client's `id`.
    pub async fn send(&self, token: &str, id: &str, text: &str) -> Result<SendAnswer, Error> {
        let request = BroadcastRequest::Send {
            token: token.to_owned(),
            id: id.to_owned(),
            text: text.to_owned(),
        };
        self.post(&self.broadcast_url, talk_protocol::to_json(&request))
            .await
    }

    /// `who`: the people in the session's channel. Not a send, so it does
    /// not count toward the server's send rate limit.
    pub async fn who(&self, token: &str) -> Result<WhoAnswer, Error> {
        let request = BroadcastRequest::Who {
            token: token.to_owned(),
        };
        self.post(&self.broadcast_url, talk_protocol::to_json(&request))
            .await
    }

    /// `leave`: ends the session.
    pub async fn leave(&self, token: &str) -> Result<SendAnswer, Error> {
        let request = BroadcastRequest::Leave {
            token: token.to_owned(),
        };
        self.post(&self.broadcast_url, talk_protocol::to_json(&request))
            .await
    }

    /// One poll.
    pub async fn poll(&self, request: &PollRequest) -> Result<PollAnswer, Error> {
        self.post(&self.poll_url, talk_protocol::to_json(request))
            .await
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        body: Vec<u8>,
    ) -> Result<T, Error> {
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain;charset=UTF-8")
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let decode_error = |error: serde_json::Error| Error::Decode {
            status,
            reason: error.to_string(),
        };
        if status == 200 {
            talk_protocol::from_json(&bytes).map_err(decode_error)
        } else {
            let body: ErrorBody = talk_protocol::from_json(&bytes).map_err(decode_error)?;
            Err(Error::Server {
                status,
                detail: body.error,
            })
        }
    }
}
