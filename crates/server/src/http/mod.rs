//! The HTTP face of the server: the router, its layers and its handlers.
//!
//! Only this module and `protocol` know JSON and HTTP; handlers turn
//! requests into hub calls and hub results into answers.

mod cors;
pub(crate) mod error;
mod request;
mod routes;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::Config;
use crate::hub::Hub;
use crate::limits::Limits;
use crate::metrics::Metrics;
use error::{ApiError, ErrorCode};

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) hub: Arc<Hub>,
    pub(crate) config: Arc<Config>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) metrics: Arc<Metrics>,
}

/// The whole HTTP API.
pub(crate) fn router(state: AppState) -> Router {
    let allow_origins = Arc::new(state.config.allow_origins.clone());
    let chat = Router::new()
        .route("/poll", post(routes::poll::poll))
        .route("/broadcast", post(routes::broadcast::broadcast))
        .route_layer(middleware::from_fn_with_state(
            allow_origins,
            cors::check_origin,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            axum::http::HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        ));
    let assets = Router::new()
        .route("/", get(routes::assets::home))
        .route("/{name}", get(routes::assets::asset))
        .layer(CompressionLayer::new());
    let ops = Router::new()
        .route("/healthz", get(routes::ops::healthz))
        .route("/metrics", get(routes::ops::metrics));
    Router::new()
        .merge(chat)
        .merge(ops)
        .merge(assets)
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            count_errors,
        ))
        .layer(cors::layer(&state.config.allow_origins))
        .with_state(state)
}

/// Counts error answers by code.
async fn count_errors(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
        metrics.error(code);
    }
    response
}
