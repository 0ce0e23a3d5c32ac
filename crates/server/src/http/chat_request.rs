//! The chat rules for a request, in one place for both fronts: what its
//! head says (`ChatRequest`, read by `read_chat_request` from either
//! front's header lines) and what its body asks (`decode_chat_body`).
//!
//! The lean path (`connection`) reads heads with `httparse`, the router
//! gets them from hyper as a `HeaderMap`; both hand their header lines to
//! the one reader here, so that the origin allow-list, the body limit, the
//! `Host` rule, the close and the client's address are decided alike
//! whichever front serves the request. The lean path hands every request
//! that a rule refuses, or whose body it cannot frame, to hyper and the
//! router, which answer it.

use std::net::IpAddr;

use talk_protocol::{BroadcastRequest, PollRequest};

use super::cors::{self, OriginCheck};
use super::error::ApiError;
use super::host::{check_host, HostError};
use super::request::{decode_json, forwarded_ip};
use crate::config::Config;

/// The two chat endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChatRoute {
    Poll,
    Broadcast,
}

/// What a chat request's head says, as both fronts read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChatRequest {
    pub(crate) route: ChatRoute,
    /// What the allow-list says of the request's first `Origin`.
    pub(crate) origin: OriginCheck,
    /// Some `Connection` header asks to close the connection after the answer.
    pub(crate) close: bool,
    /// The client: the last address in the trusted proxy's header when
    /// one is configured and readable, else the connection's peer.
    pub(crate) client_ip: IpAddr,
    /// The body's length, when one `Content-Length` gives it and nothing
    /// else frames the body (`Transfer-Encoding`, `Expect`, `Upgrade`):
    /// only hyper reads the others.
    pub(crate) body_len: Option<usize>,
    /// The rule the head breaks, if any; the answer is then that error.
    pub(crate) refused: Option<Refusal>,
}

/// A rule that a chat request's head breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not exactly one `Host` in an HTTP/1.1 request, or more than one.
    Host(HostError),
    /// The origin is not on the allow-list.
    Origin,
    /// The declared body is over the limit.
    BodyTooLarge,
}

impl Refusal {
    /// The error the request is answered with.
    pub(crate) fn error(self, config: &Config) -> ApiError {
        match self {
            Refusal::Host(error) => ApiError::Host(error),
            Refusal::Origin => ApiError::OriginNotAllowed,
            Refusal::BodyTooLarge => ApiError::BodyTooLarge {
                max: config.max_body_bytes,
            },
        }
    }
}

/// Reads a chat request's head from its header lines, `(name, value)` in
/// the order they came, for either front. `http_1_1`: the request is
/// HTTP/1.1 (the `Host` rule depends on it); `peer`: the connection's
/// other end.
pub(crate) fn read_chat_request<'lines>(
    route: ChatRoute,
    http_1_1: bool,
    lines: impl IntoIterator<Item = (&'lines str, &'lines [u8])>,
    peer: IpAddr,
    config: &Config,
) -> ChatRequest {
    let mut n_hosts = 0;
    let mut n_lengths = 0;
    let mut length = None;
    let mut framed_by_hyper = false;
    let mut origin = None;
    let mut forwarded = None;
    let mut close = false;
    let proxy_header = config.client_ip_header.as_deref();
    for (name, value) in lines {
        if name.eq_ignore_ascii_case("host") {
            n_hosts += 1;
        } else if name.eq_ignore_ascii_case("content-length") {
            n_lengths += 1;
            length = read_length(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            framed_by_hyper = true;
        } else if name.eq_ignore_ascii_case("connection") {
            // Any of them, as hyper reads them.
            close |= value
                .split(|byte| *byte == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if name.eq_ignore_ascii_case("origin") {
            // The first: the CORS layer reads the first too.
            origin = origin.or(Some(value));
        } else if proxy_header.is_some_and(|proxy_header| name.eq_ignore_ascii_case(proxy_header)) {
            // The last line: a proxy that adds a line of its own puts it last.
            forwarded = forwarded_ip(value);
        }
    }
    // A repeated or unreadable length is hyper's to judge.
    let body_len = match (n_lengths, length, framed_by_hyper) {
        (1, Some(length), false) => Some(length),
        _ => None,
    };
    let origin = cors::check_origin(&config.allow_origins, origin);
    let refused = if let Err(error) = check_host(http_1_1, n_hosts) {
        Some(Refusal::Host(error))
    } else if origin == OriginCheck::Refused {
        Some(Refusal::Origin)
    } else if n_lengths == 1 && length.is_some_and(|length| length > config.max_body_bytes) {
        Some(Refusal::BodyTooLarge)
    } else {
        None
    };
    ChatRequest {
        route,
        origin,
        close,
        client_ip: forwarded.unwrap_or(peer),
        body_len,
        refused,
    }
}

/// A `Content-Length` value: digits only (`usize::from_str` would also
/// take a sign).
fn read_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// A chat request's body, decoded.
pub(crate) enum ChatBody {
    Poll(PollRequest),
    Broadcast(BroadcastRequest),
}

/// Decodes the body of a request to `route`: JSON of the protocol's version.
pub(crate) fn decode_chat_body(route: ChatRoute, body: &[u8]) -> Result<ChatBody, ApiError> {
    Ok(match route {
        ChatRoute::Poll => ChatBody::Poll(decode_json(body)?),
        ChatRoute::Broadcast => ChatBody::Broadcast(decode_json(body)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderName, HeaderValue};

    const PEER: [u8; 4] = [192, 0, 2, 1];

    fn config() -> Config {
        Config {
            allow_origins: vec!["https://chat.example".into()],
            client_ip_header: Some("x-forwarded-for".into()),
            max_body_bytes: 100,
            ..Config::default()
        }
    }

    /// Reads `lines` (a head's header lines) as each front would: through
    /// `httparse` as the lean path does, and through a `HeaderMap` as hyper
    /// hands it to the router. Both must read the same request.
    fn read_both(lines: &str) -> ChatRequest {
        let config = config();
        let head = format!("POST /poll HTTP/1.1\r\n{lines}\r\n");
        let mut parsed = [httparse::EMPTY_HEADER; 16];
        let mut request = httparse::Request::new(&mut parsed);
        assert!(request.parse(head.as_bytes()).unwrap().is_complete());
        let from_httparse = read_chat_request(
            ChatRoute::Poll,
            true,
            request.headers.iter().map(|line| (line.name, line.value)),
            PEER.into(),
            &config,
        );
        let mut map = HeaderMap::new();
        for line in request.headers.iter() {
            map.append(
                HeaderName::from_bytes(line.name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(line.value).unwrap(),
            );
        }
        let from_header_map = read_chat_request(
            ChatRoute::Poll,
            true,
            map.iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes())),
            PEER.into(),
            &config,
        );
        assert_eq!(from_httparse, from_header_map, "{lines:?}");
        from_httparse
    }

    /// Checks what both fronts read from `lines`: `(origin check, client
    /// address, close, body length, refusal)`.
    fn check(lines: &str, expected: (OriginCheck, &str, bool, Option<usize>, Option<Refusal>)) {
        let request = read_both(lines);
        let client_ip: IpAddr = expected.1.parse().unwrap();
        assert_eq!(
            (
                request.origin,
                request.client_ip,
                request.close,
                request.body_len,
                request.refused
            ),
            (expected.0, client_ip, expected.2, expected.3, expected.4),
            "{lines:?}"
        );
    }

    const LISTED: OriginCheck = OriginCheck::Listed(0);

    #[test]
    fn both_fronts_read_a_plain_head_alike() {
        let origin = "origin: https://chat.example\r\n";
        check(
            &format!("host: t\r\n{origin}content-length: 2\r\n"),
            (LISTED, "192.0.2.1", false, Some(2), None),
        );
        check(
            "host: t\r\ncontent-length: 2\r\n",
            (OriginCheck::NoOrigin, "192.0.2.1", false, Some(2), None),
        );
    }

    // Found by the fuzz target `request_head`: hyper closes when any
    // `Connection` line says `close`; the lean path read the last line only.
    #[test]
    fn any_connection_header_can_ask_to_close() {
        let head = "host: t\r\norigin: https://chat.example\r\ncontent-length: 2\r\n";
        let close = (LISTED, "192.0.2.1", true, Some(2), None);
        let keep = (LISTED, "192.0.2.1", false, Some(2), None);
        check(&format!("{head}connection: keep-alive\r\n"), keep);
        check(&format!("{head}connection: keep-alive, Close\r\n"), close);
        check(
            &format!("{head}connection: close\r\nconnection: keep-alive\r\n"),
            close,
        );
        check(
            &format!("{head}connection: keep-alive\r\nconnection: close\r\n"),
            close,
        );
    }

    // Found by the fuzz target `request_head`: the router reads the first
    // `Origin`, and the lean path read the last.
    #[test]
    fn a_repeated_origin_is_read_as_the_first() {
        let head = "host: t\r\ncontent-length: 2\r\n";
        let refused = Some(Refusal::Origin);
        let evil = "origin: http://evil.example\r\n";
        let good = "origin: https://chat.example\r\n";
        check(
            &format!("{head}{evil}"),
            (OriginCheck::Refused, "192.0.2.1", false, Some(2), refused),
        );
        check(
            &format!("{head}{evil}{good}"),
            (OriginCheck::Refused, "192.0.2.1", false, Some(2), refused),
        );
        check(
            &format!("{head}{good}{evil}"),
            (LISTED, "192.0.2.1", false, Some(2), None),
        );
    }

    // Found by the fuzz target `request_head`: with two lines, the router
    // read the first and the lean path the last.
    #[test]
    fn the_client_is_the_last_address_of_the_last_line() {
        let head = "host: t\r\ncontent-length: 2\r\norigin: https://chat.example\r\n";
        for (lines, client) in [
            ("", "192.0.2.1"),
            ("x-forwarded-for: 203.0.113.7\r\n", "203.0.113.7"),
            ("x-forwarded-for: 10.0.0.1, 203.0.113.7\r\n", "203.0.113.7"),
            ("x-forwarded-for: not an address\r\n", "192.0.2.1"),
            (
                "x-forwarded-for: 10.0.0.1\r\nx-forwarded-for: 203.0.113.7\r\n",
                "203.0.113.7",
            ),
            ("x-forwarded-for: junk\r\nx-forwarded-for: ::1\r\n", "::1"),
            (
                "x-forwarded-for: 203.0.113.7\r\nx-forwarded-for: junk\r\n",
                "192.0.2.1",
            ),
        ] {
            check(
                &format!("{head}{lines}"),
                (LISTED, client, false, Some(2), None),
            );
        }
    }

    #[test]
    fn hosts_lengths_and_framing_are_judged_alike() {
        let origin = "origin: https://chat.example\r\n";
        let ok = |body_len| (LISTED, "192.0.2.1", false, body_len, None);
        let refused = |body_len, refusal| (LISTED, "192.0.2.1", false, body_len, Some(refusal));
        check(
            &format!("{origin}content-length: 2\r\n"),
            refused(Some(2), Refusal::Host(HostError::Missing)),
        );
        check(
            &format!("host: a\r\nhost: b\r\n{origin}content-length: 2\r\n"),
            refused(Some(2), Refusal::Host(HostError::Repeated(2))),
        );
        check(
            &format!("host: t\r\n{origin}content-length: 101\r\n"),
            refused(Some(101), Refusal::BodyTooLarge),
        );
        check(
            &format!("host: t\r\n{origin}content-length: 100\r\n"),
            ok(Some(100)),
        );
        // Only hyper frames these bodies.
        check(&format!("host: t\r\n{origin}"), ok(None));
        check(
            &format!("host: t\r\n{origin}content-length: +2\r\n"),
            ok(None),
        );
        check(
            &format!("host: t\r\n{origin}content-length: 2\r\ncontent-length: 2\r\n"),
            ok(None),
        );
        check(
            &format!("host: t\r\n{origin}transfer-encoding: chunked\r\n"),
            ok(None),
        );
        check(
            &format!("host: t\r\n{origin}content-length: 2\r\nexpect: 100-continue\r\n"),
            ok(None),
        );
    }
}
