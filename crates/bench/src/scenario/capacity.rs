//! Capacity: ramp up N pollers, hold them for a while, and see how many
//! stayed healthy and what they cost the server in memory and CPU.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{probe, Completeness, Outcome, PhaseMeter, PhaseUsage, Target};
use crate::fleet::Fleet;
use crate::protocol::Protocol;
use crate::Error;

/// The sizes of a capacity run.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityConfig {
    /// Pollers, each its own session.
    pub pollers: usize,
    /// Channels they spread over.
    pub channels: usize,
    /// How long to hold them after the ramp.
    #[serde(rename = "hold_ms", serialize_with = "super::as_millis")]
    pub hold: Duration,
}

#[derive(Debug, Serialize)]
struct CapacityResult {
    /// Errors while the pollers were starting, by kind.
    ramp_errors: BTreeMap<String, u64>,
    ramp_error_samples: Vec<String>,
    pollers: usize,
    ready: usize,
    failed_to_start: usize,
    alive_at_end: usize,
    pollers_with_errors: usize,
    ramp_secs: f64,
    hold_secs: f64,
    polls_during_hold: u64,
    held_polls_during_hold: u64,
    errors: BTreeMap<String, u64>,
    error_samples: Vec<String>,
    completeness: Completeness,
    server_rss_before_kib: Option<u64>,
    server_rss_held_kib: Option<u64>,
    server_rss_per_poll_kib: Option<f64>,
    ramp: PhaseUsage,
    hold_usage: PhaseUsage,
    clean: bool,
}

pub(super) async fn run<T: Protocol>(
    target: &Target,
    config: &CapacityConfig,
    run_id: &str,
) -> Result<Outcome, Error> {
    if config.pollers == 0 || config.channels == 0 {
        return Err(Error::Config("capacity needs pollers and channels".into()));
    }
    let poll_limit = probe::<T>(target, run_id).await?;
    let channels: Vec<String> = (0..config.channels)
        .map(|index| format!("bc{run_id}{index}"))
        .collect();
    let ticks = crate::process::ticks_per_second();
    let server_before = target.sample_server();
    let ramp_meter = PhaseMeter::begin(target, ticks, &[]);
    let ramp_began = Instant::now();
    let fleet = Fleet::launch::<T>(target, run_id, &channels, config.pollers, poll_limit).await;
    let mut fleet = fleet?;
    let ramp_secs = ramp_began.elapsed().as_secs_f64();
    let ramp = ramp_meter.end(target);
    // The ramp's answers are counted apart from the hold's.
    let ramp_report = fleet.collect(&[], Duration::ZERO).await?;
    let hold_meter = PhaseMeter::begin(target, ticks, &fleet.worker_pids());
    let hold_began = Instant::now();
    tokio::time::sleep(config.hold).await;
    let hold_usage = hold_meter.end(target);
    let server_held = target.sample_server();
    let hold_secs = hold_began.elapsed().as_secs_f64();
    let report = fleet.collect(&[], Duration::ZERO).await?;
    fleet.stop().await;

    let completeness = Completeness::of(&report);
    let per_poll = match (&server_before, &server_held) {
        (Some(before), Some(held)) if report.ready > 0 => {
            Some((held.rss_kib as f64 - before.rss_kib as f64) / report.ready as f64)
        }
        _ => None,
    };
    let clean = report.ready == config.pollers
        && report.alive == config.pollers
        && report.pollers_with_errors == 0
        && report.error_count() == 0
        && completeness.is_clean();
    let result = CapacityResult {
        ramp_errors: ramp_report.errors.clone(),
        ramp_error_samples: ramp_report.error_samples.clone(),
        pollers: config.pollers,
        ready: report.ready,
        failed_to_start: config.pollers - report.ready.min(config.pollers),
        alive_at_end: report.alive,
        pollers_with_errors: report.pollers_with_errors,
        ramp_secs,
        hold_secs,
        polls_during_hold: report.polls,
        held_polls_during_hold: report.held_polls,
        errors: report.errors.clone(),
        error_samples: report.error_samples.clone(),
        completeness,
        server_rss_before_kib: server_before.map(|sample| sample.rss_kib),
        server_rss_held_kib: server_held.map(|sample| sample.rss_kib),
        server_rss_per_poll_kib: per_poll,
        ramp,
        hold_usage,
        clean,
    };
    let summary = summarize(config, &result);
    Ok(Outcome {
        json: super::json_line("capacity", run_id, config, &result),
        summary,
        clean,
    })
}

fn summarize(config: &CapacityConfig, result: &CapacityResult) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "capacity: {} pollers in {} channel(s), ramp {:.1} s, hold {:.1} s",
        config.pollers, config.channels, result.ramp_secs, result.hold_secs
    );
    let _ = writeln!(
        text,
        "  ready {}, failed to start {}, alive at end {}, pollers with errors {}",
        result.ready, result.failed_to_start, result.alive_at_end, result.pollers_with_errors
    );
    let _ = writeln!(
        text,
        "  during hold: {} answers ({} held to timeout), errors {:?}",
        result.polls_during_hold, result.held_polls_during_hold, result.errors
    );
    let _ = writeln!(text, "  {}", result.completeness);
    if let Some(server) = result.hold_usage.server {
        let _ = writeln!(
            text,
            "  server: RSS {} KiB -> {} KiB ({:.2} KiB per held poll), CPU {:.1}% during ramp, {:.2}% during hold",
            result.server_rss_before_kib.unwrap_or(0),
            result.server_rss_held_kib.unwrap_or(0),
            result.server_rss_per_poll_kib.unwrap_or(0.0),
            result.ramp.server.map(|usage| usage.cpu_percent).unwrap_or(0.0),
            server.cpu_percent,
        );
    }
    let _ = writeln!(
        text,
        "  bench: CPU {:.1}% during ramp, {:.1}% during hold, RSS {} KiB",
        result.ramp.bench.cpu_percent,
        result.hold_usage.bench.cpu_percent,
        result.hold_usage.bench.rss_kib
    );
    super::write_errors(
        &mut text,
        &result.error_samples,
        &result.ramp_errors,
        &result.ramp_error_samples,
    );
    let _ = write!(
        text,
        "  verdict: {}",
        if result.clean { "clean" } else { "NOT clean" }
    );
    text
}
