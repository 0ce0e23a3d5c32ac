//! Chatting: two people, and every command.

use talk_client::protocol::{EventKind, LeaveReason, Reply, Reset};

use crate::support::{message_texts, TestServer};

#[tokio::test]
async fn two_people_chat_both_ways() {
    let server = TestServer::start().await;
    let mut ada = server.person("ada").await;
    let mut bob = server.person("bob").await;
    ada.say("hello bob").await;
    assert_eq!(bob.texts(1).await, ["hello bob"]);
    bob.say("hi ada").await;
    assert_eq!(ada.texts(2).await, ["hello bob", "hi ada"]);
    assert_eq!(bob.texts(1).await, ["hi ada"]);
}

#[tokio::test]
async fn the_first_poll_brings_history_and_joins_are_announced() {
    let server = TestServer::start().await;
    let mut ada = server.person("ada").await;
    ada.say("one").await;
    ada.say("two").await;
    let bob = server.person("bob").await;
    let answer = bob
        .api
        .poll(&talk_client::protocol::PollRequest {
            token: bob.token().to_owned(),
            channel: None,
            cursor: None,
            wait_ms: None,
        })
        .await
        .unwrap();
    assert_eq!(answer.reset, Some(Reset::Start));
    assert_eq!(message_texts(&answer.events), ["one", "two"]);
    let bob_joined = answer
        .events
        .iter()
        .any(|event| event.kind == EventKind::Join && event.from == "bob");
    assert!(bob_joined, "{:?}", answer.events);
}

#[tokio::test]
async fn join_and_exit_move_between_channels_with_events() {
    let server = TestServer::start().await;
    let mut ada = server.person("ada").await;
    let mut bob = server.person("bob").await;
    let answer = ada.say("/join Games").await;
    assert_eq!(
        answer.reply,
        Some(Reply::Joined {
            channel: "games".into()
        })
    );

    // Ada's next poll switches her to the new channel with its history.
    let switched = ada.poll(1000).await;
    assert_eq!(
        (switched.channel.as_str(), switched.reset),
        ("games", Some(Reset::Switch))
    );
    assert!(switched
        .events
        .iter()
        .any(|event| event.kind == EventKind::Join && event.from == "ada"));

    // Bob sees her leave the lobby, and does not hear the games channel.
    let lobby = bob.poll(1000).await;
    let left = lobby.events.iter().any(|event| {
        event.from == "ada"
            && event.kind
                == EventKind::Leave {
                    reason: LeaveReason::Exit,
                }
    });
    assert!(left, "{:?}", lobby.events);
    ada.say("in games").await;
    bob.say("in lobby").await;
    assert_eq!(ada.texts(1).await, ["in games"]);
    assert_eq!(bob.texts(1).await, ["in lobby"]);

    let answer = ada.say("/exit").await;
    assert_eq!(
        answer.reply,
        Some(Reply::Joined {
            channel: "lobby".into()
        })
    );
    let back = ada.poll(1000).await;
    assert_eq!(
        (back.channel.as_str(), back.reset),
        ("lobby", Some(Reset::Switch))
    );
    assert_eq!(message_texts(&back.events), ["in lobby"]);
}

#[tokio::test]
async fn list_and_who_describe_the_room() {
    let server = TestServer::start().await;
    let mut ada = server.person("ada").await;
    let mut bob = server.person("Bob").await;
    let _cy = server.person("cy").await;
    bob.say("/join dev").await;
    let list = ada.say("/list").await.reply.unwrap();
    let Reply::List { channels } = list else {
        panic!("{list:?}")
    };
    let listed: Vec<(&str, usize)> = channels
        .iter()
        .map(|info| (info.name.as_str(), info.members))
        .collect();
    assert_eq!(listed, [("lobby", 2), ("dev", 1)]);

    let who = ada.say("/who").await.reply.unwrap();
    let Reply::Who { channel, members } = who else {
        panic!("{who:?}")
    };
    let names: Vec<&str> = members.iter().map(|member| member.name.as_str()).collect();
    assert_eq!((channel.as_str(), names), ("lobby", vec!["ada", "cy"]));
}

#[tokio::test]
async fn nick_and_color_change_and_are_announced() {
    let server = TestServer::start().await;
    let mut ada = server.person("ada").await;
    let mut bob = server.person("bob").await;
    let nick = ada.say("/nick Ada_L").await;
    let name = "Ada_L".to_owned();
    assert_eq!(nick.reply, Some(Reply::Nick { name }));
    let color = ada.say("/color #66CCFF").await;
    let expected = "66ccff".to_owned();
    assert_eq!(color.reply, Some(Reply::Color { color: expected }));
    ada.say("still me").await;
    let events = bob.poll(1000).await.events;
    let kinds: Vec<(&str, &EventKind, &str)> = events
        .iter()
        .map(|event| (event.from.as_str(), &event.kind, event.color.as_str()))
        .collect();
    assert_eq!(kinds[0].1, &EventKind::Nick { to: "Ada_L".into() });
    assert_eq!(kinds[0].0, "ada");
    assert_eq!(
        (kinds[1].0, kinds[1].1, kinds[1].2),
        ("Ada_L", &EventKind::Color, "66ccff")
    );
    assert_eq!((kinds[2].0, kinds[2].2), ("Ada_L", "66ccff"));
    // The answers say where their events are, so a client can order the two.
    assert_eq!(
        (nick.seq, color.seq),
        (Some(events[0].seq), Some(events[1].seq))
    );
    // The old name is free again; the new one is not.
    let cy = server.api.start(Some("ada"), None, None).await.unwrap();
    assert_eq!(cy.name, "ada");
    let taken = server.api.start(Some("ADA_l"), None, None).await.unwrap();
    assert_ne!(taken.name, "ADA_l");
    assert!(taken.notice.unwrap().contains("taken"));
}

#[tokio::test]
async fn me_posts_an_action_and_help_lists_every_command() {
    let server = TestServer::start().await;
    let mut ada = server.person("ada").await;
    let answer = ada.say("/me waves").await;
    assert!(answer.seq.is_some() && answer.reply.is_none());
    let events = ada.poll(1000).await.events;
    assert!(
        matches!(&events[0].kind, EventKind::Me { text, .. } if text == "waves"),
        "{events:?}"
    );

    let help = ada.say("/help").await.reply.unwrap();
    let Reply::Help { commands } = help else {
        panic!("{help:?}")
    };
    let usages: Vec<&str> = commands
        .iter()
        .map(|command| command.usage.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        usages,
        ["/join", "/exit", "/list", "/who", "/nick", "/color", "/me", "/help"]
    );
}

#[tokio::test]
async fn a_double_slash_sends_a_text_that_starts_with_a_slash() {
    let server = TestServer::start().await;
    let mut ada = server.person("ada").await;
    ada.say("//join is how you join").await;
    assert_eq!(ada.texts(1).await, ["/join is how you join"]);
}

#[tokio::test]
async fn leave_ends_the_session_with_an_event() {
    let server = TestServer::start().await;
    let ada = server.person("ada").await;
    let mut bob = server.person("bob").await;
    server.api.leave(ada.token()).await.unwrap();
    let events = bob.poll(1000).await.events;
    let quit = EventKind::Leave {
        reason: LeaveReason::Quit,
    };
    assert!(
        events
            .iter()
            .any(|event| event.from == "ada" && event.kind == quit),
        "{events:?}"
    );
    let error = ada.poll_request(0).await.unwrap_err();
    assert_eq!(error.code(), Some("unknown_session"));
}

#[tokio::test]
async fn a_session_that_stops_polling_expires_with_a_timeout_leave() {
    let config = talk_server::Config {
        session_grace: std::time::Duration::from_millis(300),
        ..crate::support::test_config()
    };
    let server = TestServer::start_with(config).await;
    let ada = server.person("ada").await;
    let mut bob = server.person("bob").await;
    let mut timed_out = false;
    for _ in 0..10 {
        let events = bob.poll(500).await.events;
        let timeout = EventKind::Leave {
            reason: LeaveReason::Timeout,
        };
        if events
            .iter()
            .any(|event| event.from == "ada" && event.kind == timeout)
        {
            timed_out = true;
            break;
        }
    }
    assert!(
        timed_out,
        "ada should have timed out while bob kept polling"
    );
    assert_eq!(
        ada.poll_request(0).await.unwrap_err().code(),
        Some("unknown_session")
    );
}

#[tokio::test]
async fn big_channels_do_not_announce_joins() {
    let config = talk_server::Config {
        presence_limit: 2,
        ..crate::support::test_config()
    };
    let server = TestServer::start_with(config).await;
    let mut ada = server.person("ada").await;
    let _bob = server.person("bob").await;
    let _cy = server.person("cy").await;
    let events = ada.poll(200).await.events;
    let joined: Vec<&str> = events
        .iter()
        .filter(|event| event.kind == EventKind::Join)
        .map(|event| event.from.as_str())
        .collect();
    assert_eq!(joined, ["bob"], "the third member is over the limit");
}
