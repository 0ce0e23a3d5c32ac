//! A worker: a group of pollers driven by the coordinator through commands,
//! in the coordinator's process or in a child process of its own.
//!
//! One process may hold only as many sockets as its open-files limit (20,000
//! here), so big runs split the pollers over several worker processes, each
//! from its own 127.0.0.x source address. A child speaks JSON lines: commands
//! on its stdin, events on its stdout. A worker in the coordinator's process
//! runs the same code over in-memory channels.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::histogram::{Histogram, SparseHistogram};
use crate::poller::{run_poller, PollerPlan, PollerState, Shared, Window};
use crate::protocol::{Pollers, Protocol};
use crate::send_gate::SendGate;
use crate::talk::PollTransport;
use crate::Error;

/// What a group of pollers is to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupSpec {
    /// The server, e.g. `http://127.0.0.1:8000`.
    pub base_url: String,
    /// The address the group's sockets leave from; the system's choice when absent.
    pub source_ip: Option<IpAddr>,
    /// Marks this run's sessions and messages.
    pub run_id: String,
    /// The channels; poller `i` (global index) goes to `channels[i % len]`.
    pub channels: Vec<String>,
    /// The global index of this group's first poller.
    pub first_index: usize,
    /// How many pollers this group runs.
    pub pollers: usize,
    /// Session starts per second for this group.
    pub ramp_per_second: f64,
    /// The HTTP stack of talk's polls (another server's pollers use the
    /// lean connection).
    pub transport: PollTransport,
    /// `wait_ms` of every poll after the first; absent for the server's timeout.
    pub wait_ms: Option<u64>,
    /// How long one poll may take before it counts as an error.
    pub poll_limit_ms: u64,
    /// How long the ramp may take in all before the stragglers count as failed.
    pub ramp_limit_ms: u64,
    /// Whether to end every session with `leave` at the end.
    pub leave_at_end: bool,
}

/// What the coordinator tells a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum WorkerCommand {
    /// Start the pollers; answered by `Ramped`.
    Start {
        /// The group.
        spec: GroupSpec,
    },
    /// Wait until every poller has every event up to `expected[channel]`
    /// (or `drain_ms` passed), then report; answered by `Report`.
    Collect {
        /// Per channel index, the highest seq every poller must have.
        expected: Vec<u64>,
        /// How long to wait for stragglers.
        drain_ms: u64,
    },
    /// Stop polling, end the sessions, exit; answered by `Stopped`.
    Stop,
}

/// What a worker tells the coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// The ramp is over.
    Ramped {
        /// Pollers whose first poll was answered.
        ready: usize,
        /// Pollers that got no session or no first answer.
        failed: usize,
    },
    /// The counters asked for by `Collect`.
    Report {
        /// The counters.
        report: GroupReport,
    },
    /// The pollers stopped and the sessions ended.
    Stopped,
    /// The worker cannot go on.
    Failed {
        /// Why.
        message: String,
    },
}

/// Counters of a group of pollers. Completeness counters cover the whole
/// run; delivery, poll and error counters cover the window since the last
/// report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupReport {
    /// Pollers asked for.
    pub pollers: usize,
    /// Pollers whose first poll was answered.
    pub ready: usize,
    /// Pollers still polling.
    pub alive: usize,
    /// Pollers that had at least one error in the run.
    pub pollers_with_errors: usize,
    /// Poll answers in the window.
    pub polls: u64,
    /// Poll answers in the window that came back empty after being held.
    pub held_polls: u64,
    /// Errors in the window, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Some error messages, as examples.
    pub error_samples: Vec<String>,
    /// Bench messages delivered in the window (one per poller that got it).
    pub deliveries: u64,
    /// Their latencies in microseconds.
    pub latency: SparseHistogram,
    /// The same latencies by channel index (empty for a channel without
    /// deliveries at the end of the list).
    #[serde(default)]
    pub channel_latency: Vec<SparseHistogram>,
    /// Events up to the expected seq that never arrived, over all pollers.
    pub missing: u64,
    /// Events that arrived more than once.
    pub duplicates: u64,
    /// Events that arrived after a later one.
    pub out_of_order: u64,
    /// Poll answers that reset the stream (gap, epoch, switch).
    pub resets: u64,
    /// Pollers with anything missing.
    pub pollers_missing: usize,
    /// Pollers that saw a duplicate.
    pub pollers_duplicated: usize,
    /// Pollers that saw events out of order.
    pub pollers_out_of_order: usize,
}

impl GroupReport {
    /// Adds another group's counters to these.
    pub fn merge(&mut self, other: &GroupReport) {
        self.pollers += other.pollers;
        self.ready += other.ready;
        self.alive += other.alive;
        self.pollers_with_errors += other.pollers_with_errors;
        self.polls += other.polls;
        self.held_polls += other.held_polls;
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
        for sample in &other.error_samples {
            if self.error_samples.len() < 5 {
                self.error_samples.push(sample.clone());
            }
        }
        self.deliveries += other.deliveries;
        self.latency = merged_sparse(&self.latency, &other.latency);
        if self.channel_latency.len() < other.channel_latency.len() {
            self.channel_latency
                .resize_with(other.channel_latency.len(), SparseHistogram::default);
        }
        for (mine, theirs) in self.channel_latency.iter_mut().zip(&other.channel_latency) {
            *mine = merged_sparse(mine, theirs);
        }
        self.missing += other.missing;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.resets += other.resets;
        self.pollers_missing += other.pollers_missing;
        self.pollers_duplicated += other.pollers_duplicated;
        self.pollers_out_of_order += other.pollers_out_of_order;
    }

    /// Errors of every kind in the window.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Two histograms' counts added up.
fn merged_sparse(left: &SparseHistogram, right: &SparseHistogram) -> SparseHistogram {
    let mut merged = Histogram::from_sparse(left);
    merged.merge(&Histogram::from_sparse(right));
    merged.to_sparse()
}

/// A running group of pollers.
struct Group<P> {
    spec: GroupSpec,
    pollers: P,
    shared: Arc<Shared>,
    states: Vec<Arc<Mutex<PollerState>>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// Finds the socket address of `base_url` (`http://host:port`).
pub fn server_address(base_url: &str) -> Result<SocketAddr, Error> {
    let authority = base_url
        .strip_prefix("http://")
        .ok_or_else(|| Error::Config(format!("{base_url}: only http:// URLs")))?
        .trim_end_matches('/');
    authority
        .to_socket_addrs()
        .map_err(|error| Error::Config(format!("{base_url}: {error}")))?
        .next()
        .ok_or_else(|| Error::Config(format!("{base_url}: no address")))
}

impl<P: Pollers> Group<P> {
    fn start<T: Protocol<Pollers = P>>(spec: GroupSpec) -> Result<Group<P>, Error> {
        let server = server_address(&spec.base_url)?;
        let poll_limit = Duration::from_millis(spec.poll_limit_ms);
        let pollers = T::pollers(&spec, server)?;
        let shared = Arc::new(Shared {
            window: Mutex::new(Window::default()),
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            send_gate: SendGate::default(),
        });
        let (stop, stop_receiver) = watch::channel(false);
        let mut states = Vec::with_capacity(spec.pollers);
        let mut tasks = JoinSet::new();
        tasks.spawn({
            let shared = shared.clone();
            let mut stop = stop_receiver.clone();
            async move {
                tokio::select! {
                    _ = stop.wait_for(|stopped| *stopped) => {}
                    () = shared.send_gate.run() => {}
                }
            }
        });
        let start_deadline = Instant::now() + Duration::from_millis(spec.ramp_limit_ms);
        let ramp_started = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / spec.ramp_per_second.max(0.001));
        for local in 0..spec.pollers {
            let index = spec.first_index + local;
            let channel_index = index % spec.channels.len();
            let state = Arc::new(Mutex::new(PollerState::new(channel_index)));
            states.push(state.clone());
            let plan = PollerPlan {
                subscriber: pollers.subscriber(index, channel_index),
                poll_limit,
                start_deadline,
            };
            let shared = shared.clone();
            let stop = stop_receiver.clone();
            let begin_at = ramp_started + interval.mul_f64(local as f64);
            tasks.spawn(async move {
                tokio::time::sleep_until(begin_at).await;
                run_poller(plan, shared, state, stop).await;
            });
        }
        Ok(Group {
            spec,
            pollers,
            shared,
            states,
            stop,
            tasks,
        })
    }

    /// Waits until every poller is ready or failed, or the ramp limit passed.
    async fn wait_ramped(&self) -> WorkerEvent {
        let deadline = Instant::now() + Duration::from_millis(self.spec.ramp_limit_ms);
        loop {
            let ready = self.shared.ready.load(Ordering::Relaxed);
            let failed = self.shared.failed.load(Ordering::Relaxed);
            if ready + failed >= self.spec.pollers || Instant::now() >= deadline {
                return WorkerEvent::Ramped {
                    ready,
                    failed: self.spec.pollers - ready,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn collect(&self, expected: &[u64], drain: Duration) -> GroupReport {
        let expected_of = |channel_index: usize| expected.get(channel_index).copied().unwrap_or(0);
        let deadline = Instant::now() + drain;
        loop {
            let all_caught_up = self.states.iter().all(|state| {
                let state = state.lock().expect("poller state lock");
                !state.alive || state.contiguous >= expected_of(state.channel_index)
            });
            if all_caught_up || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let window = std::mem::take(&mut *self.shared.window.lock().expect("window lock"));
        let latency = window.latency().to_sparse();
        let mut report = GroupReport {
            pollers: self.spec.pollers,
            ready: self.shared.ready.load(Ordering::Relaxed),
            polls: window.polls,
            held_polls: window.held_polls,
            errors: window.errors,
            error_samples: window.error_samples,
            deliveries: window.deliveries,
            latency,
            channel_latency: window
                .channel_latency
                .iter()
                .map(Histogram::to_sparse)
                .collect(),
            ..GroupReport::default()
        };
        for state in &self.states {
            let state = state.lock().expect("poller state lock");
            if !state.started {
                continue;
            }
            report.alive += usize::from(state.alive);
            report.pollers_with_errors += usize::from(state.errors > 0);
            let missing = state.missing_up_to(expected_of(state.channel_index));
            report.missing += missing;
            report.pollers_missing += usize::from(missing > 0);
            report.duplicates += state.duplicates;
            report.pollers_duplicated += usize::from(state.duplicates > 0);
            report.out_of_order += state.out_of_order;
            report.pollers_out_of_order += usize::from(state.out_of_order > 0);
            report.resets += state.resets;
        }
        report
    }

    async fn stop(mut self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
        self.pollers.finish().await;
    }
}

/// Runs a worker: takes commands until `Stop` or the end of `commands`.
pub async fn run_worker<T: Protocol>(
    mut commands: mpsc::Receiver<WorkerCommand>,
    events: mpsc::Sender<WorkerEvent>,
) {
    let mut group: Option<Group<T::Pollers>> = None;
    while let Some(command) = commands.recv().await {
        let event = match command {
            WorkerCommand::Start { spec } => match Group::start::<T>(spec) {
                Ok(started) => {
                    let event = started.wait_ramped().await;
                    group = Some(started);
                    event
                }
                Err(error) => WorkerEvent::Failed {
                    message: error.to_string(),
                },
            },
            WorkerCommand::Collect { expected, drain_ms } => match &group {
                Some(group) => WorkerEvent::Report {
                    report: group
                        .collect(&expected, Duration::from_millis(drain_ms))
                        .await,
                },
                None => WorkerEvent::Failed {
                    message: "collect before start".into(),
                },
            },
            WorkerCommand::Stop => {
                if let Some(group) = group.take() {
                    group.stop().await;
                }
                let _ = events.send(WorkerEvent::Stopped).await;
                return;
            }
        };
        if events.send(event).await.is_err() {
            break;
        }
    }
    if let Some(group) = group.take() {
        group.stop().await;
    }
}

/// Runs a worker over stdin and stdout, as a child process of a coordinator.
pub async fn run_stdio_worker<T: Protocol>() -> Result<(), Error> {
    crate::raise_open_files_limit();
    let (command_sender, command_receiver) = mpsc::channel(16);
    let (event_sender, mut event_receiver) = mpsc::channel(16);
    let worker = tokio::spawn(run_worker::<T>(command_receiver, event_sender));
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<WorkerCommand>(&line) {
                Ok(command) => {
                    if command_sender.send(command).await.is_err() {
                        break;
                    }
                }
                Err(error) => eprintln!("bench worker: bad command {line:?}: {error}"),
            }
        }
    });
    let mut stdout = tokio::io::stdout();
    while let Some(event) = event_receiver.recv().await {
        let mut line =
            serde_json::to_vec(&event).map_err(|error| Error::Worker(error.to_string()))?;
        line.push(b'\n');
        stdout.write_all(&line).await?;
        stdout.flush().await?;
    }
    reader.abort();
    let _ = worker.await;
    Ok(())
}

/// How to start a worker process: the program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerProgram {
    /// The executable, usually the running `talk` binary.
    pub program: std::path::PathBuf,
    /// Its arguments, e.g. `["bench", "worker"]`.
    pub args: Vec<String>,
}

/// The coordinator's end of a worker.
pub(crate) enum WorkerLink {
    InProcess {
        commands: mpsc::Sender<WorkerCommand>,
        events: mpsc::Receiver<WorkerEvent>,
    },
    Child {
        child: Box<tokio::process::Child>,
        stdin: tokio::process::ChildStdin,
        lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    },
}

impl WorkerLink {
    pub(crate) fn in_process<T: Protocol>() -> WorkerLink {
        let (command_sender, command_receiver) = mpsc::channel(16);
        let (event_sender, event_receiver) = mpsc::channel(16);
        tokio::spawn(run_worker::<T>(command_receiver, event_sender));
        WorkerLink::InProcess {
            commands: command_sender,
            events: event_receiver,
        }
    }

    pub(crate) fn spawn(program: &WorkerProgram) -> Result<WorkerLink, Error> {
        let mut child = tokio::process::Command::new(&program.program)
            .args(&program.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                Error::Worker(format!(
                    "cannot start {}: {error}",
                    program.program.display()
                ))
            })?;
        let stdin = child.stdin.take().expect("stdin was piped");
        let stdout = child.stdout.take().expect("stdout was piped");
        Ok(WorkerLink::Child {
            child: Box::new(child),
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        match self {
            WorkerLink::InProcess { .. } => None,
            WorkerLink::Child { child, .. } => child.id(),
        }
    }

    pub(crate) async fn send(&mut self, command: &WorkerCommand) -> Result<(), Error> {
        match self {
            WorkerLink::InProcess { commands, .. } => commands
                .send(command.clone())
                .await
                .map_err(|_| Error::Worker("the worker ended".into())),
            WorkerLink::Child { stdin, .. } => {
                let mut line = serde_json::to_vec(command)
                    .map_err(|error| Error::Worker(error.to_string()))?;
                line.push(b'\n');
                stdin.write_all(&line).await?;
                stdin.flush().await?;
                Ok(())
            }
        }
    }

    /// The worker's next event, waiting at most `limit`.
    pub(crate) async fn next_event(&mut self, limit: Duration) -> Result<WorkerEvent, Error> {
        let next = async {
            match self {
                WorkerLink::InProcess { events, .. } => events
                    .recv()
                    .await
                    .ok_or_else(|| Error::Worker("the worker ended".into())),
                WorkerLink::Child { lines, .. } => {
                    let line = lines
                        .next_line()
                        .await?
                        .ok_or_else(|| Error::Worker("the worker process exited".into()))?;
                    serde_json::from_str(&line).map_err(|error| {
                        Error::Worker(format!("bad worker line {line:?}: {error}"))
                    })
                }
            }
        };
        let event = tokio::time::timeout(limit, next)
            .await
            .map_err(|_| Error::Worker("the worker did not answer in time".into()))??;
        if let WorkerEvent::Failed { message } = &event {
            return Err(Error::Worker(message.clone()));
        }
        Ok(event)
    }

    /// Waits for a child worker to exit after `Stop`, killing it if it hangs.
    pub(crate) async fn finish(self) {
        if let WorkerLink::Child { mut child, .. } = self {
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::talk::{Talk, START_CONNECTIONS};

    fn report(channels: &[&[u64]]) -> GroupReport {
        let mut all = Histogram::new();
        let mut channel_latency = Vec::new();
        for values in channels {
            let mut histogram = Histogram::new();
            for &value in *values {
                histogram.record(value);
                all.record(value);
            }
            channel_latency.push(histogram.to_sparse());
        }
        GroupReport {
            deliveries: all.count(),
            latency: all.to_sparse(),
            channel_latency,
            ..GroupReport::default()
        }
    }

    /// A ramp of many pollers against a server that accepts connections
    /// and never answers: however far the ramp runs ahead of the starts,
    /// only `START_CONNECTIONS` of them are ever open.
    #[tokio::test]
    async fn a_ramp_opens_no_more_start_connections_than_it_keeps() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let server = tokio::spawn({
            let accepted = accepted.clone();
            async move {
                let mut open = Vec::new();
                while let Ok((stream, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    open.push(stream);
                }
            }
        });
        let spec = GroupSpec {
            base_url,
            source_ip: None,
            run_id: "t".into(),
            channels: vec!["lobby".into()],
            first_index: 0,
            pollers: 200,
            ramp_per_second: 1_000_000.0,
            transport: PollTransport::Raw,
            wait_ms: None,
            poll_limit_ms: 60_000,
            ramp_limit_ms: 60_000,
            leave_at_end: false,
        };
        let group = Group::start::<Talk>(spec).unwrap();
        // Every poller's start is due at once; give them time to connect.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(accepted.load(Ordering::Relaxed), START_CONNECTIONS);
        // Dropping the group aborts its pollers, which wait on their starts.
        drop(group);
        server.abort();
    }

    #[test]
    fn merge_adds_channels_by_index() {
        // One worker saw deliveries in channels 0 and 1, the other in 0 to 2.
        let mut merged = report(&[&[100, 200], &[300]]);
        merged.merge(&report(&[&[400], &[], &[5_000]]));
        let count = |index: usize| Histogram::from_sparse(&merged.channel_latency[index]).count();
        assert_eq!(merged.channel_latency.len(), 3);
        assert_eq!((count(0), count(1), count(2)), (3, 1, 1));
        assert_eq!(merged.channel_latency[2].max, 5_000);
        assert_eq!(merged.deliveries, 5);
        assert_eq!(Histogram::from_sparse(&merged.latency).count(), 5);
    }
}
