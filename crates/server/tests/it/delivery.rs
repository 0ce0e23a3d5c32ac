//! Delivery: cursors, gaps, timeouts, wake-ups, retries, restarts.

use std::time::{Duration, Instant};

use talk_client::protocol::{Cursor, PollRequest, Reset};

use crate::support::{
    message_texts, polls_held, test_config, wait_for_gauge, wait_for_polls_held, HeldClock, Person,
    TestServer,
};

#[tokio::test]
async fn a_cursor_resumed_after_a_gap_gets_exactly_the_missed_events() {
    let server = TestServer::start().await;
    let mut ada = server.person("ada").await;
    let mut bob = server.person("bob").await;
    bob.say("before").await;
    assert_eq!(ada.texts(1).await, ["before"]);
    // Ada stops polling; Bob goes on talking.
    for index in 0..20 {
        bob.say(&format!("missed {index}")).await;
    }
    let answer = ada.poll(0).await;
    assert_eq!(answer.reset, None);
    let expected: Vec<String> = (0..20).map(|index| format!("missed {index}")).collect();
    assert_eq!(message_texts(&answer.events), expected);
    let seqs: Vec<u64> = answer.events.iter().map(|event| event.seq).collect();
    assert!(
        seqs.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{seqs:?}"
    );
    // Polling again from the same cursor twice gives the same answer (no
    // server-side state is consumed), and from the new cursor nothing.
    let again = bob
        .api
        .poll(&PollRequest {
            token: ada.token().to_owned(),
            channel: Some("lobby".into()),
            cursor: Some(Cursor {
                epoch: answer.cursor.epoch.clone(),
                seq: answer.cursor.seq - 20,
            }),
            wait_ms: Some(0),
        })
        .await
        .unwrap();
    assert_eq!(again.events, answer.events);
    assert!(ada.poll(0).await.events.is_empty());
}

#[tokio::test]
async fn a_poll_with_nothing_to_say_answers_empty_when_its_time_is_up() {
    let clock = HeldClock::hold();
    let server = TestServer::start_with(talk_server::Config {
        poll_timeout: Duration::from_millis(300),
        ..test_config()
    })
    .await;
    let ada = server.person("ada").await;
    let started = tokio::time::Instant::now();
    let polling = {
        let (api, request) = (
            ada.api.clone(),
            PollRequest {
                token: ada.token().to_owned(),
                channel: Some(ada.channel.clone()),
                cursor: Some(ada.cursor.clone()),
                wait_ms: None,
            },
        );
        tokio::spawn(async move { api.poll(&request).await })
    };
    wait_for_polls_held(&server, 1).await;
    clock.advance(Duration::from_millis(290)).await;
    assert_eq!(polls_held(&server).await, 1, "answered before the timeout");
    // Past the timeout and its jitter.
    clock.advance(Duration::from_millis(50)).await;
    wait_for_polls_held(&server, 0).await;
    let answer = polling.await.unwrap().unwrap();
    let held = started.elapsed();
    assert!(answer.events.is_empty() && answer.reset.is_none() && !answer.reconnect);
    assert_eq!(answer.cursor, ada.cursor);
    // Held for the timeout (plus at most 10% jitter), not answered at once.
    assert!(held >= Duration::from_millis(300), "held only {held:?}");
}

#[tokio::test]
async fn a_message_wakes_a_held_poll() {
    let server = TestServer::start().await;
    let mut ada = server.person("ada").await;
    let mut bob = server.person("bob").await;
    ada.poll(0).await; // past bob's join
    let held = tokio::spawn(async move { ada.poll(10_000).await });
    wait_for_polls_held(&server, 1).await;
    assert!(!held.is_finished(), "the poll should be held");
    bob.say("wake up").await;
    let answer = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message_texts(&answer.events), ["wake up"]);
}

#[tokio::test]
async fn switching_channel_releases_the_held_poll() {
    let server = TestServer::start().await;
    let ada = server.person("ada").await;
    let (api, token) = (ada.api.clone(), ada.token().to_owned());
    let held = tokio::spawn(async move { ada.poll_request(10_000).await });
    wait_for_polls_held(&server, 1).await;
    assert!(!held.is_finished(), "the poll should be held");
    api.send(&token, "j1", "/join games").await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (answer.channel.as_str(), answer.reset),
        ("games", Some(Reset::Switch))
    );
    // The new channel's history already holds the session's own join.
    let joined = answer
        .events
        .iter()
        .any(|event| event.from == "ada" && event.kind == talk_client::protocol::EventKind::Join);
    assert!(joined, "{:?}", answer.events);
}

#[tokio::test]
async fn a_thousand_held_polls_all_receive_one_broadcast_exactly_once() {
    const POLLERS: usize = 1000;
    let (server, people) = quiet_channel(POLLERS).await;
    // One HTTP client per poller would be wasteful; the Api's pool opens a
    // connection per request in flight, so all 1,000 polls are held at once.
    let polls: Vec<_> = people
        .into_iter()
        .map(|mut person| tokio::spawn(async move { person.poll(20_000).await }))
        .collect();
    // Wait until the server holds every poll.
    wait_for_gauge(
        &server,
        "talk_polls_held",
        POLLERS as i64,
        Duration::from_secs(20),
    )
    .await;
    let mut sender = server.person("sender").await;
    sender.say("to everyone").await;
    for poll in polls {
        let answer = tokio::time::timeout(Duration::from_secs(20), poll)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(message_texts(&answer.events), ["to everyone"]);
    }
}

#[tokio::test]
async fn a_retried_send_is_posted_once() {
    let server = TestServer::start().await;
    let mut ada = server.person("ada").await;
    let first = server
        .api
        .send(ada.token(), "same-id", "once")
        .await
        .unwrap();
    let retry = server
        .api
        .send(ada.token(), "same-id", "once")
        .await
        .unwrap();
    assert!(!first.duplicate && retry.duplicate);
    assert_eq!(first.seq, retry.seq);
    assert_eq!(ada.poll(200).await.events.len(), 1);
}

/// A session's sends are not made to wait for each other's commits, so
/// several can be in flight at once: each is posted once, and a retry that
/// races its original is acknowledged only once the original is visible
/// (so committed), never ahead of it.
#[tokio::test]
async fn sends_and_retries_of_one_session_in_flight_together_are_posted_once() {
    let server = TestServer::start().await;
    let mut ada = server.person("ada").await;
    let mut sends = tokio::task::JoinSet::new();
    for index in 0..40 {
        let api = server.api.clone();
        let token = ada.token().to_owned();
        // Ids 0..10, each sent four times.
        let id = format!("id{}", index % 10);
        sends.spawn(async move {
            let answer = api.send(&token, &id, &format!("m-{id}")).await.unwrap();
            (id, answer)
        });
    }
    let mut seqs = std::collections::HashMap::new();
    let mut originals = 0;
    while let Some(sent) = sends.join_next().await {
        let (id, answer) = sent.unwrap();
        let seq = answer.seq.unwrap();
        assert_eq!(*seqs.entry(id).or_insert(seq), seq, "one position per id");
        if answer.duplicate {
            let visible = ada.poll_request(0).await.unwrap().cursor.seq;
            assert!(
                visible >= seq,
                "duplicate of {seq} acknowledged with {visible} visible"
            );
        } else {
            originals += 1;
        }
    }
    assert_eq!(originals, 10);
    let mut texts = ada.texts(10).await;
    texts.sort();
    let expected: Vec<String> = (0..10).map(|index| format!("m-id{index}")).collect();
    assert_eq!(texts, expected);
}

#[tokio::test]
async fn a_cursor_older_than_the_window_gets_a_gap_reset() {
    let server = TestServer::start_with(talk_server::Config {
        history_window: 10,
        history_on_join: 5,
        ..test_config()
    })
    .await;
    let mut ada = server.person("ada").await;
    let mut bob = server.person("bob").await;
    for index in 0..30 {
        bob.say(&format!("m{index}")).await;
    }
    let answer = ada.poll(0).await;
    assert_eq!(answer.reset, Some(Reset::Gap));
    assert_eq!(
        message_texts(&answer.events),
        ["m25", "m26", "m27", "m28", "m29"]
    );
    // A cursor from the future is a gap too, never a silent wait.
    let future = Cursor {
        epoch: answer.cursor.epoch.clone(),
        seq: answer.cursor.seq + 100,
    };
    let request = PollRequest {
        token: ada.token().to_owned(),
        channel: Some("lobby".into()),
        cursor: Some(future),
        wait_ms: Some(0),
    };
    assert_eq!(
        server.api.poll(&request).await.unwrap().reset,
        Some(Reset::Gap)
    );
}

#[tokio::test]
async fn history_survives_a_restart_and_cursors_resume() {
    let server = TestServer::start().await;
    let mut ada = server.person("ada").await;
    for index in 0..5 {
        ada.say(&format!("kept {index}")).await;
    }
    let cursor_before = {
        ada.poll(0).await;
        ada.cursor.clone()
    };
    let data = server.stop().await;
    let server = TestServer::start_in(test_config(), data).await;
    // The old token is gone with the old process: a new session, same cursor.
    let mut bob = server.person("bob").await;
    bob.say("after restart").await;
    let ada_again = server.api.start(Some("ada"), None, None).await.unwrap();
    let request = PollRequest {
        token: ada_again.token.clone(),
        channel: Some("lobby".into()),
        cursor: Some(cursor_before.clone()),
        wait_ms: Some(0),
    };
    let answer = server.api.poll(&request).await.unwrap();
    assert_eq!(answer.reset, None, "the epoch survives a restart");
    assert_eq!(message_texts(&answer.events), ["after restart"]);
    let seqs: Vec<u64> = answer.events.iter().map(|event| event.seq).collect();
    let after = cursor_before.seq;
    assert_eq!(
        seqs,
        [after + 1, after + 2, after + 3],
        "bob's join, his message, ada's join"
    );
}

#[tokio::test]
async fn a_cursor_from_a_wiped_store_gets_an_epoch_reset() {
    let server = TestServer::start().await;
    let mut ada = server.person("ada").await;
    ada.say("gone soon").await;
    ada.poll(0).await;
    let old_cursor = ada.cursor.clone();
    drop(server.stop().await);
    let server = TestServer::start().await;
    let bob = server.person("bob").await;
    let request = PollRequest {
        token: bob.token().to_owned(),
        channel: Some("lobby".into()),
        cursor: Some(old_cursor),
        wait_ms: Some(0),
    };
    assert_eq!(
        server.api.poll(&request).await.unwrap().reset,
        Some(Reset::Epoch)
    );
}

#[tokio::test]
async fn shutdown_answers_held_polls_with_a_reconnect_hint() {
    let server = TestServer::start().await;
    let ada = server.person("ada").await;
    let cursor = ada.cursor.clone();
    let held = tokio::spawn(async move { ada.poll_request(10_000).await });
    wait_for_polls_held(&server, 1).await;
    let stopping = tokio::spawn(server.stop());
    let answer = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(answer.reconnect && answer.events.is_empty());
    assert_eq!(answer.cursor, cursor);
    stopping.await.unwrap();
}

/// A server whose channel announces no joins, so that polls see only the
/// messages, with `pollers` people in it.
async fn quiet_channel(pollers: usize) -> (TestServer, Vec<Person>) {
    let server = TestServer::start_with(talk_server::Config {
        presence_limit: 0,
        poll_timeout: Duration::from_secs(20),
        ..test_config()
    })
    .await;
    let mut people = Vec::with_capacity(pollers);
    for index in 0..pollers {
        people.push(server.person(&format!("p{index}")).await);
    }
    (server, people)
}

/// Holds a poll for each of `pollers` people, then sends `messages`
/// messages one after the other: every poller must get each of them once,
/// in order, whether the publish or the poll's own task sends the answer.
async fn every_message_reaches_every_poller_once_and_in_order(pollers: usize, messages: usize) {
    let (server, people) = quiet_channel(pollers).await;
    let polls: Vec<_> = people
        .into_iter()
        .map(|mut person| {
            tokio::spawn(async move {
                let mut texts = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                while texts.len() < messages && Instant::now() < deadline {
                    texts.extend(message_texts(&person.poll(20_000).await.events));
                }
                texts
            })
        })
        .collect();
    let mut sender = server.person("sender").await;
    let expected: Vec<String> = (0..messages).map(|n| format!("message {n}")).collect();
    for text in &expected {
        sender.say(text).await;
    }
    for poll in polls {
        let texts = tokio::time::timeout(Duration::from_secs(60), poll)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(texts, expected);
    }
}

#[tokio::test]
async fn fan_outs_deliver_every_message_once_and_in_order() {
    // More pollers than one fan-out answers inline (256), so the rest go in
    // tasks of their own.
    every_message_reaches_every_poller_once_and_in_order(600, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_outs_on_a_runtime_with_threads_deliver_every_message_once_and_in_order() {
    every_message_reaches_every_poller_once_and_in_order(600, 20).await;
}

#[tokio::test]
async fn ending_a_session_refuses_its_held_poll() {
    let server = TestServer::start().await;
    let ada = server.person("ada").await;
    let token = ada.token().to_owned();
    let held = tokio::spawn(async move { ada.poll_request(10_000).await });
    wait_for_polls_held(&server, 1).await;
    assert!(!held.is_finished(), "the poll should be held");
    server.api.leave(&token).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .unwrap()
        .unwrap();
    // Not its own leave event: the session is gone.
    let error = answer.expect_err("the session has ended");
    assert_eq!(error.code(), Some("unknown_session"));
}
