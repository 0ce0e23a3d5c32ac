//! For operators: `/healthz` and `/metrics`.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http::AppState;

/// 200 when the server can take chat traffic; 503 with the reason when it
/// is stopping or its store cannot commit (sends would be refused).
pub(crate) async fn healthz(State(app): State<AppState>) -> Response {
    let unavailable = |body| (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    if app.hub.is_shutting_down() {
        unavailable(serde_json::json!({"status": "shutting_down"}))
    } else if let Some(reason) = app.hub.store_failure() {
        unavailable(serde_json::json!({"status": "store_failing", "reason": reason}))
    } else {
        axum::Json(serde_json::json!({"status": "ok"})).into_response()
    }
}

pub(crate) async fn metrics(State(app): State<AppState>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        app.metrics.render(),
    )
        .into_response()
}
