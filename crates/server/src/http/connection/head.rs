//! The lean path's reading of a request head: `httparse` over the bytes
//! read so far, the request line that says whether it is a chat request
//! this path serves, and its header lines handed to the one reader of
//! chat heads (`chat_request`). Anything else goes to hyper.

use std::net::IpAddr;

use crate::config::Config;
use crate::http::chat_request::{read_chat_request, ChatRequest, ChatRoute};
use crate::http::cors::OriginCheck;

/// A request head longer than this goes to hyper, which has its own limits.
pub(super) const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The most headers parsed here; a request with more goes to hyper.
const MAX_HEADERS: usize = 32;

/// A chat request the lean path serves, whole once `head_len + body_len`
/// bytes have arrived: what of its `ChatRequest` the answer needs, which
/// breaks no rule. Kept small, as the connection's task keeps it while a
/// poll is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeanHead {
    pub(crate) head_len: usize,
    pub(crate) body_len: usize,
    pub(crate) route: ChatRoute,
    pub(crate) origin: OriginCheck,
    pub(crate) close: bool,
    pub(crate) client_ip: IpAddr,
}

/// What the next request on a connection is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Head {
    Chat(LeanHead),
    /// A request for hyper and the router: not a chat request, not
    /// HTTP/1.1, a body that only hyper frames, or a head that breaks a
    /// rule (the router writes the refusal).
    Other,
}

/// Parses the head in `bytes`: `None` while it is incomplete. `peer`: the
/// connection's other end, the client unless a trusted proxy names one.
pub(crate) fn parse_head(bytes: &[u8], peer: IpAddr, config: &Config) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Ok(httparse::Status::Partial) => return None,
        Err(_) => return Some(Head::Other),
    };
    let route = match (parsed.method, parsed.path, parsed.version) {
        (Some("POST"), Some("/poll"), Some(1)) => ChatRoute::Poll,
        (Some("POST"), Some("/broadcast"), Some(1)) => ChatRoute::Broadcast,
        _ => return Some(Head::Other),
    };
    let lines = parsed.headers.iter().map(|line| (line.name, line.value));
    let ChatRequest {
        route,
        origin,
        close,
        client_ip,
        body_len,
        refused,
    } = read_chat_request(route, true, lines, peer, config);
    match (refused, body_len) {
        (None, Some(body_len)) => Some(Head::Chat(LeanHead {
            head_len,
            body_len,
            route,
            origin,
            close,
            client_ip,
        })),
        _ => Some(Head::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `parse_head` makes of a `POST /poll` head with these header
    /// lines after its `Host`: the chat request's origin check, or `None`
    /// when it goes to hyper.
    fn check(header_lines: &str, expected: Option<OriginCheck>) {
        let config = Config {
            allow_origins: vec!["https://chat.example".into()],
            ..Config::default()
        };
        let head = format!("POST /poll HTTP/1.1\r\nhost: t\r\n{header_lines}\r\n");
        let parsed = parse_head(head.as_bytes(), [192, 0, 2, 1].into(), &config);
        let origin = match parsed {
            Some(Head::Chat(chat)) => Some(chat.origin),
            Some(Head::Other) => None,
            None => panic!("{header_lines:?} is not a whole head"),
        };
        assert_eq!(origin, expected, "{header_lines:?}");
    }

    #[test]
    fn what_the_lean_path_cannot_serve_goes_to_hyper() {
        let listed = Some(OriginCheck::Listed(0));
        let origin = "origin: https://chat.example\r\n";
        check(&format!("{origin}content-length: 2\r\n"), listed);
        check("content-length: 2\r\n", Some(OriginCheck::NoOrigin));
        // The router writes a refusal.
        check("origin: http://evil.example\r\ncontent-length: 2\r\n", None);
        check(&format!("{origin}content-length: 99999999\r\n"), None);
        check(
            &format!("{origin}host: again\r\ncontent-length: 2\r\n"),
            None,
        );
        // Only hyper frames these bodies.
        check(origin, None);
        check(&format!("{origin}transfer-encoding: chunked\r\n"), None);
        check(
            &format!("{origin}content-length: 2\r\nupgrade: x\r\n"),
            None,
        );
        check(
            &format!("{origin}content-length: 2\r\ncontent-length: 2\r\n"),
            None,
        );
    }
}
