//! The proxy configurations of `docs/proxies/` in front of the real server,
//! with real nginx and Apache httpd: chat passes through them, held polls
//! are not cut, and answers arrive whole.
//!
//! Without nginx or apache2 installed the tests say so and pass, except in
//! CI (`CI` set), where they fail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::ServerProcess;
use talk_client::protocol::PollRequest;
use talk_client::Api;

/// A proxy's master process; stopped with its workers when dropped.
struct ProxyProcess(Child);

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master must live to stop its workers.
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find(program: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.exists())
}

/// The program, or `None` after saying loudly that the test skips (which
/// fails in CI, where every tool must be there).
fn required(program: &str) -> Option<PathBuf> {
    let found = find(program);
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} is required in CI but is not installed"
        );
        eprintln!(
            "SKIPPED proxy test: {program} is not installed (apt-get install nginx-light apache2)"
        );
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn docs_snippet(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/proxies")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Waits until something accepts connections on the port.
fn wait_for_port(port: u16, proxy: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = proxy.try_wait().unwrap() {
            panic!("the proxy exited at start: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the proxy never listened on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes the browser client into `www` with `talk client-files`.
fn client_files(www: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_talk"))
        .args(["client-files"])
        .arg(www)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Starts the chat server (with a short poll timeout, so that idle polls
/// end within the test) and writes the client files for the proxy to serve;
/// returns the server, the files' folder and a free port for the proxy.
fn backend(dir: &Path) -> (ServerProcess, PathBuf, u16) {
    let server = ServerProcess::start("127.0.0.1:0", &dir.join("data"), &["--poll-timeout", "2"]);
    let www = dir.join("www");
    client_files(&www);
    (server, www, free_port())
}

/// Chats through the proxy at `proxy_url` in front of `server`: a held poll
/// that times out, a message that wakes a held poll, and the page served by
/// the proxy itself.
fn chat_through(proxy_url: &str, server: &ServerProcess) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let api = Api::new(proxy_url);
        let ada = api
            .start(Some("ada"), None, None)
            .await
            .expect("start through the proxy");
        let bob = api.start(Some("bob"), None, None).await.unwrap();
        let poll = |token: &str, channel: Option<String>, cursor| PollRequest {
            token: token.to_owned(),
            channel,
            cursor,
            wait_ms: None,
        };
        let first = api.poll(&poll(&ada.token, None, None)).await.unwrap();
        let first = api
            .poll(&poll(&ada.token, Some(first.channel), Some(first.cursor)))
            .await
            .unwrap(); // bob's join
                       // A poll held for the whole poll timeout comes back empty, not as a proxy error.
        let idle = api
            .poll(&poll(
                &ada.token,
                Some(first.channel.clone()),
                Some(first.cursor.clone()),
            ))
            .await
            .expect("an idle poll passes the proxy");
        assert!(idle.events.is_empty());
        // A message wakes a held poll through the proxy.
        let held = {
            let api = api.clone();
            let request = poll(&ada.token, Some(idle.channel), Some(idle.cursor));
            tokio::spawn(async move { api.poll(&request).await })
        };
        // The server holds the poll that came through the proxy.
        tokio::task::block_in_place(|| server.wait_for_metric("talk_polls_held", 1));
        api.send(&bob.token, "b1", "through the proxy")
            .await
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), held)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let texts: Vec<&str> = answer
            .events
            .iter()
            .filter_map(|event| event.message_text())
            .collect();
        assert_eq!(texts, ["through the proxy"]);

        // Answers pass whole: a Content-Length, no chunking, no caching.
        let response = reqwest::Client::new()
            .post(format!("{proxy_url}/broadcast"))
            .header("origin", "http://elsewhere.example")
            .body(r#"{"op":"start"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert!(response.headers().get("transfer-encoding").is_none());
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
        // The proxy serves the page and the widget itself.
        let page = reqwest::get(format!("{proxy_url}/talk.js")).await.unwrap();
        assert_eq!(page.status().as_u16(), 200);
    });
}

#[test]
fn nginx_with_the_documented_location_block() {
    let Some(nginx) = required("nginx") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (server, www, port) = backend(dir.path());
    let location =
        docs_snippet("nginx.conf").replace("127.0.0.1:8000", &server.address.to_string());
    let prefix = dir.path().display();
    let config = format!(
        "daemon off;\nuser root;\nworker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n\
         events {{ worker_connections 128; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n\
         fastcgi_temp_path {prefix}/fastcgi;\n  uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;\n\
         types {{ text/javascript js; text/css css; text/html html; }}\n\
         server {{\n    listen 127.0.0.1:{port};\n    root {www};\n{location}\n  }}\n}}\n",
        www = www.display(),
    );
    let config_path = dir.path().join("nginx.conf");
    std::fs::write(&config_path, config).unwrap();
    let child = Command::new(nginx)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&config_path)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut proxy = ProxyProcess(child);
    wait_for_port(port, &mut proxy.0);
    chat_through(&format!("http://127.0.0.1:{port}"), &server);
}

#[test]
fn apache_with_the_seeds_two_proxypass_lines() {
    let Some(apache) = required("apache2") else {
        return;
    };
    let modules = Path::new("/usr/lib/apache2/modules");
    let dir = tempfile::tempdir().unwrap();
    let (server, www, port) = backend(dir.path());
    let virtual_host = docs_snippet("apache.conf")
        .replace("localhost:8000", &server.address.to_string())
        .replace("*:80", &format!("127.0.0.1:{port}"));
    let root = dir.path().display();
    let load =
        |module: &str, file: &str| format!("LoadModule {module} {}/{file}\n", modules.display());
    let config = [
        format!("ServerRoot {root}\nServerName localhost\nListen 127.0.0.1:{port}\nPidFile {root}/httpd.pid\n"),
        format!("ErrorLog {root}/error.log\nLogLevel warn\nDocumentRoot {}\n", www.display()),
        load("mpm_event_module", "mod_mpm_event.so"),
        load("authz_core_module", "mod_authz_core.so"),
        load("mime_module", "mod_mime.so"),
        load("proxy_module", "mod_proxy.so"),
        load("proxy_http_module", "mod_proxy_http.so"),
        format!("TypesConfig /etc/mime.types\n<Directory {}>\n  Require all granted\n</Directory>\n", www.display()),
        virtual_host,
    ]
    .concat();
    let config_path = dir.path().join("httpd.conf");
    std::fs::write(&config_path, config).unwrap();
    let child = Command::new(apache)
        .arg("-f")
        .arg(&config_path)
        .arg("-DFOREGROUND")
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut proxy = ProxyProcess(child);
    wait_for_port(port, &mut proxy.0);
    chat_through(&format!("http://127.0.0.1:{port}"), &server);
}
