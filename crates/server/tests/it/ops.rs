//! For operators: `/healthz`, `/metrics`, and the assets' caching headers.

use crate::support::{raw_post, TestServer};

#[tokio::test]
async fn healthz_says_ok() {
    let server = TestServer::start().await;
    let response = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["status"], "ok");
}

#[tokio::test]
async fn metrics_count_traffic_and_errors_by_code() {
    let server = TestServer::start().await;
    let mut ada = server.person("ada").await;
    ada.say("one").await;
    ada.poll(0).await;
    raw_post(&server.url("/poll"), "garbage").await;
    raw_post(&server.url("/poll"), r#"{"token":"nope"}"#).await;
    let _ = reqwest::get(server.url("/missing")).await.unwrap();
    let text = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "talk_sessions 1",
        "talk_channels 1",
        "talk_messages_in_total 1",
        "talk_poll_answers_total 2",
        "talk_errors_total{code=\"bad_request\"} 1",
        "talk_errors_total{code=\"unknown_session\"} 1",
        "talk_errors_total{code=\"not_found\"} 1",
        "talk_poll_hold_seconds_count 2",
        "talk_send_seconds_count 1",
        "talk_open_files_limit",
        "talk_connections",
        "talk_polls_held 0",
    ] {
        assert!(text.contains(expected), "no {expected:?} in\n{text}");
    }
    // The first poll had ada's join, the second her message.
    assert!(text.contains("talk_events_out_total 2"), "{text}");
    // Both were committed to the history, in one transaction or more.
    assert!(
        sample(&text, "talk_store_commit_seconds_count") >= 1.0,
        "{text}"
    );
    assert!(sample(&text, "talk_store_commit_jobs_sum") >= 2.0, "{text}");
}

/// The value of the sample named `name` in Prometheus text.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn assets_are_served_with_an_etag_and_revalidate_to_304() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let first = client.get(server.url("/talk.js")).send().await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    assert!(first.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let etag = first.headers()["etag"].clone();
    let again = client
        .get(server.url("/talk.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 304);
    let gzipped = client
        .get(server.url("/talk.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let home = client.get(server.url("/")).send().await.unwrap();
    assert!(
        home.url().path().ends_with("/talk.html"),
        "/ leads to the chat page"
    );
}
