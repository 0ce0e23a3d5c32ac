//! One bench poller: a session that keeps one poll open and checks that
//! every event of its channel arrives exactly once and in order.
//!
//! The server's `seq` is the truth about order: after its first poll a
//! poller must see every `seq` of its channel once, in increasing order. A
//! bitmap over the seqs since the first poll tells missing, duplicated and
//! out-of-order events apart. Bench messages also carry the time they were
//! sent, which gives the delivery latency.
//!
//! A poller follows its channel through its server's [`Subscriber`]; what
//! an answer means for completeness and latency is told here, the same for
//! every server. A server without seqs numbers its bench messages instead.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::Instant;

use crate::histogram::Histogram;
use crate::protocol::{Answer, ErrorLog, PollError, Subscriber};
use crate::send_gate::SendGate;

/// How many error messages a worker keeps as examples.
const ERROR_SAMPLES: usize = 5;

/// Microseconds since 1970 by the system clock, which every process of the
/// machine shares, so a sender's stamp and a receiver's clock agree.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as u64)
        .unwrap_or(0)
}

/// The text of bench message number `seq` of run `run_id`, stamped now.
pub fn bench_text(run_id: &str, seq: u64) -> String {
    format!("bench {run_id} {seq} {}", now_micros())
}

/// Reads `(seq, sent_micros)` back from a bench message of run `run_id`.
pub fn parse_bench_text(run_id: &str, text: &str) -> Option<(u64, u64)> {
    let mut words = text.split_ascii_whitespace();
    if words.next()? != "bench" || words.next()? != run_id {
        return None;
    }
    let seq = words.next()?.parse().ok()?;
    let sent = words.next()?.parse().ok()?;
    Some((seq, sent))
}

/// Counters of one measurement window, shared by a worker's pollers.
#[derive(Debug, Default)]
pub(crate) struct Window {
    pub(crate) deliveries: u64,
    /// The latencies by channel index, so that a few channels falling
    /// behind the rest (throughput's many channels) show apart; recorded
    /// once per delivery, and merged for the whole (`latency`).
    pub(crate) channel_latency: Vec<Histogram>,
    pub(crate) polls: u64,
    pub(crate) held_polls: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) error_samples: Vec<String>,
}

impl Window {
    /// Counts one bench message delivered to a poller of `channel_index`.
    fn record_delivery(&mut self, channel_index: usize, micros: u64) {
        self.deliveries += 1;
        if self.channel_latency.len() <= channel_index {
            self.channel_latency
                .resize_with(channel_index + 1, Histogram::new);
        }
        self.channel_latency[channel_index].record(micros);
    }

    /// Every channel's latencies together.
    pub(crate) fn latency(&self) -> Histogram {
        let mut all = Histogram::new();
        for channel in &self.channel_latency {
            all.merge(channel);
        }
        all
    }

    pub(crate) fn record_error(&mut self, error: &PollError) {
        *self.errors.entry(error.kind()).or_default() += 1;
        if self.error_samples.len() < ERROR_SAMPLES {
            self.error_samples.push(error.to_string());
        }
    }
}

/// What one worker's pollers share.
pub(crate) struct Shared {
    pub(crate) window: Mutex<Window>,
    /// Pollers whose first poll was answered and whose second is on its way.
    pub(crate) ready: AtomicUsize,
    /// Pollers that never got a session or a first answer.
    pub(crate) failed: AtomicUsize,
    /// Orders the pollers' reads before their next polls.
    pub(crate) send_gate: SendGate,
}

/// What a poller knows about its channel's stream so far.
#[derive(Debug, Default)]
pub(crate) struct PollerState {
    pub(crate) channel_index: usize,
    /// False once the poller gave up (its session ended).
    pub(crate) alive: bool,
    /// Set once the first poll was answered.
    pub(crate) started: bool,
    epoch: String,
    /// The cursor's seq after the first poll: events up to it are history.
    start_seq: u64,
    /// Bit `i` is set when seq `start_seq + 1 + i` arrived.
    seen: Vec<u64>,
    /// Every seq in `start_seq + 1 ..= contiguous` arrived.
    pub(crate) contiguous: u64,
    max_seen: u64,
    pub(crate) duplicates: u64,
    pub(crate) out_of_order: u64,
    pub(crate) resets: u64,
    pub(crate) errors: u64,
}

impl PollerState {
    /// A poller of channel `channel_index` that has not started yet.
    pub(crate) fn new(channel_index: usize) -> PollerState {
        PollerState {
            channel_index,
            ..PollerState::default()
        }
    }

    fn is_seen(&self, offset: u64) -> bool {
        let word = (offset / 64) as usize;
        word < self.seen.len() && self.seen[word] & (1 << (offset % 64)) != 0
    }

    fn mark_seen(&mut self, offset: u64) {
        let word = (offset / 64) as usize;
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        self.seen[word] |= 1 << (offset % 64);
    }

    /// Starts tracking from `cursor_seq`, as after a first poll or a reset.
    fn restart_at(&mut self, epoch: &str, cursor_seq: u64) {
        self.epoch = epoch.to_owned();
        self.start_seq = cursor_seq;
        self.seen.clear();
        self.contiguous = cursor_seq;
        self.max_seen = cursor_seq;
    }

    /// Takes in one event's seq.
    fn take(&mut self, seq: u64) {
        if seq <= self.start_seq {
            self.duplicates += 1;
            return;
        }
        let offset = seq - self.start_seq - 1;
        if self.is_seen(offset) {
            self.duplicates += 1;
            return;
        }
        self.mark_seen(offset);
        if seq < self.max_seen {
            self.out_of_order += 1;
        }
        self.max_seen = self.max_seen.max(seq);
        while self.is_seen(self.contiguous - self.start_seq) {
            self.contiguous += 1;
        }
    }

    /// How many seqs in `start_seq + 1 ..= expected` never arrived.
    pub(crate) fn missing_up_to(&self, expected: u64) -> u64 {
        if !self.started || expected <= self.start_seq {
            return 0;
        }
        let wanted = expected - self.start_seq;
        let mut arrived = 0u64;
        for (word_index, word) in self.seen.iter().enumerate() {
            let first = word_index as u64 * 64;
            if first >= wanted {
                break;
            }
            let bits_in_range = (wanted - first).min(64);
            let mask = if bits_in_range == 64 {
                u64::MAX
            } else {
                (1u64 << bits_in_range) - 1
            };
            arrived += u64::from((word & mask).count_ones());
        }
        wanted - arrived
    }
}

/// Everything a poller task needs to know.
pub(crate) struct PollerPlan<S> {
    pub(crate) subscriber: S,
    pub(crate) poll_limit: Duration,
    /// When to give up starting.
    pub(crate) start_deadline: Instant,
}

/// Sends one poll of `subscriber` and waits at most `limit` for its answer.
async fn next_answer<S: Subscriber>(
    subscriber: &mut S,
    limit: Duration,
) -> Result<S::Answer, PollError> {
    match tokio::time::timeout(limit, subscriber.poll()).await {
        Ok(outcome) => outcome,
        Err(_) => {
            // A poll that hung may have left its connection mid-answer.
            subscriber.forget_connection();
            Err(PollError::Timeout)
        }
    }
}

/// Runs one poller until `stop` turns true.
pub(crate) async fn run_poller<S: Subscriber>(
    mut plan: PollerPlan<S>,
    shared: Arc<Shared>,
    state: Arc<Mutex<PollerState>>,
    mut stop: watch::Receiver<bool>,
) {
    let errors = ErrorLog {
        window: &shared.window,
    };
    if !plan.subscriber.start(plan.start_deadline, &errors).await {
        shared.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    state.lock().expect("poller state lock").alive = true;
    let mut is_first = true;
    let mut first_failures = 0;
    let mut wait_turn = false;
    // One wait for the stop for the poller's whole life: a new wait for
    // each poll joined and left the watch channel's waiters every time,
    // which showed in the bench core's profile.
    let stopped = stop.wait_for(|stopped| *stopped);
    tokio::pin!(stopped);
    loop {
        let poll = async {
            if wait_turn {
                shared.send_gate.wait_turn().await;
            }
            next_answer(&mut plan.subscriber, plan.poll_limit).await
        };
        let outcome = tokio::select! {
            biased;
            outcome = poll => outcome,
            _ = &mut stopped => break,
        };
        wait_turn = false;
        match outcome {
            Ok(answer) => {
                if is_first && Instant::now() > plan.start_deadline {
                    // Too late: the run has moved on without this poller, and
                    // it would be blamed for messages sent before it joined.
                    state.lock().expect("poller state lock").alive = false;
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                take_answer(&shared, &state, &answer, is_first);
                shared.send_gate.answer_read();
                let reconnect = answer.asks_to_reconnect();
                if is_first && answer.position().is_some() {
                    is_first = false;
                    shared.ready.fetch_add(1, Ordering::Relaxed);
                }
                plan.subscriber.advance(answer);
                if reconnect {
                    // The server is going away; a real client pauses too.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                } else {
                    // The worker's other pollers read the answers that have
                    // arrived before this one sends its next poll (see
                    // `send_gate`); otherwise the bench's own sends would
                    // sit in the measured latency.
                    wait_turn = true;
                }
            }
            Err(error) => {
                errors.record(&error);
                let session_gone = error.ends_session();
                {
                    let mut state = state.lock().expect("poller state lock");
                    state.errors += 1;
                    if session_gone {
                        state.alive = false;
                    }
                }
                if session_gone {
                    if is_first {
                        shared.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                if is_first {
                    first_failures += 1;
                    if first_failures >= 3 {
                        state.lock().expect("poller state lock").alive = false;
                        shared.failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
                // Back off a little, as a real client does, then poll again
                // from the same position.
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
        }
    }
}

/// Takes in one answer: the poller's completeness bitmap and the worker's
/// window are updated under one lock each, once per answer, with no
/// allocation. The window's lock is taken inside the state's; nothing takes
/// them the other way round.
fn take_answer<A: Answer>(shared: &Shared, state: &Mutex<PollerState>, answer: &A, is_first: bool) {
    let received = now_micros();
    let mut state = state.lock().expect("poller state lock");
    let mut window = shared.window.lock().expect("window lock");
    window.polls += 1;
    if !is_first && answer.events().next().is_none() && !answer.asks_to_reconnect() {
        window.held_polls += 1;
    }
    // Events up to `history` are what the stream held before the poller
    // joined (or before a reset), not deliveries.
    let history = if is_first {
        let Some(start) = answer.position() else {
            // A poll that timed out before the server had any message for
            // it: the stream has not started.
            return;
        };
        state.started = true;
        state.restart_at(start.epoch, start.seq);
        start.seq
    } else {
        match answer.position() {
            Some(position) if answer.resets() || position.epoch != state.epoch => {
                // Lost the thread of the stream: count it and follow the server.
                state.resets += 1;
                state.restart_at(position.epoch, position.seq);
                return;
            }
            _ => 0,
        }
    };
    for event in answer.events() {
        if is_first && event.seq <= history {
            continue;
        }
        state.take(event.seq);
        if let Some(sent) = event.sent_micros {
            window.record_delivery(state.channel_index, received.saturating_sub(sent));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{BenchEvent, StreamPosition};

    /// An answer of any server: where it says the stream stands, its
    /// events' seqs (all stamped), and whether it resets the stream.
    struct Scripted {
        position: Option<(&'static str, u64)>,
        seqs: Vec<u64>,
        resets: bool,
    }

    impl Answer for Scripted {
        fn position(&self) -> Option<StreamPosition<'_>> {
            self.position
                .map(|(epoch, seq)| StreamPosition { epoch, seq })
        }

        fn events(&self) -> impl Iterator<Item = BenchEvent> + '_ {
            self.seqs.iter().map(|&seq| BenchEvent {
                seq,
                sent_micros: Some(now_micros()),
            })
        }

        fn resets(&self) -> bool {
            self.resets
        }
    }

    /// Takes `answers` in as one poller would (the first until one says
    /// where the stream stands) and says what the accounting made of them:
    /// (started, deliveries, duplicates, resets, held polls, contiguous).
    fn check(answers: Vec<Scripted>, expected: (bool, u64, u64, u64, u64, u64)) {
        let shared = Shared {
            window: Mutex::new(Window::default()),
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            send_gate: SendGate::default(),
        };
        let state = Mutex::new(PollerState::new(0));
        let mut is_first = true;
        for answer in &answers {
            take_answer(&shared, &state, answer, is_first);
            is_first &= answer.position().is_none();
        }
        let state = state.lock().unwrap();
        let window = shared.window.lock().unwrap();
        let got = (
            state.started,
            window.deliveries,
            state.duplicates,
            state.resets,
            window.held_polls,
            state.contiguous,
        );
        assert_eq!(got, expected);
    }

    fn answer(position: Option<(&'static str, u64)>, seqs: &[u64]) -> Scripted {
        Scripted {
            position,
            seqs: seqs.to_vec(),
            resets: false,
        }
    }

    #[test]
    fn a_first_answer_starts_the_stream_and_its_history_is_not_delivered() {
        // talk: the first answer is history up to its cursor.
        check(
            vec![
                answer(Some(("e", 3)), &[1, 2, 3]),
                answer(Some(("e", 5)), &[4, 5]),
            ],
            (true, 2, 0, 0, 0, 5),
        );
        // A server whose first answer is the stream's first message (0).
        check(
            vec![
                answer(None, &[]),
                answer(Some(("", 0)), &[0]),
                answer(Some(("", 1)), &[1]),
                answer(None, &[]),
            ],
            (true, 1, 0, 0, 1, 1),
        );
        // A server whose first answer starts the stream and brings more.
        check(
            vec![answer(Some(("", 0)), &[1, 2]), answer(None, &[3])],
            (true, 3, 0, 0, 0, 3),
        );
        // No answer said where the stream stands: nothing started.
        check(
            vec![answer(None, &[]), answer(None, &[])],
            (false, 0, 0, 0, 0, 0),
        );
    }

    #[test]
    fn a_reset_or_a_new_epoch_restarts_the_stream() {
        let reset = Scripted {
            resets: true,
            ..answer(Some(("e", 9)), &[8, 9])
        };
        check(
            vec![
                answer(Some(("e", 1)), &[]),
                reset,
                answer(Some(("e", 10)), &[10]),
            ],
            (true, 1, 0, 1, 0, 10),
        );
        check(
            vec![
                answer(Some(("e", 1)), &[]),
                answer(Some(("f", 4)), &[4]),
                answer(Some(("f", 5)), &[5, 5]),
            ],
            (true, 2, 1, 1, 0, 5),
        );
    }

    fn state_after(seqs: &[u64]) -> PollerState {
        let mut state = PollerState {
            started: true,
            ..PollerState::default()
        };
        state.restart_at("e", 10);
        for &seq in seqs {
            state.take(seq);
        }
        state
    }

    #[test]
    fn completeness_is_told_from_seqs() {
        let check = |seqs: &[u64], expected: u64, want: (u64, u64, u64, u64)| {
            let state = state_after(seqs);
            let got = (
                state.missing_up_to(expected),
                state.duplicates,
                state.out_of_order,
                state.contiguous,
            );
            assert_eq!(got, want, "{seqs:?} up to {expected}");
        };
        check(&[11, 12, 13], 13, (0, 0, 0, 13));
        check(&[11, 13], 13, (1, 0, 0, 11));
        check(&[11, 13, 12], 13, (0, 0, 1, 13));
        check(&[11, 11, 12, 9], 12, (0, 2, 0, 12));
        check(&[], 12, (2, 0, 0, 10));
        check(&[11], 9, (0, 0, 0, 11));
        let many: Vec<u64> = (11..=400).filter(|seq| seq % 100 != 0).collect();
        check(&many, 400, (4, 0, 0, 99));
    }

    #[test]
    fn bench_texts_round_trip_and_other_runs_are_ignored() {
        let text = bench_text("r1", 42);
        let (seq, sent) = parse_bench_text("r1", &text).unwrap();
        assert_eq!(seq, 42);
        assert!(sent > 1_600_000_000_000_000);
        assert_eq!(parse_bench_text("r2", &text), None);
        assert_eq!(parse_bench_text("r1", "hello there"), None);
    }
}
