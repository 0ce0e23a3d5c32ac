//! What the server shows to whom: `/metrics` to operators only (on the
//! internal listener when there is one, never to pages on other origins),
//! and the history on disk to its owner only.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use talk_client::Api;
use tokio::sync::oneshot;

use crate::support::{code, test_config, TestServer};

const PAGE: &str = "http://pages.example:8080";

/// A GET from a page on `origin`, as a browser's `fetch` makes it.
async fn get_from(url: &str, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .header("origin", origin)
        .send()
        .await
        .expect("an answer")
}

fn cors_headers(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| name.starts_with("access-control-"))
        .collect()
}

// Issue 22, row 10: /metrics was readable by any page, as the CORS layer
// covered every route.
#[tokio::test]
async fn r22_metrics_carry_no_cors_header_whatever_the_allow_list() {
    let listed = talk_server::Config {
        allow_origins: vec![PAGE.to_owned()],
        ..test_config()
    };
    for config in [test_config(), listed] {
        let server = TestServer::start_with(config).await;
        let metrics = get_from(&server.url("/metrics"), PAGE).await;
        assert_eq!(metrics.status().as_u16(), 200);
        assert_eq!(cors_headers(&metrics), Vec::<String>::new());
        assert!(metrics.text().await.unwrap().contains("talk_connections"));
        // The chat's own answers still carry them.
        let chat = get_from(&server.url("/talk.js"), PAGE).await;
        assert!(
            chat.headers().contains_key("access-control-allow-origin"),
            "{:?}",
            chat.headers()
        );
    }
}

#[tokio::test]
async fn r22_an_internal_listener_serves_the_metrics_and_the_public_one_no_longer_does() {
    let server = TestServer::start_with_internal_listener(test_config()).await;
    let internal = server.internal_address.expect("an internal listener");
    let internal_url = |path: &str| format!("http://{internal}{path}");

    let metrics = get_from(&internal_url("/metrics"), PAGE).await;
    assert_eq!(metrics.status().as_u16(), 200);
    assert_eq!(cors_headers(&metrics), Vec::<String>::new());
    assert!(metrics.text().await.unwrap().contains("talk_connections"));
    let health = get_from(&internal_url("/healthz"), PAGE).await;
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(cors_headers(&health), Vec::<String>::new());
    let json: serde_json::Value = health.json().await.unwrap();
    assert_eq!(json["status"], "ok");
    // Nothing of the chat is served there.
    for path in ["/talk.html", "/talk.js"] {
        let status = get_from(&internal_url(path), PAGE).await.status();
        assert_eq!(status.as_u16(), 404, "{path} on the internal listener");
    }
    let poll = reqwest::Client::new()
        .post(internal_url("/poll"))
        .body(r#"{"token":"0123"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        poll.status().as_u16(),
        404,
        "/poll on the internal listener"
    );

    // The public listener answers /metrics as any unknown path, and keeps
    // /healthz for load balancers.
    let public = get_from(&server.url("/metrics"), PAGE).await;
    assert_eq!(public.status().as_u16(), 404);
    let json: serde_json::Value = public.json().await.unwrap();
    assert_eq!(code(&json), "not_found");
    let health = get_from(&server.url("/healthz"), PAGE).await;
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test]
async fn r22_the_data_folder_and_database_are_readable_by_their_owner_only() {
    let parent = tempfile::tempdir().unwrap();
    let data_dir = parent.path().join("fresh").join("talk-data");
    let config = talk_server::Config {
        data_dir: data_dir.clone(),
        ..test_config()
    };
    let server = talk_server::Server::open(config).await.expect("opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = Api::new(&format!("http://{}", listener.local_addr().unwrap()));
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    // A committed message: the WAL and its index exist while the server runs.
    let ada = api.start(Some("ada"), None, None).await.unwrap();
    api.send(&ada.token, "m1", "hello").await.unwrap();

    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&data_dir), 0o700, "the data folder");
    for file in ["talk.sqlite3", "talk.sqlite3-wal", "talk.sqlite3-shm"] {
        assert_eq!(mode(&data_dir.join(file)), 0o600, "{file}");
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("the server stops")
        .unwrap();
}
