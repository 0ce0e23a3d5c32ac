//! Throughput: K channels of S pollers each, senders at a rising aggregate
//! rate, one step at a time, until the p99 latency passes its limit or
//! anything is lost.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{probe, Completeness, LatencySummary, Outcome, PhaseMeter, PhaseUsage, Target};
use crate::histogram::SparseHistogram;
use crate::protocol::Protocol;
use crate::sender::{SendStats, Senders};
use crate::Error;

/// The sizes of a throughput run.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputConfig {
    /// Channels.
    pub channels: usize,
    /// Pollers in each channel.
    pub pollers_per_channel: usize,
    /// Aggregate send rates to try, messages per second, in order.
    pub rates: Vec<f64>,
    /// How long each step sends.
    #[serde(rename = "step_ms", serialize_with = "super::as_millis")]
    pub step: Duration,
    /// A step whose p99 latency is above this ends the run.
    #[serde(rename = "p99_limit_ms", serialize_with = "super::as_millis")]
    pub p99_limit: Duration,
}

#[derive(Debug, Serialize)]
struct StepResult {
    rate: f64,
    sends: SendStats,
    deliveries: u64,
    /// Poll answers in the step.
    answers: u64,
    expected_deliveries: u64,
    deliveries_per_second: f64,
    latency: LatencySummary,
    /// Each worker's latencies: a worker process falling behind the other.
    worker_latency: Vec<LatencySummary>,
    /// How the channels' p99s spread: a few channels falling behind the rest.
    channel_p99: ChannelSpread,
    /// Cumulative over the run: the first step where these turn non-zero lost it.
    completeness: Completeness,
    errors: BTreeMap<String, u64>,
    usage: PhaseUsage,
    passed: bool,
}

/// The lowest, median and highest of the channels' p99 latencies in a step,
/// and which channel had the highest.
#[derive(Debug, Default, Serialize)]
struct ChannelSpread {
    min_ms: f64,
    median_ms: f64,
    max_ms: f64,
    slowest_channel: usize,
}

impl ChannelSpread {
    /// Over the channels that had deliveries.
    fn of(channel_latency: &[SparseHistogram]) -> ChannelSpread {
        let mut p99s: Vec<(f64, usize)> = channel_latency
            .iter()
            .enumerate()
            .map(|(index, sparse)| (LatencySummary::of(sparse), index))
            .filter(|(latency, _)| latency.count > 0)
            .map(|(latency, index)| (latency.p99_ms, index))
            .collect();
        if p99s.is_empty() {
            return ChannelSpread::default();
        }
        p99s.sort_by(|left, right| left.0.total_cmp(&right.0));
        let (max_ms, slowest_channel) = p99s[p99s.len() - 1];
        ChannelSpread {
            min_ms: p99s[0].0,
            median_ms: p99s[p99s.len() / 2].0,
            max_ms,
            slowest_channel,
        }
    }
}

#[derive(Debug, Serialize)]
struct ThroughputResult {
    /// Errors while the pollers were starting, by kind.
    ramp_errors: BTreeMap<String, u64>,
    ramp_error_samples: Vec<String>,
    pollers: usize,
    ready: usize,
    steps: Vec<StepResult>,
    /// The highest rate that passed, messages per second.
    best_rate: Option<f64>,
    best_deliveries_per_second: Option<f64>,
    error_samples: Vec<String>,
    clean: bool,
}

pub(super) async fn run<T: Protocol>(
    target: &Target,
    config: &ThroughputConfig,
    run_id: &str,
) -> Result<Outcome, Error> {
    if config.channels == 0 || config.pollers_per_channel == 0 || config.rates.is_empty() {
        return Err(Error::Config(
            "throughput needs channels, pollers and rates".into(),
        ));
    }
    if config
        .rates
        .iter()
        .any(|rate| rate.is_nan() || *rate <= 0.0)
    {
        return Err(Error::Config("every rate must be above 0".into()));
    }
    let poll_limit = probe::<T>(target, run_id).await?;
    let channels: Vec<String> = (0..config.channels)
        .map(|index| format!("bt{run_id}{index}"))
        .collect();
    let highest_rate = config.rates.iter().cloned().fold(0.0, f64::max);
    let publisher = T::publisher(
        target,
        run_id,
        &channels,
        highest_rate / config.channels as f64,
    )
    .await?;
    let mut senders = Senders::new(publisher, run_id, channels.len());
    let pollers = config.channels * config.pollers_per_channel;
    let (mut fleet, ramp_report) =
        super::launch_pollers::<T>(target, run_id, &channels, pollers, poll_limit, &senders)
            .await?;
    let ticks = crate::process::ticks_per_second();
    let mut steps = Vec::new();
    let mut error_samples = Vec::new();
    let mut ready = fleet.ready;
    for &rate in &config.rates {
        let meter = PhaseMeter::begin(target, ticks, &fleet.worker_pids());
        let began = Instant::now();
        let count = ((rate * config.step.as_secs_f64()).round() as u64).max(1);
        let sends = senders.send(count, rate, Duration::from_secs(30)).await;
        let by_worker = fleet.collect_each(&senders.acked(), target.drain).await?;
        let report = crate::fleet::merged(&by_worker);
        let elapsed = began.elapsed().as_secs_f64();
        let usage = meter.end(target);
        ready = report.ready;
        let completeness = Completeness::of(&report);
        let latency = LatencySummary::of(&report.latency);
        // Every poller of a channel gets every message of that channel; the
        // channels get equal shares. Pollers that never started (see
        // `ready`) are left out, so this is exact only when all started.
        let expected_deliveries = sends.acked * report.ready as u64 / config.channels as u64;
        // Loss is judged per poller on the server's seqs (`completeness`),
        // which is exact whatever the number of pollers that started.
        let passed = completeness.is_clean()
            && sends.failed == 0
            && report.error_count() == 0
            && latency.p99_ms <= config.p99_limit.as_secs_f64() * 1000.0;
        for sample in report.error_samples.iter().chain(&sends.error_samples) {
            if error_samples.len() < 5 {
                error_samples.push(sample.clone());
            }
        }
        steps.push(StepResult {
            rate,
            deliveries: report.deliveries,
            answers: report.polls,
            expected_deliveries,
            deliveries_per_second: report.deliveries as f64 / elapsed,
            latency,
            worker_latency: super::worker_latencies(&by_worker),
            channel_p99: ChannelSpread::of(&report.channel_latency),
            completeness,
            errors: report.errors.clone(),
            sends,
            usage,
            passed,
        });
        if !passed {
            break;
        }
    }
    fleet.stop().await;
    senders.leave().await;

    let best = steps.iter().rev().find(|step| step.passed);
    let clean = ready == pollers && steps.first().is_some_and(|step| step.passed);
    let result = ThroughputResult {
        ramp_errors: ramp_report.errors.clone(),
        ramp_error_samples: ramp_report.error_samples.clone(),
        pollers,
        ready,
        best_rate: best.map(|step| step.rate),
        best_deliveries_per_second: best.map(|step| step.deliveries_per_second),
        steps,
        error_samples,
        clean,
    };
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "throughput: {} channels x {} pollers ({} ready), steps of {} s",
        config.channels,
        config.pollers_per_channel,
        result.ready,
        config.step.as_secs_f64()
    );
    for step in &result.steps {
        let _ = writeln!(
            summary,
            "  {:>7.0} msgs/s (sent {:.0}/s, lag {} ms): {:>9.0} deliveries/s, {}; {}; errors {:?} {}",
            step.rate,
            step.sends.achieved_rate,
            step.sends.max_lag_ms,
            step.deliveries_per_second,
            step.latency,
            step.completeness,
            step.errors,
            if step.passed { "PASS" } else { "FAIL" }
        );
        let _ = writeln!(
            summary,
            "           p99 by channel: min {:.1} / median {:.1} / max {:.1} ms (channel {}); by worker: {} ms",
            step.channel_p99.min_ms,
            step.channel_p99.median_ms,
            step.channel_p99.max_ms,
            step.channel_p99.slowest_channel,
            super::p99s_by_worker(&step.worker_latency)
        );
        if let Some(server) = step.usage.server {
            let _ = writeln!(
                summary,
                "           server CPU {:.1}%, RSS {} KiB; bench CPU {:.1}%",
                server.cpu_percent, server.rss_kib, step.usage.bench.cpu_percent
            );
        }
    }
    super::write_errors(
        &mut summary,
        &result.error_samples,
        &result.ramp_errors,
        &result.ramp_error_samples,
    );
    let _ = write!(
        summary,
        "  best: {}",
        match (result.best_rate, result.best_deliveries_per_second) {
            (Some(rate), Some(deliveries)) =>
                format!("{rate:.0} msgs/s ({deliveries:.0} deliveries/s)"),
            _ => "no step passed".into(),
        }
    );
    Ok(Outcome {
        json: super::json_line("throughput", run_id, config, &result),
        summary,
        clean,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::Histogram;

    fn channel(micros: &[u64]) -> SparseHistogram {
        let mut histogram = Histogram::new();
        for &value in micros {
            histogram.record(value);
        }
        histogram.to_sparse()
    }

    #[test]
    fn channel_spread_orders_the_channels_and_skips_empty_ones() {
        let channels = [
            channel(&[3_000, 3_000]),
            channel(&[]),
            channel(&[40_000, 90_000]),
            channel(&[1_000]),
            channel(&[20_000]),
        ];
        let p99 = |index: usize| LatencySummary::of(&channels[index]).p99_ms;
        let spread = ChannelSpread::of(&channels);
        assert_eq!(spread.min_ms, p99(3));
        // The median of the four channels with deliveries (the third of them).
        assert_eq!(spread.median_ms, p99(4));
        assert_eq!(spread.max_ms, p99(2));
        assert_eq!(spread.slowest_channel, 2);
        assert!(p99(3) < p99(0) && p99(0) < p99(4) && p99(4) < p99(2));
    }

    #[test]
    fn channel_spread_of_nothing_is_zero() {
        let spread = ChannelSpread::of(&[channel(&[])]);
        assert_eq!(
            (spread.min_ms, spread.median_ms, spread.max_ms),
            (0.0, 0.0, 0.0)
        );
    }
}
