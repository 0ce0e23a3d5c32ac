//! The HTTP face of the server: the router, its layers and its handlers.
//!
//! Only this module and `protocol` know JSON and HTTP; handlers turn
//! requests into hub calls and hub results into answers.

mod answer;
pub(crate) mod connection;
pub(crate) mod cors;
mod date;
pub(crate) mod error;
mod handover;
pub(crate) mod host;
mod phase;
mod registry;
pub(crate) mod request;
mod routes;
mod socket_sink;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper::server::conn::http1;
use tokio_util::sync::CancellationToken;
use tower_http::compression::CompressionLayer;

use crate::config::Config;
use crate::hub::Hub;
use crate::limits::Limits;
use crate::metrics::Metrics;
use error::ApiError;
pub(crate) use phase::RequestClock;
pub(crate) use registry::{Closed, Registry};

/// What every handler can reach: one `Arc`, so that handing the state to a
/// handler costs one reference count, not one per field.
#[derive(Clone)]
pub(crate) struct AppState(Arc<App>);

/// The parts of the server the handlers use.
pub(crate) struct App {
    pub(crate) hub: Arc<Hub>,
    pub(crate) config: Arc<Config>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) metrics: Arc<Metrics>,
}

impl AppState {
    pub(crate) fn new(app: App) -> Self {
        AppState(Arc::new(app))
    }

    /// The answer to an error, counted in the metrics by its code.
    pub(crate) fn error_answer(&self, error: ApiError) -> Response {
        self.metrics.error(error.code());
        error.into_response()
    }
}

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

/// What every connection shares.
pub(crate) struct Connections {
    pub(crate) app: AppState,
    /// Serves whatever the connection layer hands over.
    pub(crate) router: Router,
    pub(crate) http: http1::Builder,
    /// The request timeout, and the origin of the connections' deadlines.
    pub(crate) clock: RequestClock,
    /// Every open connection, to close some when files run short.
    pub(crate) registry: Registry,
    /// Cancelled when the server stops: idle connections close, busy ones
    /// close after their answer.
    pub(crate) closing: CancellationToken,
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
/// per-request boxing showed in fan-out profiles. The origin check and the
/// error count happen where the request is read and the answer made.
pub(crate) fn router(state: AppState, metrics_on: MetricsOn) -> Router {
    let chat = Router::new()
        .route("/poll", post(routes::poll::poll))
        .route("/broadcast", post(routes::broadcast::broadcast));
    let assets = Router::new()
        .route("/", get(routes::assets::home))
        .route("/{name}", get(routes::assets::asset))
        .layer(CompressionLayer::new());
    let with_cors = Router::new()
        .merge(chat)
        .route("/healthz", get(routes::ops::healthz))
        .merge(assets)
        .fallback(|State(app): State<AppState>| async move { app.error_answer(ApiError::NotFound) })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(cors::layer(&state.config.allow_origins));
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

async fn method_not_allowed(State(app): State<AppState>) -> Response {
    app.error_answer(ApiError::MethodNotAllowed)
}
