//! The real `talk` binary as a child process of a test: a server that can
//! be killed with SIGKILL and started again on the same port and data
//! folder. Dropping the handle kills the process, also when a test fails.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `talk` binary Cargo built for these tests.
pub(crate) const TALK: &str = env!("CARGO_BIN_EXE_talk");

/// A `talk serve` process.
pub(crate) struct TalkServer {
    child: Option<Child>,
    /// Where it listens.
    pub(crate) address: SocketAddr,
    /// `http://` and the address.
    pub(crate) url: String,
    data: PathBuf,
}

impl TalkServer {
    /// Starts `talk serve` on `listen` (port 0 for a free one) with its
    /// history in `data`, and waits until it says where it listens.
    pub(crate) fn start(listen: &str, data: &Path) -> TalkServer {
        let mut child = Command::new(TALK)
            .args(["serve", "--listen", listen, "--data"])
            .arg(data)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the talk binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (found, address) = mpsc::channel();
        // Reads stdout to the end, so that the server never blocks on a
        // full pipe, and reports the listening address.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let address = rest.split_whitespace().next().unwrap_or_default();
                    let _ = found.send(address.to_owned());
                }
            }
        });
        let mut server = TalkServer {
            child: Some(child),
            address: "127.0.0.1:0".parse().unwrap(),
            url: String::new(),
            data: data.to_path_buf(),
        };
        let address = address
            .recv_timeout(Duration::from_secs(30))
            .expect("the server prints `listening on http://ADDR` within 30 s");
        server.address = address.parse().expect("a socket address");
        server.url = format!("http://{address}");
        server
    }

    /// Kills the process with SIGKILL (`kill -9`) and reaps it.
    pub(crate) fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` sends SIGKILL on Unix.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same address and data folder.
    pub(crate) fn restart(&mut self) {
        self.kill_9();
        let again = TalkServer::start(&self.address.to_string(), &self.data);
        assert_eq!(again.address, self.address);
        *self = again;
    }
}

impl Drop for TalkServer {
    fn drop(&mut self) {
        self.kill_9();
    }
}
