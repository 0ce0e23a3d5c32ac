//! The bench scenarios and what they share: the target, the run id, the
//! probe session and the shape of results.

mod capacity;
mod fanout;
mod throughput;

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;
use talk_client::Api;

pub use capacity::CapacityConfig;
pub use fanout::FanoutConfig;
pub use throughput::ThroughputConfig;

use crate::histogram::{Histogram, SparseHistogram};
use crate::process::{ProcessSample, Usage};
use crate::protocol::Protocol;
use crate::talk::PollTransport;
use crate::worker::{GroupReport, WorkerProgram};
use crate::Error;

/// The server under test and how to drive it; shared by every scenario.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's base URL, `http://host:port`.
    pub base_url: String,
    /// The server's process id, to read its memory and CPU from `/proc`.
    pub server_pid: Option<u32>,
    /// Worker processes for the pollers; 0 runs them in this process.
    pub workers: usize,
    /// How to start a worker process (needed when `workers > 0`).
    pub worker_program: Option<WorkerProgram>,
    /// Source addresses for the workers' sockets, used in turn; empty for
    /// 127.0.0.2, 127.0.0.3, … with worker processes, the system's choice without.
    pub source_ips: Vec<IpAddr>,
    /// The HTTP stack of talk's polls.
    pub transport: PollTransport,
    /// Session starts per second during the ramp, over all workers.
    pub ramp_per_second: f64,
    /// `wait_ms` on polls; `None` holds them for the server's poll timeout.
    pub wait_ms: Option<u64>,
    /// Sends per second one sender session may make (the server's per-session
    /// send limit; more sessions are started per channel to reach a rate).
    pub sends_per_session: f64,
    /// End every session with `leave` at the end of the run.
    pub leave_at_end: bool,
    /// How long to wait for the last deliveries after the last send.
    pub drain: Duration,
}

impl Target {
    fn validate(&self) -> Result<(), Error> {
        let positive = |rate: f64| rate.is_finite() && rate > 0.0;
        if !positive(self.ramp_per_second) || !positive(self.sends_per_session) {
            return Err(Error::Config("rates must be above 0".into()));
        }
        if self.workers > 0 && self.worker_program.is_none() {
            return Err(Error::Config(
                "worker processes need a worker program".into(),
            ));
        }
        crate::worker::server_address(&self.base_url).map(|_| ())
    }

    /// The API the coordinator uses for probe and sender sessions.
    pub(crate) fn coordinator_api(&self) -> Api {
        crate::talk::api_from(&self.base_url, None, Duration::from_secs(30), 1_024)
    }

    fn sample_server(&self) -> Option<ProcessSample> {
        self.server_pid
            .and_then(|pid| crate::process::sample(Some(pid)).ok())
    }
}

/// Which scenario to run, with its sizes.
#[derive(Debug, Clone)]
pub enum Scenario {
    /// Held polls: how many, at what memory and CPU.
    Capacity(CapacityConfig),
    /// One channel, many pollers, messages at an interval.
    Fanout(FanoutConfig),
    /// Many channels, rising send rates.
    Throughput(ThroughputConfig),
}

/// The end of a run: what to show people and the one JSON line.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// A few lines for people.
    pub summary: String,
    /// The results as one line of JSON.
    pub json: String,
    /// True when nothing was lost, duplicated, reordered or refused.
    pub clean: bool,
}

/// Runs `scenario` against `target`, a server that speaks `T`.
pub async fn run<T: Protocol>(target: &Target, scenario: &Scenario) -> Result<Outcome, Error> {
    target.validate()?;
    crate::raise_open_files_limit();
    T::check_scenario(scenario)?;
    let run_id = new_run_id();
    let load_before = load_average();
    let mut outcome = match scenario {
        Scenario::Capacity(config) => capacity::run::<T>(target, config, &run_id).await,
        Scenario::Fanout(config) => fanout::run::<T>(target, config, &run_id).await,
        Scenario::Throughput(config) => throughput::run::<T>(target, config, &run_id).await,
    }?;
    // The machine is shared: other work running at the same time shows in
    // the load average, which explains outliers in the results.
    let load_after = load_average();
    if let Ok(serde_json::Value::Object(mut fields)) =
        serde_json::from_str::<serde_json::Value>(&outcome.json)
    {
        fields.insert("peer".into(), serde_json::json!(T::NAME));
        fields.insert(
            "load_average".into(),
            serde_json::json!({ "before": load_before, "after": load_after }),
        );
        outcome.json = serde_json::Value::Object(fields).to_string();
    }
    outcome.summary.push_str(&format!(
        "\n  machine load average (1 min): {} before, {} after",
        load_before.map_or("?".into(), |load| format!("{load:.2}")),
        load_after.map_or("?".into(), |load| format!("{load:.2}")),
    ));
    Ok(outcome)
}

/// The one-minute load average of the machine, from `/proc/loadavg`.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A short id that marks a run's names, channels and messages, so runs
/// against the same server do not mix.
fn new_run_id() -> String {
    const DIGITS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut value = crate::poller::now_micros() ^ u64::from(std::process::id()) << 20;
    let mut id = String::new();
    for _ in 0..5 {
        id.push(DIGITS[(value % 36) as usize] as char);
        value /= 36;
    }
    id
}

/// Checks the server answers and returns how long one poll may take
/// before it is an error.
async fn probe<T: Protocol>(target: &Target, run_id: &str) -> Result<Duration, Error> {
    Ok(poll_limit(T::probe(target, run_id).await?))
}

/// How long a poll held for `held` may take before it is an error.
fn poll_limit(held: Duration) -> Duration {
    // The server adds up to 10% jitter; a loaded server may answer late.
    held + held / 5 + Duration::from_secs(15)
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LatencySummary {
    /// Deliveries measured.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl LatencySummary {
    fn of(sparse: &SparseHistogram) -> LatencySummary {
        let histogram = Histogram::from_sparse(sparse);
        let ms = |micros: u64| (micros as f64 / 10.0).round() / 100.0;
        LatencySummary {
            count: histogram.count(),
            p50_ms: ms(histogram.quantile(0.50)),
            p90_ms: ms(histogram.quantile(0.90)),
            p99_ms: ms(histogram.quantile(0.99)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// Each worker's latencies, in worker order.
fn worker_latencies(reports: &[GroupReport]) -> Vec<LatencySummary> {
    reports
        .iter()
        .map(|report| LatencySummary::of(&report.latency))
        .collect()
}

/// The workers' p99s, as in "41.0 / 43.5".
fn p99s_by_worker(latencies: &[LatencySummary]) -> String {
    let p99s: Vec<String> = latencies
        .iter()
        .map(|latency| format!("{:.1}", latency.p99_ms))
        .collect();
    p99s.join(" / ")
}

impl std::fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
        )
    }
}

/// Exactly-once, in-order delivery counters of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Completeness {
    /// Events that never arrived, summed over pollers.
    pub missing: u64,
    /// Events that arrived twice or more.
    pub duplicates: u64,
    /// Events that arrived after a later one.
    pub out_of_order: u64,
    /// Answers that reset a poller's stream.
    pub resets: u64,
    /// Pollers with anything missing.
    pub pollers_missing: usize,
    /// Pollers that saw a duplicate.
    pub pollers_duplicated: usize,
    /// Pollers that saw events out of order.
    pub pollers_out_of_order: usize,
}

impl Completeness {
    fn of(report: &GroupReport) -> Completeness {
        Completeness {
            missing: report.missing,
            duplicates: report.duplicates,
            out_of_order: report.out_of_order,
            resets: report.resets,
            pollers_missing: report.pollers_missing,
            pollers_duplicated: report.pollers_duplicated,
            pollers_out_of_order: report.pollers_out_of_order,
        }
    }

    fn is_clean(&self) -> bool {
        self.missing == 0 && self.duplicates == 0 && self.out_of_order == 0 && self.resets == 0
    }
}

impl std::fmt::Display for Completeness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "missing {} ({} pollers), duplicated {} ({} pollers), out of order {} ({} pollers), resets {}",
            self.missing,
            self.pollers_missing,
            self.duplicates,
            self.pollers_duplicated,
            self.out_of_order,
            self.pollers_out_of_order,
            self.resets
        )
    }
}

/// The server's and the bench's use of CPU and memory over a phase.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PhaseUsage {
    /// The server's, when its pid was given.
    pub server: Option<Usage>,
    /// The bench's: this process and its worker processes together.
    pub bench: Usage,
}

/// Measures a phase: call `begin` before, `end` after.
struct PhaseMeter {
    server: Option<ProcessSample>,
    bench: Option<ProcessSample>,
    /// The bench's processes: this one (`None`) and the worker processes.
    bench_pids: Vec<Option<u32>>,
    ticks_per_second: f64,
}

/// The bench's processes summed into one sample.
fn sample_bench(pids: &[Option<u32>]) -> Option<ProcessSample> {
    let mut total: Option<ProcessSample> = None;
    for pid in pids {
        let sample = crate::process::sample(*pid).ok()?;
        total = Some(match total {
            None => sample,
            Some(sum) => ProcessSample {
                rss_kib: sum.rss_kib + sample.rss_kib,
                cpu_ticks: sum.cpu_ticks + sample.cpu_ticks,
                at: sample.at,
            },
        });
    }
    total
}

impl PhaseMeter {
    fn begin(target: &Target, ticks_per_second: f64, worker_pids: &[u32]) -> PhaseMeter {
        let bench_pids: Vec<Option<u32>> = std::iter::once(None)
            .chain(worker_pids.iter().map(|pid| Some(*pid)))
            .collect();
        PhaseMeter {
            server: target.sample_server(),
            bench: sample_bench(&bench_pids),
            bench_pids,
            ticks_per_second,
        }
    }

    fn end(&self, target: &Target) -> PhaseUsage {
        let server = match (&self.server, target.sample_server()) {
            (Some(before), Some(after)) => {
                Some(Usage::between(before, &after, self.ticks_per_second))
            }
            _ => None,
        };
        let bench = match (&self.bench, sample_bench(&self.bench_pids)) {
            (Some(before), Some(after)) => Usage::between(before, &after, self.ticks_per_second),
            _ => Usage::default(),
        };
        PhaseUsage { server, bench }
    }
}

/// Starts the pollers once the senders are in, and lets their first polls
/// settle into held polls; returns the fleet and the report of its ramp. If
/// the pollers cannot start, the senders leave before the error is returned.
async fn launch_pollers<T: Protocol>(
    target: &Target,
    run_id: &str,
    channels: &[String],
    pollers: usize,
    poll_limit: Duration,
    senders: &crate::sender::Senders<T::Publisher>,
) -> Result<(crate::fleet::Fleet, GroupReport), Error> {
    let mut fleet =
        match crate::fleet::Fleet::launch::<T>(target, run_id, channels, pollers, poll_limit).await
        {
            Ok(fleet) => fleet,
            Err(error) => {
                senders.leave().await;
                return Err(error);
            }
        };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ramp_report = fleet.collect(&[], Duration::ZERO).await?;
    Ok((fleet, ramp_report))
}

/// Writes a run's error samples and the errors of its ramp into a summary.
fn write_errors<'a>(
    summary: &mut String,
    error_samples: impl IntoIterator<Item = &'a String>,
    ramp_errors: &std::collections::BTreeMap<String, u64>,
    ramp_error_samples: &[String],
) {
    use std::fmt::Write;
    for sample in error_samples {
        let _ = writeln!(summary, "  error: {sample}");
    }
    if !ramp_errors.is_empty() {
        let _ = writeln!(summary, "  errors while starting: {ramp_errors:?}");
        for sample in ramp_error_samples {
            let _ = writeln!(summary, "  start error: {sample}");
        }
    }
}

/// Makes the JSON line of a result.
fn json_line<T: Serialize>(
    scenario: &str,
    run_id: &str,
    config: &impl Serialize,
    result: &T,
) -> String {
    serde_json::json!({
        "scenario": scenario,
        "run_id": run_id,
        "config": config,
        "result": result,
    })
    .to_string()
}

/// Writes a duration as milliseconds, for configs in the JSON line.
fn as_millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u128(duration.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_short_names() {
        let id = new_run_id();
        assert_eq!(id.len(), 5);
        assert!(id.bytes().all(|byte| byte.is_ascii_alphanumeric()));
    }
}
