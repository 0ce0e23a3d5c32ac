//! Every error answer, in one place: its status, its code and its JSON
//! body (`answer.rs` encodes it, for either front).

use std::time::Duration;

use axum::http::StatusCode;
use talk_protocol::{ErrorBody, ErrorDetail, InvalidValue};

use super::host::HostError;
use crate::{command, hub, store};

/// An error answer of the HTTP API.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("this server speaks protocol version 1, not {0}")]
    UnsupportedVersion(u32),
    #[error("the request body is over {max} bytes")]
    BodyTooLarge { max: usize },
    #[error("there is nothing at this path; the chat is at /talk.html")]
    NotFound,
    #[error("this path does not take that method; /poll and /broadcast take POST")]
    MethodNotAllowed,
    #[error("this chat server does not serve pages from this origin")]
    OriginNotAllowed,
    #[error("too many messages; wait a moment")]
    RateLimited { retry_after: Duration },
    #[error("too many new sessions from your address; wait a moment")]
    TooManySessions { retry_after: Duration },
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("{0}")]
    Invalid(#[from] InvalidValue),
    #[error(transparent)]
    Send(#[from] command::Error),
    #[error(transparent)]
    Hub(#[from] hub::Error),
}

fn invalid_code(value: &InvalidValue) -> &'static str {
    match value {
        InvalidValue::Channel => "invalid_channel",
        InvalidValue::Name => "invalid_name",
        InvalidValue::ColorFormat | InvalidValue::ColorTooDark(_) => "invalid_color",
        InvalidValue::Id => "invalid_id",
    }
}

fn hub_status(error: &hub::Error) -> (StatusCode, &'static str) {
    match error {
        hub::Error::UnknownSession => (StatusCode::UNAUTHORIZED, "unknown_session"),
        hub::Error::NameTaken { .. } => (StatusCode::CONFLICT, "name_taken"),
        hub::Error::Store(store::Error::Closed) | hub::Error::ShuttingDown => {
            (StatusCode::SERVICE_UNAVAILABLE, "shutting_down")
        }
        hub::Error::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
        hub::Error::TooManyChannels { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_channels"),
        hub::Error::ChannelLimit { .. } => (StatusCode::SERVICE_UNAVAILABLE, "channel_limit"),
    }
}

impl ApiError {
    /// The protocol's code for this error.
    pub(crate) fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) | ApiError::Host(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::UnsupportedVersion(_) => (StatusCode::BAD_REQUEST, "unsupported_version"),
            ApiError::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::OriginNotAllowed => (StatusCode::FORBIDDEN, "origin_not_allowed"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::TooManySessions { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_sessions")
            }
            ApiError::Invalid(value) => (StatusCode::BAD_REQUEST, invalid_code(value)),
            ApiError::Send(error) => match error {
                command::Error::EmptyMessage => (StatusCode::BAD_REQUEST, "empty_message"),
                command::Error::MessageTooLong { .. } => {
                    (StatusCode::BAD_REQUEST, "message_too_long")
                }
                command::Error::UnknownCommand { .. } => {
                    (StatusCode::BAD_REQUEST, "unknown_command")
                }
                command::Error::Invalid { value, .. } => {
                    (StatusCode::BAD_REQUEST, invalid_code(value))
                }
                command::Error::Hub(error) => hub_status(error),
            },
            ApiError::Hub(error) => hub_status(error),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after }
            | ApiError::TooManySessions { retry_after }
            | ApiError::Hub(hub::Error::TooManyChannels { retry_after })
            | ApiError::Send(command::Error::Hub(hub::Error::TooManyChannels { retry_after })) => {
                Some(*retry_after)
            }
            _ => None,
        }
    }
}

impl ApiError {
    /// The status, JSON body and `Retry-After` seconds of this error's answer.
    pub(crate) fn answer_parts(&self) -> (StatusCode, Vec<u8>, Option<u64>) {
        let (status, code) = self.status_and_code();
        if status == StatusCode::INTERNAL_SERVER_ERROR || status == StatusCode::SERVICE_UNAVAILABLE
        {
            tracing::warn!(error = %self, code, "request failed");
        }
        let retry_after = self.retry_after();
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message: self.to_string(),
                retry_after_ms: retry_after.map(|wait| wait.as_millis().max(1) as u64),
            },
        };
        let retry_after_secs =
            retry_after.map(|wait| (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1));
        (status, talk_protocol::to_json(&body), retry_after_secs)
    }
}
