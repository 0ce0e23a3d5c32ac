//! The `Host` header (issue 22, row 8): as RFC 9112 (section 3.2) says,
//! an HTTP/1.1 request without one, or any request with two, is answered
//! 400 with the protocol's JSON error, on either front; HTTP/1.0 may go
//! without.

use crate::raw::{connect, Front, Raw, FRONTS};
use crate::support::TestServer;

/// A session start with these header lines (and its length).
fn start(version: &str, header_lines: &str) -> Vec<u8> {
    let body = r#"{"op":"start"}"#;
    format!(
        "POST /broadcast {version}\r\n{header_lines}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The status and error code of the answer to `request` on a new
/// connection read by `front`.
async fn answer(server: &TestServer, front: Front, request: &[u8]) -> (u16, String) {
    let mut raw = connect(server, front).await;
    raw.send(request).await;
    let answer = raw.answer().await;
    let code = answer.json["error"]["code"].as_str().unwrap_or("none");
    (answer.status, code.to_owned())
}

#[tokio::test]
async fn r22_an_http_1_1_request_without_exactly_one_host_is_400() {
    let server = TestServer::start().await;
    for front in FRONTS {
        for header_lines in ["", "Host: a\r\nHost: b\r\n", "host: a\r\nHOST: a\r\n"] {
            let request = start("HTTP/1.1", header_lines);
            let got = answer(&server, front, &request).await;
            assert_eq!(
                got,
                (400, "bad_request".into()),
                "{front:?} {header_lines:?}"
            );
        }
        let got = answer(&server, front, &start("HTTP/1.1", "Host: a\r\n")).await;
        assert_eq!(got, (200, "none".into()), "{front:?} with one Host");
    }
    // Not only the chat: the router's other paths too.
    let mut raw = Raw::connect(&server).await;
    raw.send(b"GET /healthz HTTP/1.1\r\n\r\n").await;
    let health = raw.answer().await;
    assert_eq!(health.status, 400, "{health:?}");
    let message = health.json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Host"), "{message}");
}

#[tokio::test]
async fn http_1_0_may_go_without_host_but_not_with_two() {
    let server = TestServer::start().await;
    let got = answer(&server, Front::Lean, &start("HTTP/1.0", "")).await;
    assert_eq!(got, (200, "none".into()));
    let two = start("HTTP/1.0", "Host: a\r\nHost: b\r\n");
    let got = answer(&server, Front::Lean, &two).await;
    assert_eq!(got, (400, "bad_request".into()));
}
