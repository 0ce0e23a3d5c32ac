//! Starting a server for a test, and small helpers to talk to it.

use std::net::SocketAddr;
use std::time::Duration;

use talk_client::protocol::{Cursor, Event, PollAnswer, PollRequest, StartAnswer};
use talk_client::Api;
use talk_server::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server running in this process on 127.0.0.1 with a fresh data folder.
/// Dropping it stops the server.
pub(crate) struct TestServer {
    pub(crate) address: SocketAddr,
    /// The internal listener's address, for servers started with one.
    pub(crate) internal_address: Option<SocketAddr>,
    pub(crate) api: Api,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    pub(crate) data: tempfile::TempDir,
}

/// A config for tests: short poll timeout, no rate limits.
pub(crate) fn test_config() -> Config {
    Config {
        poll_timeout: Duration::from_secs(2),
        send_rate: None,
        session_start_rate: None,
        ..Config::default()
    }
}

impl TestServer {
    pub(crate) async fn start() -> TestServer {
        Self::start_with(test_config()).await
    }

    pub(crate) async fn start_with(config: Config) -> TestServer {
        let data = tempfile::tempdir().expect("a temp dir");
        Self::start_in(config, data).await
    }

    /// Starts a server on the data folder of an earlier one.
    pub(crate) async fn start_in(config: Config, data: tempfile::TempDir) -> TestServer {
        Self::start_on(config, data, false).await
    }

    /// Starts a server with an internal listener for operators, too.
    pub(crate) async fn start_with_internal_listener(config: Config) -> TestServer {
        let data = tempfile::tempdir().expect("a temp dir");
        Self::start_on(config, data, true).await
    }

    async fn start_on(mut config: Config, data: tempfile::TempDir, internal: bool) -> TestServer {
        config.data_dir = data.path().to_owned();
        let server = talk_server::Server::open(config)
            .await
            .expect("the server opens");
        let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
        let listener = bind().await.expect("binding a port");
        let address = listener.local_addr().unwrap();
        let internal = match internal {
            true => Some(bind().await.expect("binding a port")),
            false => None,
        };
        let internal_address = internal.as_ref().map(|l| l.local_addr().unwrap());
        let listeners = talk_server::Listeners {
            public: listener,
            internal,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listeners, async {
            let _ = stopped.await;
        }));
        TestServer {
            address,
            internal_address,
            api: Api::new(&format!("http://{address}")),
            stop: Some(stop),
            task: Some(task),
            data,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Where the server serves `/metrics`: its internal listener if it has one.
    pub(crate) fn metrics_url(&self) -> String {
        format!(
            "http://{}/metrics",
            self.internal_address.unwrap_or(self.address)
        )
    }

    /// Stops the server gracefully and waits for it; returns its data folder.
    pub(crate) async fn stop(mut self) -> tempfile::TempDir {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.expect("the server ran");
        let data = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.data, data)
    }

    /// Starts a session and reads its first poll; returns a `Person` at the head.
    pub(crate) async fn person(&self, name: &str) -> Person {
        let start = self.api.start(Some(name), None, None).await.expect("start");
        let request = PollRequest {
            token: start.token.clone(),
            channel: None,
            cursor: None,
            wait_ms: None,
        };
        let first = self.api.poll(&request).await.expect("first poll");
        Person {
            api: self.api.clone(),
            channel: first.channel.clone(),
            cursor: first.cursor.clone(),
            start,
            sent: 0,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A session with its place in its channel.
pub(crate) struct Person {
    pub(crate) api: Api,
    pub(crate) start: StartAnswer,
    pub(crate) channel: String,
    pub(crate) cursor: Cursor,
    sent: u32,
}

impl Person {
    pub(crate) fn token(&self) -> &str {
        &self.start.token
    }

    /// Sends a text with a fresh id.
    pub(crate) async fn say(&mut self, text: &str) -> talk_client::protocol::SendAnswer {
        self.sent += 1;
        let id = format!("{}-{}", self.start.name, self.sent);
        self.api.send(self.token(), &id, text).await.expect("send")
    }

    /// One poll from the current place, waiting at most `wait_ms`; moves the place on.
    pub(crate) async fn poll(&mut self, wait_ms: u64) -> PollAnswer {
        let answer = self.poll_request(wait_ms).await.expect("poll");
        self.channel = answer.channel.clone();
        self.cursor = answer.cursor.clone();
        answer
    }

    pub(crate) async fn poll_request(
        &self,
        wait_ms: u64,
    ) -> Result<PollAnswer, talk_client::Error> {
        self.api
            .poll(&PollRequest {
                token: self.start.token.clone(),
                channel: Some(self.channel.clone()),
                cursor: Some(self.cursor.clone()),
                wait_ms: Some(wait_ms),
            })
            .await
    }

    /// Polls until `count` message texts have arrived (or 5 s passed); returns them.
    pub(crate) async fn texts(&mut self, count: usize) -> Vec<String> {
        let mut texts = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while texts.len() < count && tokio::time::Instant::now() < deadline {
            texts.extend(message_texts(&self.poll(1000).await.events));
        }
        texts
    }
}

/// Waits (up to 5 s) until the server's `talk_polls_held` gauge says `held`.
pub(crate) async fn wait_for_polls_held(server: &TestServer, held: i64) {
    wait_for_gauge(server, "talk_polls_held", held, Duration::from_secs(5)).await;
}

/// The server's `talk_polls_held` gauge.
pub(crate) async fn polls_held(server: &TestServer) -> i64 {
    gauge(server, "talk_polls_held").await
}

/// Waits (up to `patience`) until the server's metric `name` reads `expected`:
/// the way to know the server has done something, without a sleep.
///
/// It counts and paces in real time, on a blocking thread, so that it also
/// works while a test holds tokio's clock still (`HeldClock`).
pub(crate) async fn wait_for_gauge(
    server: &TestServer,
    name: &str,
    expected: i64,
    patience: Duration,
) {
    let deadline = std::time::Instant::now() + patience;
    let mut now = gauge(server, name).await;
    while now != expected && std::time::Instant::now() < deadline {
        let pause = || std::thread::sleep(Duration::from_millis(20));
        tokio::task::spawn_blocking(pause).await.unwrap();
        now = gauge(server, name).await;
    }
    assert_eq!(now, expected, "{name}");
}

/// Tokio's clock, paused and held still for a test that moves it itself,
/// so that poll timeouts and request deadlines pass at once and exactly
/// when the test says.
///
/// A paused clock alone would jump to the next timer whenever the runtime
/// is idle, also while a request waits on real socket I/O or on the
/// store's writer thread, so a deadline could pass before the server had
/// even seen the request. While a blocking task is in flight, tokio does
/// not jump on a current-thread runtime: `hold` keeps one in flight until
/// the `HeldClock` is dropped, and only `advance` moves time.
pub(crate) struct HeldClock {
    /// Dropping it ends the blocking task that holds the clock.
    _release: std::sync::mpsc::Sender<()>,
}

impl HeldClock {
    /// Pauses the clock and holds it; the test must run on a current-thread
    /// runtime (`#[tokio::test]`).
    pub(crate) fn hold() -> HeldClock {
        tokio::time::pause();
        let (release, released) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            // Returns once the sender is dropped.
            let _ = released.recv();
        });
        HeldClock { _release: release }
    }

    /// Moves the clock on by `by`; the timers due by then fire.
    pub(crate) async fn advance(&self, by: Duration) {
        tokio::time::advance(by).await;
    }
}

/// The value of the server's metric `name` (a gauge or counter without labels).
pub(crate) async fn gauge(server: &TestServer, name: &str) -> i64 {
    let text = reqwest::get(server.metrics_url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("{name} is not exported"))
        .trim()
        .parse::<f64>()
        .unwrap_or_else(|error| panic!("{name}: {error}")) as i64
}

/// The texts of the `message` events.
pub(crate) fn message_texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(Event::message_text)
        .map(str::to_owned)
        .collect()
}

/// A raw POST with a body, for requests the client library would never make.
pub(crate) async fn raw_post(
    url: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(url)
        .body(body)
        .send()
        .await
        .expect("a response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, headers, json)
}

/// The error code of a JSON error body.
pub(crate) fn code(json: &serde_json::Value) -> &str {
    json["error"]["code"].as_str().unwrap_or("<no error code>")
}
