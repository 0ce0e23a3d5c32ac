//! For operators: `/healthz` and `/metrics`.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http::state::{App, AppState};

/// Why the server cannot take traffic now: `/healthz` answers 503 with it,
/// so that a load balancer sends clients elsewhere.
struct Unhealthy {
    /// The `status` of the answer, a word for machines.
    status: &'static str,
    /// What is wrong, for people; `None` when the status says it all.
    reason: Option<String>,
}

/// Checks, in turn, everything that keeps the server from taking traffic.
/// A new check is one more `if` here.
fn check_health(app: &App) -> Result<(), Unhealthy> {
    if app.hub.is_shutting_down() {
        return Err(Unhealthy {
            status: "shutting_down",
            reason: None,
        });
    }
    if let Some(reason) = app.hub.store_failure() {
        return Err(Unhealthy {
            status: "store_failing",
            reason: Some(reason),
        });
    }
    Ok(())
}

/// 200 when the server can take chat traffic; 503 with the reason when it
/// is stopping or its store cannot commit (sends would be refused).
pub(crate) async fn healthz(State(app): State<AppState>) -> Response {
    match check_health(&app) {
        Ok(()) => axum::Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(Unhealthy { status, reason }) => {
            let mut body = serde_json::json!({ "status": status });
            if let Some(reason) = reason {
                body["reason"] = reason.into();
            }
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
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
