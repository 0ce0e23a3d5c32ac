//! `talk bench`: a load generator that drives a running talk server over
//! real sockets with the real protocol, and measures it.
//!
//! Three scenarios (see `scenario`): capacity (how many held polls, at what
//! memory and CPU), fan-out (latency and exactly-once delivery from one
//! channel to many pollers) and throughput (many channels, rising send
//! rates). Pollers run in workers (`worker`), in this process or in child
//! processes when one process may not hold enough sockets; the coordinator
//! (`fleet`) merges their counters. Senders (`sender`) post stamped bench
//! messages on a schedule. Every run is bounded in count and time and ends
//! with a human summary and one JSON line.
//!
//! Everything above is generic over the server's [`Protocol`] (`protocol`):
//! how a poller follows a channel and how messages are published. The bench
//! speaks talk ([`Talk`], `talk`): a poller polls over its own lean HTTP/1.1
//! connection (`poll_connection`), so that an answer costs the bench less
//! CPU than it costs the server. The peer bench of the repository's
//! `bench/` workspace implements the same traits for the servers talk is
//! compared with, and runs the same scenarios.

mod fleet;
mod histogram;
mod poll_connection;
mod poller;
mod process;
mod protocol;
pub mod scenario;
mod send_gate;
mod sender;
mod talk;
mod worker;

pub use histogram::{Histogram, SparseHistogram};
pub use poll_connection::{HttpAnswer, HttpError, LeanLink};
pub use poller::{bench_text, now_micros, parse_bench_text};
pub use process::{sample as sample_process, ticks_per_second, ProcessSample, Usage};
pub use protocol::{
    Answer, BenchEvent, ErrorLog, PollError, Pollers, Protocol, Publisher, StreamPosition,
    Subscriber,
};
pub use scenario::{
    run, CapacityConfig, FanoutConfig, Outcome, Scenario, Target, ThroughputConfig,
};
pub use sender::SendStats;
pub use talk::{PollTransport, Talk, TalkAnswer, TalkPollers, TalkPublisher, TalkSubscriber};
pub use worker::{
    run_stdio_worker, run_worker, server_address, GroupReport, GroupSpec, WorkerCommand,
    WorkerEvent, WorkerProgram,
};

/// What can stop a bench run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work.
    #[error("bad bench configuration: {0}")]
    Config(String),
    /// A session (probe or sender) could not be started.
    #[error("could not start a session: {0}")]
    Start(#[source] talk_client::Error),
    /// A server other than talk refused the run's first message.
    #[error("the peer server refused to publish: {0}")]
    Publish(String),
    /// A server other than talk did not answer a handshake as expected.
    #[error("the peer server's handshake failed: {0}")]
    Handshake(String),
    /// A worker failed or stopped answering.
    #[error("bench worker: {0}")]
    Worker(String),
    /// Reading or writing a pipe or `/proc` failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Raises this process's soft open-files limit to the hard limit: every
/// poller holds a socket, and the default soft limit (1,024) is far too low.
pub fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1_024),
    }
}
