//! `talk chat` driven for real: two interactive chats in pseudo-terminals
//! talk to each other and to a browser-less HTTP client (the `Api`), and
//! the piped mode prints exactly the expected lines.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{find, ServerProcess};
use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use talk_client::protocol::{Cursor, EventKind, PollRequest};
use talk_client::Api;

/// The `talk` binary Cargo built for these tests.
const TALK: &str = env!("CARGO_BIN_EXE_talk");

/// How long any one expected thing may take.
const PATIENCE: Duration = Duration::from_secs(20);

/// `talk chat` in a pseudo-terminal, with everything it wrote kept.
struct Terminal {
    output: Arc<Mutex<Vec<u8>>>,
    writer: Arc<Mutex<Box<dyn Write + Send>>>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    /// How far `expect` has read.
    read_up_to: usize,
}

impl Terminal {
    fn spawn(url: &str, name: &str, env: &[(&str, &str)]) -> Terminal {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 40,
                cols: 160,
                ..PtySize::default()
            })
            .expect("a pseudo-terminal");
        let mut command = CommandBuilder::new(TALK);
        command.args(["chat", url, "--name", name]);
        command.env("TERM", "xterm-256color");
        command.env_remove("NO_COLOR");
        command.env_remove("RUST_LOG");
        for (key, value) in env {
            command.env(key, value);
        }
        let child = pair.slave.spawn_command(command).expect("talk chat starts");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().unwrap();
        let writer = Arc::new(Mutex::new(pair.master.take_writer().unwrap()));
        let output = Arc::new(Mutex::new(Vec::new()));
        let (thread_output, thread_writer) = (Arc::clone(&output), Arc::clone(&writer));
        std::thread::spawn(move || {
            // Keeps the master side open for as long as the child runs.
            let _master = pair.master;
            let mut chunk = [0u8; 4096];
            let mut scanned = 0;
            while let Ok(n) = reader.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut output = thread_output.lock().unwrap();
                output.extend_from_slice(&chunk[..n]);
                // Answer "where is the cursor?" as a terminal would, so the
                // line editor does not wait for (or mistake keys for) it.
                let query = b"\x1b[6n";
                while let Some(at) = find(&output[scanned..], query) {
                    scanned += at + query.len();
                    let _ = thread_writer.lock().unwrap().write_all(b"\x1b[1;1R");
                }
                scanned = scanned.max(output.len().saturating_sub(query.len()));
            }
        });
        Terminal {
            output,
            writer,
            child,
            read_up_to: 0,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until `needle` shows up after what was read before, and reads
    /// past it.
    fn expect(&mut self, needle: &str) {
        let at = self.wait_for_text(needle, self.read_up_to);
        self.read_up_to = at + needle.len();
    }

    /// Waits until `needle` shows up anywhere after `from`, and says where.
    fn wait_for_text(&self, needle: &str, from: usize) -> usize {
        let deadline = Instant::now() + PATIENCE;
        loop {
            {
                let output = self.output.lock().unwrap();
                if let Some(at) = find(&output[from..], needle.as_bytes()) {
                    return from + at;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} did not show up; the terminal shows:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_keys(&mut self, keys: &str) {
        let mut writer = self.writer.lock().unwrap();
        writer.write_all(keys.as_bytes()).unwrap();
        writer.flush().unwrap();
    }

    /// Types a line and Enter, and waits for the next prompt.
    fn enter(&mut self, line: &str, prompt: &str) {
        self.type_keys(&format!("{line}\r"));
        self.expect(prompt);
    }

    /// Waits for the process to end and says whether it succeeded.
    fn wait_for_exit(&mut self) -> bool {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "talk chat did not exit:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
    }
}

/// A person on a plain HTTP client, who polls by hand.
struct HttpPerson {
    runtime: tokio::runtime::Runtime,
    api: Api,
    token: String,
    channel: Option<String>,
    cursor: Option<Cursor>,
    /// Everything seen, one line per event: `<from>: <text>`,
    /// `leave <from> <reason>`, `join <from>`.
    lines: Vec<String>,
}

impl HttpPerson {
    fn start(url: &str, name: &str, color: &str) -> HttpPerson {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let api = Api::new(url);
        let start = runtime
            .block_on(api.start(Some(name), Some(color), None))
            .unwrap();
        HttpPerson {
            runtime,
            api,
            token: start.token,
            channel: None,
            cursor: None,
            lines: Vec::new(),
        }
    }

    fn say(&self, text: &str) {
        let id = talk_client::new_send_id();
        self.runtime
            .block_on(self.api.send(&self.token, &id, text))
            .unwrap();
    }

    /// Polls until a line equal to `expected` was seen.
    fn wait_for(&mut self, expected: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.lines.iter().any(|line| line == expected) {
            assert!(
                Instant::now() < deadline,
                "{expected:?} never came; seen: {:?}",
                self.lines
            );
            let request = PollRequest {
                token: self.token.clone(),
                channel: self.channel.clone(),
                cursor: self.cursor.clone(),
                wait_ms: Some(1000),
            };
            let answer = self.runtime.block_on(self.api.poll(&request)).unwrap();
            for event in &answer.events {
                self.lines.push(match &event.kind {
                    EventKind::Message { text, .. } => format!("{}: {text}", event.from),
                    EventKind::Leave { reason } => format!("leave {} {reason:?}", event.from),
                    EventKind::Join => format!("join {}", event.from),
                    other => format!("{other:?}"),
                });
            }
            self.channel = Some(answer.channel);
            self.cursor = Some(answer.cursor);
        }
    }
}

#[test]
fn two_terminals_and_an_http_client_chat() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start("127.0.0.1:0", data.path(), &[]);
    let url = server.url();
    let mut cat = HttpPerson::start(&url, "cat", "66ccff");

    // ada's terminal has colors; bob's has NO_COLOR.
    let mut ada = Terminal::spawn(&url, "ada", &[("TALK_COLOR", "ff8800")]);
    ada.expect("you are ada in lobby");
    ada.expect("lobby> ");
    let mut bob = Terminal::spawn(&url, "bob", &[("NO_COLOR", "1")]);
    bob.expect("you are bob in lobby");
    bob.expect("lobby> ");
    // In color: the name, then the color reset.
    ada.expect("bob\x1b[0m joined lobby");

    ada.enter("hello from ada", "lobby> ");
    bob.expect("ada: hello from ada");
    cat.wait_for("ada: hello from ada");

    cat.say("hi terminals");
    // Names in their colors (ANSI truecolor of 66ccff), or plain.
    ada.expect("\x1b[38;2;102;204;255mcat\x1b[0m: hi terminals");
    bob.expect("cat: hi terminals");

    // A line arriving while bob is half-way through typing one does not
    // garble it: it is printed above, and the half line is drawn again.
    bob.type_keys("half typ");
    bob.expect("half typ");
    cat.say("interrupting");
    bob.expect("cat: interrupting");
    bob.expect("half typ");
    bob.enter("ed", "lobby> ");
    cat.wait_for("bob: half typed");
    ada.expect("bob\x1b[0m: half typed");

    // Commands are the browser's, with their replies shown.
    bob.enter("/who", "lobby> ");
    bob.expect("-- in lobby: ");
    bob.enter("/nosuch", "lobby> ");
    bob.expect("!! /nosuch is not a command");
    // The prompt follows the channel; the new channel's history comes
    // before or after the new prompt, as the network has it.
    let before_join = ada.read_up_to;
    ada.enter("/join games", "games> ");
    ada.wait_for_text("== games", before_join);
    bob.expect("<- ada left lobby");
    ada.enter("/exit", "lobby> ");
    bob.expect("-> ada joined lobby");

    // Ctrl-D and Ctrl-C leave the channel and end the program cleanly.
    ada.type_keys("\x04");
    assert!(ada.wait_for_exit(), "Ctrl-D exits with success");
    cat.wait_for("leave ada Quit");
    bob.expect("<- ada quit");
    bob.type_keys("\x03");
    assert!(bob.wait_for_exit(), "Ctrl-C exits with success");
    cat.wait_for("leave bob Quit");

    assert!(
        !bob.text().contains("\x1b[38;2;"),
        "NO_COLOR turns colors off:\n{}",
        bob.text()
    );
}

/// Runs `talk chat` with `input` on stdin and returns (stdout, stderr).
fn run_piped(url: &str, name: &str, flags: &[&str], input: &str) -> (String, String) {
    let mut child = Command::new(TALK)
        .args(["chat", url, "--name", name])
        .args(flags)
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    // stdin is closed here: the chat sends what it read, then leaves.
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("talk chat did not exit at the end of stdin");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "exit status {:?}", output.status);
    (
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn piped_mode_prints_the_expected_lines() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start("127.0.0.1:0", data.path(), &[]);
    let url = server.url();
    let mut cat = HttpPerson::start(&url, "cat", "66ccff");

    let input = "hello\n/who\n\n/join games\nin games\n/me waves\n/exit\n/bogus\n";
    let (stdout, stderr) = run_piped(&url, "pip", &[], input);
    let lines: Vec<&str> = stdout.lines().collect();
    let (last, lines) = lines.split_last().expect("some output");
    assert_eq!(
        lines,
        [
            "== lobby",
            "-> cat joined lobby",
            "-> pip joined lobby",
            "pip: hello",
            "-- in lobby: cat, pip",
            "== games",
            "-> pip joined games",
            "pip: in games",
            "* pip waves",
            "== lobby",
            "-> cat joined lobby",
            "-> pip joined lobby",
            "pip: hello",
            "<- pip left lobby",
            "-> pip joined lobby",
        ],
        "stdout:\n{stdout}"
    );
    assert!(last.starts_with("!! /bogus is not a command"), "{last}");
    assert!(
        stderr.contains(".. you are pip in lobby"),
        "stderr: {stderr}"
    );
    // Nothing for people reaches stdout as escape sequences.
    assert!(!stdout.contains('\x1b'));

    // The HTTP client saw the same, and the session left at the end.
    cat.wait_for("leave pip Quit");
    let from_pip: Vec<&str> = cat
        .lines
        .iter()
        .filter(|line| line.contains("pip"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        from_pip,
        [
            "join pip",
            "pip: hello",
            "leave pip Exit",
            "join pip",
            "leave pip Quit"
        ]
    );
}

#[test]
fn piped_json_mode_prints_one_object_a_line() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start("127.0.0.1:0", data.path(), &[]);
    let url = server.url();
    let (stdout, _) = run_piped(&url, "jay", &["--json"], "hi there\n/who\n/bogus\n");
    let values: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    assert_eq!(values.len(), 5, "{stdout}");
    assert_eq!(
        values[0],
        serde_json::json!({"reset": "start", "channel": "lobby"})
    );
    assert_eq!(
        (
            &values[1]["type"],
            &values[1]["from"],
            &values[1]["channel"]
        ),
        (&"join".into(), &"jay".into(), &"lobby".into())
    );
    assert_eq!(
        (&values[2]["type"], &values[2]["text"], &values[2]["seq"]),
        (&"message".into(), &"hi there".into(), &2.into())
    );
    assert!(values[2]["id"].is_string() && values[2]["ts"].is_u64());
    assert_eq!(values[3]["reply"]["type"], "who");
    assert_eq!(values[3]["reply"]["members"][0]["name"], "jay");
    assert_eq!(values[4]["error"]["code"], "unknown_command");
}

#[test]
fn piped_mode_leaves_on_ctrl_c() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start("127.0.0.1:0", data.path(), &[]);
    let url = server.url();
    let mut cat = HttpPerson::start(&url, "cat", "66ccff");
    let mut child = Command::new(TALK)
        .args(["chat", &url, "--name", "sig"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (line_sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line_sender.send(line).is_err() {
                break;
            }
        }
    });
    // stdin stays open: the chat is waiting for more when Ctrl-C comes.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"still here\n").unwrap();
    loop {
        let line = lines
            .recv_timeout(PATIENCE)
            .expect("the message comes back");
        if line == "sig: still here" {
            break;
        }
    }
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("talk chat did not exit on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    cat.wait_for("leave sig Quit");
    drop(stdin);
}
