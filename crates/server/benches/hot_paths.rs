//! Criterion micro-benchmarks of the server's hot paths: encoding an event
//! once, splicing encoded events into an answer, waking N held polls with
//! one message, and reading history from a cursor behind the head.
//!
//! The last two go through the real server (`talk_server::Server` on a
//! loopback port, in this process) and the client library, so they measure
//! what a poll costs end to end, HTTP included; `talk bench` measures the
//! same under load from another process.

// `criterion_group!` defines a public function it cannot document.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use talk_client::protocol::{Cursor, Event, EventKind, PollRequest};
use talk_client::Api;
use talk_server::Config;
use tokio::runtime::Runtime;
use tokio::sync::Notify;

fn message_event(seq: u64) -> Event {
    Event {
        seq,
        ts: 1_790_000_000_000 + seq,
        from: "benchmarker".into(),
        color: "ff8800".into(),
        kind: EventKind::Message {
            text: "a chat message of about a hundred characters, which is what people type in a chat box on a page".into(),
            id: format!("m-{seq:016x}"),
        },
    }
}

fn encoding(c: &mut Criterion) {
    let event = message_event(42);
    c.bench_function("encode_event", |b| {
        b.iter(|| talk_client::protocol::to_json(std::hint::black_box(&event)))
    });
    let mut group = c.benchmark_group("splice_answer");
    for n_events in [1usize, 10, 100] {
        let bodies: Vec<Vec<u8>> = (0..n_events as u64)
            .map(|seq| talk_client::protocol::to_json(&message_event(seq)))
            .collect();
        let cursor = Cursor {
            epoch: "abcd1234".into(),
            seq: n_events as u64,
        };
        group.throughput(Throughput::Elements(n_events as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(n_events),
            &bodies,
            |b, bodies| {
                b.iter(|| {
                    talk_client::protocol::poll_answer_json(
                        "lobby",
                        &cursor,
                        bodies.iter().map(|body| &body[..]),
                        None,
                        false,
                    )
                })
            },
        );
    }
    group.finish();
}

/// Decoding a poll's body, as the server does for every poll: a token, a
/// channel and a cursor.
fn poll_decoding(c: &mut Criterion) {
    let body =
        br#"{"token":"0f1e2d3c4b5a69788796a5b4c3d2e1f0","channel":"lobby","cursor":"k3x9a1bc:41"}"#;
    c.bench_function("decode_poll_request", |b| {
        b.iter(|| {
            talk_client::protocol::from_json::<PollRequest>(std::hint::black_box(&body[..]))
                .expect("a valid poll body")
        })
    });
}

/// A server on a loopback port in this process, with no rate limits.
struct LocalServer {
    url: String,
    _data: tempfile::TempDir,
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<()>,
}

impl LocalServer {
    /// Shuts the server down and waits for it, before its runtime goes away.
    fn stop(self, runtime: &Runtime) {
        let _ = self.stop.send(());
        let _ = runtime.block_on(self.running);
    }
}

fn start_server(runtime: &Runtime) -> LocalServer {
    let data = tempfile::tempdir().expect("a temp dir");
    let config = Config {
        data_dir: data.path().to_path_buf(),
        send_rate: None,
        session_start_rate: None,
        ..Config::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (url, running) = runtime.block_on(async {
        let server = talk_server::Server::open(config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let running = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        (url, running)
    });
    LocalServer {
        url,
        _data: data,
        stop,
        running,
    }
}

fn api(url: &str) -> Api {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(usize::MAX)
        .build()
        .unwrap();
    Api::with_http(url, http)
}

/// N pollers held in one channel; each iteration sends one message and
/// waits until every poller has its answer (and has polled again).
fn wake_waiters(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = start_server(&runtime);
    let mut group = c.benchmark_group("wake_waiters");
    group.sample_size(10);
    for n_waiters in [100u64, 1_000] {
        let answered = Arc::new(AtomicU64::new(0));
        let polled = Arc::new(AtomicU64::new(0));
        let progress = Arc::new(Notify::new());
        let api = api(&server.url);
        let sender = runtime.block_on(async {
            for index in 0..n_waiters {
                let api = api.clone();
                let (answered, polled, progress) =
                    (answered.clone(), polled.clone(), progress.clone());
                let channel = format!("wake{n_waiters}");
                let start = api
                    .start(Some(&format!("w{n_waiters}x{index}")), None, Some(&channel))
                    .await
                    .unwrap();
                tokio::spawn(async move {
                    let mut request = PollRequest {
                        token: start.token,
                        channel: None,
                        cursor: None,
                        wait_ms: None,
                    };
                    loop {
                        let first = request.cursor.is_none();
                        polled.fetch_add(u64::from(!first), Ordering::Relaxed);
                        progress.notify_one();
                        let Ok(answer) = api.poll(&request).await else {
                            return;
                        };
                        if !first && !answer.events.is_empty() {
                            answered.fetch_add(1, Ordering::Relaxed);
                            progress.notify_one();
                        }
                        request.channel = Some(answer.channel);
                        request.cursor = Some(answer.cursor);
                    }
                });
            }
            let start = api
                .start(
                    Some(&format!("s{n_waiters}")),
                    None,
                    Some(&format!("wake{n_waiters}")),
                )
                .await
                .unwrap();
            start.token
        });
        let wait_for = |counter: &AtomicU64, target: u64| {
            runtime.block_on(async {
                while counter.load(Ordering::Relaxed) < target {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(5), progress.notified()).await;
                }
            })
        };
        let mut sent = 0u64;
        group.throughput(Throughput::Elements(n_waiters));
        group.bench_function(BenchmarkId::from_parameter(n_waiters), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    // Every poller parked with the latest cursor, then one send.
                    wait_for(&polled, (sent + 1) * n_waiters);
                    runtime.block_on(async { tokio::time::sleep(Duration::from_millis(2)).await });
                    let began = Instant::now();
                    sent += 1;
                    runtime
                        .block_on(api.send(&sender, &format!("x{n_waiters}-{sent}"), "wake up"))
                        .unwrap();
                    wait_for(&answered, sent * n_waiters);
                    total += began.elapsed();
                }
                total
            })
        });
    }
    group.finish();
    server.stop(&runtime);
}

/// One poll whose cursor is `behind` events before the head of a channel
/// of 1,000 messages. Two cursors alternate, so that every answer is built
/// rather than taken from the channel's cache of the last answer.
fn history_reads(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = start_server(&runtime);
    let api = api(&server.url);
    let (token, head) = runtime.block_on(async {
        let start = api
            .start(Some("reader"), None, Some("history"))
            .await
            .unwrap();
        let mut head = 0;
        for index in 0..1_000 {
            let text = format!("history message number {index}");
            head = api
                .send(&start.token, &format!("h{index}"), &text)
                .await
                .unwrap()
                .seq
                .unwrap();
        }
        let answer = api
            .poll(&PollRequest {
                token: start.token.clone(),
                channel: None,
                cursor: None,
                wait_ms: Some(0),
            })
            .await
            .unwrap();
        assert_eq!(answer.cursor.seq, head);
        (start.token, answer.cursor)
    });
    let mut group = c.benchmark_group("history_read");
    for behind in [1u64, 50, 999] {
        let mut flip = false;
        group.throughput(Throughput::Elements(behind));
        group.bench_function(BenchmarkId::from_parameter(behind), |b| {
            b.iter(|| {
                flip = !flip;
                let request = PollRequest {
                    token: token.clone(),
                    channel: Some("history".into()),
                    cursor: Some(Cursor {
                        epoch: head.epoch.clone(),
                        seq: head.seq - behind - u64::from(flip),
                    }),
                    wait_ms: Some(0),
                };
                runtime.block_on(api.poll(&request)).unwrap()
            })
        });
    }
    group.finish();
    server.stop(&runtime);
}

criterion_group!(
    benches,
    encoding,
    poll_decoding,
    wake_waiters,
    history_reads
);
criterion_main!(benches);
