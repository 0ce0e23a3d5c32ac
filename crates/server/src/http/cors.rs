//! Cross-origin access: the CORS headers, and the origin allow-list.
//!
//! The browser client only makes CORS "simple" requests (POST with a
//! text/plain body, no custom header), so it never waits for a preflight.
//! A simple request reaches the server whatever its origin, so the
//! allow-list is enforced here too, not left to the browser.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::error::ApiError;

/// The CORS layer for every answer, errors included.
pub(crate) fn layer(allow_origins: &[String]) -> CorsLayer {
    let origins = if allow_origins.is_empty() {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            allow_origins
                .iter()
                .filter_map(|origin| origin.parse::<HeaderValue>().ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        .expose_headers([header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(24 * 60 * 60))
}

/// Refuses requests from origins that are not on the allow-list.
pub(crate) async fn check_origin(
    State(allow_origins): State<Arc<Vec<String>>>,
    request: Request,
    next: Next,
) -> Response {
    if !allow_origins.is_empty() {
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let allowed = allow_origins
                .iter()
                .any(|allowed| allowed.as_bytes() == origin.as_bytes());
            if !allowed {
                return ApiError::OriginNotAllowed.into_response();
            }
        }
    }
    next.run(request).await
}
