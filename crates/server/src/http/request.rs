//! Reading a request: its JSON body (within the size limit and the
//! protocol version), its `Host` headers, and the client's address.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::state::AppState;

/// A protocol request read from a JSON body, whatever its content type.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let origin = request.headers().get(header::ORIGIN);
        if !super::cors::origin_allowed(&state.config.allow_origins, origin) {
            let mut refusal = state.error_answer(ApiError::OriginNotAllowed);
            if let Some(origin) = origin {
                super::cors::grant_refusal(refusal.headers_mut(), origin);
            }
            return Err(refusal);
        }
        read_json(request, state)
            .await
            .map(JsonBody)
            .map_err(|error| state.error_answer(error))
    }
}

/// Reads a chat request from an allowed origin: within the size limit,
/// JSON of the protocol's version.
async fn read_json<T: DeserializeOwned>(request: Request, state: &AppState) -> Result<T, ApiError> {
    let max = state.config.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|length| length > max) {
        return Err(ApiError::BodyTooLarge { max });
    }
    let bytes = Limited::new(request.into_body(), max)
        .collect()
        .await
        .map_err(|error| {
            if error.downcast_ref::<LengthLimitError>().is_some() {
                ApiError::BodyTooLarge { max }
            } else {
                ApiError::BadRequest(format!("the request body could not be read: {error}"))
            }
        })?
        .to_bytes();
    decode_json(&bytes)
}

/// Decodes a chat request's body: JSON of the protocol's version.
pub(crate) fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Most bodies carry no version: one pass is enough for them. The
    // envelope's pass read every key once more, a quarter of a poll's
    // instructions in user space. Only for objects, though: serde also
    // reads a struct from an array (`["token"]`), which the envelope
    // refuses, and the protocol's bodies are objects.
    if is_object(bytes) && !may_carry_version(bytes) {
        if let Ok(request) = talk_protocol::from_json(bytes) {
            return Ok(request);
        }
    }
    decode_versioned_json(bytes)
}

/// Decodes a chat request's body the plain way: the envelope's version
/// first, then the request. `decode_json` must agree with it on every body
/// (the fuzz target `request_body` checks that).
pub(crate) fn decode_versioned_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let envelope: talk_protocol::Envelope = talk_protocol::from_json(bytes)
        .map_err(|error| ApiError::BadRequest(format!("the body is not a JSON object: {error}")))?;
    if let Some(version) = envelope
        .v
        .filter(|version| *version != talk_protocol::VERSION)
    {
        return Err(ApiError::UnsupportedVersion(version));
    }
    talk_protocol::from_json(bytes).map_err(|error| {
        ApiError::BadRequest(format!("the request does not fit the protocol: {error}"))
    })
}

/// Whether a JSON body starts as an object, after JSON's whitespace.
fn is_object(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
        == Some(&b'{')
}

/// Whether a JSON body may have a key `v`: such a key is written `"v"`, or
/// with an escape, so a body with neither has none.
fn may_carry_version(bytes: &[u8]) -> bool {
    memchr::memchr(b'\\', bytes).is_some() || memchr::memmem::find(bytes, b"\"v\"").is_some()
}

/// The client's address in a trusted proxy's header: the last one listed.
pub(crate) fn forwarded_ip(value: &[u8]) -> Option<IpAddr> {
    let value = std::str::from_utf8(value).ok()?;
    value.rsplit(',').next()?.trim().parse().ok()
}

/// The client's address: from the trusted proxy's header when one is
/// configured and present, else the connection's peer.
pub(crate) struct ClientIp(pub(crate) IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Ok(ClientIp(client_ip(
            &parts.headers,
            peer,
            state.config.client_ip_header.as_deref(),
        )))
    }
}

/// The client's address, as the router reads it: from `proxy_header` when
/// given and readable, else from the connection's peer.
pub(crate) fn client_ip(
    headers: &HeaderMap,
    peer: Option<&ConnectInfo<SocketAddr>>,
    proxy_header: Option<&str>,
) -> IpAddr {
    // The last line: a proxy that adds a line of its own puts it last,
    // and the connection's head parser reads the last one too.
    let from_header = proxy_header
        .and_then(|name| headers.get_all(name).iter().next_back())
        .and_then(|value| forwarded_ip(value.as_bytes()));
    from_header
        .or_else(|| peer.map(|ConnectInfo(address)| address.ip()))
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use talk_protocol::PollRequest;

    /// What `decode_json` makes of `body`: the token, or the error's text.
    fn decoded(body: &str) -> Result<String, String> {
        decode_json::<PollRequest>(body.as_bytes())
            .map(|request| request.token)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn a_version_is_found_however_its_key_is_written() {
        assert_eq!(decoded(r#"{"token":"t"}"#), Ok("t".into()));
        assert_eq!(decoded(r#"{"token":"t","v":1}"#), Ok("t".into()));
        // The value "v" is no key: one pass still reads it right.
        assert_eq!(decoded(r#"{"token":"v"}"#), Ok("v".into()));
        let unsupported = decode_json::<PollRequest>(br#"{"v":2,"token":"t"}"#);
        assert!(matches!(unsupported, Err(ApiError::UnsupportedVersion(2))));
        let escaped = decode_json::<PollRequest>(br#"{"token":"t","\u0076":2}"#);
        assert!(matches!(escaped, Err(ApiError::UnsupportedVersion(2))));
    }

    /// Checks that both decoders read `body` alike, as `expected`: the
    /// token, or a fragment of the error's text.
    fn check(body: &str, expected: Result<&str, &str>) {
        let one_pass = decoded(body);
        let plain = decode_versioned_json::<PollRequest>(body.as_bytes())
            .map(|request| request.token)
            .map_err(|error| error.to_string());
        assert_eq!(one_pass, plain, "the decoders disagree on {body:?}");
        match (&one_pass, expected) {
            (Ok(token), Ok(expected)) => assert_eq!(token, expected, "{body:?}"),
            (Err(message), Err(fragment)) => {
                assert!(message.contains(fragment), "{body:?}: {message}")
            }
            _ => panic!("{body:?}: got {one_pass:?}, wanted {expected:?}"),
        }
    }

    #[test]
    fn only_an_object_is_a_request() {
        check(r#"{"token":"t"}"#, Ok("t"));
        check(" \r\n\t{\"token\":\"t\"}", Ok("t"));
        // serde reads a struct from an array too; the protocol does not.
        // Found by the fuzz target `request_body`.
        check(r#"["id"]"#, Err("not a JSON object"));
        check(r#" ["t","lobby","e:1",10]"#, Err("not a JSON object"));
        check("[]", Err("does not fit the protocol"));
        let send = decode_json::<talk_protocol::BroadcastRequest>(br#"["send","t","i","x"]"#);
        assert!(matches!(send, Err(ApiError::BadRequest(_))), "{send:?}");
    }

    /// Checks the client address read from these `x-forwarded-for` lines,
    /// with the header trusted, for a peer at 192.0.2.1.
    fn check_client_ip(lines: &[&str], expected: &str) {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", line.parse().unwrap());
        }
        let peer = ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 4000)));
        let ip = client_ip(&headers, Some(&peer), Some("x-forwarded-for"));
        assert_eq!(ip, expected.parse::<IpAddr>().unwrap(), "{lines:?}");
    }

    #[test]
    fn the_client_is_the_last_address_listed() {
        check_client_ip(&[], "192.0.2.1");
        check_client_ip(&["203.0.113.7"], "203.0.113.7");
        check_client_ip(&["10.0.0.1, 203.0.113.7"], "203.0.113.7");
        check_client_ip(&["not an address"], "192.0.2.1");
        // Found by the fuzz target `request_head`: with two lines, the router
        // read the first and the connection's head parser the last.
        check_client_ip(&["10.0.0.1", "203.0.113.7"], "203.0.113.7");
        check_client_ip(&["junk", "::1"], "::1");
        check_client_ip(&["203.0.113.7", "junk"], "192.0.2.1");
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let not_an_object = decoded(r#""text""#).unwrap_err();
        assert!(
            not_an_object.contains("not a JSON object"),
            "{not_an_object}"
        );
        let missing_token = decoded(r#"{"channel":"main"}"#).unwrap_err();
        assert!(
            missing_token.contains("does not fit the protocol"),
            "{missing_token}"
        );
        assert!(missing_token.contains("token"), "{missing_token}");
    }
}
