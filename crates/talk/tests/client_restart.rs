//! The client library across a server crash: the real `talk` binary is
//! killed with SIGKILL while messages are being sent and polled, and started
//! again on the same port and data folder. The receiving caller must get
//! every message exactly once, in order.

mod talk_process;

use std::time::Duration;

use talk_client::protocol::EventKind;
use talk_client::{Client, ClientConfig, Update};
use talk_process::TalkServer;

const N_MESSAGES: usize = 40;

async fn connect(url: &str, name: &str) -> Client {
    let mut config = ClientConfig::new(url);
    config.name = Some(name.to_owned());
    config.retry_for = Duration::from_secs(60);
    Client::connect(config).await.expect("a session starts")
}

/// What the receiver saw: ada's message texts, and how often the connection
/// was lost.
#[derive(Debug, Default)]
struct Seen {
    texts: Vec<String>,
    connection_losses: usize,
    resets: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_lose_and_duplicate_nothing() {
    let data = tempfile::tempdir().unwrap();
    let mut server = TalkServer::start("127.0.0.1:0", data.path());
    let url = server.url.clone();

    let bea = connect(&url, "bea").await;
    // The first answer is the (empty) history; after it, only new events.
    let first = bea.next_update().await.unwrap().unwrap();
    assert!(matches!(first, Update::Reset { .. }), "{first:?}");
    let receiving = tokio::spawn(async move {
        let mut seen = Seen::default();
        loop {
            match bea.next_update().await.expect("polling goes on").unwrap() {
                Update::Event { event, .. } => {
                    if let EventKind::Message { text, .. } = event.kind {
                        if event.from == "ada" {
                            if text == "end" {
                                return seen;
                            }
                            seen.texts.push(text);
                        }
                    }
                }
                Update::Reset { events, .. } => {
                    // A reset would replace the view: count it, and keep
                    // its messages so that a loss shows as a wrong list.
                    seen.resets += 1;
                    for event in events {
                        if let EventKind::Message { text, .. } = event.kind {
                            seen.texts.push(text);
                        }
                    }
                }
                Update::ConnectionLost { .. } => seen.connection_losses += 1,
                _ => {}
            }
        }
    });

    let ada = connect(&url, "ada").await;
    let sender = ada.clone();
    let sending = tokio::spawn(async move {
        for number in 0..N_MESSAGES {
            sender
                .send(&format!("m{number}"))
                .await
                .expect("the send goes through");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    // Kill the server in the middle of the stream of sends and polls.
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.kill_9();
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.restart();
    tokio::time::timeout(Duration::from_secs(60), sending)
        .await
        .expect("all sends done within 60 s")
        .unwrap();
    ada.send("end").await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(60), receiving)
        .await
        .expect("every message received within 60 s")
        .unwrap();

    let expected: Vec<String> = (0..N_MESSAGES).map(|number| format!("m{number}")).collect();
    assert_eq!(seen.texts, expected, "lost, duplicated or reordered");
    assert_eq!(seen.resets, 0, "the cursor should have carried on");
    assert!(
        seen.connection_losses >= 1,
        "the receiver never noticed the crash: {seen:?}"
    );
    ada.leave().await.unwrap();
}
