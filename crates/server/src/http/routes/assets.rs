//! The browser client's files, with ETags so browsers revalidate cheaply.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use crate::http::answer::JsonAnswer;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::widget;

pub(crate) async fn asset(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(asset) = widget::asset(&name) else {
        // The CORS layer around this route adds the CORS headers.
        return JsonAnswer::error(&app, ApiError::NotFound).into_response(None);
    };
    let etag = asset.etag();
    let cache_headers = [
        (header::ETAG, HeaderValue::from_static(etag)),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        ),
    ];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    if matches {
        return (StatusCode::NOT_MODIFIED, cache_headers).into_response();
    }
    let content_type = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    )];
    (content_type, cache_headers, asset.body).into_response()
}

pub(crate) async fn home() -> Redirect {
    Redirect::to("/talk.html")
}
