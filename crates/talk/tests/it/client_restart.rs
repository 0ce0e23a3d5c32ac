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
use tokio::sync::watch;
use tokio::task::JoinHandle;

const N_MESSAGES: usize = 40;

async fn connect(url: &str, name: &str) -> Client {
    let mut config = ClientConfig::new(url);
    config.name = Some(name.to_owned());
    config.retry_for = Duration::from_secs(60);
    // Short, so that a receiver told to reconnect soon finds the server down.
    config.reconnect_pause = Duration::from_millis(100);
    Client::connect(config).await.expect("a session starts")
}

/// How long any one expected thing may take.
const PATIENCE: Duration = Duration::from_secs(20);

/// What the receiver saw.
#[derive(Clone, Debug, Default)]
struct Seen {
    /// ada's message texts, in the order they came.
    texts: Vec<String>,
    /// Failed polls.
    failures: usize,
    /// Polls answered with `reconnect: true`.
    going_away: usize,
    resets: usize,
}

/// Starts a receiver that takes updates until ada says "end"; what it has
/// seen so far can be watched while it runs.
async fn start_receiving(url: &str) -> (JoinHandle<Seen>, watch::Receiver<Seen>) {
    let bea = connect(url, "bea").await;
    // The first answer is the (empty) history; after it, only new events.
    let first = bea.next_update().await.unwrap().unwrap();
    assert!(matches!(first, Update::Reset { .. }), "{first:?}");
    let (seen_so_far, watching) = watch::channel(Seen::default());
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
                Update::ConnectionLost {
                    reason: LostReason::ServerGoingAway,
                    ..
                } => seen.going_away += 1,
                Update::ConnectionLost { .. } => seen.failures += 1,
                _ => {}
            }
            seen_so_far.send_replace(seen.clone());
        }
    });
    (receiving, watching)
}

/// Waits until what the receiver has seen satisfies `condition`.
async fn wait_until_seen(
    watching: &mut watch::Receiver<Seen>,
    condition: impl FnMut(&Seen) -> bool,
) {
    let waited = tokio::time::timeout(PATIENCE, watching.wait_for(condition))
        .await
        .map(|seen| seen.is_ok());
    match waited {
        Ok(true) => {}
        Ok(false) => panic!("the receiver ended before ada said end"),
        Err(_) => panic!("the receiver did not see it: {:?}", *watching.borrow()),
    }
}

/// Sends `m0`, `m1`, ... from `ada`, 10 ms apart, as a person types, so
/// that the stream lasts long enough to be cut; how many were acknowledged
/// can be watched while it runs.
fn start_sending(
    ada: &Client,
    numbers: std::ops::Range<usize>,
) -> (JoinHandle<()>, watch::Receiver<usize>) {
    let ada = ada.clone();
    let (acknowledged, watching) = watch::channel(0);
    let sending = tokio::spawn(async move {
        for number in numbers {
            ada.send(&format!("m{number}"))
                .await
                .expect("the send goes through");
            acknowledged.send_modify(|acknowledged| *acknowledged += 1);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    (sending, watching)
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

/// Starts the server again on `address` and `data` once the receiver has
/// found it down.
async fn restart_once_found_down(
    watching: &mut watch::Receiver<Seen>,
    address: &str,
    data: &Path,
) -> ServerProcess {
    wait_until_seen(watching, |seen| seen.failures >= 1).await;
    start_server(address, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_lose_and_duplicate_nothing() {
    let data = tempfile::tempdir().unwrap();
    let server = start_server("127.0.0.1:0", data.path());
    let (url, address) = (server.url(), server.address.to_string());
    let (receiving, mut watching) = start_receiving(&url).await;
    let ada = connect(&url, "ada").await;
    let (sending, mut acknowledged) = start_sending(&ada, 0..N_MESSAGES);
    // Kill the server in the middle of the stream of sends and polls, and
    // start it again once the receiver has noticed.
    let some_sent = acknowledged.wait_for(|&acknowledged| acknowledged >= N_MESSAGES / 4);
    tokio::time::timeout(PATIENCE, some_sent)
        .await
        .expect("a quarter of the messages are sent")
        .expect("the sender runs");
    server.kill_9();
    let _server = restart_once_found_down(&mut watching, &address, data.path()).await;
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
    let (receiving, mut watching) = start_receiving(&url).await;
    let ada = connect(&url, "ada").await;
    let half = N_MESSAGES / 2;
    start_sending(&ada, 0..half).0.await.unwrap();
    // The receiver has every message so far and polls again: its poll is
    // held when the server stops and answers it with `reconnect`.
    wait_until_seen(&mut watching, |seen| seen.texts.len() == half).await;
    let status = tokio::task::spawn_blocking(move || {
        server.wait_for_metric("talk_polls_held", 1);
        server.terminate()
    })
    .await
    .unwrap();
    assert!(
        status.success(),
        "talk serve exits 0 on SIGTERM: {status:?}"
    );
    // Sends go on while the server is down; it starts again once the
    // receiver, told to reconnect, has found it down.
    let (sending, _acknowledged) = start_sending(&ada, half..N_MESSAGES);
    let _server = restart_once_found_down(&mut watching, &address, data.path()).await;
    let seen = finish(&ada, sending, receiving).await;
    assert!(
        seen.going_away >= 1,
        "the held poll was not answered with reconnect: {seen:?}"
    );
    ada.leave().await.unwrap();
}
