//! The HTTP face of the server: the router, its layers and its handlers.
//!
//! Only this module and `protocol` know JSON and HTTP; handlers turn
//! requests into hub calls and hub results into answers. This file only
//! builds the routers; what the handlers and connections share is in
//! `state.rs`, so that no module here imports one that imports it back.

mod answer;
pub(crate) mod chat_request;
pub(crate) mod connection;
pub(crate) mod cors;
mod date;
pub(crate) mod error;
pub(crate) mod host;
mod phase;
mod registry;
pub(crate) mod request;
mod routes;
mod state;

use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, options, post, MethodRouter};
use axum::Router;
use tower_http::compression::CompressionLayer;

use answer::JsonAnswer;
use error::ApiError;
pub(crate) use phase::RequestClock;
pub(crate) use registry::{Closed, Registry};
pub(crate) use state::{App, AppState, Connections};

/// Which listener serves `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricsOn {
    /// The public one, as no internal listener is set.
    Public,
    /// The internal one only: on the public listener it is an unknown path.
    Internal,
}

/// The whole HTTP API of the public listener.
///
/// Deliberately thin on middleware: every layer runs for every poll, and
/// per-request boxing showed in fan-out profiles. The chat's answers are
/// not under the CORS layer: the chat pipeline decides their CORS headers
/// (`cors::chat_answer_headers`) for both fronts, and the layer answers
/// only their preflights.
pub(crate) fn router(state: AppState, metrics_on: MetricsOn) -> Router {
    let cors = cors::layer(&state.config.allow_origins);
    let preflight: MethodRouter<AppState> = options(method_not_allowed).layer(cors.clone());
    let chat_route = |handler: MethodRouter<AppState>| {
        handler
            .merge(preflight.clone())
            .fallback(routes::chat::method_not_allowed)
    };
    let chat = Router::new()
        .route("/poll", chat_route(post(routes::chat::poll)))
        .route("/broadcast", chat_route(post(routes::chat::broadcast)));
    let assets = Router::new()
        .route("/", get(routes::assets::home))
        .route("/{name}", get(routes::assets::asset))
        .layer(CompressionLayer::new());
    let with_cors = Router::new()
        .route("/healthz", get(routes::ops::healthz))
        .merge(assets)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(cors)
        .merge(chat);
    // Merged after the CORS layer, which does not reach it: the metrics
    // tell how busy the server is and what fails, which no page on another
    // origin has any business reading.
    let router = match metrics_on {
        MetricsOn::Public => with_cors.merge(
            Router::new()
                .route("/metrics", get(routes::ops::metrics))
                .method_not_allowed_fallback(method_not_allowed),
        ),
        MetricsOn::Internal => with_cors,
    };
    router.with_state(state)
}

/// The API of the internal listener, for operators: `/metrics` and
/// `/healthz`, without CORS (no page is meant to read them), and axum's
/// bare 404 and 405 for anything else, as no chat client comes here.
pub(crate) fn internal_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(routes::ops::healthz))
        .route("/metrics", get(routes::ops::metrics))
        .with_state(state)
}

/// The answers of routes under the CORS layer, which adds their CORS headers.
async fn method_not_allowed(State(app): State<AppState>) -> Response {
    JsonAnswer::error(&app, ApiError::MethodNotAllowed).into_response(None)
}

async fn not_found(State(app): State<AppState>) -> Response {
    JsonAnswer::error(&app, ApiError::NotFound).into_response(None)
}
