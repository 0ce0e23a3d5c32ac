//! `talk-peers`: the fan-out of `talk bench` against a peer server (Nchan or
//! Socket.IO), with the same flags, summary and JSON line; see the peer
//! bench's README.md.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use talk_bench::{FanoutConfig, PollTransport, Protocol, Scenario, Target, WorkerProgram};
use talk_peers::{Nchan, Socketio};

/// Drives a peer server with talk's load generator and measures it. Prints
/// a summary for people and, last, one line of JSON with the results.
#[derive(Debug, Parser)]
#[command(name = "talk-peers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Many pollers in one channel, messages at a fixed interval: delivery
    /// latency and exactly-once, in-order delivery per poller.
    Fanout(FanoutArgs),
    /// Internal: a worker process driven over stdin/stdout by a coordinator.
    #[command(hide = true)]
    Worker {
        /// The peer the worker's pollers poll.
        #[arg(long, value_enum)]
        peer: Peer,
    },
}

/// The servers the peer bench drives.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Peer {
    /// nginx with the Nchan module, configured as in nchan/nginx.conf.
    Nchan,
    /// Socket.IO over long-polling, socketio/server.js.
    Socketio,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Nchan => Nchan::NAME,
            Peer::Socketio => Socketio::NAME,
        }
    }
}

#[derive(Debug, Args)]
struct FanoutArgs {
    /// Which peer is at the URL.
    #[arg(long, value_enum)]
    peer: Peer,
    /// The server's base URL.
    #[arg(long, env = "TALK_BENCH_URL", default_value = "http://127.0.0.1:8000")]
    url: String,
    /// The server's process id, to report its memory and CPU from /proc
    /// (for nginx, its worker process; for Socket.IO, the node process).
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
    /// Pollers starting per second during the ramp, over all workers.
    #[arg(long, default_value_t = 1000.0)]
    ramp_rate: f64,
    /// Seconds to wait for the last deliveries after the last send.
    #[arg(long, default_value_t = 30.0)]
    drain_secs: f64,
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

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Worker { peer } => {
            // As `talk bench`'s worker: one thread on the bench's one core.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let worker = match peer {
                Peer::Nchan => runtime.block_on(talk_bench::run_stdio_worker::<Nchan>()),
                Peer::Socketio => runtime.block_on(talk_bench::run_stdio_worker::<Socketio>()),
            };
            worker.context("bench worker")
        }
        Command::Fanout(args) => fanout(args),
    }
}

/// Runs the fan-out against the peer, failing when the run was not clean.
fn fanout(args: FanoutArgs) -> anyhow::Result<()> {
    let worker_program = std::env::current_exe().ok().map(|program| WorkerProgram {
        program,
        args: vec!["worker".into(), "--peer".into(), args.peer.name().into()],
    });
    let target = Target {
        base_url: args.url,
        server_pid: args.server_pid,
        workers: args.workers,
        worker_program,
        source_ips: args.source_ip,
        transport: PollTransport::Raw,
        ramp_per_second: args.ramp_rate,
        wait_ms: None,
        sends_per_session: 4.0,
        leave_at_end: true,
        drain: Duration::from_secs_f64(args.drain_secs.max(0.0)),
    };
    let scenario = Scenario::Fanout(FanoutConfig {
        pollers: args.pollers,
        messages: args.messages,
        interval: Duration::from_millis(args.interval_ms),
    });
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let outcome = runtime
        .block_on(async {
            match args.peer {
                Peer::Nchan => talk_bench::run::<Nchan>(&target, &scenario).await,
                Peer::Socketio => talk_bench::run::<Socketio>(&target, &scenario).await,
            }
        })
        .context("the bench run failed")?;
    println!("{}\n  peer: {}", outcome.summary, args.peer.name());
    println!("{}", outcome.json);
    anyhow::ensure!(
        outcome.clean,
        "the run was not clean: something was lost, duplicated, reordered or refused"
    );
    Ok(())
}
