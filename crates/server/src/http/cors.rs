//! Cross-origin access: the CORS headers, and the origin allow-list.
//!
//! The browser client only makes CORS "simple" requests (POST with a
//! text/plain body, no custom header), so it never waits for a preflight.
//! A simple request reaches the server whatever its origin, so the
//! allow-list is enforced here too, not left to the browser.

use axum::http::{header, HeaderMap, HeaderValue, Method};
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
    check_origin(allow_origins, origin.map(HeaderValue::as_bytes)) != OriginCheck::Refused
}

/// Lets the page a `403 origin_not_allowed` refuses read that refusal, so
/// that it can say the chat is not available there instead of retrying.
///
/// Granting this one answer to an origin off the allow-list is safe: the
/// refused request did nothing (it is refused before its body is read),
/// the answer holds only the fixed code and message that anyone can get
/// with curl, and the chat uses no cookies or other credentials (no
/// `access-control-allow-credentials`), so nothing of the visitor's is
/// revealed. The page learns only that it is refused. Every other answer
/// to that origin still grants nothing, and the request goes to the router
/// (see `connection::parse_head`), so this is the one place that writes it;
/// the layer adds `vary: origin` to it as to every answer.
pub(crate) fn grant_refusal(headers: &mut HeaderMap, origin: &HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
}

/// What the allow-list says of a request's `Origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OriginCheck {
    /// No allow-list: every origin may use the chat.
    Any,
    /// The origin is entry `n` of the allow-list.
    Listed(usize),
    /// An allow-list is set and the request has no `Origin` (not a browser's
    /// cross-origin request): it may use the chat, but gets no CORS grant.
    NoOrigin,
    /// The origin is not on the allow-list.
    Refused,
}

/// Checks a request's `Origin` against the allow-list.
pub(crate) fn check_origin(allow_origins: &[String], origin: Option<&[u8]>) -> OriginCheck {
    if allow_origins.is_empty() {
        return OriginCheck::Any;
    }
    let Some(origin) = origin else {
        return OriginCheck::NoOrigin;
    };
    allow_origins
        .iter()
        .position(|allowed| allowed.as_bytes() == origin)
        .map_or(OriginCheck::Refused, OriginCheck::Listed)
}

/// Writes the CORS header lines of a chat answer, the same ones the layer
/// adds to answers made by the router. A refused origin's request never
/// gets here: the router answers it, with `grant_refusal`.
pub(crate) fn write_answer_headers(
    out: &mut Vec<u8>,
    allow_origins: &[String],
    check: OriginCheck,
) {
    out.extend_from_slice(b"access-control-expose-headers: retry-after\r\n");
    match check {
        OriginCheck::Any => out.extend_from_slice(b"access-control-allow-origin: *\r\n"),
        OriginCheck::Listed(index) => {
            out.extend_from_slice(b"vary: origin\r\naccess-control-allow-origin: ");
            out.extend_from_slice(allow_origins[index].as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        OriginCheck::NoOrigin | OriginCheck::Refused => out.extend_from_slice(b"vary: origin\r\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_against_the_allow_list() {
        let list = vec![
            "https://a.example".to_owned(),
            "https://b.example".to_owned(),
        ];
        let check = |list: &[String], origin: Option<&str>, expected: OriginCheck| {
            assert_eq!(
                check_origin(list, origin.map(str::as_bytes)),
                expected,
                "{origin:?}"
            );
        };
        check(&[], Some("https://evil.example"), OriginCheck::Any);
        check(&[], None, OriginCheck::Any);
        check(&list, Some("https://b.example"), OriginCheck::Listed(1));
        check(&list, Some("https://B.example"), OriginCheck::Refused);
        check(&list, Some("https://evil.example"), OriginCheck::Refused);
        check(&list, None, OriginCheck::NoOrigin);
    }
}
