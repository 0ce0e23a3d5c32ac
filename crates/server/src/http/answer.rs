//! A chat answer on the lean path: its status, JSON and `Retry-After`, and
//! its encoding as the bytes of one HTTP/1.1 response, written by the
//! connection's task or, for a held poll, by the publish (`socket_sink`).

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;

use super::cors::{self, OriginCheck};
use super::date;
use super::error::ApiError;
use super::state::AppState;

/// A chat answer, ready to be written.
pub(super) struct Answer {
    status: StatusCode,
    json: Bytes,
    retry_after_secs: Option<u64>,
}

/// A successful answer carrying `json`.
pub(super) fn ok_answer(json: Bytes) -> Answer {
    Answer {
        status: StatusCode::OK,
        json,
        retry_after_secs: None,
    }
}

/// The answer to an error, counted in the metrics by its code.
pub(super) fn error_answer(app: &AppState, error: ApiError) -> Answer {
    app.metrics.error(error.code());
    let (status, json, retry_after_secs) = error.answer_parts();
    Answer {
        status,
        json: json.into(),
        retry_after_secs,
    }
}

/// The whole answer, head and body, for one write. Plain copies: `write!`
/// cost more than the rest of the head together.
pub(super) fn encode_answer(
    answer: &Answer,
    allow_origins: &[String],
    origin: OriginCheck,
    close: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(320 + answer.json.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(answer.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        answer
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    for (name, value) in CHAT_HEADERS {
        for part in [name, ": ", value, "\r\n"] {
            out.extend_from_slice(part.as_bytes());
        }
    }
    cors::write_answer_headers(&mut out, allow_origins, origin);
    let mut digits = itoa::Buffer::new();
    if let Some(seconds) = answer.retry_after_secs {
        out.extend_from_slice(b"retry-after: ");
        out.extend_from_slice(digits.format(seconds).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"date: ");
    date::write_now(&mut out);
    out.extend_from_slice(b"\r\ncontent-length: ");
    out.extend_from_slice(digits.format(answer.json.len()).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&answer.json);
    out
}

/// The answer to a chat request: JSON, never stored by caches, never
/// buffered by proxies, and with its length (`Bytes` bodies are not chunked).
pub(crate) fn chat_answer(json: impl Into<axum::body::Body>) -> Response {
    let mut response = Response::new(json.into());
    let headers = response.headers_mut();
    for (name, value) in CHAT_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

/// The headers of every chat answer, whichever path writes it: JSON, never
/// stored by caches, never buffered by nginx (`x-accel-buffering`).
pub(crate) const CHAT_HEADERS: [(&str, &str); 3] = [
    ("content-type", "application/json"),
    ("cache-control", "no-store"),
    ("x-accel-buffering", "no"),
];
