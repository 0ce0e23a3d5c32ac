//! The client library against a real server in this process: send and
//! receive, resume after a gap, a session the server forgot, retries and
//! rate limits, leaving. (The server killed with `kill -9` and restarted is
//! in `crates/talk/tests/it/client_restart.rs`, which runs the real binary.)
//! What only a newer server sends is in `newer_server.rs`, against a canned
//! server.

mod canned;
mod newer_server;
mod server;

use std::time::Duration;

use talk_client::protocol::{EventKind, Reply, Reset};
use talk_client::{Client, ClientConfig, Update};

/// A client of `url` that asks for `name`.
async fn connect(url: &str, name: &str) -> Client {
    let mut config = ClientConfig::new(url);
    config.name = Some(name.to_owned());
    Client::connect(config).await.expect("a session starts")
}

/// The next update, or a failed test after 15 s.
async fn next(client: &Client) -> Update {
    tokio::time::timeout(Duration::from_secs(15), client.next_update())
        .await
        .expect("an update within 15 s")
        .expect("polling works")
        .expect("the session is open")
}

/// An update as a short line: `reset:<reason>:<channel>`, `<from>: <text>`,
/// `* <from> <text>`, `join <from>`, `leave <from> <reason>`, or the debug
/// form of anything else.
fn describe(update: &Update) -> Vec<String> {
    let event_line = |event: &talk_client::protocol::Event| match &event.kind {
        EventKind::Message { text, .. } => format!("{}: {text}", event.from),
        EventKind::Me { text, .. } => format!("* {} {text}", event.from),
        EventKind::Join => format!("join {}", event.from),
        EventKind::Leave { reason } => format!("leave {} {reason:?}", event.from),
        other => format!("{other:?}"),
    };
    match update {
        Update::Reset {
            channel,
            reason,
            events,
        } => std::iter::once(format!("reset:{}:{channel}", reason.as_str()))
            .chain(events.iter().map(event_line))
            .collect(),
        Update::Event { event, .. } => vec![event_line(event)],
        other => vec![format!("{other:?}")],
    }
}

/// Takes updates until `count` chat messages (`<from>: <text>`) came, and
/// returns every line seen on the way.
async fn lines_until_messages(client: &Client, count: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let is_message = |line: &String| line.contains(": ");
    while lines.iter().filter(|line| is_message(line)).count() < count {
        lines.extend(describe(&next(client).await));
    }
    lines
}

fn only_messages(lines: &[String]) -> Vec<&str> {
    lines
        .iter()
        .filter(|line| line.contains(": "))
        .map(String::as_str)
        .collect()
}

#[tokio::test]
async fn sends_and_receives_in_order() {
    let server = server::start().await;
    let bea = connect(&server.url, "bea").await;
    assert_eq!(
        describe(&next(&bea).await),
        ["reset:start:lobby", "join bea"]
    );
    let ada = connect(&server.url, "ada").await;
    let mut seqs = Vec::new();
    for text in ["one", "two", "/me waves"] {
        seqs.push(
            ada.send(text)
                .await
                .unwrap()
                .seq
                .expect("a message has a seq"),
        );
    }
    assert!(
        seqs.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{seqs:?}"
    );
    let mut lines = Vec::new();
    while !lines.contains(&"* ada waves".to_owned()) {
        lines.extend(describe(&next(&bea).await));
    }
    assert_eq!(lines, ["join ada", "ada: one", "ada: two", "* ada waves"]);
    // The sender sees its own messages come back, after the history (all
    // in the first answer, or spread over several).
    let mut own = Vec::new();
    while !own.contains(&"* ada waves".to_owned()) {
        own.extend(describe(&next(&ada).await));
    }
    assert_eq!(
        own,
        [
            "reset:start:lobby",
            "join bea",
            "join ada",
            "ada: one",
            "ada: two",
            "* ada waves"
        ]
    );
}

#[tokio::test]
async fn resumes_after_a_gap_without_loss_or_duplicate() {
    let server = server::start().await;
    let bea = connect(&server.url, "bea").await;
    next(&bea).await;
    let ada = connect(&server.url, "ada").await;
    // bea does not poll while twenty messages go by.
    for number in 0..20 {
        ada.send(&format!("m{number}")).await.unwrap();
    }
    let lines = lines_until_messages(&bea, 20).await;
    let expected: Vec<String> = (0..20).map(|number| format!("ada: m{number}")).collect();
    assert_eq!(only_messages(&lines), expected);
    assert!(
        !lines.iter().any(|line| line.starts_with("reset")),
        "{lines:?}"
    );

    // Another process carries the session on from where bea stopped.
    let resume = bea.resume_point();
    assert_eq!(resume.name, "bea");
    let mut config = ClientConfig::new(&server.url);
    config.resume = Some(resume);
    let bea_again = Client::connect(config).await.unwrap();
    ada.send("after the handover").await.unwrap();
    assert_eq!(
        lines_until_messages(&bea_again, 1).await,
        ["ada: after the handover"]
    );
}

#[tokio::test]
async fn a_forgotten_session_restarts_with_its_name_and_keeps_its_position() {
    let server = server::start_with(|config| {
        config.session_grace = Duration::from_millis(200);
    })
    .await;
    let mut config = ClientConfig::new(&server.url);
    config.name = Some("bea".to_owned());
    config.color = Some("66ccff".to_owned());
    let bea = Client::connect(config).await.unwrap();
    next(&bea).await;
    let ada = connect(&server.url, "ada").await;
    // The server ends both sessions (neither polls).
    server.wait_for_metric("talk_sessions", 0).await;
    for number in 0..3 {
        // ada's session is gone too: each send starts it again if needed.
        ada.send(&format!("m{number}")).await.unwrap();
    }
    let first = next(&bea).await;
    match &first {
        Update::SessionRestarted { identity, .. } => {
            assert_eq!(identity.name, "bea");
            assert_eq!(identity.color, "66ccff");
        }
        other => panic!("expected SessionRestarted, got {other:?}"),
    }
    let lines = lines_until_messages(&bea, 3).await;
    assert_eq!(only_messages(&lines), ["ada: m0", "ada: m1", "ada: m2"]);
    assert!(
        !lines.iter().any(|line| line.starts_with("reset")),
        "the old cursor carried on: {lines:?}"
    );
    assert!(lines.contains(&"leave bea Timeout".to_owned()), "{lines:?}");
    assert_eq!(bea.identity().name, "bea");
}

#[tokio::test]
async fn retries_and_rate_limits_post_each_message_once() {
    let server = server::start_with(|config| {
        config.send_rate = Some(talk_server::Rate {
            per_period: 4,
            period: Duration::from_secs(1),
            burst: 1,
        });
    })
    .await;
    let bea = connect(&server.url, "bea").await;
    next(&bea).await;
    let ada = connect(&server.url, "ada").await;
    // A send retried with the same id (its answer was lost, say) is not
    // posted again.
    let first = ada.send_with_id("fixed-id-1", "once").await.unwrap();
    let again = ada.send_with_id("fixed-id-1", "once").await.unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate, "{again:?}");
    assert_eq!(first.seq, again.seq);
    // Faster than the rate limit: the client waits out each 429 and sends
    // again, so every message arrives once, in order.
    for number in 0..4 {
        ada.send(&format!("fast {number}")).await.unwrap();
    }
    // The limit is really on: a plain request right now is refused.
    let refused = ada
        .api()
        .send(&ada.resume_point().token, "probe-1", "probe")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("rate_limited"), "{refused}");
    let lines = lines_until_messages(&bea, 5).await;
    assert_eq!(
        only_messages(&lines),
        [
            "ada: once",
            "ada: fast 0",
            "ada: fast 1",
            "ada: fast 2",
            "ada: fast 3"
        ]
    );
}

#[tokio::test]
async fn join_resets_to_the_new_channel_and_leave_ends_the_session() {
    let server = server::start().await;
    let bea = connect(&server.url, "bea").await;
    next(&bea).await;
    let ada = connect(&server.url, "ada").await;
    let answer = ada.send("/join games").await.unwrap();
    assert_eq!(
        answer.reply,
        Some(Reply::Joined {
            channel: "games".to_owned()
        })
    );
    assert_eq!(ada.identity().channel, "games");
    match next(&ada).await {
        Update::Reset {
            channel, reason, ..
        } => {
            assert_eq!(channel, "games");
            // The first poll of a session has no cursor: a start reset.
            assert!(matches!(reason, Reset::Start | Reset::Switch), "{reason:?}");
        }
        other => panic!("expected a reset, got {other:?}"),
    }
    let answer = ada.send("/exit").await.unwrap();
    assert!(matches!(answer.reply, Some(Reply::Joined { .. })));
    match next(&ada).await {
        Update::Reset {
            channel, reason, ..
        } => assert_eq!((channel.as_str(), reason), ("lobby", Reset::Switch)),
        other => panic!("expected a switch reset, got {other:?}"),
    }

    ada.leave().await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), ada.next_update())
        .await
        .unwrap()
        .unwrap();
    assert!(ended.is_none(), "no updates after leave: {ended:?}");
    // bea saw ada come, go to games, come back and quit.
    let mut lines = Vec::new();
    while !lines
        .iter()
        .any(|line: &String| line.starts_with("leave ada Quit"))
    {
        lines.extend(describe(&next(&bea).await));
    }
    assert_eq!(
        lines,
        ["join ada", "leave ada Exit", "join ada", "leave ada Quit"]
    );
}

/// Regression: under load, sends failed with "connection reset by peer"
/// (30 of 10,000 in a throughput bench) when the client reused a connection
/// that the server was closing for having had no request for 10 s. The
/// client must let go of idle connections well before that.
#[test]
fn idle_connections_are_dropped_before_the_server_closes_them() {
    let server_limit = talk_server::Config::default().request_timeout;
    assert!(
        talk_client::IDLE_CONNECTION_LIMIT * 2 <= server_limit,
        "{:?} against the server's {server_limit:?}",
        talk_client::IDLE_CONNECTION_LIMIT
    );
}
