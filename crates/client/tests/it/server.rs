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

/// Starts a server with the test configuration.
pub(crate) async fn start() -> TestServer {
    start_with(|_| {}).await
}
