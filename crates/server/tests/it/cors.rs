//! Cross-origin use without preflight, and the origin allow-list.

use crate::support::{code, test_config, TestServer};

const ORIGIN: &str = "http://pages.example:8080";

async fn post_from(server: &TestServer, origin: &str, path: &str, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url(path))
        .header("origin", origin)
        .header("content-type", "text/plain;charset=UTF-8")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_answer_carries_cors_headers_errors_included() {
    let server = TestServer::start().await;
    let start = post_from(&server, ORIGIN, "/broadcast", r#"{"op":"start"}"#).await;
    assert_eq!(start.status().as_u16(), 200);
    assert_eq!(start.headers()["access-control-allow-origin"], "*");
    assert_eq!(start.headers()["cache-control"], "no-store");
    assert_eq!(start.headers()["x-accel-buffering"], "no");
    assert!(
        start.headers().contains_key("content-length"),
        "answers are not chunked"
    );
    let token = start.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let poll = post_from(
        &server,
        ORIGIN,
        "/poll",
        &format!(r#"{{"token":"{token}"}}"#),
    )
    .await;
    assert_eq!(poll.headers()["access-control-allow-origin"], "*");
    assert!(poll.headers().contains_key("content-length"));
    for (path, body) in [
        ("/poll", "garbage"),
        ("/broadcast", r#"{"op":"leave","token":"x"}"#),
        ("/missing", ""),
    ] {
        let error = post_from(&server, ORIGIN, path, body).await;
        assert!(error.status().is_client_error());
        assert_eq!(
            error.headers()["access-control-allow-origin"],
            "*",
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_simple_text_plain_post_works_so_no_preflight_is_needed() {
    // A browser sends a POST with a text/plain body and no custom header
    // straight away, without OPTIONS. The server must take it as it is.
    let server = TestServer::start().await;
    let response = post_from(
        &server,
        ORIGIN,
        "/broadcast",
        r#"{"op":"start","name":"xdr"}"#,
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["name"], "xdr");
    // Clients that do send a preflight (custom headers) get a proper answer too.
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, server.url("/poll"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert!(preflight
        .headers()
        .contains_key("access-control-allow-methods"));
}

#[tokio::test]
async fn an_allow_list_refuses_other_origins() {
    let server = TestServer::start_with(talk_server::Config {
        allow_origins: vec![ORIGIN.to_owned()],
        ..test_config()
    })
    .await;
    let allowed = post_from(&server, ORIGIN, "/broadcast", r#"{"op":"start"}"#).await;
    assert_eq!(allowed.status().as_u16(), 200);
    assert_eq!(allowed.headers()["access-control-allow-origin"], ORIGIN);
    let refused = post_from(
        &server,
        "http://evil.example",
        "/broadcast",
        r#"{"op":"start"}"#,
    )
    .await;
    assert_eq!(refused.status().as_u16(), 403);
    let json: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(code(&json), "origin_not_allowed");
}

/// A request from `origin` to `path` whose body comes in chunks, with no
/// `Content-Length`: the connection layer hands it to the router.
async fn chunked_post_from(
    server: &TestServer,
    origin: &str,
    path: &str,
    body: &str,
) -> reqwest::Response {
    let chunks = futures::stream::iter([Ok::<_, std::io::Error>(body.as_bytes().to_vec())]);
    reqwest::Client::new()
        .post(server.url(path))
        .header("origin", origin)
        .header("content-type", "text/plain;charset=UTF-8")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap()
}

// Issue 22, row 11: the 403 carried no CORS header, so the page it refused
// could not read why, and the widget retried for ever.
#[tokio::test]
async fn r22_a_refused_page_can_read_its_refusal_and_nothing_else() {
    let server = TestServer::start_with(talk_server::Config {
        allow_origins: vec![ORIGIN.to_owned()],
        ..test_config()
    })
    .await;
    let evil = "http://evil.example";
    let bodies = [
        ("/broadcast", r#"{"op":"start"}"#),
        ("/poll", r#"{"token":"00000000000000000000000000000000"}"#),
    ];
    for (path, body) in bodies {
        // Both fronts: the connection layer's (a body with its length) and
        // the router's (a chunked body).
        for (front, refused) in [
            ("direct", post_from(&server, evil, path, body).await),
            ("router", chunked_post_from(&server, evil, path, body).await),
        ] {
            let what = format!("{path} ({front})");
            assert_eq!(refused.status().as_u16(), 403, "{what}");
            let headers = refused.headers();
            assert_eq!(headers["access-control-allow-origin"], evil, "{what}");
            assert!(
                headers
                    .get_all("vary")
                    .iter()
                    .any(|vary| vary.to_str().unwrap().contains("origin")),
                "{what}: {headers:?}"
            );
            assert!(
                !headers.contains_key("access-control-allow-credentials"),
                "{what}"
            );
            let json: serde_json::Value = refused.json().await.unwrap();
            assert_eq!(code(&json), "origin_not_allowed", "{what}");
        }
    }
    // Every other answer to that origin still grants it nothing.
    let asset = reqwest::Client::new()
        .get(server.url("/talk.js"))
        .header("origin", evil)
        .send()
        .await
        .unwrap();
    assert_eq!(asset.status().as_u16(), 200);
    assert!(!asset.headers().contains_key("access-control-allow-origin"));
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, server.url("/broadcast"))
        .header("origin", evil)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(!preflight
        .headers()
        .contains_key("access-control-allow-origin"));
}
