//! Channels are bounded: an idle channel leaves memory and comes back with
//! its history, a start loads no channel until it is used, creating
//! channels is rate-limited per session and per address (an IPv6 client by
//! its /64), and the channels in memory are capped.

use std::time::Duration;

use talk_client::protocol::Reply;
use talk_server::{Config, Rate};

use crate::support::{gauge, message_texts, test_config, wait_for_gauge, TestServer};

fn joined(answer: &talk_client::protocol::SendAnswer) -> Option<&str> {
    match &answer.reply {
        Some(Reply::Joined { channel }) => Some(channel),
        _ => None,
    }
}

#[tokio::test]
async fn r22_7_an_idle_channel_leaves_memory_and_comes_back_with_its_history() {
    let server = TestServer::start_with(Config {
        channel_idle: Duration::from_millis(300),
        ..test_config()
    })
    .await;
    let mut ada = server.person("ada").await;
    ada.api.send(ada.token(), "j", "/join games").await.unwrap();
    let history = ada.poll(1_000).await;
    let epoch = history.cursor.epoch.clone();
    for index in 0..3 {
        ada.say(&format!("games {index}")).await;
    }
    ada.api.send(ada.token(), "x", "/exit").await.unwrap();
    assert_eq!(gauge(&server, "talk_channels").await, 2);
    // Nobody is in games any more: it leaves memory.
    wait_for_gauge(&server, "talk_channels", 1, Duration::from_secs(5)).await;

    let mut bob = server.person("bob").await;
    bob.api.send(bob.token(), "j", "/join games").await.unwrap();
    let history = bob.poll(1_000).await;
    assert_eq!(history.cursor.epoch, epoch, "the same life of the history");
    assert_eq!(
        message_texts(&history.events),
        ["games 0", "games 1", "games 2"]
    );
    let seqs: Vec<u64> = history.events.iter().map(|event| event.seq).collect();
    assert!(
        seqs.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{seqs:?}"
    );
    let next = bob.say("games 3").await;
    assert_eq!(next.seq, Some(history.cursor.seq + 1), "positions go on");
}

#[tokio::test]
async fn r22_7_a_start_loads_no_channel_until_it_is_used() {
    let server = TestServer::start().await;
    let ada = server.person("ada").await;
    for channel in ["one", "two", "three"] {
        ada.api
            .send(ada.token(), channel, &format!("/join {channel}"))
            .await
            .unwrap();
        ada.api
            .send(
                ada.token(),
                &format!("{channel}-m"),
                &format!("in {channel}"),
            )
            .await
            .unwrap();
    }
    let data = server.stop().await;
    let server = TestServer::start_in(test_config(), data).await;
    assert_eq!(gauge(&server, "talk_channels").await, 0);
    let mut bob = server.person("bob").await;
    assert_eq!(gauge(&server, "talk_channels").await, 1);
    bob.api.send(bob.token(), "j", "/join two").await.unwrap();
    assert_eq!(gauge(&server, "talk_channels").await, 2);
    assert_eq!(message_texts(&bob.poll(1_000).await.events), ["in two"]);
}

#[tokio::test]
async fn r22_7_creating_channels_is_limited_per_session_and_per_address() {
    // The default limits: 10 a minute per session, 30 per address.
    let server = TestServer::start().await;
    let mut people = Vec::new();
    for name in ["ada", "bob", "carol", "dave"] {
        people.push(server.person(name).await);
    }
    let join = |index: usize, channel: String| {
        let person = &people[index];
        async move {
            person
                .api
                .send(person.token(), &channel, &format!("/join {channel}"))
                .await
        }
    };
    for index in 0..10 {
        join(0, format!("ada{index}")).await.unwrap();
    }
    let refused = join(0, "ada10".into()).await.unwrap_err();
    assert_eq!(refused.code(), Some("too_many_channels"), "{refused}");
    let talk_client::Error::Server { status, detail } = &refused else {
        panic!("{refused}");
    };
    assert_eq!(*status, 429);
    assert!(detail.retry_after_ms.is_some_and(|wait| wait > 0));
    // A channel that exists is no new channel.
    let existing = join(0, "ada3".into()).await.unwrap();
    assert_eq!(joined(&existing), Some("ada3"));
    // Thirty new channels from one address, whichever sessions make them.
    for index in 0..10 {
        join(1, format!("bob{index}")).await.unwrap();
        join(2, format!("carol{index}")).await.unwrap();
    }
    let refused = join(3, "dave0".into()).await.unwrap_err();
    assert_eq!(refused.code(), Some("too_many_channels"), "{refused}");
    // And a session starting in a new channel counts as well.
    let started = server.api.start(Some("erin"), None, Some("erin0")).await;
    assert_eq!(started.unwrap_err().code(), Some("too_many_channels"));
}

#[tokio::test]
async fn r22_7_the_channels_in_memory_are_capped() {
    let server = TestServer::start_with(Config {
        max_channels: 3,
        ..test_config()
    })
    .await;
    let ada = server.person("ada").await;
    let bob = server.person("bob").await;
    let carol = server.person("carol").await;
    bob.api.send(bob.token(), "j", "/join first").await.unwrap();
    carol
        .api
        .send(carol.token(), "j", "/join second")
        .await
        .unwrap();
    let refused = ada
        .api
        .send(ada.token(), "j", "/join third")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("channel_limit"), "{refused}");
    let talk_client::Error::Server { status, .. } = &refused else {
        panic!("{refused}");
    };
    assert_eq!(*status, 503);
    // Refused, Ada is still in the lobby.
    let who = ada.api.send(ada.token(), "w", "/who").await.unwrap();
    assert!(matches!(&who.reply, Some(Reply::Who { channel, .. }) if channel == "lobby"));
    // Once nobody is in `second`, it makes room at once.
    carol.api.send(carol.token(), "x", "/exit").await.unwrap();
    let moved = ada
        .api
        .send(ada.token(), "j2", "/join third")
        .await
        .unwrap();
    assert_eq!(joined(&moved), Some("third"));
    assert_eq!(gauge(&server, "talk_channels").await, 3);
}

#[tokio::test]
async fn r22_7_an_ipv6_client_is_counted_by_its_64() {
    let server = TestServer::start_with(Config {
        client_ip_header: Some("x-forwarded-for".into()),
        session_start_rate: Some(Rate {
            per_period: 2,
            period: Duration::from_secs(60),
            burst: 2,
        }),
        ..test_config()
    })
    .await;
    let start_from = |address: &'static str| {
        let url = server.url("/broadcast");
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .header("x-forwarded-for", address)
                .body(r#"{"op":"start"}"#)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let json: serde_json::Value = response.json().await.unwrap();
            (status, json["error"]["code"].as_str().map(str::to_owned))
        }
    };
    assert_eq!(start_from("2001:db8:0:7::1").await.0, 200);
    assert_eq!(start_from("2001:db8:0:7::2").await.0, 200);
    assert_eq!(
        start_from("2001:db8:0:7:ffff::3").await,
        (429, Some("too_many_sessions".into())),
        "the same /64"
    );
    assert_eq!(start_from("2001:db8:0:8::1").await.0, 200, "another /64");
}
