//! The router's chat front: `POST /poll` and `POST /broadcast` on a
//! connection that hyper serves (handed over by the lean path). Its head
//! goes to the one reader of chat heads, its body to the one decoder, and
//! its answer to the one encoder, as on the lean path; only reading the
//! body and holding the poll are hyper's way here.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Version};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use talk_protocol::PollRequest;

use super::{broadcast, poll};
use crate::http::answer::JsonAnswer;
use crate::http::chat_request::{
    decode_chat_body, read_chat_request, ChatBody, ChatRequest, ChatRoute, Refusal,
};
use crate::http::cors::{check_origin, ChatCors};
use crate::http::error::ApiError;
use crate::http::state::{App, AppState};
use crate::hub::{Polled, Waiter, WakeTask};

pub(crate) async fn poll(State(app): State<AppState>, request: Request) -> Response {
    serve(&app, ChatRoute::Poll, request).await
}

pub(crate) async fn broadcast(State(app): State<AppState>, request: Request) -> Response {
    serve(&app, ChatRoute::Broadcast, request).await
}

/// Answers a chat request to `route`, or the rule its head breaks.
async fn serve(app: &App, route: ChatRoute, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(peer)| peer.ip());
    let lines = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()));
    let http_1_1 = parts.version == Version::HTTP_11;
    let head = read_chat_request(route, http_1_1, lines, peer, &app.config);
    let mut cors = ChatCors {
        allow_origins: &app.config.allow_origins,
        origin: head.origin,
        refused_origin: None,
    };
    if let Some(refusal) = head.refused {
        // Only the refusal of an origin grants that origin its answer.
        if refusal == Refusal::Origin {
            let origin = parts.headers.get(header::ORIGIN);
            cors.refused_origin = origin.map(HeaderValue::as_bytes);
        }
        let answer = JsonAnswer::error(app, refusal.error(&app.config));
        return answer.into_response(Some(cors));
    }
    // A held poll keeps what this future holds: not the head's parts.
    drop(parts);
    answer(app, &head, body).await.into_response(Some(cors))
}

/// The answer to a chat path asked with another method than `POST` (or
/// `OPTIONS`, a preflight).
pub(crate) async fn method_not_allowed(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Response {
    let origin = headers.get(header::ORIGIN).map(HeaderValue::as_bytes);
    let cors = ChatCors {
        allow_origins: &app.config.allow_origins,
        origin: check_origin(&app.config.allow_origins, origin),
        refused_origin: None,
    };
    JsonAnswer::error(&app, ApiError::MethodNotAllowed).into_response(Some(cors))
}

/// Reads the body of a request whose head breaks no rule, and answers it.
async fn answer(app: &App, head: &ChatRequest, body: axum::body::Body) -> JsonAnswer {
    // The body's bytes are dropped once decoded, before a poll is held.
    let decoded = match read_body(body, app.config.max_body_bytes).await {
        Ok(body) => decode_chat_body(head.route, &body),
        Err(error) => Err(error),
    };
    match decoded {
        Err(error) => JsonAnswer::error(app, error),
        Ok(ChatBody::Poll(request)) => match hold_poll(app, request).await {
            Ok(json) => JsonAnswer::ok(json),
            Err(error) => JsonAnswer::error(app, error),
        },
        Ok(ChatBody::Broadcast(request)) => {
            JsonAnswer::of(app, broadcast::answer(app, head.client_ip, request).await)
        }
    }
}

/// Reads a body of at most `max` bytes, however hyper frames it.
async fn read_body(body: axum::body::Body, max: usize) -> Result<Bytes, ApiError> {
    let body = Limited::new(body, max).collect().await.map_err(|error| {
        if error.downcast_ref::<LengthLimitError>().is_some() {
            ApiError::BodyTooLarge { max }
        } else {
            ApiError::BadRequest(format!("the request body could not be read: {error}"))
        }
    })?;
    Ok(body.to_bytes())
}

/// Holds a poll in this task, which hyper answers from.
async fn hold_poll(app: &App, request: PollRequest) -> Result<Bytes, ApiError> {
    let session = app.hub.session(&request.token)?;
    let waiter = Arc::new(Waiter::new(WakeTask));
    match poll::answer(app, &session, request, &waiter, tokio::time::sleep).await? {
        Polled::Answer(body) => Ok(body.json),
        // Only a sink that writes to the socket itself sends an answer,
        // and a `WakeTask` declines every delivery: its poll's answer
        // always comes back to its task.
        Polled::Sent { .. } => unreachable!("a WakeTask sends no answer itself"),
    }
}
