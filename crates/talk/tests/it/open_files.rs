//! Near its open-files limit the server makes room for new clients (issue
//! 22, row 6): it closes connections stalled in the middle of a request,
//! oldest first, then idle keep-alive connections, the longest idle first,
//! and never a held poll. The real binary runs under `prlimit --nofile=512`.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::support::{find, metric, wait_until, ServerProcess};

/// The server's open-files limit; it closes connections from 95% of it.
const LIMIT: usize = 512;
const HELD_POLLS: usize = 20;
/// Idle keep-alive connections, older than every stalled request.
const IDLE: usize = 150;
/// Stalled requests opened first: the server is then still below 95%.
const STALLED_OLD: usize = 250;
/// Stalled requests opened next, which take the server past 95%.
const STALLED_NEW: usize = 100;

/// Whether `prlimit` (util-linux) is there; says loudly when it is not,
/// which fails in CI, where it must be.
fn prlimit_found() -> bool {
    if Command::new("prlimit").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "prlimit is required in CI but is not installed"
    );
    eprintln!("SKIPPED open-files test: prlimit is not installed (apt-get install util-linux)");
    false
}

/// One blocking HTTP/1.1 connection.
struct Http {
    stream: TcpStream,
    unread: Vec<u8>,
}

impl Http {
    fn connect(address: SocketAddr) -> Http {
        let stream = TcpStream::connect(address).expect("connecting");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Http {
            stream,
            unread: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("sending");
    }

    fn post(&mut self, path: &str, body: &str) {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.send(request.as_bytes());
    }

    /// Reads one answer (it has a `content-length`): its status and JSON
    /// body; `None` if the server closed the connection or said nothing
    /// for 20 s.
    fn answer(&mut self) -> Option<(u16, serde_json::Value)> {
        loop {
            if let Some(end) = find(&self.unread, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.unread[..end]).into_owned();
                let length: usize = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().unwrap())
                    })
                    .expect("a content-length");
                if self.unread.len() >= end + 4 + length {
                    let body: Vec<u8> = self.unread.drain(..end + 4 + length).collect();
                    let json = serde_json::from_slice(&body[end + 4..]).unwrap();
                    return Some((head[9..12].parse().unwrap(), json));
                }
            }
            let mut chunk = [0; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.unread.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn ok_answer(&mut self) -> serde_json::Value {
        match self.answer() {
            Some((200, json)) => json,
            other => panic!("no 200 answer: {other:?}"),
        }
    }

    /// Whether the server has closed the connection; it must have sent
    /// nothing else.
    fn closed_by_server(&self) -> bool {
        self.stream.set_nonblocking(true).unwrap();
        let mut byte = [0; 1];
        let peeked = self.stream.peek(&mut byte);
        self.stream.set_nonblocking(false).unwrap();
        match peeked {
            Ok(0) => true,
            Ok(_) => panic!("the server sent something unasked"),
            Err(error) if error.kind() == ErrorKind::WouldBlock => false,
            Err(_) => true,
        }
    }
}

/// Sessions whose polls the server holds, with their connections. All
/// start before any polls, so that no one's join answers another's poll.
fn held_polls(address: SocketAddr, count: usize) -> Vec<(Http, String)> {
    let mut polls: Vec<(Http, String)> = (0..count)
        .map(|index| {
            let mut http = Http::connect(address);
            http.post(
                "/broadcast",
                &format!(r#"{{"op":"start","name":"poller-{index}"}}"#),
            );
            let token = http.ok_answer()["token"].as_str().unwrap().to_owned();
            (http, token)
        })
        .collect();
    for (http, token) in &mut polls {
        http.post("/poll", &format!(r#"{{"token":"{token}"}}"#));
        let cursor = http.ok_answer()["cursor"].clone();
        poll_again(http, token, &cursor);
    }
    polls
}

fn poll_again(http: &mut Http, token: &str, cursor: &serde_json::Value) {
    http.post(
        "/poll",
        &format!(r#"{{"token":"{token}","channel":"lobby","cursor":{cursor}}}"#),
    );
}

/// A keep-alive connection that has had one answer and now waits.
fn idle_connection(address: SocketAddr) -> Http {
    let mut http = Http::connect(address);
    http.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    http.ok_answer();
    http
}

/// A connection stalled in its request: half of them in the head, half in
/// the body.
fn stalled_request(address: SocketAddr, index: usize) -> Http {
    let mut http = Http::connect(address);
    if index % 2 == 0 {
        http.send(b"POST /broadcast HTTP/1.1\r\nHost: t\r\nContent-Le");
    } else {
        http.send(b"POST /broadcast HTTP/1.1\r\nHost: t\r\nContent-Length: 99\r\n\r\n{\"op\"");
    }
    // Apart in time, so that the server sees them in this order: it closes
    // stalled requests by when their first byte came, so here time itself
    // must pass; there is no condition to wait on instead.
    std::thread::sleep(Duration::from_millis(2));
    http
}

/// A new client gets in: `/healthz` answers, and a new session can poll
/// and send (to `text`), which every held poll receives.
fn a_new_client_gets_in(address: SocketAddr, name: &str, text: &str) {
    let mut health = Http::connect(address);
    health.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(health.ok_answer()["status"], "ok", "healthz");
    let mut client = Http::connect(address);
    client.post(
        "/broadcast",
        &format!(r#"{{"op":"start","name":"{name}"}}"#),
    );
    let token = client.ok_answer()["token"].as_str().unwrap().to_owned();
    client.post("/poll", &format!(r#"{{"token":"{token}","wait_ms":0}}"#));
    client.ok_answer();
    client.post(
        "/broadcast",
        &format!(r#"{{"op":"send","token":"{token}","id":"{name}","text":"{text}"}}"#),
    );
    client.ok_answer();
}

/// Every held poll receives `text` (after the newcomer's join, perhaps),
/// and polls again.
fn held_polls_receive(polls: &mut [(Http, String)], text: &str) {
    for (index, (http, token)) in polls.iter_mut().enumerate() {
        let mut received = false;
        for _ in 0..5 {
            let answer = http
                .answer()
                .unwrap_or_else(|| panic!("held poll {index} was closed"));
            assert_eq!(answer.0, 200, "held poll {index}: {answer:?}");
            let events = answer.1["events"].as_array().unwrap();
            received = events.iter().any(|event| event["text"] == text);
            poll_again(http, token, &answer.1["cursor"]);
            if received {
                break;
            }
        }
        assert!(received, "held poll {index} did not get {text:?}");
    }
}

/// Which of `connections` the server closed, by index.
fn closed(connections: &[Http]) -> Vec<usize> {
    (0..connections.len())
        .filter(|&index| connections[index].closed_by_server())
        .collect()
}

/// Checks that the closed connections are the oldest of `connections`
/// (give or take a few the server may have seen in another order).
fn check_oldest_closed(group: &str, connections: &[Http]) {
    let closed = closed(connections);
    assert!(!closed.is_empty(), "no {group} connection was closed");
    let slack = 5;
    assert!(
        closed.iter().all(|&index| index < closed.len() + slack),
        "{group}: not the oldest closed: {closed:?}"
    );
}

#[test]
fn r22_near_the_open_files_limit_stalled_then_idle_connections_make_room() {
    if !prlimit_found() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new("prlimit");
    command.args([
        &format!("--nofile={LIMIT}:{LIMIT}"),
        env!("CARGO_BIN_EXE_talk"),
    ]);
    // Long timeouts: every connection closed here is closed for room.
    let flags = [
        "--request-timeout",
        "300",
        "--poll-timeout",
        "300",
        "--session-grace",
        "600",
    ];
    let server = ServerProcess::start_with(command, "127.0.0.1:0", data.path(), &flags);
    let address = server.address;

    let mut polls = held_polls(address, HELD_POLLS);
    wait_until("polls held", || {
        metric(address, "talk_polls_held") == HELD_POLLS as i64
    });
    let idle: Vec<Http> = (0..IDLE).map(|_| idle_connection(address)).collect();
    let stalled_old: Vec<Http> = (0..STALLED_OLD)
        .map(|index| stalled_request(address, index))
        .collect();
    let in_use = (HELD_POLLS + IDLE + STALLED_OLD) as i64;
    // The metrics' own connection counts too.
    wait_until("connections accepted", || {
        metric(address, "talk_connections") == in_use + 1
    });
    assert!(closed(&stalled_old).is_empty(), "closed below 95%");
    // Past 95% of the limit, and on to more connections than it allows.
    let stalled_new: Vec<Http> = (0..STALLED_NEW)
        .map(|index| stalled_request(address, index))
        .collect();

    a_new_client_gets_in(address, "newcomer", "still here");
    held_polls_receive(&mut polls, "still here");
    wait_until("stalled requests closed", || {
        !closed(&stalled_old).is_empty()
    });
    check_oldest_closed("stalled", &stalled_old);
    assert_eq!(closed(&stalled_new), Vec::<usize>::new(), "newer stalled");
    assert_eq!(closed(&idle), Vec::<usize>::new(), "idle before stalled");

    // With no stalled request left, idle connections make room, the
    // longest idle first; held polls still never do.
    drop(stalled_old);
    drop(stalled_new);
    wait_until("polls held again", || {
        let held = metric(address, "talk_polls_held");
        eprintln!("held {held}");
        held == HELD_POLLS as i64
    });
    wait_until("stalled connections gone", || {
        metric(address, "talk_connections") == (HELD_POLLS + IDLE) as i64 + 1
    });
    let newer_idle: Vec<Http> = (0..LIMIT - HELD_POLLS - IDLE)
        .map(|_| idle_connection(address))
        .collect();
    a_new_client_gets_in(address, "latecomer", "still polling");
    held_polls_receive(&mut polls, "still polling");
    wait_until("idle connections closed", || !closed(&idle).is_empty());
    check_oldest_closed("idle", &idle);
    assert_eq!(closed(&newer_idle), Vec::<usize>::new(), "newer idle");
    assert!(
        metric(address, "talk_connections_closed_for_room_total") > 0,
        "counted"
    );
}
