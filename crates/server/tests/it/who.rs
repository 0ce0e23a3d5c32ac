//! The `who` operation on `/broadcast` (issue 23, part 4): the member list
//! of the session's channel, as `/who` replies it, but outside the send
//! rate limit, on both HTTP fronts, and refused for an unknown session.

use std::time::Duration;

use talk_client::protocol::{Member, Reply, WhoAnswer};

use crate::raw::{post, Raw};
use crate::support::{code, raw_post, test_config, TestServer};

/// The `/who` reply of `person`, as a `who` answer would say it.
async fn who_by_command(person: &mut crate::support::Person) -> WhoAnswer {
    match person.say("/who").await.reply {
        Some(Reply::Who { channel, members }) => WhoAnswer { channel, members },
        other => panic!("/who replied {other:?}"),
    }
}

fn names(answer: &WhoAnswer) -> Vec<&str> {
    answer
        .members
        .iter()
        .map(|member| member.name.as_str())
        .collect()
}

#[tokio::test]
async fn r23_4_who_answers_what_the_who_command_replies() {
    let server = TestServer::start().await;
    let mut bob = server.person("bob").await;
    let mut ada = server.person("ada").await;
    let mut carol = server.person("carol").await;
    carol.say("/color 66ccff").await;
    let mut dan = server.person("dan").await;
    dan.say("/join games").await;

    let lobby = server.api.who(ada.token()).await.expect("who");
    assert_eq!(lobby.channel, "lobby");
    assert_eq!(names(&lobby), ["ada", "bob", "carol"]);
    assert!(lobby.members.contains(&Member {
        name: "carol".into(),
        color: "66ccff".into(),
    }));
    assert_eq!(lobby, who_by_command(&mut ada).await);
    assert_eq!(lobby, who_by_command(&mut bob).await);

    let games = server.api.who(dan.token()).await.expect("who");
    assert_eq!(
        (games.channel.as_str(), names(&games)),
        ("games", vec!["dan"])
    );
    assert_eq!(games, who_by_command(&mut dan).await);
}

#[tokio::test]
async fn r23_4_who_is_outside_the_send_rate_limit() {
    let server = TestServer::start_with(talk_server::Config {
        send_rate: Some(talk_server::Rate {
            per_period: 1,
            period: Duration::from_secs(3600),
            burst: 2,
        }),
        ..test_config()
    })
    .await;
    let mut ada = server.person("ada").await;
    // Asked more often than the bucket holds sends: none of it counts.
    for _ in 0..5 {
        let answer = server.api.who(ada.token()).await.expect("who");
        assert_eq!(names(&answer), ["ada"]);
    }
    ada.say("first").await;
    ada.say("second").await;
    let body = format!(
        r#"{{"op":"send","token":"{}","id":"x3","text":"third"}}"#,
        ada.token()
    );
    let (status, _, json) = raw_post(&server.url("/broadcast"), body).await;
    assert_eq!((status, code(&json)), (429, "rate_limited"));
    // With the bucket empty, the member list is still answered.
    let answer = server.api.who(ada.token()).await.expect("who");
    assert_eq!(
        (answer.channel.as_str(), names(&answer)),
        ("lobby", vec!["ada"])
    );
}

#[tokio::test]
async fn r23_4_who_with_an_unknown_or_ended_session_is_unknown_session() {
    let server = TestServer::start().await;
    let (status, _, json) = raw_post(
        &server.url("/broadcast"),
        r#"{"op":"who","token":"0123456789abcdef0123456789abcdef"}"#,
    )
    .await;
    assert_eq!((status, code(&json)), (401, "unknown_session"));
    let (status, _, json) = raw_post(&server.url("/broadcast"), r#"{"op":"who"}"#).await;
    assert_eq!((status, code(&json)), (400, "bad_request"));

    let ada = server.person("ada").await;
    server.api.leave(ada.token()).await.expect("leave");
    match server.api.who(ada.token()).await {
        Err(talk_client::Error::Server { status, detail }) => {
            assert_eq!((status, detail.code.as_str()), (401, "unknown_session"));
        }
        other => panic!("who after leave: {other:?}"),
    }
}

/// A chunked body goes to the router rather than the lean path; both
/// answer `who` through the same code.
#[tokio::test]
async fn r23_4_who_is_answered_by_both_http_fronts() {
    let server = TestServer::start().await;
    let bob = server.person("bob").await;
    let ada = server.person("ada").await;
    let body = format!(r#"{{"op":"who","token":"{}"}}"#, ada.token());

    let mut lean = Raw::connect(&server).await;
    lean.send(&post("/broadcast", &body)).await;
    let lean_answer = lean.answer().await;

    let mut router = Raw::connect(&server).await;
    let chunked = format!(
        "POST /broadcast HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    router.send(chunked.as_bytes()).await;
    let router_answer = router.answer().await;

    for answer in [&lean_answer, &router_answer] {
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(
            answer.json,
            serde_json::json!({
                "channel": "lobby",
                "members": [
                    {"name": "ada", "color": ada.start.color},
                    {"name": "bob", "color": bob.start.color},
                ],
            })
        );
    }
}
