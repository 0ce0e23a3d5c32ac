//! A real talk server for the tests, in this process, on an ephemeral
//! loopback port, stopped when the handle is dropped (also when a test fails).

use std::time::Duration;

use talk_server::Config;
use tokio::sync::oneshot;

/// A running server; dropping it shuts the server down.
pub(crate) struct TestServer {
    pub(crate) url: String,
    _shutdown: oneshot::Sender<()>,
    _data: tempfile::TempDir,
}

/// The server's configuration for tests: a fresh data folder, and no rate
/// limit unless a test sets one.
pub(crate) fn test_config(data: &tempfile::TempDir) -> Config {
    Config {
        data_dir: data.path().to_path_buf(),
        send_rate: None,
        session_start_rate: None,
        poll_timeout: Duration::from_secs(5),
        ..Config::default()
    }
}

/// Starts a server with `adjust` applied to the test configuration.
pub(crate) async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
    let data = tempfile::tempdir().expect("a temporary data folder");
    let mut config = test_config(&data);
    adjust(&mut config);
    let server = talk_server::Server::open(config)
        .await
        .expect("the test server opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a loopback port");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async {
        // Resolves when the handle is dropped, too.
        let _ = stopped.await;
    }));
    TestServer {
        url,
        _shutdown: shutdown,
        _data: data,
    }
}

impl TestServer {
    /// The server's metric `name` (a gauge, or a counter without labels).
    pub(crate) async fn metric(&self, name: &str) -> i64 {
        let metrics = reqwest::get(format!("{}/metrics", self.url))
            .await
            .expect("the server answers /metrics");
        let text = metrics.text().await.expect("the metrics' text");
        let number = |line: &str| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok();
        let value: f64 = text
            .lines()
            .find_map(number)
            .unwrap_or_else(|| panic!("no number for {name} in {text}"));
        value as i64
    }

    /// Waits until the server's metric `name` reads `expected`, asking again
    /// every 20 ms: the way to know the server has done something, without
    /// a sleep. Fails the test after 10 s.
    pub(crate) async fn wait_for_metric(&self, name: &str, expected: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.metric(name).await;
            if now == expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} reads {now}, not {expected}, after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Starts a server with the test configuration.
pub(crate) async fn start() -> TestServer {
    start_with(|_| {}).await
}
