//! The lean path's reading of a request head: `httparse` over the bytes
//! read so far, and what of the head the connection needs to serve a chat
//! request itself; anything else goes to hyper.

use std::net::IpAddr;

use crate::config::Config;
use crate::http::cors::{self, OriginCheck};
use crate::http::host::check_host;
use crate::http::request::forwarded_ip;

/// A request head longer than this goes to hyper, which has its own limits.
pub(super) const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The most headers parsed here; a request with more goes to hyper.
const MAX_HEADERS: usize = 32;

/// The two chat endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChatRoute {
    Poll,
    Broadcast,
}

/// A chat request's head, with what the answer needs to know of it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ChatHead {
    pub(crate) route: ChatRoute,
    pub(crate) head_len: usize,
    pub(crate) body_len: usize,
    pub(crate) origin: OriginCheck,
    pub(crate) forwarded_ip: Option<IpAddr>,
    /// The client asked to close the connection after this answer.
    pub(crate) close: bool,
}

/// What the next request on a connection is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Head {
    Chat(ChatHead),
    /// A request for hyper and the router.
    Other,
}

/// Parses the head in `bytes`: `None` while it is incomplete.
pub(crate) fn parse_head(bytes: &[u8], config: &Config) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(bytes) {
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Ok(httparse::Status::Partial) => return None,
        Err(_) => return Some(Head::Other),
    };
    let route = match (request.method, request.path, request.version) {
        (Some("POST"), Some("/poll"), Some(1)) => ChatRoute::Poll,
        (Some("POST"), Some("/broadcast"), Some(1)) => ChatRoute::Broadcast,
        _ => return Some(Head::Other),
    };
    let mut body_len = None;
    let mut origin = None;
    let mut forwarded = None;
    let mut close = false;
    let mut n_hosts = 0;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            n_hosts += 1;
        } else if name.eq_ignore_ascii_case("content-length") {
            // Digits only (`usize::from_str` would also take a sign).
            let length = Some(header.value)
                .filter(|value| !value.is_empty() && value.iter().all(u8::is_ascii_digit))
                .and_then(|value| std::str::from_utf8(value).ok()?.parse::<usize>().ok());
            match (body_len, length) {
                (None, Some(length)) => body_len = Some(length),
                // Repeated or unreadable: let hyper judge it.
                _ => return Some(Head::Other),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Some(Head::Other);
        } else if name.eq_ignore_ascii_case("connection") {
            // Any of them, as hyper reads them.
            close |= header
                .value
                .split(|byte| *byte == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if name.eq_ignore_ascii_case("origin") {
            // The first, as the router and the CORS layer read it.
            origin = origin.or(Some(header.value));
        } else if config
            .client_ip_header
            .as_deref()
            .is_some_and(|proxy_header| name.eq_ignore_ascii_case(proxy_header))
        {
            forwarded = forwarded_ip(header.value);
        }
    }
    // The router answers a request without exactly one `Host` (the route
    // is HTTP/1.1 only).
    if check_host(true, n_hosts).is_err() {
        return Some(Head::Other);
    }
    let body_len = match body_len {
        Some(length) if length <= config.max_body_bytes => length,
        // No length (hyper reads an empty body) or too long (hyper answers 413).
        _ => return Some(Head::Other),
    };
    let origin = cors::check_origin(&config.allow_origins, origin);
    if origin == OriginCheck::Refused {
        // The router writes the refusal (see `cors::grant_refusal`).
        return Some(Head::Other);
    }
    Some(Head::Chat(ChatHead {
        route,
        head_len,
        body_len,
        origin,
        forwarded_ip: forwarded,
        close,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks what `parse_head` reads from a `POST /poll` head with these
    /// header lines: `(origin check, forwarded address, close)`; a refused
    /// origin's request goes to the router.
    fn check_head(header_lines: &str, expected: (OriginCheck, Option<IpAddr>, bool)) {
        let config = Config {
            allow_origins: vec!["https://chat.example".into()],
            client_ip_header: Some("x-forwarded-for".into()),
            ..Config::default()
        };
        let head =
            format!("POST /poll HTTP/1.1\r\nhost: t\r\n{header_lines}content-length: 2\r\n\r\n");
        let parsed = parse_head(head.as_bytes(), &config);
        if expected.0 == OriginCheck::Refused {
            assert_eq!(parsed, Some(Head::Other), "{header_lines:?}");
            return;
        }
        let Some(Head::Chat(chat)) = parsed else {
            panic!("{header_lines:?} is not a chat head");
        };
        assert_eq!(
            (chat.origin, chat.forwarded_ip, chat.close),
            expected,
            "{header_lines:?}"
        );
    }

    // Found by the fuzz target `request_head`: hyper closes when any
    // `Connection` line says `close`; this read the last line only.
    #[test]
    fn any_connection_header_can_ask_to_close() {
        let close = (OriginCheck::Listed(0), None, true);
        let keep = (OriginCheck::Listed(0), None, false);
        let origin = "origin: https://chat.example\r\n";
        check_head(&format!("{origin}connection: keep-alive\r\n"), keep);
        check_head(&format!("{origin}connection: keep-alive, Close\r\n"), close);
        check_head(
            &format!("{origin}connection: close\r\nconnection: keep-alive\r\n"),
            close,
        );
        check_head(
            &format!("{origin}connection: keep-alive\r\nconnection: close\r\n"),
            close,
        );
    }

    // Found by the fuzz target `request_head`: the router reads the first
    // `Origin`, and this read the last.
    #[test]
    fn a_repeated_origin_is_read_as_the_router_reads_it() {
        let refused = (OriginCheck::Refused, None, false);
        let listed = (OriginCheck::Listed(0), None, false);
        check_head("origin: https://chat.example\r\n", listed);
        check_head("origin: http://evil.example\r\n", refused);
        check_head(
            "origin: http://evil.example\r\norigin: https://chat.example\r\n",
            refused,
        );
        check_head(
            "origin: https://chat.example\r\norigin: http://evil.example\r\n",
            listed,
        );
    }
}
