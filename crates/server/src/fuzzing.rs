//! The properties the fuzz targets in `fuzz/` check: each function takes
//! arbitrary bytes and panics when the code it exercises breaks a rule.
//!
//! The module is `pub` only because the fuzz crate is a separate crate
//! outside the workspace, and most of what it exercises (the command
//! parser, the body decoder, the connection's head parser) is private to
//! this one. It is hidden from the docs and is no part of the server's API:
//! it hands out no internal type, only functions from bytes to nothing.
//! `tests/it/fuzz_seeds.rs` runs each over the committed seed corpus, so
//! the properties stay compiled and checked without a fuzzer.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use serde::Serialize;
use talk_protocol::{BroadcastRequest, ChannelName, Color, Cursor, Name, PollRequest, SendId};

use crate::command::Command;
use crate::config::Config;
use crate::http::chat_request::{read_chat_request, ChatRequest};
use crate::http::connection::{parse_head, Head};
use crate::http::cors::check_origin;
use crate::http::host::check_host;
use crate::http::request::{decode_json, decode_versioned_json, forwarded_ip};

/// Target `command`: `Command::parse` never panics, its errors can be
/// shown, and a parsed command typed back as text parses to itself.
pub fn command(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let command = match Command::parse(&text) {
        Ok(command) => command,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    let typed = typed(&command);
    match Command::parse(&typed) {
        Ok(again) => assert_eq!(again, command, "{text:?} was typed back as {typed:?}"),
        Err(error) => panic!("{text:?} was typed back as {typed:?}, which fails: {error}"),
    }
}

/// How a person would type `command`.
fn typed(command: &Command) -> String {
    match command {
        Command::Join(channel) => format!("/join {}", channel.as_str()),
        Command::Exit => "/exit".into(),
        Command::List => "/list".into(),
        Command::Who => "/who".into(),
        Command::Nick(name) => format!("/nick {}", name.as_str()),
        Command::Color(color) => format!("/color {color}"),
        Command::Me(action) => format!("/me {action}"),
        Command::Help => "/help".into(),
    }
}

/// Target `request_body`: the server's one-pass decoder of chat bodies
/// agrees with the plain one (envelope, then request) on every body, for
/// both requests, error messages included; and a decoded request encodes
/// to a body that decodes to it again.
pub fn request_body(data: &[u8]) {
    decoders_agree::<PollRequest>(data);
    decoders_agree::<BroadcastRequest>(data);
}

fn decoders_agree<T>(data: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let one_pass = decode_json::<T>(data).map_err(|error| error.to_string());
    let plain = decode_versioned_json::<T>(data).map_err(|error| error.to_string());
    assert_eq!(
        one_pass,
        plain,
        "the decoders disagree on {:?}",
        String::from_utf8_lossy(data)
    );
    if let Ok(request) = one_pass {
        let encoded = talk_protocol::to_json(&request);
        let again = decode_json::<T>(&encoded).map_err(|error| error.to_string());
        assert_eq!(
            again,
            Ok(request),
            "re-encoded as {:?}",
            String::from_utf8_lossy(&encoded)
        );
    }
}

/// Target `values`: every checked value of the protocol that parses shows
/// as text that parses to the same value, and a cursor parses only from
/// the text it shows as.
pub fn values(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(cursor) = text.parse::<Cursor>() {
        assert_eq!(cursor.to_string(), text, "a cursor parsed from other text");
        let json = talk_protocol::to_json(&cursor);
        assert_eq!(talk_protocol::from_json::<Cursor>(&json).ok(), Some(cursor));
    }
    // The same bytes read as a cursor's parts: one printed parses back.
    if let Some((seq, epoch)) = data.split_first_chunk::<8>() {
        let cursor = Cursor {
            epoch: String::from_utf8_lossy(epoch).into_owned(),
            seq: u64::from_le_bytes(*seq),
        };
        let epoch_is_valid = !cursor.epoch.is_empty()
            && cursor.epoch.len() <= 32
            && cursor
                .epoch
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric());
        let parsed = cursor.to_string().parse::<Cursor>();
        assert_eq!(parsed.is_ok(), epoch_is_valid, "{cursor:?}");
        if let Ok(parsed) = parsed {
            assert_eq!(parsed, cursor);
        }
    }
    if let Ok(channel) = ChannelName::parse(&text) {
        assert_eq!(ChannelName::parse(channel.as_str()).as_ref(), Ok(&channel));
    }
    if let Ok(name) = Name::parse(&text) {
        assert_eq!(Name::parse(name.as_str()).as_ref(), Ok(&name));
    }
    match Color::parse(&text) {
        Ok(color) => assert_eq!(Color::parse(&color.to_string()), Ok(color)),
        Err(error) => {
            let _ = error.to_string();
        }
    }
    if let Ok(id) = SendId::parse(&text) {
        assert_eq!(SendId::parse(id.as_str()).as_ref(), Ok(&id));
    }
}

/// The settings the head target parses with: an allow-list and a proxy
/// header, so that both are exercised.
fn head_config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| Config {
        allow_origins: vec![
            "https://chat.example".into(),
            "http://localhost:8000".into(),
        ],
        client_ip_header: Some("x-forwarded-for".into()),
        ..Config::default()
    })
}

/// Target `request_head`: the lean path's head reader never panics; a
/// chat head it accepts is decided by the head alone (not by what follows
/// it, nor seen early in a part of it); and the `ChatRequest` it reads is
/// the one the router's front reads from the same header lines as hyper
/// hands them over (a `HeaderMap`, which groups repeated names), which in
/// turn says what the rules say when read straight off that map: one
/// `Host`, the first `Origin` checked against the allow-list, the client
/// from the last line of the proxy's header, and a close when any
/// `Connection` header asks. Both fronts call the one reader of chat
/// heads, so this guards what each front hands it, and the reader itself.
pub fn request_head(data: &[u8]) {
    let config = head_config();
    let peer = SocketAddr::from(([192, 0, 2, 1], 4000));
    let Some(Head::Chat(head)) = parse_head(data, peer.ip(), config) else {
        return;
    };
    assert!(head.head_len <= data.len(), "{head:?}");
    assert!(head.body_len <= config.max_body_bytes, "{head:?}");
    let head_only = &data[..head.head_len];
    let again = parse_head(head_only, peer.ip(), config);
    assert!(
        matches!(&again, Some(Head::Chat(again)) if *again == head),
        "the bytes after the head changed it: {again:?}, not {head:?}"
    );
    let step = (head.head_len / 64).max(1);
    for end in (0..head.head_len).step_by(step) {
        assert_eq!(
            parse_head(&data[..end], peer.ip(), config),
            None,
            "a part of the head ({end} of {} bytes) was taken for a whole one",
            head.head_len
        );
    }

    let mut lines = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut lines);
    assert!(request
        .parse(head_only)
        .is_ok_and(|status| status.is_complete()));
    let mut headers = HeaderMap::new();
    for line in request.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line.name.as_bytes()),
            HeaderValue::from_bytes(line.value),
        ) else {
            // hyper refuses such a head; there is nothing to compare with.
            return;
        };
        headers.append(name, value);
    }
    let routed = read_chat_request(
        head.route,
        true,
        headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
        peer.ip(),
        config,
    );
    let lean = ChatRequest {
        route: head.route,
        origin: head.origin,
        close: head.close,
        client_ip: head.client_ip,
        body_len: Some(head.body_len),
        refused: None,
    };
    assert_eq!(lean, routed, "the router's front reads another request");

    // A chat head is HTTP/1.1.
    let hosts = headers.get_all(header::HOST).iter().count();
    assert_eq!(check_host(true, hosts), Ok(()), "Host headers");
    let origin = headers.get(header::ORIGIN).map(HeaderValue::as_bytes);
    assert_eq!(
        routed.origin,
        check_origin(&config.allow_origins, origin),
        "origin"
    );
    let proxy_header = config.client_ip_header.as_deref().unwrap_or_default();
    let client_ip = headers
        .get_all(proxy_header)
        .iter()
        .next_back()
        .and_then(|value| forwarded_ip(value.as_bytes()))
        .unwrap_or(peer.ip());
    assert_eq!(routed.client_ip, client_ip, "client address");
    let asks_to_close = headers.get_all(header::CONNECTION).iter().any(|value| {
        value
            .as_bytes()
            .split(|byte| *byte == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
    });
    assert_eq!(routed.close, asks_to_close, "connection: close");
}
