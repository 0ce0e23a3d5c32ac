//! The server as a process: `kill -9` loses no acknowledged message,
//! SIGTERM releases held polls and exits 0, running out of file
//! descriptors neither spins nor wedges the server, a start that fails
//! says why and never claims to listen, and `--internal-listen` takes
//! `/metrics` off the public listener.

use std::collections::HashSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{message_texts, ServerProcess};
use talk_client::protocol::PollRequest;
use talk_client::Api;

/// How long any one expected thing may take.
const PATIENCE: Duration = Duration::from_secs(20);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn kill_9_keeps_every_acknowledged_message_and_clients_resume_exactly() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start("127.0.0.1:0", data.path(), &["--poll-timeout", "1"]);
    let address = server.address.to_string();
    runtime().block_on(async {
        let api = Api::new(&server.url());
        let reader = api.start(Some("reader"), None, None).await.unwrap();
        let first = api
            .poll(&PollRequest {
                token: reader.token.clone(),
                channel: None,
                cursor: None,
                wait_ms: None,
            })
            .await
            .unwrap();
        let writer = api.start(Some("writer"), None, None).await.unwrap();

        // The writer sends in a loop; the reader takes part of the stream.
        let mut acknowledged = Vec::new();
        for index in 0..200 {
            let text = format!("m{index}");
            api.send(&writer.token, &format!("id{index}"), &text)
                .await
                .unwrap();
            acknowledged.push(text);
        }
        let partway = api
            .poll(&PollRequest {
                token: reader.token.clone(),
                channel: Some(first.channel.clone()),
                cursor: Some(first.cursor.clone()),
                wait_ms: Some(0),
            })
            .await
            .unwrap();
        let mut seen: Vec<String> = message_texts(&partway.events);

        // More sends race the kill: some are acknowledged, the last may not
        // be. The kill comes once the racing sender has had a few answers.
        let (racing_acknowledged, mut n_racing_acknowledged) = tokio::sync::watch::channel(0);
        let racing = {
            let api = api.clone();
            let token = writer.token.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for index in 200..2000 {
                    let text = format!("m{index}");
                    match api.send(&token, &format!("id{index}"), &text).await {
                        Ok(_) => acked.push(text),
                        Err(_) => break,
                    }
                    racing_acknowledged.send_replace(acked.len());
                }
                acked
            })
        };
        let some_acknowledged = n_racing_acknowledged.wait_for(|&acked| acked >= 20);
        tokio::time::timeout(PATIENCE, some_acknowledged)
            .await
            .expect("racing sends are acknowledged")
            .expect("the racing sender runs until the kill");
        server.kill_9();
        acknowledged.extend(racing.await.unwrap());
        assert!(
            acknowledged.len() > 200,
            "some racing sends should have been acknowledged"
        );

        // Restart on the same port and data; the reader's session is gone,
        // so it starts a new one and resumes from its cursor.
        let server = ServerProcess::start(&address, data.path(), &["--poll-timeout", "1"]);
        let api = Api::new(&server.url());
        let reader = api.start(Some("reader"), None, None).await.unwrap();
        let mut cursor = partway.cursor.clone();
        loop {
            let answer = api
                .poll(&PollRequest {
                    token: reader.token.clone(),
                    channel: Some(partway.channel.clone()),
                    cursor: Some(cursor.clone()),
                    wait_ms: Some(0),
                })
                .await
                .unwrap();
            assert_eq!(
                answer.reset, None,
                "the cursor must still be valid after the crash"
            );
            if answer.events.is_empty() {
                break;
            }
            seen.extend(message_texts(&answer.events));
            cursor = answer.cursor;
        }
        // Every acknowledged message, once, in order; at most the one
        // unacknowledged send in flight at the kill may also be there.
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "a message was delivered twice");
        assert!(seen.len() <= acknowledged.len() + 1);
        assert_eq!(
            &seen[..acknowledged.len()],
            &acknowledged[..],
            "acknowledged messages lost or reordered"
        );
        drop(server);
    });
}

#[test]
fn sigterm_answers_held_polls_with_reconnect_and_exits_0() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start("127.0.0.1:0", data.path(), &["--poll-timeout", "30"]);
    let rt = runtime();
    let api = Api::new(&server.url());
    let (token, first) = rt.block_on(async {
        let start = api.start(None, None, None).await.unwrap();
        let request = PollRequest {
            token: start.token.clone(),
            channel: None,
            cursor: None,
            wait_ms: None,
        };
        let first = api.poll(&request).await.unwrap();
        (start.token, first)
    });
    let held = rt.spawn(async move {
        api.poll(&PollRequest {
            token,
            channel: Some(first.channel),
            cursor: Some(first.cursor),
            wait_ms: None,
        })
        .await
    });
    server.wait_for_metric("talk_polls_held", 1);
    let status = server.terminate();
    assert_eq!(status.code(), Some(0));
    let answer = rt
        .block_on(held)
        .unwrap()
        .expect("the held poll is answered, not cut");
    assert!(answer.reconnect);
}

#[test]
fn out_of_file_descriptors_the_server_backs_off_and_recovers() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        panic!("prlimit (util-linux) is needed for this test");
    }
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new("prlimit");
    command.args(["--nofile=64:64", env!("CARGO_BIN_EXE_talk")]);
    let server = ServerProcess::start_with(command, "127.0.0.1:0", data.path(), &[]);
    let pid = server.child.id();
    // Hold more connections than the server has descriptors.
    let hogs: Vec<std::net::TcpStream> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(server.address).ok())
        .collect();
    assert!(hogs.len() > 64, "the kernel accepts into the backlog");
    let cpu_before = cpu_ticks(pid);
    // A measurement over a second of wall time, not a wait for something
    // to happen: the accept loop must not spin for as long as it lasts.
    std::thread::sleep(Duration::from_secs(1));
    let cpu_spent = cpu_ticks(pid) - cpu_before;
    // A spinning accept loop burns the whole second (100 ticks); backing
    // off spends next to nothing.
    assert!(
        cpu_spent < 50,
        "the accept loop spun: {cpu_spent} ticks in 1 s"
    );
    drop(hogs);
    // Once connections close, the server serves again.
    let rt = runtime();
    let api = Api::new(&server.url());
    let started = rt.block_on(async {
        for _ in 0..50 {
            if let Ok(started) = api.start(Some("back"), None, None).await {
                return Some(started);
            }
            // A bounded retry: the server serves again once it has noticed
            // the closed connections.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    });
    assert_eq!(started.expect("the server recovered").name, "back");
}

/// User plus system CPU time of a process, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

// Issue 22, row 9: the line that says where the server listens was printed
// before the history store was opened, so a start that failed announced
// itself all the same.
#[test]
fn r22_a_start_that_fails_exits_non_zero_and_never_says_it_listens() {
    let folder = tempfile::tempdir().unwrap();
    let not_a_folder = folder.path().join("talk-data");
    std::fs::write(&not_a_folder, "a file where the data folder should be").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_talk"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&not_a_folder)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting talk serve");
    // The server must end by itself; one that serves instead is killed
    // (by its PID, through `Child`) and fails the test.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("talk serve kept running on a data folder that is a file");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "exited with {status}");
    assert!(
        !stdout.contains("listening"),
        "a server that cannot start said it listens: {stdout:?}"
    );
    assert!(
        stderr.contains("cannot create the data folder")
            && stderr.contains(&not_a_folder.display().to_string()),
        "the error does not say what is wrong: {stderr:?}"
    );
}

#[test]
fn r22_internal_listen_serves_the_metrics_apart_from_the_chat() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        "127.0.0.1:0",
        data.path(),
        &["--internal-listen", "127.0.0.1:0"],
    );
    let internal = server
        .internal_address
        .expect("the line says where the metrics are");
    assert_ne!(internal, server.address);
    runtime().block_on(async {
        let status = |url: String| async move { reqwest::get(url).await.unwrap().status() };
        assert_eq!(status(format!("http://{internal}/metrics")).await, 200);
        assert_eq!(status(format!("http://{internal}/healthz")).await, 200);
        assert_eq!(status(server.url() + "/metrics").await, 404);
        assert_eq!(status(server.url() + "/healthz").await, 200);
        assert_eq!(status(server.url() + "/talk.html").await, 200);
    });
}
