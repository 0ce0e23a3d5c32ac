//! Cross-origin access: the CORS headers, and the origin allow-list.
//!
//! The browser client only makes CORS "simple" requests (POST with a
//! text/plain body, no custom header), so it never waits for a preflight.
//! A simple request reaches the server whatever its origin, so the
//! allow-list is enforced here too, not left to the browser.

use axum::http::{header, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

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

/// Whether a request from `origin` may use the chat.
pub(crate) fn origin_allowed(allow_origins: &[String], origin: Option<&HeaderValue>) -> bool {
    match origin {
        Some(origin) if !allow_origins.is_empty() => allow_origins
            .iter()
            .any(|allowed| allowed.as_bytes() == origin.as_bytes()),
        _ => true,
    }
}
