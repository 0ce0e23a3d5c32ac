//! Cross-origin access: the CORS headers, and the origin allow-list.
//!
//! The browser client only makes CORS "simple" requests (POST with a
//! text/plain body, no custom header), so it never waits for a preflight.
//! A simple request reaches the server whatever its origin, so the
//! allow-list is enforced here too, not left to the browser.

use axum::http::{header, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The CORS layer for the answers of the routes that are not the chat's
/// (assets, `/healthz`, unknown paths), and for preflights to any route.
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

/// What decides a chat answer's CORS headers: the allow-list, what it
/// said of the request's `Origin`, and that origin's value, which only a
/// refusal reads.
#[derive(Clone, Copy)]
pub(crate) struct ChatCors<'request> {
    pub(crate) allow_origins: &'request [String],
    pub(crate) origin: OriginCheck,
    /// The request's first `Origin`, granted the refusal (see below).
    pub(crate) refused_origin: Option<&'request [u8]>,
}

/// Hands each CORS header line of a chat answer to `line`: the one place
/// that decides them, for both fronts. They are the lines the CORS layer
/// gives the other routes' answers: `retry-after` exposed, `*` without an
/// allow-list, and with one the listed origin and `vary: origin`.
///
/// A refused origin is granted its refusal, so that the page a
/// `403 origin_not_allowed` refuses can say the chat is not available
/// there instead of retrying. Granting this one answer to an origin off
/// the allow-list is safe: the refused request did nothing (it is refused
/// before its body is read), the answer holds only the fixed code and
/// message that anyone can get with curl, and the chat uses no cookies or
/// other credentials (no `access-control-allow-credentials`), so nothing
/// of the visitor's is revealed. Every other answer to that origin still
/// grants nothing.
pub(crate) fn chat_answer_headers(cors: ChatCors<'_>, line: &mut impl FnMut(&'static str, &[u8])) {
    line("access-control-expose-headers", b"retry-after");
    match cors.origin {
        OriginCheck::Any => line("access-control-allow-origin", b"*"),
        OriginCheck::Listed(index) => {
            line("vary", b"origin");
            let origin = cors.allow_origins[index].as_bytes();
            line("access-control-allow-origin", origin);
        }
        OriginCheck::NoOrigin => line("vary", b"origin"),
        OriginCheck::Refused => {
            line("vary", b"origin");
            if let Some(origin) = cors.refused_origin {
                line("access-control-allow-origin", origin);
            }
        }
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
