//! Fan-out: many pollers in one channel, messages at a fixed interval; the
//! latency of every delivery and whether each poller got each message once,
//! in order.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::{probe, Completeness, LatencySummary, Outcome, PhaseMeter, PhaseUsage, Target};
use crate::protocol::Protocol;
use crate::sender::{SendStats, Senders};
use crate::Error;

/// The sizes of a fan-out run.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutConfig {
    /// Pollers in the channel.
    pub pollers: usize,
    /// Messages to send.
    pub messages: u64,
    /// Time between two messages.
    #[serde(rename = "interval_ms", serialize_with = "super::as_millis")]
    pub interval: Duration,
}

#[derive(Debug, Serialize)]
struct FanoutResult {
    /// Errors while the pollers were starting, by kind.
    ramp_errors: BTreeMap<String, u64>,
    ramp_error_samples: Vec<String>,
    pollers: usize,
    ready: usize,
    sends: SendStats,
    expected_deliveries: u64,
    deliveries: u64,
    /// Poll answers received while sending: fewer than deliveries when
    /// answers carry several events.
    answers: u64,
    /// The bench's CPU time per answer while sending, in microseconds: what
    /// it costs the bench to take in one answer, which must stay well below
    /// what the answer costs the server for the latencies to be the server's.
    bench_cpu_us_per_answer: f64,
    latency: LatencySummary,
    /// The latencies each worker process measured, in worker order: a
    /// worker behind the others (its share of the bench core, say) shows
    /// here rather than only in the merged tail.
    worker_latency: Vec<LatencySummary>,
    completeness: Completeness,
    errors: BTreeMap<String, u64>,
    error_samples: Vec<String>,
    usage: PhaseUsage,
    clean: bool,
}

pub(super) async fn run<T: Protocol>(
    target: &Target,
    config: &FanoutConfig,
    run_id: &str,
) -> Result<Outcome, Error> {
    if config.pollers == 0 || config.messages == 0 || config.interval.is_zero() {
        return Err(Error::Config(
            "fan-out needs pollers, messages and an interval".into(),
        ));
    }
    let poll_limit = probe::<T>(target, run_id).await?;
    let channels = vec![format!("bf{run_id}")];
    let rate = 1.0 / config.interval.as_secs_f64();
    // The publisher goes first, so that what the pollers must find first
    // is in the channel (talk: the senders' joins, as history). A server
    // without history publishes nothing yet: its first message is sent
    // after the ramp below, once every poller follows the channel.
    let publisher = T::publisher(target, run_id, &channels, rate).await?;
    let mut senders = Senders::new(publisher, run_id, channels.len());
    let (mut fleet, ramp_report) = super::launch_pollers::<T>(
        target,
        run_id,
        &channels,
        config.pollers,
        poll_limit,
        &senders,
    )
    .await?;
    let meter = PhaseMeter::begin(
        target,
        crate::process::ticks_per_second(),
        &fleet.worker_pids(),
    );
    let sends = senders
        .send(config.messages, rate, Duration::from_secs(30))
        .await;
    let by_worker = fleet.collect_each(&senders.acked(), target.drain).await?;
    let report = crate::fleet::merged(&by_worker);
    let usage = meter.end(target);
    fleet.stop().await;
    senders.leave().await;

    let completeness = Completeness::of(&report);
    let expected_deliveries = sends.acked * report.ready as u64;
    let clean = report.ready == config.pollers
        && sends.failed == 0
        && sends.acked == config.messages
        && report.deliveries == expected_deliveries
        && report.error_count() == 0
        && completeness.is_clean();
    let result = FanoutResult {
        ramp_errors: ramp_report.errors.clone(),
        ramp_error_samples: ramp_report.error_samples.clone(),
        pollers: config.pollers,
        ready: report.ready,
        expected_deliveries,
        deliveries: report.deliveries,
        answers: report.polls,
        bench_cpu_us_per_answer: 1e6 * usage.bench.cpu_seconds / report.polls.max(1) as f64,
        latency: LatencySummary::of(&report.latency),
        worker_latency: super::worker_latencies(&by_worker),
        completeness,
        errors: report.errors.clone(),
        error_samples: report.error_samples.clone(),
        sends,
        usage,
        clean,
    };
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "fan-out: {} pollers in one channel ({} ready), {} messages every {} ms",
        config.pollers,
        result.ready,
        config.messages,
        config.interval.as_millis()
    );
    let _ = writeln!(
        summary,
        "  sends: {} acked, {} failed, {} rate-limited, {:.1} msgs/s, max lag {} ms",
        result.sends.acked,
        result.sends.failed,
        result.sends.rate_limited,
        result.sends.achieved_rate,
        result.sends.max_lag_ms
    );
    let _ = writeln!(
        summary,
        "  deliveries {} of {} in {} answers: {}",
        result.deliveries, result.expected_deliveries, result.answers, result.latency
    );
    if result.worker_latency.len() > 1 {
        let _ = writeln!(
            summary,
            "  p99 by worker: {} ms",
            super::p99s_by_worker(&result.worker_latency)
        );
    }
    let _ = writeln!(summary, "  {}", result.completeness);
    let _ = writeln!(summary, "  poll errors {:?}", result.errors);
    if let Some(server) = result.usage.server {
        let _ = writeln!(
            summary,
            "  server: CPU {:.1}%, RSS {} KiB",
            server.cpu_percent, server.rss_kib
        );
    }
    let _ = writeln!(
        summary,
        "  bench: CPU {:.1}%, {:.2} µs per answer",
        result.usage.bench.cpu_percent, result.bench_cpu_us_per_answer
    );
    super::write_errors(
        &mut summary,
        result
            .error_samples
            .iter()
            .chain(&result.sends.error_samples),
        &result.ramp_errors,
        &result.ramp_error_samples,
    );
    let _ = write!(
        summary,
        "  verdict: {}",
        if clean { "clean" } else { "NOT clean" }
    );
    Ok(Outcome {
        json: super::json_line("fanout", run_id, config, &result),
        summary,
        clean,
    })
}
