//! The connection layer over raw sockets: chat requests and everything else
//! on one keep-alive connection, pipelining, requests in pieces, clients
//! that hang up during a held poll, `Connection: close`, shutdown, and held
//! polls answered by the publish itself (in full, in part, or not at all).

use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::raw::{find, hold_a_poll, post, start_session, Raw};
use crate::support::{polls_held, test_config, wait_for_polls_held, HeldClock, TestServer};

#[tokio::test]
async fn one_connection_serves_chat_requests_and_then_anything_else() {
    let server = TestServer::start().await;
    let mut raw = Raw::connect(&server).await;
    let token = start_session(&mut raw, "keepalive").await;
    raw.send(&post("/poll", &format!(r#"{{"token":"{token}"}}"#)))
        .await;
    let first = raw.answer().await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json["reset"], "start");
    assert!(first.head.contains("access-control-allow-origin: *"));
    assert!(first.head.contains("cache-control: no-store"));
    assert!(first.head.to_ascii_lowercase().contains("\r\ndate: "));
    // A request for the router on the same connection, then chat again.
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let health = raw.answer().await;
    assert_eq!((health.status, &health.json["status"]), (200, &"ok".into()));
    let send = format!(r#"{{"op":"send","token":"{token}","id":"k1","text":"after healthz"}}"#);
    raw.send(&post("/broadcast", &send)).await;
    let sent = raw.answer().await;
    assert_eq!(sent.status, 200, "{sent:?}");
    let cursor = &first.json["cursor"];
    let next = format!(r#"{{"token":"{token}","channel":"lobby","cursor":{cursor}}}"#);
    raw.send(&post("/poll", &next)).await;
    let answer = raw.answer().await;
    assert_eq!(answer.json["events"][0]["text"], "after healthz");
}

#[tokio::test]
async fn pipelined_and_fragmented_requests_are_answered_in_order() {
    let server = TestServer::start().await;
    let mut raw = Raw::connect(&server).await;
    let mut both = post("/broadcast", r#"{"op":"start","name":"piped"}"#);
    both.extend(post("/poll", r#"{"token":"nobody"}"#));
    raw.send(&both).await;
    let start = raw.answer().await;
    assert_eq!(start.json["name"], "piped");
    let refused = raw.answer().await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json["error"]["code"], "unknown_session");
    // A request in pieces: the head split mid-line, the body separate.
    let request = post("/broadcast", r#"{"op":"start","name":"pieces"}"#);
    let head_end = find(&request, b"\r\n\r\n").unwrap() + 4;
    for piece in [
        &request[..7],
        &request[7..30],
        &request[30..head_end],
        &request[head_end..],
    ] {
        raw.send(piece).await;
        // Time must pass here, not a condition come true: apart in time,
        // the pieces reach the server as separate reads.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pieces = raw.answer().await;
    assert_eq!(pieces.json["name"], "pieces");
}

#[tokio::test]
async fn requests_it_does_not_serve_itself_get_the_routers_answer() {
    let server = TestServer::start().await;
    // A chunked body.
    let mut raw = Raw::connect(&server).await;
    let body = r#"{"op":"start","name":"chunky"}"#;
    let chunked = format!(
        "POST /broadcast HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    raw.send(chunked.as_bytes()).await;
    let answer = raw.answer().await;
    assert_eq!(
        (answer.status, &answer.json["name"]),
        (200, &"chunky".into())
    );
    // A head that is not HTTP, and a length with a sign, which HTTP forbids.
    for request in [
        &b"POST /poll HTTP/1.1\r\nBad Header\r\n\r\n"[..],
        b"POST /poll HTTP/1.1\r\nHost: t\r\nContent-Length: +2\r\n\r\n{}",
    ] {
        let mut raw = Raw::connect(&server).await;
        raw.send(request).await;
        let mut rest = Vec::new();
        let read = raw.stream.read_to_end(&mut rest);
        let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
        let text = String::from_utf8_lossy(&rest);
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    }
    // A body over the limit.
    let mut raw = Raw::connect(&server).await;
    let big = format!(r#"{{"token":"{}"}}"#, "x".repeat(20_000));
    raw.send(&post("/poll", &big)).await;
    let answer = raw.answer().await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.json["error"]["code"], "body_too_large");
}

#[tokio::test]
async fn a_client_that_hangs_up_frees_its_held_poll() {
    let server = TestServer::start_with(talk_server::Config {
        poll_timeout: Duration::from_secs(60),
        ..test_config()
    })
    .await;
    let mut raw = Raw::connect(&server).await;
    hold_a_poll(&mut raw, "leaver").await;
    wait_for_polls_held(&server, 1).await;
    drop(raw);
    // The poll timeout is a minute away: only the hang-up can free it.
    wait_for_polls_held(&server, 0).await;
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let server = TestServer::start().await;
    let mut raw = Raw::connect(&server).await;
    let body = r#"{"op":"start","name":"closer"}"#;
    let request = format!(
        "POST /broadcast HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw.send(request.as_bytes()).await;
    let answer = raw.answer().await;
    assert_eq!(answer.json["name"], "closer");
    assert!(answer.head.contains("connection: close"), "{}", answer.head);
    assert!(raw.closed_by_server().await);
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_answers_held_polls() {
    let server = TestServer::start_with(talk_server::Config {
        poll_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(60),
        ..test_config()
    })
    .await;
    let mut idle = Raw::connect(&server).await;
    let _ = start_session(&mut idle, "idle").await;
    let mut polling = Raw::connect(&server).await;
    hold_a_poll(&mut polling, "held").await;
    wait_for_polls_held(&server, 1).await;
    // Both connections would keep the server for its 60 s grace if they
    // were not closed.
    let stopped = tokio::spawn(server.stop());
    let released = polling.answer().await;
    assert_eq!(released.json["reconnect"], true, "{released:?}");
    assert!(polling.closed_by_server().await);
    assert!(idle.closed_by_server().await);
    tokio::time::timeout(Duration::from_secs(20), stopped)
        .await
        .expect("the server stopped before its grace period")
        .unwrap();
}

#[tokio::test]
async fn the_head_timeout_cuts_off_only_a_silent_head() {
    let clock = HeldClock::hold();
    let server = TestServer::start_with(talk_server::Config {
        request_timeout: Duration::from_millis(300),
        ..test_config()
    })
    .await;
    let mut raw = Raw::connect(&server).await;
    let token = start_session(&mut raw, "ada").await;
    raw.send(&post("/poll", &format!(r#"{{"token":"{token}"}}"#)))
        .await;
    let cursor = raw.answer().await.json["cursor"].clone();
    // Polls held 100 ms and 500 ms, over two seconds in all: the
    // connection's one head timer fires while polls are held and between
    // heads, and must not cut off a client that sends its heads at once.
    for wait_ms in [100, 100, 500, 100, 100, 500, 100, 100, 500] {
        let poll = format!(
            r#"{{"token":"{token}","channel":"lobby","cursor":{cursor},"wait_ms":{wait_ms}}}"#
        );
        raw.send(&post("/poll", &poll)).await;
        wait_for_polls_held(&server, 1).await;
        // Just past the poll's deadline (timers count whole milliseconds).
        clock.advance(Duration::from_millis(wait_ms + 10)).await;
        wait_for_polls_held(&server, 0).await;
        assert_eq!(raw.answer().await.status, 200);
    }
    raw.send(b"POST /poll HTTP/1.1\r\nHost: t\r\n").await;
    let closed = raw.closed_by_server_as_time_passes(&clock, Duration::from_millis(50));
    assert!(closed.await, "a head never finished");
}

#[tokio::test]
async fn a_poll_ends_at_its_own_deadline_on_a_connection_with_a_later_one() {
    // The connection's one timer is set 60 s ahead for the head; a poll
    // held 200 ms must move it, not wait for it.
    let clock = HeldClock::hold();
    let server = TestServer::start_with(talk_server::Config {
        request_timeout: Duration::from_secs(60),
        ..test_config()
    })
    .await;
    let mut raw = Raw::connect(&server).await;
    let token = start_session(&mut raw, "ada").await;
    raw.send(&post("/poll", &format!(r#"{{"token":"{token}"}}"#)))
        .await;
    let cursor = raw.answer().await.json["cursor"].clone();
    for wait_ms in [200, 1_500, 200] {
        let poll = format!(
            r#"{{"token":"{token}","channel":"lobby","cursor":{cursor},"wait_ms":{wait_ms}}}"#
        );
        raw.send(&post("/poll", &poll)).await;
        wait_for_polls_held(&server, 1).await;
        // A wait of a second or more may end up to one 250 ms step of the
        // connections' grid early; none ends before 80% of its time.
        let wait = Duration::from_millis(wait_ms);
        clock.advance(wait.mul_f64(0.8)).await;
        assert_eq!(
            polls_held(&server).await,
            1,
            "a {wait_ms} ms poll ended early"
        );
        // Just past its deadline, far before the head's 60 s.
        clock
            .advance(wait.mul_f64(0.2) + Duration::from_millis(10))
            .await;
        wait_for_polls_held(&server, 0).await;
        let answer = raw.answer().await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json["events"], serde_json::json!([]), "{answer:?}");
    }
}

#[tokio::test]
async fn one_connection_polls_for_several_sessions_and_ended_ones_are_refused() {
    let server = TestServer::start().await;
    // A proxy's connection carries many people's polls, one after another.
    let mut raw = Raw::connect(&server).await;
    let ada = start_session(&mut raw, "ada").await;
    let bob = start_session(&mut raw, "bob").await;
    let poll = |token: &str| post("/poll", &format!(r#"{{"token":"{token}"}}"#));
    for token in [&ada, &bob, &ada] {
        raw.send(&poll(token)).await;
        assert_eq!(raw.answer().await.status, 200);
    }
    raw.send(&post(
        "/broadcast",
        &format!(r#"{{"op":"leave","token":"{ada}"}}"#),
    ))
    .await;
    assert_eq!(raw.answer().await.status, 200);
    // The connection's last poll was ada's: her ended session is refused,
    // and bob's, next on the same connection, is still his.
    raw.send(&poll(&ada)).await;
    let refused = raw.answer().await;
    assert_eq!(refused.status, 401, "{refused:?}");
    assert_eq!(
        refused.json["error"]["code"], "unknown_session",
        "{refused:?}"
    );
    raw.send(&poll(&bob)).await;
    assert_eq!(raw.answer().await.status, 200);
}

#[tokio::test]
async fn a_publish_answers_a_held_poll_and_the_connection_serves_on() {
    let server = TestServer::start().await;
    let mut bob = server.person("bob").await;
    let mut raw = Raw::connect(&server).await;
    hold_a_poll(&mut raw, "ada").await;
    wait_for_polls_held(&server, 1).await;
    bob.say("hello ada").await;
    let answer = raw.answer().await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let texts: Vec<_> = answer.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| event["text"].as_str())
        .collect();
    assert_eq!(texts, ["hello ada"]);
    for line in [
        "content-type: application/json",
        "cache-control: no-store",
        "x-accel-buffering: no",
        "access-control-allow-origin: *",
    ] {
        assert!(answer.head.contains(line), "{line:?} in {}", answer.head);
    }
    assert!(
        !answer.head.contains("connection: close"),
        "{}",
        answer.head
    );
    // The poll counts as let go from the answer on, once and only once.
    wait_for_polls_held(&server, 0).await;
    // The same connection, given to the router, and the gauge stays right.
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let health = raw.answer().await;
    assert_eq!((health.status, &health.json["status"]), (200, &"ok".into()));
    assert_eq!(polls_held(&server).await, 0);
}

#[tokio::test]
async fn a_held_poll_that_asked_to_close_gets_its_answer_then_the_close() {
    let server = TestServer::start().await;
    let mut bob = server.person("bob").await;
    let mut raw = Raw::connect(&server).await;
    let token = start_session(&mut raw, "closer").await;
    raw.send(&post("/poll", &format!(r#"{{"token":"{token}"}}"#)))
        .await;
    let cursor = raw.answer().await.json["cursor"].clone();
    let body = format!(r#"{{"token":"{token}","channel":"lobby","cursor":{cursor}}}"#);
    let request = format!(
        "POST /poll HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw.send(request.as_bytes()).await;
    wait_for_polls_held(&server, 1).await;
    bob.say("goodbye").await;
    let answer = raw.answer().await;
    assert_eq!(answer.json["events"][0]["text"], "goodbye", "{answer:?}");
    assert!(answer.head.contains("connection: close"), "{}", answer.head);
    assert!(raw.closed_by_server().await);
}

#[tokio::test]
async fn an_answer_bigger_than_the_socket_takes_is_finished_by_its_poll() {
    // Loopback sockets buffer a few MiB at most; this answer is bigger.
    const CHARS: usize = 6_000_000;
    let server = TestServer::start_with(talk_server::Config {
        max_message_chars: CHARS,
        max_body_bytes: 4 * CHARS + 1024,
        // A debug build on a busy machine takes seconds over a message this
        // big: the poll must still be held when it is published.
        poll_timeout: Duration::from_secs(60),
        ..test_config()
    })
    .await;
    let mut bob = server.person("bob").await;
    let mut raw = Raw::connect_with_small_window(&server).await;
    let token = hold_a_poll(&mut raw, "ada").await;
    wait_for_polls_held(&server, 1).await;
    let text: String = ('a'..='z').cycle().take(CHARS).collect();
    bob.say(&text).await;
    // The publish has answered the poll (so written what the socket takes)
    // before anything is read.
    wait_for_polls_held(&server, 0).await;
    let answer = raw.answer().await;
    let events = answer.json["events"].as_array().map_or(0, Vec::len);
    assert_eq!(events, 1, "the answer holds the one event: {}", answer.head);
    let got = answer.json["events"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(got == text, "{} of {CHARS} chars arrived intact", got.len());
    // The connection carries on: the next poll is held, and answered.
    let cursor = &answer.json["cursor"];
    let next = format!(r#"{{"token":"{token}","channel":"lobby","cursor":{cursor}}}"#);
    raw.send(&post("/poll", &next)).await;
    wait_for_polls_held(&server, 1).await;
    bob.say("and a short one").await;
    let short = raw.answer().await;
    assert_eq!(
        short.json["events"][0]["text"], "and a short one",
        "{short:?}"
    );
}
