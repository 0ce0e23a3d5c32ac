//! `talk bench`: a load generator that drives a running talk server over
//! real sockets with the real protocol, and measures it.
//!
//! Three scenarios (see `scenario`): capacity (how many held polls, at what
//! memory and CPU), fan-out (latency and exactly-once delivery from one
//! channel to many pollers) and throughput (many channels, rising send
//! rates). Pollers run in workers (`worker`), in this process or in child
//! processes when one process may not hold enough sockets; the coordinator
//! (`fleet`) merges their counters. A poller polls over its own lean
//! HTTP/1.1 connection (`poll_connection`, chosen in `transport`), so that
//! an answer costs the bench less CPU than it costs the server. Senders
//! (`sender`) post stamped bench messages on a schedule. Every run is
//! bounded in count and time and ends with a human summary and one JSON
//! line.
//!
//! The fan-out scenario can also drive a peer, Nchan, the nginx pub/sub
//! module (`nchan`), or Socket.IO over its long-polling transport
//! (`socketio`), with the same pollers, senders and accounting, so that talk
//! and a peer are measured under identical conditions.

mod fleet;
mod histogram;
mod nchan;
mod peer_publisher;
mod poll_connection;
mod poller;
mod process;
pub mod scenario;
mod send_gate;
mod sender;
mod socketio;
mod transport;
mod worker;

pub use histogram::{Histogram, SparseHistogram};
pub use process::{sample as sample_process, ticks_per_second, ProcessSample, Usage};
pub use scenario::{
    run, CapacityConfig, FanoutConfig, Outcome, Scenario, Target, ThroughputConfig,
};
pub use sender::SendStats;
pub use transport::{Peer, PollTransport};
pub use worker::{
    run_stdio_worker, run_worker, GroupReport, GroupSpec, WorkerCommand, WorkerEvent, WorkerProgram,
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
    /// The peer server refused the run's first message.
    #[error("the peer server refused to publish: {0}")]
    Publish(String),
    /// The peer server did not answer a handshake as expected.
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
