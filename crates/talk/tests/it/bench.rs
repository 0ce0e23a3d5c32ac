//! A seconds-long smoke run of every `talk bench` scenario against the real
//! `talk serve` binary: each must finish clean (nothing lost, duplicated,
//! reordered or refused). Timing is never asserted.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

const TALK: &str = env!("CARGO_BIN_EXE_talk");

/// A `talk serve` child process with the limits that would stop a bench
/// (session starts, sends and new channels per minute) switched off and a short poll
/// timeout, so held polls complete within a smoke run. Killed on drop.
struct BenchServer {
    child: Child,
    url: String,
}

impl BenchServer {
    fn start(data: &Path) -> BenchServer {
        let mut child = Command::new(TALK)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args([
                "--session-rate",
                "0",
                "--send-rate",
                "0",
                "--channel-rate",
                "0",
                "--channel-address-rate",
                "0",
                "--poll-timeout",
                "2",
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the talk binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (found, address) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let address = rest.split_whitespace().next().unwrap_or_default();
                    let _ = found.send(address.to_owned());
                }
            }
        });
        let mut server = BenchServer {
            child,
            url: String::new(),
        };
        let address = address
            .recv_timeout(Duration::from_secs(30))
            .expect("the server prints `listening on http://ADDR` within 30 s");
        server.url = format!("http://{address}");
        server
    }

    /// Runs `talk bench <args>` against this server and returns its JSON
    /// line, after checking the run says it was clean.
    fn bench(&self, args: &[&str]) -> Value {
        let pid = self.child.id().to_string();
        let mut command = Command::new(TALK);
        command
            .arg("bench")
            .args(args)
            .args([
                "--url",
                &self.url,
                "--server-pid",
                &pid,
                "--drain-secs",
                "5",
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        let output = run_bounded(command, Duration::from_secs(120));
        let stdout = String::from_utf8(output.stdout).expect("utf-8 output");
        let json_line = stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("no output from talk bench {args:?}"));
        let result: Value = serde_json::from_str(json_line)
            .unwrap_or_else(|error| panic!("last line is not JSON ({error}): {stdout}"));
        assert!(
            output.status.success(),
            "talk bench {args:?} failed ({}):\n{stdout}",
            output.status
        );
        assert_eq!(result["result"]["clean"], true, "{stdout}");
        result
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command to its end, killing it if it takes longer than `limit`.
fn run_bounded(mut command: Command, limit: Duration) -> std::process::Output {
    let child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("talk bench starts");
    let pid = child.id();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(limit) {
        Ok(output) => output.expect("talk bench runs"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("talk bench took longer than {limit:?}");
        }
    }
}

fn assert_complete(completeness: &Value) {
    for counter in ["missing", "duplicates", "out_of_order", "resets"] {
        assert_eq!(completeness[counter], 0, "{counter}: {completeness}");
    }
}

#[test]
fn capacity_holds_every_poller_in_worker_processes() {
    let data = tempfile::tempdir().unwrap();
    let server = BenchServer::start(data.path());
    let pollers = 300;
    let json = server.bench(&[
        "capacity",
        "--pollers",
        &pollers.to_string(),
        "--channels",
        "3",
        "--hold-secs",
        "5",
        "--workers",
        "2",
    ]);
    let result = &json["result"];
    assert_eq!(result["ready"], pollers);
    assert_eq!(result["alive_at_end"], pollers);
    assert_eq!(result["pollers_with_errors"], 0);
    assert_eq!(result["errors"], serde_json::json!({}));
    // With a 2 s poll timeout and a 5 s hold, held polls came back empty
    // and were polled again.
    assert!(result["held_polls_during_hold"].as_u64().unwrap() >= pollers);
    assert!(result["server_rss_held_kib"].as_u64().unwrap() > 0);
    assert_complete(&result["completeness"]);
}

#[test]
fn fanout_delivers_every_message_once_in_order() {
    let data = tempfile::tempdir().unwrap();
    let server = BenchServer::start(data.path());
    for transport in ["raw", "api"] {
        let json = server.bench(&[
            "fanout",
            "--pollers",
            "150",
            "--messages",
            "30",
            "--interval-ms",
            "50",
            "--transport",
            transport,
            "--workers",
            "2",
        ]);
        let result = &json["result"];
        assert_eq!(result["ready"], 150, "{transport}");
        let by_worker = result["worker_latency"].as_array().unwrap();
        assert_eq!(by_worker.len(), 2, "{transport}");
        let counted: u64 = by_worker.iter().map(|w| w["count"].as_u64().unwrap()).sum();
        assert_eq!(
            counted,
            150 * 30,
            "{transport}: each delivery in one worker's latencies"
        );
        assert_eq!(result["sends"]["acked"], 30, "{transport}");
        assert_eq!(result["deliveries"], 150 * 30, "{transport}");
        assert_eq!(result["latency"]["count"], 150 * 30, "{transport}");
        assert_complete(&result["completeness"]);
    }
}

#[test]
fn throughput_steps_without_loss() {
    let data = tempfile::tempdir().unwrap();
    let server = BenchServer::start(data.path());
    let json = server.bench(&[
        "throughput",
        "--channels",
        "4",
        "--pollers-per-channel",
        "25",
        "--rates",
        "20,80",
        "--step-secs",
        "2",
        "--sends-per-session",
        "50",
        "--workers",
        "2",
        // No timing in tests: only loss, duplicates or errors fail a step.
        "--p99-limit-ms",
        "600000",
    ]);
    let result = &json["result"];
    assert_eq!(result["ready"], 100);
    let steps = result["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{result}");
    for step in steps {
        assert_eq!(step["passed"], true, "{step}");
        assert_eq!(step["sends"]["failed"], 0, "{step}");
        assert_eq!(step["deliveries"], step["expected_deliveries"], "{step}");
        assert_complete(&step["completeness"]);
        // Every delivery is in one worker's latencies; the spread of the
        // channels' p99s is ordered and names one of the 4 channels.
        let by_worker: u64 = step["worker_latency"]
            .as_array()
            .unwrap()
            .iter()
            .map(|worker| worker["count"].as_u64().unwrap())
            .sum();
        assert_eq!(by_worker, step["deliveries"].as_u64().unwrap(), "{step}");
        let spread = &step["channel_p99"];
        let ms = |key: &str| spread[key].as_f64().unwrap();
        assert!(ms("min_ms") > 0.0, "{step}");
        assert!(
            ms("min_ms") <= ms("median_ms") && ms("median_ms") <= ms("max_ms"),
            "{step}"
        );
        assert!(
            ms("max_ms") <= step["latency"]["max_ms"].as_f64().unwrap(),
            "{step}"
        );
        assert!(spread["slowest_channel"].as_u64().unwrap() < 4, "{step}");
    }
    assert_eq!(steps[1]["expected_deliveries"], 160 * 25);
}
