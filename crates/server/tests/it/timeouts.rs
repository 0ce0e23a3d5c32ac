//! The request timeout (issue 22, rows 6 and 8): a request must arrive
//! whole, head and body, within the timeout of its first byte, whichever
//! front reads it. A client that sends it slower, or never finishes it, is
//! cut off without an answer; the time a connection spent idle before the
//! first byte does not count; a held poll is not a request being read.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::raw::{connect, post, start_session, Front, Raw, FRONTS};
use crate::support::{gauge, polls_held, test_config, wait_for_polls_held, HeldClock, TestServer};

/// Short, so that the tests are quick, but under a second: longer waits
/// end on the connections' 250 ms grid, which would blur the bounds below.
const TIMEOUT: Duration = Duration::from_millis(800);

async fn start_server() -> TestServer {
    TestServer::start_with(talk_server::Config {
        request_timeout: TIMEOUT,
        ..test_config()
    })
    .await
}

fn start_request(name: &str) -> Vec<u8> {
    post(
        "/broadcast",
        &format!(r#"{{"op":"start","name":"{name}"}}"#),
    )
}

/// What a slow client saw.
#[derive(Debug)]
struct SlowSend {
    /// Everything the server wrote back.
    received: String,
    /// The server closed the connection (within 10 s of real time).
    closed: bool,
    /// On the test's clock, from the first byte sent to the close (or to
    /// giving up).
    elapsed: Duration,
}

/// Sends `parts` with `pause` between them on the held `clock`, as a slow
/// client does, then lets time pass until the server closes the
/// connection; reads what the server writes all along. Stops sending once
/// the server has closed it.
async fn send_slowly(
    raw: &mut Raw,
    clock: &HeldClock,
    parts: &[&[u8]],
    pause: Duration,
) -> SlowSend {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut closed = false;
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            // The server reads the part sent before time moves on, as it
            // would were the clock not held.
            closed = raw.read_what_arrived(&mut received).await;
            if !closed {
                clock.advance(pause).await;
            }
        }
        if closed || raw.stream.write_all(part).await.is_err() {
            break;
        }
    }
    if !closed {
        let rest = raw.read_until_closed_as_time_passes(clock, TIMEOUT / 8);
        if let Some(rest) = rest.await {
            received.extend(rest);
            closed = true;
        }
    }
    SlowSend {
        received: String::from_utf8_lossy(&received).into_owned(),
        closed,
        elapsed: started.elapsed(),
    }
}

/// Checks that the server cut the request off: closed with no answer, and
/// not before the timeout.
fn check_cut_off(front: Front, sent: &SlowSend) {
    assert!(
        sent.closed && sent.received.is_empty(),
        "{front:?}: the request was not cut off: {sent:?}"
    );
    assert!(
        sent.elapsed >= TIMEOUT,
        "{front:?}: cut off before the timeout: {sent:?}"
    );
}

#[tokio::test]
async fn r22_a_body_that_never_arrives_is_cut_off_at_the_timeout() {
    let clock = HeldClock::hold();
    let server = start_server().await;
    for front in FRONTS {
        let mut raw = connect(&server, front).await;
        let request = start_request("never");
        let parts = [&request[..request.len() - 5]];
        let sent = send_slowly(&mut raw, &clock, &parts, TIMEOUT).await;
        check_cut_off(front, &sent);
    }
    // Counted for operators, as timeouts and not as answers.
    assert_eq!(gauge(&server, "talk_request_timeouts_total").await, 2);
    let metrics = reqwest::get(server.url("/metrics")).await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(!metrics.contains("bad_request"), "{metrics}");
}

#[tokio::test]
async fn r22_a_body_sent_a_byte_at_a_time_is_cut_off_at_the_timeout() {
    let clock = HeldClock::hold();
    let server = start_server().await;
    for front in FRONTS {
        let mut raw = connect(&server, front).await;
        let request = start_request("trickle");
        let body_start = request.len() - 30;
        // The head at once, then the body a byte at a time: each byte comes
        // well within the timeout, the whole body at four times it.
        let mut parts: Vec<&[u8]> = vec![&request[..body_start]];
        parts.extend(request[body_start..].chunks(1));
        let sent = send_slowly(&mut raw, &clock, &parts, TIMEOUT / 8).await;
        check_cut_off(front, &sent);
    }
}

#[tokio::test]
async fn r22_a_head_longer_than_the_lean_path_reads_is_cut_off_at_the_timeout() {
    // The lean path reads up to 8 KiB of head and then hands the connection
    // to hyper: the deadline still runs from the request's first byte.
    let clock = HeldClock::hold();
    let server = start_server().await;
    let mut raw = connect(&server, Front::Lean).await;
    let first = format!(
        "POST /broadcast HTTP/1.1\r\nHost: t\r\nX-First: {}\r\n",
        "a".repeat(5_000)
    );
    let second = format!("X-Second: {}\r\n", "b".repeat(4_000));
    let body = r#"{"op":"start","name":"longhead"}"#;
    let last = format!("Content-Length: {}\r\n\r\n{body}", body.len());
    // Past 8 KiB at 0.6 of the timeout, whole at 1.2 of it.
    let parts = [first.as_bytes(), second.as_bytes(), last.as_bytes()];
    let sent = send_slowly(&mut raw, &clock, &parts, TIMEOUT.mul_f64(0.6)).await;
    check_cut_off(Front::Lean, &sent);
}

#[tokio::test]
async fn r22_the_timeout_counts_from_the_first_byte_not_from_the_idle_start() {
    let server = start_server().await;
    for front in FRONTS {
        let mut raw = connect(&server, front).await;
        start_session(&mut raw, &format!("first-{front:?}")).await;
        // Idle for most of the timeout, then a request that takes half of
        // it: slow, but whole within the timeout of its first byte. Real
        // time passes here, not a held clock: the server must have read
        // the head before time moves on, and nothing it exposes says so.
        tokio::time::sleep(TIMEOUT.mul_f64(0.8)).await;
        let request = start_request(&format!("second-{front:?}"));
        let (head, rest) = request.split_at(20);
        raw.send(head).await;
        tokio::time::sleep(TIMEOUT.mul_f64(0.4)).await;
        raw.send(rest).await;
        let answer = raw.answer().await;
        assert_eq!(answer.status, 200, "{front:?}: {answer:?}");
    }
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_timeout() {
    let clock = HeldClock::hold();
    let server = start_server().await;
    for front in FRONTS {
        let mut raw = connect(&server, front).await;
        let started = Instant::now();
        let closed = raw.closed_by_server_as_time_passes(&clock, TIMEOUT / 8);
        assert!(closed.await, "{front:?}: still open");
        assert!(started.elapsed() >= TIMEOUT.mul_f64(0.9), "{front:?}");
    }
}

#[tokio::test]
async fn a_poll_held_longer_than_the_timeout_is_not_cut_off() {
    let clock = HeldClock::hold();
    let server = start_server().await;
    for front in FRONTS {
        let mut raw = connect(&server, front).await;
        let token = start_session(&mut raw, &format!("holder-{front:?}")).await;
        raw.send(&post("/poll", &format!(r#"{{"token":"{token}"}}"#)))
            .await;
        let cursor = raw.answer().await.json["cursor"].clone();
        let wait_ms = TIMEOUT.as_millis() * 5 / 2;
        let poll = format!(
            r#"{{"token":"{token}","channel":"lobby","cursor":{cursor},"wait_ms":{wait_ms}}}"#
        );
        raw.send(&post("/poll", &poll)).await;
        wait_for_polls_held(&server, 1).await;
        clock.advance(TIMEOUT * 2).await;
        assert_eq!(polls_held(&server).await, 1, "{front:?}: cut off");
        // Just past the poll's own deadline.
        clock.advance(TIMEOUT / 2 + Duration::from_millis(10)).await;
        wait_for_polls_held(&server, 0).await;
        let answer = raw.answer().await;
        assert_eq!(answer.status, 200, "{front:?}: {answer:?}");
        assert_eq!(answer.json["events"], serde_json::json!([]), "{front:?}");
    }
}
