//! A seconds-long fan-out smoke run of the bench against the real Socket.IO
//! server of `bench/peers/socketio/` on Node: the run must be clean
//! (nothing lost, duplicated or reordered) and every poller must get every
//! message. The server pings every second here instead of every 25 s, so
//! that the pollers' pongs are part of the run. Timing is never asserted.
//!
//! Without `node` or the server's `node_modules` (`npm ci` in
//! `bench/peers/socketio`) the test says so and passes, except in CI (`CI`
//! set), where it fails, as the Nchan test does.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use talk_bench::{FanoutConfig, PollTransport, Scenario, Target};
use talk_peers::Socketio;

/// The Node server, ended by its PID when dropped.
struct SocketioServer {
    node: Child,
    base_url: String,
}

impl Drop for SocketioServer {
    fn drop(&mut self) {
        let _ = self.node.kill();
        let _ = self.node.wait();
    }
}

/// The directory of the server, `server.js` and its `node_modules`.
fn server_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("socketio")
}

/// True when `node` and the server's modules are there; otherwise says
/// loudly that the test skips (which fails in CI, where both must be).
fn node_and_modules() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    let missing = if !node {
        Some("node is not installed")
    } else if !server_dir().join("node_modules/socket.io").is_dir() {
        Some("bench/peers/socketio/node_modules is missing")
    } else {
        None
    };
    if let Some(missing) = missing {
        assert!(
            std::env::var_os("CI").is_none(),
            "{missing}, and CI requires it (apt-get install nodejs npm; npm ci in bench/peers/socketio)"
        );
        eprintln!(
            "SKIPPED socketio test: {missing} (apt-get install nodejs npm; npm ci in bench/peers/socketio)"
        );
        return false;
    }
    true
}

impl SocketioServer {
    /// Starts `server.js` on a free port of 127.0.0.1, pinging every
    /// `ping_interval`, and waits for the line saying where it listens.
    fn start(ping_interval: Duration) -> SocketioServer {
        let mut node = Command::new("node")
            .arg("server.js")
            .arg("0")
            .current_dir(server_dir())
            .env(
                "SOCKETIO_PING_INTERVAL_MS",
                ping_interval.as_millis().to_string(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node starts");
        let stdout = node.stdout.take().expect("stdout was piped");
        let (lines, listening) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let line = listening.recv_timeout(Duration::from_secs(20));
        let base_url = line
            .as_deref()
            .ok()
            .and_then(|line| line.strip_prefix("listening on "))
            .map(str::to_owned);
        let mut server = SocketioServer {
            node,
            base_url: String::new(),
        };
        match base_url {
            Some(base_url) => server.base_url = base_url,
            None => {
                let exited = server.node.try_wait();
                panic!("the Socket.IO server did not start: {line:?}, {exited:?}");
            }
        }
        server
    }
}

/// A bench target of a Socket.IO server at `base_url`, with pollers in
/// this process.
fn socketio_target(base_url: String, drain: Duration) -> Target {
    Target {
        base_url,
        server_pid: None,
        workers: 0,
        worker_program: None,
        source_ips: Vec::new(),
        transport: PollTransport::Raw,
        ramp_per_second: 1_000.0,
        wait_ms: None,
        sends_per_session: 4.0,
        leave_at_end: true,
        drain,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fanout_through_socketio_loses_nothing() {
    if !node_and_modules() {
        return;
    }
    let server = SocketioServer::start(Duration::from_secs(1));
    let target = socketio_target(server.base_url.clone(), Duration::from_secs(20));
    support::fanout_loses_nothing::<Socketio>(&target, 300, 30, Duration::from_millis(100)).await;
}

/// A server that is not Socket.IO fails the run at its handshake, with the
/// reason, before any poller starts.
#[tokio::test]
async fn a_server_that_is_not_socketio_fails_the_handshake() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            .await;
    });
    let target = socketio_target(format!("http://{address}"), Duration::from_secs(1));
    let scenario = Scenario::Fanout(FanoutConfig {
        pollers: 1,
        messages: 1,
        interval: Duration::from_millis(100),
    });
    let error = talk_bench::run::<Socketio>(&target, &scenario)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "the peer server's handshake failed: undecodable answer (status 200): not an open packet: \"hello\""
    );
}
