//! Running the real `talk` binary as a child process for tests that need a
//! process (to kill it, signal it or limit its file descriptors), reading
//! its metrics (the way to know it has done something), and small readers
//! of what it answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use talk_client::protocol::Event;

/// How long a condition a test waits on may take to come true.
const PATIENCE: Duration = Duration::from_secs(10);

/// A `talk serve` child process; killed when dropped.
pub(crate) struct ServerProcess {
    pub(crate) child: Child,
    pub(crate) address: SocketAddr,
    /// The internal listener's address, when started with `--internal-listen`.
    pub(crate) internal_address: Option<SocketAddr>,
}

impl ServerProcess {
    /// Starts `talk serve` on `listen` with its data in `data`, and the
    /// extra flags; waits until it prints the address it listens on.
    pub(crate) fn start(listen: &str, data: &Path, extra: &[&str]) -> ServerProcess {
        Self::start_with(
            Command::new(env!("CARGO_BIN_EXE_talk")),
            listen,
            data,
            extra,
        )
    }

    /// As `start`, but through `command` (e.g. `prlimit ... talk`), which
    /// must end with the talk binary.
    pub(crate) fn start_with(
        mut command: Command,
        listen: &str,
        data: &Path,
        extra: &[&str],
    ) -> ServerProcess {
        command
            .args(["serve", "--listen", listen, "--data"])
            .arg(data)
            .args(["--session-rate", "0", "--send-rate", "0"])
            .args(["--channel-rate", "0", "--channel-address-rate", "0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("starting talk serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => {
                    let _ = child.kill();
                    panic!("talk serve ended before saying where it listens");
                }
            };
            if line.contains("listening on http://") {
                break line;
            }
        };
        let address_after = |label: &str| {
            let rest = line.split(label).nth(1)?;
            let address = rest.split(['/', ' ']).next()?;
            Some(address.parse::<SocketAddr>().expect("an address"))
        };
        let address = address_after("listening on http://").expect("the address");
        let internal_address = address_after("metrics at http://");
        // Keep draining stdout so that the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ServerProcess {
            child,
            address,
            internal_address,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The server's metric `name`, from its internal listener if it has one.
    pub(crate) fn metric(&self, name: &str) -> i64 {
        metric(self.internal_address.unwrap_or(self.address), name)
    }

    /// Waits until the server's metric `name` reads `expected`.
    pub(crate) fn wait_for_metric(&self, name: &str, expected: i64) {
        wait_until(&format!("{name} reads {expected}"), || {
            self.metric(name) == expected
        });
    }

    /// Sends SIGTERM and waits for the exit status.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("running kill");
        assert!(sent.success());
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("talk serve did not exit within 10 s of SIGTERM");
    }

    /// Kills the process with SIGKILL, as `kill -9` does.
    pub(crate) fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The texts of the `message` events.
pub(crate) fn message_texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(Event::message_text)
        .map(str::to_owned)
        .collect()
}

/// Where `needle` first stands in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A metric (a gauge, or a counter without labels) of the server at
/// `address`, read from `/metrics` on a connection of its own.
pub(crate) fn metric(address: SocketAddr, name: &str) -> i64 {
    let mut stream = TcpStream::connect(address).expect("connecting for /metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let prefix = format!("{name} ");
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {name} in {text}"));
    value
        .trim()
        .parse::<f64>()
        .unwrap_or_else(|error| panic!("{name} {value}: {error}")) as i64
}

/// Waits until `condition` holds, asking again every 20 ms; fails the test,
/// saying `what` did not happen, once `PATIENCE` has passed.
pub(crate) fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
