//! Every JSON answer of the API (`JsonAnswer`): its status, body and
//! `Retry-After`, the error it answers counted once, and its one encoder,
//! which either writes the bytes of an HTTP/1.1 response (the lean path,
//! and a publish writing a held poll's answer) or makes the router's
//! `Response`. Both go through the same head lines, so that a chat answer
//! carries the same headers, CORS included, whichever front serves it.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;

use super::cors::{self, ChatCors};
use super::date;
use super::error::ApiError;
use super::state::App;

/// The headers of every JSON answer: JSON, never stored by caches, never
/// buffered by nginx (`x-accel-buffering`).
const JSON_HEADERS: [(&str, &str); 3] = [
    ("content-type", "application/json"),
    ("cache-control", "no-store"),
    ("x-accel-buffering", "no"),
];

/// An answer of the JSON API, ready to be encoded.
pub(crate) struct JsonAnswer {
    status: StatusCode,
    json: Bytes,
    retry_after_secs: Option<u64>,
}

impl JsonAnswer {
    /// A successful answer carrying `json`.
    pub(crate) fn ok(json: Bytes) -> Self {
        JsonAnswer {
            status: StatusCode::OK,
            json,
            retry_after_secs: None,
        }
    }

    /// The answer to an error, counted in the metrics by its code: the
    /// one place where errors are counted.
    pub(crate) fn error(app: &App, error: ApiError) -> Self {
        app.metrics.error(error.code());
        let (status, json, retry_after_secs) = error.answer_parts();
        JsonAnswer {
            status,
            json: json.into(),
            retry_after_secs,
        }
    }

    /// The answer to `result`: its JSON, or its error.
    pub(crate) fn of(app: &App, result: Result<Vec<u8>, ApiError>) -> Self {
        match result {
            Ok(json) => JsonAnswer::ok(json.into()),
            Err(error) => JsonAnswer::error(app, error),
        }
    }

    /// Hands each header line of the answer (not its framing: length,
    /// date, close) to `line`. `cors`: the CORS headers are decided here,
    /// or (`None`) by the CORS layer around a route that is not the
    /// chat's, or there are none.
    fn head_lines(&self, cors: Option<ChatCors<'_>>, mut line: impl FnMut(&'static str, &[u8])) {
        for (name, value) in JSON_HEADERS {
            line(name, value.as_bytes());
        }
        if let Some(cors) = cors {
            cors::chat_answer_headers(cors, &mut line);
        }
        if let Some(seconds) = self.retry_after_secs {
            line(
                "retry-after",
                itoa::Buffer::new().format(seconds).as_bytes(),
            );
        }
    }

    /// The whole answer, head and body, as one HTTP/1.1 response for one
    /// write. Plain copies: `write!` cost more than the rest of the head
    /// together.
    pub(crate) fn encode(&self, cors: ChatCors<'_>, close: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(320 + self.json.len());
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.push(b' ');
        let reason = self.status.canonical_reason().unwrap_or("Unknown");
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.head_lines(Some(cors), |name, value| {
            for part in [name.as_bytes(), b": ", value, b"\r\n"] {
                out.extend_from_slice(part);
            }
        });
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"date: ");
        date::write_now(&mut out);
        out.extend_from_slice(b"\r\ncontent-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(self.json.len()).as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.json);
        out
    }

    /// The answer as the router's response; hyper adds the framing. Its
    /// body is `Bytes`, so it is sent with its length, not chunked.
    pub(crate) fn into_response(self, cors: Option<ChatCors<'_>>) -> Response {
        let mut headers = HeaderMap::new();
        self.head_lines(cors, |name, value| {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append(HeaderName::from_static(name), value);
            }
        });
        let mut response = Response::new(Body::from(self.json));
        *response.status_mut() = self.status;
        *response.headers_mut() = headers;
        response
    }
}
