//! A client that stops sending (a half-close) while its poll is held
//! (issue 22, row 8): the poll ends at once, and every whole request it
//! sent before, pipelined behind the poll, is still executed and answered
//! in order before the connection closes.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::raw::{hold_a_poll, post, start_session, Raw};
use crate::support::{test_config, wait_for_polls_held, TestServer};

#[tokio::test]
async fn r22_requests_pipelined_behind_a_held_poll_are_answered_after_a_half_close() {
    let server = TestServer::start_with(talk_server::Config {
        // Far beyond the raw connection's patience: only the half-close
        // can end the poll in time.
        poll_timeout: Duration::from_secs(60),
        ..test_config()
    })
    .await;
    let mut bob = server.person("bob").await;
    let mut raw = Raw::connect(&server).await;
    let token = start_session(&mut raw, "ada").await;
    raw.send(&post("/poll", &format!(r#"{{"token":"{token}"}}"#)))
        .await;
    let cursor = raw.answer().await.json["cursor"].clone();
    let poll = post(
        "/poll",
        &format!(r#"{{"token":"{token}","channel":"lobby","cursor":{cursor}}}"#),
    );
    raw.send(&poll).await;
    wait_for_polls_held(&server, 1).await;
    // Behind the held poll: a send, and the same poll again.
    let send = format!(r#"{{"op":"send","token":"{token}","id":"p1","text":"behind a poll"}}"#);
    let mut pipelined = post("/broadcast", &send);
    pipelined.extend_from_slice(&poll);
    raw.send(&pipelined).await;
    raw.stream.shutdown().await.unwrap();

    let held = raw.answer().await;
    assert_eq!(held.status, 200, "{held:?}");
    assert_eq!(held.json["events"], serde_json::json!([]), "{held:?}");
    let sent = raw.answer().await;
    assert_eq!(sent.status, 200, "{sent:?}");
    assert_eq!(sent.json["ok"], true, "{sent:?}");
    // The poll sent after the half-close is answered at once, with the send.
    let again = raw.answer().await;
    assert_eq!(
        again.json["events"][0]["text"], "behind a poll",
        "{again:?}"
    );
    assert!(raw.closed_by_server().await, "closed after the last answer");
    // Stored and shown: another client sees it.
    assert_eq!(bob.texts(1).await, ["behind a poll"]);
}

#[tokio::test]
async fn a_request_for_the_router_behind_a_held_poll_is_answered_after_a_half_close() {
    let server = TestServer::start_with(talk_server::Config {
        poll_timeout: Duration::from_secs(60),
        ..test_config()
    })
    .await;
    let mut raw = Raw::connect(&server).await;
    hold_a_poll(&mut raw, "ada").await;
    wait_for_polls_held(&server, 1).await;
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await;
    raw.stream.shutdown().await.unwrap();
    let held = raw.answer().await;
    assert_eq!(held.json["events"], serde_json::json!([]), "{held:?}");
    let health = raw.answer().await;
    assert_eq!(health.json["status"], "ok", "{health:?}");
    assert!(raw.closed_by_server().await, "closed after the last answer");
}
