//! The store failing under the chat: commits that fail inside SQLite (the
//! test hook `StoreFaults`) while clients send, join and start. Nothing a
//! client is shown or told was kept may be missing from disk, positions
//! stay gapless, and a refused request changes nothing. Each test reads the
//! database itself to check what is on disk.

use std::path::Path;
use std::time::Duration;

use talk_client::protocol::{Event, Reply};
use talk_server::{Config, StoreFaults};

use crate::support::{message_texts, test_config, TestServer};

/// A server whose store fails when the test says so.
async fn server_with_faults() -> (TestServer, StoreFaults) {
    let faults = StoreFaults::default();
    let server = TestServer::start_with(faults_config(&faults)).await;
    (server, faults)
}

fn faults_config(faults: &StoreFaults) -> Config {
    Config {
        store_faults: Some(faults.clone()),
        ..test_config()
    }
}

/// One stored event, as a test reads it from the database.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OnDisk {
    pub(crate) seq: u64,
    pub(crate) sender: Option<String>,
    pub(crate) send_id: Option<String>,
    pub(crate) event: Event,
}

/// Every event of `channel` on disk, in position order (read through a
/// connection of the test's own, which sees what was committed).
pub(crate) fn on_disk(data: &Path, channel: &str) -> Vec<OnDisk> {
    let connection = rusqlite::Connection::open_with_flags(
        data.join("talk.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("the database opens");
    let mut rows = connection
        .prepare("SELECT seq, sender, send_id, body FROM events WHERE channel = ?1 ORDER BY seq")
        .unwrap();
    rows.query_map([channel], |row| {
        let body: Vec<u8> = row.get(3)?;
        Ok(OnDisk {
            seq: row.get::<_, i64>(0)? as u64,
            sender: row.get(1)?,
            send_id: row.get(2)?,
            event: serde_json::from_slice(&body).expect("a stored event is JSON"),
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The texts of the stored messages.
fn texts_on_disk(data: &Path, channel: &str) -> Vec<String> {
    let events: Vec<Event> = on_disk(data, channel)
        .into_iter()
        .map(|row| row.event)
        .collect();
    message_texts(&events)
}

/// Panics unless the positions are 1, 2, 3, … with no gap.
fn assert_gapless(seqs: impl IntoIterator<Item = u64>) {
    let seqs: Vec<u64> = seqs.into_iter().collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "positions must be 1, 2, 3, … with no gap");
}

/// The status and code of `/healthz`.
async fn health(server: &TestServer) -> (u16, String) {
    let response = reqwest::get(server.url("/healthz")).await.unwrap();
    let status = response.status().as_u16();
    let json: serde_json::Value = response.json().await.unwrap();
    (
        status,
        json["status"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn r22_1_a_refused_send_is_never_shown_nor_acknowledged_and_its_retry_is_new() {
    let (server, faults) = server_with_faults().await;
    let ada = server.person("ada").await;
    let mut bob = server.person("bob").await;
    // Bob holds a poll at the head through the failure.
    let mut bob_poll = {
        let mut bob = server.person("bob-watch").await;
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while message_texts(&seen).len() < 2 {
                seen.extend(bob.poll(5_000).await.events);
            }
            seen
        })
    };
    let head = bob.poll(0).await.cursor.seq;

    faults.fail_commits(true);
    for id in ["lost-1", "lost-2"] {
        let refused = ada.api.send(ada.token(), id, id).await.unwrap_err();
        assert_eq!(refused.code(), Some("store_unavailable"), "{refused}");
    }
    // A retry while commits still fail is refused too, at once: it does not
    // wait for some unrelated commit.
    let retry = tokio::time::timeout(
        Duration::from_secs(5),
        ada.api.send(ada.token(), "lost-1", "lost-1"),
    )
    .await
    .expect("a retry during the failure is answered");
    assert_eq!(retry.unwrap_err().code(), Some("store_unavailable"));
    assert_eq!(health(&server).await, (503, "store_failing".into()));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut bob_poll)
            .await
            .is_err(),
        "nothing refused may answer a held poll"
    );

    faults.fail_commits(false);
    let kept = ada.api.send(ada.token(), "kept", "kept").await.unwrap();
    assert_eq!(kept.seq, Some(head + 1), "positions stay gapless");
    assert!(!kept.duplicate);
    // The refused id, sent again, is a new message.
    let again = ada.api.send(ada.token(), "lost-1", "lost-1").await.unwrap();
    assert_eq!((again.seq, again.duplicate), (Some(head + 2), false));
    assert_eq!(health(&server).await, (200, "ok".into()));

    let seen = tokio::time::timeout(Duration::from_secs(10), bob_poll)
        .await
        .expect("the held poll gets the kept messages")
        .unwrap();
    assert_eq!(message_texts(&seen), ["kept", "lost-1"]);
    assert_eq!(bob.texts(2).await, ["kept", "lost-1"]);
    let data = server.stop().await;
    assert_gapless(on_disk(data.path(), "lobby").iter().map(|row| row.seq));
    assert_eq!(texts_on_disk(data.path(), "lobby"), ["kept", "lost-1"]);
}

#[tokio::test]
async fn r22_2_a_join_the_store_refuses_leaves_the_session_where_it_was() {
    let (server, faults) = server_with_faults().await;
    let mut ada = server.person("ada").await;
    faults.fail_commits(true);
    let refused = ada.api.send(ada.token(), "j1", "/join newchan").await;
    assert_eq!(refused.unwrap_err().code(), Some("store_unavailable"));
    faults.fail_commits(false);
    // Still in the lobby: her next message lands there, and her poll goes on
    // in the lobby with no reset.
    let who = ada.api.send(ada.token(), "w1", "/who").await.unwrap();
    assert!(
        matches!(&who.reply, Some(Reply::Who { channel, .. }) if channel == "lobby"),
        "{who:?}"
    );
    ada.say("still here").await;
    let answer = ada.poll(1_000).await;
    assert_eq!((answer.channel.as_str(), answer.reset), ("lobby", None));
    assert_eq!(message_texts(&answer.events), ["still here"]);
    let listed = ada.api.send(ada.token(), "l1", "/list").await.unwrap();
    let Some(Reply::List { channels }) = listed.reply else {
        panic!("a list");
    };
    assert!(
        channels.iter().all(|channel| channel.name != "newchan"),
        "no member was left behind in newchan: {channels:?}"
    );
}

#[tokio::test]
async fn r22_2_a_channel_first_used_after_a_failure_keeps_its_history_across_restarts() {
    let (server, faults) = server_with_faults().await;
    let ada = server.person("ada").await;
    faults.fail_commits(true);
    let refused = ada.api.send(ada.token(), "j1", "/join newchan").await;
    assert_eq!(refused.unwrap_err().code(), Some("store_unavailable"));
    faults.fail_commits(false);
    ada.api
        .send(ada.token(), "j2", "/join newchan")
        .await
        .unwrap();
    for index in 0..3 {
        let id = format!("first-{index}");
        ada.api.send(ada.token(), &id, &id).await.unwrap();
    }
    // Two restarts, with more messages in between: nothing acknowledged is
    // written over, and history stays in order.
    let data = server.stop().await;
    let server = TestServer::start_in(faults_config(&faults), data).await;
    let carol = server
        .api
        .start(Some("carol"), None, Some("newchan"))
        .await
        .unwrap();
    for index in 0..2 {
        let id = format!("second-{index}");
        server.api.send(&carol.token, &id, &id).await.unwrap();
    }
    let data = server.stop().await;
    let server = TestServer::start_in(faults_config(&faults), data).await;
    let mut dave = server.person("dave").await;
    dave.api
        .send(dave.token(), "j3", "/join newchan")
        .await
        .unwrap();
    let history = dave.poll(1_000).await;
    let expected = ["first-0", "first-1", "first-2", "second-0", "second-1"];
    assert_eq!(message_texts(&history.events), expected);
    let data = server.stop().await;
    let stored = on_disk(data.path(), "newchan");
    assert_gapless(stored.iter().map(|row| row.seq));
    assert_eq!(texts_on_disk(data.path(), "newchan"), expected);
}

#[tokio::test]
async fn r22_4_send_ids_belong_to_their_sender_across_sessions_and_restarts() {
    let server = TestServer::start().await;
    let ada = server.person("ada").await;
    let bob = server.person("bob").await;
    let from_ada = ada.api.send(ada.token(), "m1", "from ada").await.unwrap();
    let from_bob = bob.api.send(bob.token(), "m1", "from bob").await.unwrap();
    assert!(!from_bob.duplicate, "another person's id is a new message");
    assert_eq!(from_bob.seq, Some(from_ada.seq.unwrap() + 1));
    // Ada's client loses its session and starts another under her name,
    // then resends: a duplicate of her own message, whatever the case.
    ada.api.leave(ada.token()).await.unwrap();
    let again = server.api.start(Some("Ada"), None, None).await.unwrap();
    assert_eq!(again.name, "Ada");
    let retry = server
        .api
        .send(&again.token, "m1", "from ada")
        .await
        .unwrap();
    assert_eq!((retry.seq, retry.duplicate), (from_ada.seq, true));
    // And after a restart.
    let data = server.stop().await;
    let server = TestServer::start_in(test_config(), data).await;
    let ada = server.person("ada").await;
    let retry = ada.api.send(ada.token(), "m1", "from ada").await.unwrap();
    assert_eq!((retry.seq, retry.duplicate), (from_ada.seq, true));
    let bob = server.person("bob").await;
    let retry = bob.api.send(bob.token(), "m1", "from bob").await.unwrap();
    assert_eq!((retry.seq, retry.duplicate), (from_bob.seq, true));
    let data = server.stop().await;
    let texts = texts_on_disk(data.path(), "lobby");
    assert_eq!(texts, ["from ada", "from bob"]);
}

#[tokio::test]
async fn r22_4_a_data_dir_from_before_senders_gains_them_when_it_opens() {
    let data = tempfile::tempdir().unwrap();
    {
        // The schema as version 0 of the store wrote it.
        let connection = rusqlite::Connection::open(data.path().join("talk.sqlite3")).unwrap();
        connection
            .execute_batch(
                r#"CREATE TABLE channels (name TEXT PRIMARY KEY, epoch TEXT NOT NULL) WITHOUT ROWID;
                CREATE TABLE events (channel TEXT NOT NULL, seq INTEGER NOT NULL, send_id TEXT,
                    body BLOB NOT NULL, PRIMARY KEY (channel, seq)) WITHOUT ROWID;
                INSERT INTO channels VALUES ('lobby', 'old0epoch');
                INSERT INTO events VALUES ('lobby', 1, NULL,
                    CAST('{"seq":1,"ts":1,"from":"Ada","color":"ffcc00","type":"join"}' AS BLOB));
                INSERT INTO events VALUES ('lobby', 2, 'm1',
                    CAST('{"seq":2,"ts":2,"from":"Ada","color":"ffcc00","type":"message","text":"hi","id":"m1"}' AS BLOB));
                INSERT INTO events VALUES ('games', 1, 'g1',
                    CAST('{"seq":1,"ts":3,"from":"bob","color":"ffcc00","type":"message","text":"orphan","id":"g1"}' AS BLOB));"#,
            )
            .unwrap();
    }
    let server = TestServer::start_in(test_config(), data).await;
    let ada = server.person("ada").await;
    let retry = ada.api.send(ada.token(), "m1", "hi").await.unwrap();
    assert_eq!((retry.seq, retry.duplicate), (Some(2), true));
    let bob = server.person("bob").await;
    let other = bob.api.send(bob.token(), "m1", "hi").await.unwrap();
    assert!(!other.duplicate);
    // A channel whose row was never written keeps its events and positions.
    bob.api.send(bob.token(), "j", "/join games").await.unwrap();
    let retry = bob.api.send(bob.token(), "g1", "orphan").await.unwrap();
    assert_eq!((retry.seq, retry.duplicate), (Some(1), true));
    let data = server.stop().await;
    let games = on_disk(data.path(), "games");
    assert_gapless(games.iter().map(|row| row.seq));
    assert_eq!(games[0].event.message_text(), Some("orphan"));
    let lobby = on_disk(data.path(), "lobby");
    assert_eq!(lobby[1].sender.as_deref(), Some("ada"));
}

#[tokio::test]
async fn r22_5_a_start_the_store_refuses_leaves_no_session_nor_name() {
    let (server, faults) = server_with_faults().await;
    let watcher = server.person("watcher").await;
    faults.fail_commits(true);
    let refused = server.api.start(Some("ada"), None, None).await.unwrap_err();
    assert_eq!(refused.code(), Some("store_unavailable"), "{refused}");
    faults.fail_commits(false);
    let started = server.api.start(Some("ada"), None, None).await.unwrap();
    assert_eq!((started.name.as_str(), started.notice), ("ada", None));
    let who = watcher
        .api
        .send(watcher.token(), "w", "/who")
        .await
        .unwrap();
    let Some(Reply::Who { members, .. }) = who.reply else {
        panic!("a member list");
    };
    let names: Vec<&str> = members.iter().map(|member| member.name.as_str()).collect();
    assert_eq!(names, ["ada", "watcher"]);
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("talk_sessions 2\n"), "{metrics}");
}

/// One event as a watcher saw it, checked against the disk at that moment.
fn check_on_disk(connection: &rusqlite::Connection, event: &Event) -> Result<(), String> {
    let stored: Option<Vec<u8>> = connection
        .query_row(
            "SELECT body FROM events WHERE channel = 'lobby' AND seq = ?1",
            [event.seq as i64],
            |row| row.get(0),
        )
        .ok();
    let stored: Option<Event> = stored.map(|body| serde_json::from_slice(&body).unwrap());
    match stored {
        Some(stored) if stored == *event => Ok(()),
        Some(stored) => Err(format!("shown {event:?}, but stored {stored:?}")),
        None => Err(format!("shown {event:?}, which is not on disk")),
    }
}

fn read_only(data: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        data.join("talk.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
}

// Before the fix a later event of a channel could be queued for the store
// ahead of an earlier one and, once committed, make the earlier one visible
// before its own commit: slow commits alone showed it in two runs of five.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r22_3_with_slow_commits_nothing_unstored_is_shown_and_positions_stay_gapless() {
    many_senders_under_faults(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r22_3_with_failing_commits_nothing_unstored_is_shown_and_positions_stay_gapless() {
    many_senders_under_faults(4).await;
}

/// Many sessions on several runtime threads send to one channel while
/// commits are slowed at random and, with `fail_one_in` above 0, fail at
/// random; two watchers check each event they are shown against the disk
/// at once, and every acknowledgement is checked there too.
async fn many_senders_under_faults(fail_one_in: u32) {
    const SENDERS: usize = 8;
    const MESSAGES: usize = 40;
    const WATCHERS: usize = 2;
    let (server, faults) = server_with_faults().await;
    let data = server.data.path().to_owned();
    let mut watchers = Vec::new();
    for index in 0..WATCHERS {
        watchers.push(server.person(&format!("watcher{index}")).await);
    }
    let mut senders = Vec::new();
    for index in 0..SENDERS {
        senders.push(server.person(&format!("sender{index}")).await);
    }
    let mut head = 0;
    for watcher in &mut watchers {
        head = watcher.poll(0).await.cursor.seq;
    }
    // Each watcher polls until it has seen every message, and checks each
    // event it is shown against the disk at once.
    let watching: Vec<_> = watchers
        .into_iter()
        .map(|mut watcher| {
            let data = data.clone();
            tokio::spawn(async move {
                let connection = read_only(&data);
                let mut seqs = Vec::new();
                let mut n_messages = 0;
                while n_messages < SENDERS * MESSAGES {
                    let answer = tokio::time::timeout(Duration::from_secs(20), watcher.poll(2_000))
                        .await
                        .expect("the watcher's poll is answered");
                    assert_eq!(answer.reset, None, "no reset: every event arrives");
                    for event in &answer.events {
                        check_on_disk(&connection, event).unwrap();
                        seqs.push(event.seq);
                    }
                    n_messages += message_texts(&answer.events).len();
                }
                seqs
            })
        })
        .collect();
    faults.fail_commits_at_random(fail_one_in);
    faults.delay_commits(Duration::from_millis(3));
    // Every sender sends its messages two at a time, retrying each refused
    // one under the same id until it is acknowledged.
    let sending: Vec<_> = senders
        .into_iter()
        .map(|sender| {
            let data = data.clone();
            tokio::spawn(async move {
                let connection = read_only(&data);
                let name = sender.start.name.clone();
                let sender = &sender;
                let send = |index: usize| {
                    let id = format!("{name}-{index}");
                    async move {
                        let mut refusals = 0;
                        loop {
                            match sender.api.send(sender.token(), &id, &id).await {
                                Ok(answer) => return (id, answer, refusals),
                                Err(error) if error.code() == Some("store_unavailable") => {
                                    refusals += 1;
                                    assert!(refusals < 200, "refused for ever");
                                }
                                Err(error) => panic!("{id}: {error}"),
                            }
                        }
                    }
                };
                let mut acknowledged = Vec::new();
                for pair in (0..MESSAGES).collect::<Vec<_>>().chunks(2) {
                    let answers = futures::future::join_all(pair.iter().map(|index| send(*index))).await;
                    for (id, answer, refusals) in answers {
                        assert!(!answer.duplicate, "{id}: no original was acknowledged");
                        let seq = answer.seq.expect("a message has a position");
                        let (stored_id, stored_text): (Option<String>, Vec<u8>) = connection
                            .query_row(
                                "SELECT send_id, body FROM events WHERE channel = 'lobby' AND seq = ?1",
                                [seq as i64],
                                |row| Ok((row.get(0)?, row.get(1)?)),
                            )
                            .unwrap_or_else(|error| panic!("{id} acknowledged at {seq}: {error}"));
                        assert_eq!(stored_id.as_deref(), Some(id.as_str()));
                        let stored: Event = serde_json::from_slice(&stored_text).unwrap();
                        assert_eq!(stored.message_text(), Some(id.as_str()));
                        acknowledged.push((seq, refusals));
                    }
                }
                acknowledged
            })
        })
        .collect();
    let mut n_refused = 0;
    let mut acknowledged = Vec::new();
    for sender in sending {
        for (seq, refusals) in sender.await.unwrap() {
            acknowledged.push(seq);
            n_refused += refusals;
        }
    }
    faults.fail_commits_at_random(0);
    faults.delay_commits(Duration::ZERO);
    let mut shown = Vec::new();
    for watcher in watching {
        shown.push(watcher.await.unwrap());
    }
    if fail_one_in > 0 {
        assert!(n_refused > 0, "the faults refused some sends");
    }
    let stored = on_disk(&data, "lobby");
    assert_gapless(stored.iter().map(|row| row.seq));
    // Each message is on disk once, and each watcher saw exactly what is
    // on disk after its cursor, in order.
    let ids: std::collections::HashSet<_> = stored
        .iter()
        .filter_map(|row| row.send_id.clone())
        .collect();
    assert_eq!(ids.len(), SENDERS * MESSAGES);
    let after_head: Vec<u64> = stored
        .iter()
        .map(|row| row.seq)
        .filter(|seq| *seq > head)
        .collect();
    for seqs in shown {
        assert_eq!(seqs, after_head);
    }
    acknowledged.sort_unstable();
    assert_eq!(acknowledged.len(), SENDERS * MESSAGES);
}
