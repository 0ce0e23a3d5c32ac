//! `talk bench`: its command-line flags and their conversion to the bench
//! library's configuration.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use talk_bench::{
    CapacityConfig, FanoutConfig, PollTransport, Scenario, Talk, Target, ThroughputConfig,
    WorkerProgram,
};

/// Drives a running talk server and measures it. Prints a summary for people
/// and, last, one line of JSON with the results.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    scenario: ScenarioArgs,
}

#[derive(Debug, Subcommand)]
enum ScenarioArgs {
    /// Ramp up pollers, hold them, and report how many stayed healthy and
    /// what they cost the server (memory per held poll, idle CPU).
    Capacity(CapacityArgs),
    /// Many pollers in one channel, messages at a fixed interval: delivery
    /// latency and exactly-once, in-order delivery per poller.
    Fanout(FanoutArgs),
    /// Channels × pollers, senders at rising aggregate rates until the p99
    /// latency passes its limit or anything is lost.
    Throughput(ThroughputArgs),
    /// Internal: a worker process driven over stdin/stdout by a coordinator.
    #[command(hide = true)]
    Worker,
}

/// How to reach and drive the server; shared by every scenario.
#[derive(Debug, Args)]
struct TargetArgs {
    /// The server's base URL.
    #[arg(long, env = "TALK_BENCH_URL", default_value = "http://127.0.0.1:8000")]
    url: String,
    /// The server's process id, to report its memory and CPU from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Worker processes that hold the pollers (each may open as many sockets
    /// as the open-files limit allows); 0 keeps them in this process.
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Source addresses for the workers' sockets, used in turn
    /// (default with workers: 127.0.0.2, 127.0.0.3, …).
    #[arg(long, value_delimiter = ',')]
    source_ip: Vec<IpAddr>,
    /// The HTTP stack of the polls: one lean HTTP/1.1 connection per poller
    /// (the bench's own, cheapest per answer), or the client library's
    /// reqwest-based Api.
    #[arg(long, value_enum, default_value_t = TransportArg::Raw)]
    transport: TransportArg,
    /// Session starts per second during the ramp, over all workers.
    #[arg(long, default_value_t = 1000.0)]
    ramp_rate: f64,
    /// Ask the server to hold polls at most this long (default: its poll timeout).
    #[arg(long)]
    wait_ms: Option<u64>,
    /// Sends per second one sender session may make; keep it under the
    /// server's per-session send limit (5/s by default).
    #[arg(long, default_value_t = 4.0)]
    sends_per_session: f64,
    /// Leave the sessions open at the end instead of ending them.
    #[arg(long)]
    no_leave: bool,
    /// Seconds to wait for the last deliveries after the last send.
    #[arg(long, default_value_t = 30.0)]
    drain_secs: f64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TransportArg {
    Raw,
    Api,
}

#[derive(Debug, Args)]
struct CapacityArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Pollers, each its own session.
    #[arg(long, default_value_t = 1000)]
    pollers: usize,
    /// Channels the pollers spread over.
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Seconds to hold the pollers after the ramp.
    #[arg(long, default_value_t = 30.0)]
    hold_secs: f64,
}

#[derive(Debug, Args)]
struct FanoutArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Pollers in the channel.
    #[arg(long, default_value_t = 1000)]
    pollers: usize,
    /// Messages to send.
    #[arg(long, default_value_t = 100)]
    messages: u64,
    /// Milliseconds between two messages.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
}

#[derive(Debug, Args)]
struct ThroughputArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Channels.
    #[arg(long, default_value_t = 10)]
    channels: usize,
    /// Pollers in each channel.
    #[arg(long, default_value_t = 100)]
    pollers_per_channel: usize,
    /// Aggregate send rates to step through, messages per second.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,200,500,1000,2000,4000"
    )]
    rates: Vec<f64>,
    /// Seconds each step sends.
    #[arg(long, default_value_t = 10.0)]
    step_secs: f64,
    /// A step whose p99 latency passes this many milliseconds ends the run.
    #[arg(long, default_value_t = 1000)]
    p99_limit_ms: u64,
}

impl TargetArgs {
    fn into_target(self) -> Target {
        let worker_program = std::env::current_exe().ok().map(|program| WorkerProgram {
            program,
            args: vec!["bench".into(), "worker".into()],
        });
        Target {
            base_url: self.url,
            server_pid: self.server_pid,
            workers: self.workers,
            worker_program,
            source_ips: self.source_ip,
            transport: match self.transport {
                TransportArg::Raw => PollTransport::Raw,
                TransportArg::Api => PollTransport::Api,
            },
            ramp_per_second: self.ramp_rate,
            wait_ms: self.wait_ms,
            sends_per_session: self.sends_per_session,
            leave_at_end: !self.no_leave,
            drain: Duration::from_secs_f64(self.drain_secs.max(0.0)),
        }
    }
}

/// Runs `talk bench`: a scenario, which fails when the run was not clean
/// (anything lost, duplicated, reordered or refused), or a hidden worker.
pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (target, scenario) = match args.scenario {
        ScenarioArgs::Worker => {
            // A worker process shares the bench's one core (BENCHMARKS.md
            // pins the bench to it), so a multi-threaded scheduler has
            // nothing to spread its pollers over; one thread that runs the
            // pollers and polls the sockets itself skips the cross-thread
            // wake-ups and atomic task states, about 13% of its CPU per answer.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            return runtime
                .block_on(talk_bench::run_stdio_worker::<Talk>())
                .context("bench worker");
        }
        ScenarioArgs::Capacity(args) => (
            args.target.into_target(),
            Scenario::Capacity(CapacityConfig {
                pollers: args.pollers,
                channels: args.channels,
                hold: Duration::from_secs_f64(args.hold_secs.max(0.0)),
            }),
        ),
        ScenarioArgs::Fanout(args) => (
            args.target.into_target(),
            Scenario::Fanout(FanoutConfig {
                pollers: args.pollers,
                messages: args.messages,
                interval: Duration::from_millis(args.interval_ms),
            }),
        ),
        ScenarioArgs::Throughput(args) => (
            args.target.into_target(),
            Scenario::Throughput(ThroughputConfig {
                channels: args.channels,
                pollers_per_channel: args.pollers_per_channel,
                rates: args.rates,
                step: Duration::from_secs_f64(args.step_secs.max(0.0)),
                p99_limit: Duration::from_millis(args.p99_limit_ms),
            }),
        ),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let outcome = runtime
        .block_on(talk_bench::run::<Talk>(&target, &scenario))
        .context("the bench run failed")?;
    println!("{}", outcome.summary);
    println!("{}", outcome.json);
    anyhow::ensure!(
        outcome.clean,
        "the run was not clean: something was lost, duplicated, reordered or refused"
    );
    Ok(())
}
