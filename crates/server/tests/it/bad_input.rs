//! Every bad input gets a clear JSON error with the right status, and the
//! server goes on working with nothing lost. One test per kind of input.

use std::time::Duration;

use talk_client::protocol::PollRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{code, raw_post, test_config, wait_for_polls_held, TestServer};

/// Asserts the error, then that the server still chats.
async fn check_error(
    server: &TestServer,
    path: &str,
    body: impl Into<reqwest::Body>,
    status: u16,
    expected: &str,
) {
    let (got_status, _, json) = raw_post(&server.url(path), body).await;
    assert_eq!((got_status, code(&json)), (status, expected), "{json}");
    assert!(json["error"]["message"]
        .as_str()
        .is_some_and(|message| !message.is_empty()));
    still_works(server).await;
}

async fn still_works(server: &TestServer) {
    let mut someone = server.person(&format!("ok{}", fastrand_name())).await;
    someone.say("still here").await;
    assert_eq!(someone.texts(1).await, ["still here"]);
}

fn fastrand_name() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 100_000
}

fn send(token: &str, text: &str) -> String {
    serde_json::json!({"op": "send", "token": token, "id": format!("i{}", fastrand_name()), "text": text}).to_string()
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let server = TestServer::start().await;
    let ada = server.person("ada").await;
    check_error(
        &server,
        "/broadcast",
        send(ada.token(), &"x".repeat(20_000)),
        413,
        "body_too_large",
    )
    .await;
    // Also without a Content-Length (chunked), the limit holds.
    let chunks = futures::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    check_error(
        &server,
        "/poll",
        reqwest::Body::wrap_stream(chunks),
        413,
        "body_too_large",
    )
    .await;
}

#[tokio::test]
async fn a_malformed_body_is_400() {
    let server = TestServer::start().await;
    check_error(&server, "/broadcast", "not json", 400, "bad_request").await;
    check_error(&server, "/poll", "[1,2]", 400, "bad_request").await;
    check_error(
        &server,
        "/broadcast",
        r#"{"op":"dance"}"#,
        400,
        "bad_request",
    )
    .await;
    check_error(
        &server,
        "/broadcast",
        r#"{"op":"send","token":"t"}"#,
        400,
        "bad_request",
    )
    .await;
    let ada = server.person("ada").await;
    let bad_cursor =
        serde_json::json!({"token": ada.token(), "channel": "lobby", "cursor": "nope"});
    check_error(&server, "/poll", bad_cursor.to_string(), 400, "bad_request").await;
    let cursor_without_channel = serde_json::json!({"token": ada.token(), "cursor": "abc:1"});
    check_error(
        &server,
        "/poll",
        cursor_without_channel.to_string(),
        400,
        "bad_request",
    )
    .await;
    check_error(
        &server,
        "/poll",
        r#"{"token":"t","v":2}"#,
        400,
        "unsupported_version",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_session_is_401() {
    let server = TestServer::start().await;
    let token = "0".repeat(32);
    check_error(
        &server,
        "/poll",
        format!(r#"{{"token":"{token}"}}"#),
        401,
        "unknown_session",
    )
    .await;
    check_error(
        &server,
        "/broadcast",
        send(&token, "hi"),
        401,
        "unknown_session",
    )
    .await;
    check_error(
        &server,
        "/broadcast",
        format!(r#"{{"op":"leave","token":"{token}"}}"#),
        401,
        "unknown_session",
    )
    .await;
}

#[tokio::test]
async fn bad_messages_are_refused() {
    let server = TestServer::start_with(talk_server::Config {
        max_message_chars: 10,
        ..test_config()
    })
    .await;
    let ada = server.person("ada").await;
    check_error(
        &server,
        "/broadcast",
        send(ada.token(), "01234567890"),
        400,
        "message_too_long",
    )
    .await;
    // Ten characters of four bytes each are within the limit.
    let (status, _, _) = raw_post(
        &server.url("/broadcast"),
        send(ada.token(), &"😀".repeat(10)),
    )
    .await;
    assert_eq!(status, 200);
    check_error(
        &server,
        "/broadcast",
        send(ada.token(), "   "),
        400,
        "empty_message",
    )
    .await;
    check_error(
        &server,
        "/broadcast",
        send(ada.token(), "/me "),
        400,
        "empty_message",
    )
    .await;
    check_error(
        &server,
        "/broadcast",
        send(ada.token(), "/shout hi"),
        400,
        "unknown_command",
    )
    .await;
    let bad_id =
        serde_json::json!({"op": "send", "token": ada.token(), "id": "has space", "text": "hi"});
    check_error(&server, "/broadcast", bad_id.to_string(), 400, "invalid_id").await;
}

#[tokio::test]
async fn invalid_names_channels_and_colors_are_refused() {
    let server = TestServer::start().await;
    let ada = server.person("ada").await;
    check_error(
        &server,
        "/broadcast",
        send(ada.token(), "/nick <b>"),
        400,
        "invalid_name",
    )
    .await;
    check_error(
        &server,
        "/broadcast",
        send(ada.token(), "/join no spaces"),
        400,
        "invalid_channel",
    )
    .await;
    check_error(
        &server,
        "/broadcast",
        send(ada.token(), "/color 123"),
        400,
        "invalid_color",
    )
    .await;
    check_error(
        &server,
        "/broadcast",
        send(ada.token(), "/color 000011"),
        400,
        "invalid_color",
    )
    .await;
    check_error(
        &server,
        "/broadcast",
        r#"{"op":"start","name":"a b"}"#,
        400,
        "invalid_name",
    )
    .await;
    check_error(
        &server,
        "/broadcast",
        r##"{"op":"start","channel":"#x"}"##,
        400,
        "invalid_channel",
    )
    .await;
    check_error(
        &server,
        "/broadcast",
        r#"{"op":"start","color":"black"}"#,
        400,
        "invalid_color",
    )
    .await;
    let poll = serde_json::json!({"token": ada.token(), "channel": "No Way", "cursor": "abc:1"});
    check_error(&server, "/poll", poll.to_string(), 400, "invalid_channel").await;
}

#[tokio::test]
async fn a_taken_name_is_409() {
    let server = TestServer::start().await;
    let _ada = server.person("ada").await;
    let bob = server.person("bob").await;
    check_error(
        &server,
        "/broadcast",
        send(bob.token(), "/nick ADA"),
        409,
        "name_taken",
    )
    .await;
}

#[tokio::test]
async fn a_flood_is_429_with_retry_after() {
    let server = TestServer::start_with(talk_server::Config {
        send_rate: Some(talk_server::Rate {
            per_period: 1,
            period: Duration::from_secs(60),
            burst: 3,
        }),
        ..test_config()
    })
    .await;
    let mut ada = server.person("ada").await;
    for index in 0..3 {
        ada.say(&format!("m{index}")).await;
    }
    let (status, headers, json) =
        raw_post(&server.url("/broadcast"), send(ada.token(), "one too many")).await;
    assert_eq!((status, code(&json)), (429, "rate_limited"));
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert!(json["error"]["retry_after_ms"].as_u64().unwrap() > 0);
    // Nothing was lost: the three sent before the flood all arrived.
    assert_eq!(ada.texts(3).await, ["m0", "m1", "m2"]);
}

#[tokio::test]
async fn too_many_sessions_from_one_address_is_429() {
    let server = TestServer::start_with(talk_server::Config {
        session_start_rate: Some(talk_server::Rate {
            per_period: 2,
            period: Duration::from_secs(60),
            burst: 2,
        }),
        ..test_config()
    })
    .await;
    let mut ada = server.person("ada").await;
    let _bob = server.person("bob").await;
    let (status, headers, json) = raw_post(&server.url("/broadcast"), r#"{"op":"start"}"#).await;
    assert_eq!((status, code(&json)), (429, "too_many_sessions"));
    assert!(headers.contains_key("retry-after"));
    // Existing sessions go on.
    ada.say("still chatting").await;
    assert_eq!(ada.texts(1).await, ["still chatting"]);
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let server = TestServer::start().await;
    let response = reqwest::get(server.url("/nothing/here")).await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(code(&json), "not_found");
    for path in ["/poll", "/broadcast"] {
        let response = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(response.status().as_u16(), 405, "{path}");
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(code(&json), "method_not_allowed");
    }
    check_error(&server, "/talk.js", "x", 405, "method_not_allowed").await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let server = TestServer::start_with(talk_server::Config {
        request_timeout: Duration::from_millis(300),
        ..test_config()
    })
    .await;
    let mut slow = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    slow.write_all(b"POST /poll HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    // The server closes the connection; reading ends instead of hanging.
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "the slow client was never cut off");
    still_works(&server).await;
}

#[tokio::test]
async fn a_poll_of_an_ended_session_is_released_with_401() {
    let server = TestServer::start().await;
    let ada = server.person("ada").await;
    let token = ada.token().to_owned();
    let held = tokio::spawn(async move { ada.poll_request(10_000).await });
    wait_for_polls_held(&server, 1).await;
    server.api.leave(&token).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.unwrap_err().code(), Some("unknown_session"));
    let request = PollRequest {
        token,
        channel: None,
        cursor: None,
        wait_ms: None,
    };
    assert_eq!(
        server.api.poll(&request).await.unwrap_err().code(),
        Some("unknown_session")
    );
}
