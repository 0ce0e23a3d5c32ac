//! The client against a newer server (a canned one: the real server never
//! sends what it does not have): event types, a leave reason, a reset value
//! and a reply type this build does not know.

use talk_client::protocol::Reply;
use talk_client::{ClientConfig, ResumePoint};

use crate::{canned, describe, next};

/// An event of `ada`'s, as a newer server would encode it: `rest` is its
/// type and the fields that go with it.
fn event(seq: u64, rest: &str) -> String {
    format!(r#"{{"seq":{seq},"ts":1700000000000,"from":"ada","color":"ff8800",{rest}}}"#)
}

/// Regression (issue 23, part 5): one event of a type the client did not
/// know made the whole poll answer fail to decode, which ended
/// `next_update` with an error, so `talk chat` stopped.
#[tokio::test]
async fn r23_5_what_a_newer_server_adds_is_passed_over_in_order() {
    let history = [
        event(1, r#""type":"join""#),
        event(2, r#""type":"reaction","on":1,"emoji":"+1""#),
        event(3, r#""type":"message","text":"hello","id":"m3""#),
    ];
    let news = [
        event(4, r#""type":"message","text":"before","id":"m4""#),
        event(5, r#""type":"topic","topic":"tea""#),
        event(6, r#""type":"leave","reason":"kicked","by":"bea""#),
        event(7, r#""type":"message_deleted","id":"m4""#),
    ];
    let answers = vec![
        format!(
            r#"{{"channel":"lobby","cursor":"e1:3","reset":"purge","events":[{}]}}"#,
            history.join(",")
        ),
        format!(
            r#"{{"channel":"lobby","cursor":"e1:7","events":[{}],"mood":"new"}}"#,
            news.join(",")
        ),
    ];
    let sent = r#"{"ok":true,"seq":8,"reply":{"type":"poll","question":"tea?"}}"#;
    let mut server = canned::start(answers, sent.to_owned()).await;
    let mut config = ClientConfig::new(&server.url);
    config.resume = Some(ResumePoint {
        token: "0".repeat(32),
        name: "ada".into(),
        color: "ff8800".into(),
        channel: "lobby".into(),
        cursor: None,
    });
    let client = talk_client::Client::connect(config).await.unwrap();

    // Every event comes, in order; one of a type the client does not know
    // has the kind `Unknown`, which callers show nothing for.
    assert_eq!(
        describe(&next(&client).await),
        ["reset:unknown:lobby", "join ada", "Unknown", "ada: hello"]
    );
    let mut lines = Vec::new();
    for _ in 0..news.len() {
        lines.extend(describe(&next(&client).await));
    }
    assert_eq!(
        lines,
        ["ada: before", "Unknown", "leave ada Unknown", "Unknown"]
    );

    // The next poll carries on after the last event, unknown as it is.
    let mut cursors = Vec::new();
    while cursors.len() < 3 {
        tokio::select! {
            biased;
            poll = server.polls.recv() => {
                let poll = poll.expect("the server records every poll");
                cursors.push(poll["cursor"].as_str().unwrap_or("none").to_owned());
            }
            update = client.next_update() => panic!("nothing more was canned: {update:?}"),
        }
    }
    assert_eq!(cursors, ["none", "e1:3", "e1:7"]);
    assert_eq!(client.resume_point().cursor.unwrap().to_string(), "e1:7");

    // A command of the newer server went through; its reply is unknown.
    let answer = client.send("/poll tea?").await.unwrap();
    assert_eq!((answer.seq, answer.reply), (Some(8), Some(Reply::Unknown)));
}
