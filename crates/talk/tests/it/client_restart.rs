//! The client library across server restarts, with the real `talk` binary:
//! killed with SIGKILL in the middle of a stream of sends and polls, or
//! stopped with SIGTERM (held polls answered with `reconnect`), and started
//! again on the same port and data folder. The receiving caller must get
//! every message exactly once, in order, without a reset.

use std::path::Path;
use std::time::Duration;

use crate::support::ServerProcess;
use talk_client::protocol::EventKind;
use talk_client::{Client, ClientConfig, LostReason, Update};
use tokio::task::JoinHandle;

const N_MESSAGES: usize = 40;

async fn connect(url: &str, name: &str) -> Client {
    let mut config = ClientConfig::new(url);
    config.name = Some(name.to_owned());
    config.retry_for = Duration::from_secs(60);
    Client::connect(config).await.expect("a session starts")
}

/// What the receiver saw.
#[derive(Debug, Default)]
struct Seen {
    /// ada's message texts, in the order they came.
    texts: Vec<String>,
    /// Failed polls.
    failures: usize,
    /// Polls answered with `reconnect: true`.
    going_away: usize,
    resets: usize,
}

/// Starts a receiver that takes updates until ada says "end".
async fn start_receiving(url: &str) -> JoinHandle<Seen> {
    let bea = connect(url, "bea").await;
    // The first answer is the (empty) history; after it, only new events.
    let first = bea.next_update().await.unwrap().unwrap();
    assert!(matches!(first, Update::Reset { .. }), "{first:?}");
    tokio::spawn(async move {
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
                Update::ConnectionLost {
                    reason: LostReason::ServerGoingAway,
                    ..
                } => seen.going_away += 1,
                Update::ConnectionLost { .. } => seen.failures += 1,
                _ => {}
            }
        }
    })
}

/// Sends `m0`, `m1`, ... from `ada`, 10 ms apart.
fn start_sending(ada: &Client, numbers: std::ops::Range<usize>) -> JoinHandle<()> {
    let ada = ada.clone();
    tokio::spawn(async move {
        for number in numbers {
            ada.send(&format!("m{number}"))
                .await
                .expect("the send goes through");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// Waits for the senders, says "end", and returns what the receiver saw,
/// after checking it got `m0`..`m{N_MESSAGES - 1}` once each, in order.
async fn finish(ada: &Client, sending: JoinHandle<()>, receiving: JoinHandle<Seen>) -> Seen {
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
    seen
}

fn start_server(listen: &str, data: &Path) -> ServerProcess {
    ServerProcess::start(listen, data, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_lose_and_duplicate_nothing() {
    let data = tempfile::tempdir().unwrap();
    let server = start_server("127.0.0.1:0", data.path());
    let (url, address) = (server.url(), server.address.to_string());
    let receiving = start_receiving(&url).await;
    let ada = connect(&url, "ada").await;
    let sending = start_sending(&ada, 0..N_MESSAGES);
    // Kill the server in the middle of the stream of sends and polls.
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.kill_9();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _server = start_server(&address, data.path());
    let seen = finish(&ada, sending, receiving).await;
    assert!(
        seen.failures >= 1,
        "the receiver never noticed the crash: {seen:?}"
    );
    ada.leave().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_loses_and_duplicates_nothing() {
    let data = tempfile::tempdir().unwrap();
    let server = start_server("127.0.0.1:0", data.path());
    let (url, address) = (server.url(), server.address.to_string());
    let receiving = start_receiving(&url).await;
    let ada = connect(&url, "ada").await;
    let half = N_MESSAGES / 2;
    start_sending(&ada, 0..half).await.unwrap();
    // Quiet for a moment, so the receiver's poll is surely held when the
    // server stops and answers it with `reconnect`.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert!(
        status.success(),
        "talk serve exits 0 on SIGTERM: {status:?}"
    );
    let sending = start_sending(&ada, half..N_MESSAGES);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _server = start_server(&address, data.path());
    let seen = finish(&ada, sending, receiving).await;
    assert!(
        seen.going_away >= 1,
        "the held poll was not answered with reconnect: {seen:?}"
    );
    ada.leave().await.unwrap();
}
