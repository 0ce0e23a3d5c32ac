//! What the bench needs of a server to drive it: the traits a server's
//! protocol implements ([`Protocol`] and the parts it is made of), so that the scenarios, workers and accounting are
//! the same whatever the server.
//!
//! The bench itself speaks talk ([`crate::Talk`]). Other servers (the peers
//! talk is compared with) implement these traits outside the product, in
//! the peer bench of the repository's `bench/` workspace, and plug into the
//! same scenarios. Every scenario and worker is generic over a
//! [`Protocol`], so a poll goes through no boxed future and no dynamic
//! call: what the bench costs per answer is part of what it measures.
//!
//! A run has two ends. The coordinator asks the protocol to probe the
//! server and to make a [`Publisher`] for the run's channels. Each worker
//! (in the coordinator's process or a child process) asks it for its
//! group's [`Pollers`], which make one [`Subscriber`] per poller. A
//! subscriber's answers are read through [`Answer`]: where the stream
//! stands, and the bench messages it brings.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::poll_connection::HttpError;
use crate::poller::Window;
use crate::scenario::{Scenario, Target};
use crate::sender::SendStats;
use crate::worker::GroupSpec;
use crate::Error;

/// A server's protocol, as the bench drives it.
pub trait Protocol: 'static {
    /// The server's name in results (the `peer` of the JSON line).
    const NAME: &'static str;
    /// What a worker's group of pollers shares.
    type Pollers: Pollers;
    /// The publishing end of a run's channels.
    type Publisher: Publisher;

    /// Refuses a scenario this server cannot run, saying why.
    fn check_scenario(scenario: &Scenario) -> Result<(), Error> {
        let _ = scenario;
        Ok(())
    }

    /// Checks that the server answers, and says how long it holds a poll
    /// that has nothing to answer.
    fn probe(target: &Target, run_id: &str) -> impl Future<Output = Result<Duration, Error>>;

    /// The publisher of `channels`, which the run will ask for at most
    /// `rate_per_channel` messages a second in each; it is ready to
    /// publish, and whatever the pollers must find first in a channel is
    /// there.
    fn publisher(
        target: &Target,
        run_id: &str,
        channels: &[String],
        rate_per_channel: f64,
    ) -> impl Future<Output = Result<Self::Publisher, Error>>;

    /// A worker's group of pollers of `spec`, whose server is at `server`.
    fn pollers(spec: &GroupSpec, server: SocketAddr) -> Result<Self::Pollers, Error>;
}

/// What a worker's pollers share: it makes each of them a subscriber.
pub trait Pollers: Send + Sync + 'static {
    /// One poller's way to follow its channel.
    type Subscriber: Subscriber;

    /// The subscriber of poller `index` (counted over the whole run), in the
    /// channel of index `channel_index` of the group's spec.
    fn subscriber(&self, index: usize, channel_index: usize) -> Self::Subscriber;

    /// Ends what the pollers started on the server (talk: their sessions),
    /// once they have stopped.
    fn finish(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// One poller's way to follow its channel: one poll at a time.
pub trait Subscriber: Send + 'static {
    /// What one poll brings.
    type Answer: Answer + Send;

    /// Gets ready for the first poll (talk: starts a session), giving up
    /// at `deadline`; errors on the way are counted in `errors`. False when
    /// the poller gave up.
    fn start(
        &mut self,
        deadline: Instant,
        errors: &ErrorLog<'_>,
    ) -> impl Future<Output = bool> + Send {
        let _ = (deadline, errors);
        async { true }
    }

    /// Sends one poll and waits for its answer, however long it takes.
    fn poll(&mut self) -> impl Future<Output = Result<Self::Answer, PollError>> + Send;

    /// Drops the connection (after a poll that hung, which may have left it
    /// mid-answer), so the next poll makes a new one.
    fn forget_connection(&mut self);

    /// Moves on past `answer`, once the poller has taken it in (talk: the
    /// next poll carries its cursor).
    fn advance(&mut self, answer: Self::Answer) {
        let _ = answer;
    }
}

/// A poll's answer, as far as the bench's accounting reads it.
pub trait Answer {
    /// Where the poller's stream stands after this answer, when the answer
    /// says. A poller's first answer that says starts its stream there:
    /// events up to that position are history, not deliveries. A first
    /// answer that does not say (a poll that timed out before any message)
    /// leaves the poller waiting for one that does.
    fn position(&self) -> Option<StreamPosition<'_>>;

    /// The events the answer brings, in the order of the answer.
    fn events(&self) -> impl Iterator<Item = BenchEvent> + '_;

    /// True when the server replaced the poller's view of the stream (talk:
    /// `reset`), so the stream starts again at [`Answer::position`].
    fn resets(&self) -> bool {
        false
    }

    /// True when the server is going away and asks the client to pause.
    fn asks_to_reconnect(&self) -> bool {
        false
    }
}

/// A position in a channel's stream: the last seq a poller has, in the
/// server's epoch. A change of epoch resets the poller's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPosition<'a> {
    /// The stream's epoch; empty for a server without one.
    pub epoch: &'a str,
    /// The last seq the poller has.
    pub seq: u64,
}

/// One event of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchEvent {
    /// Its seq in the channel (for a server without seqs, the number its
    /// bench message carries).
    pub seq: u64,
    /// When it was sent, if it is a bench message of this run.
    pub sent_micros: Option<u64>,
}

/// The publishing end of a run's channels.
pub trait Publisher: Send + Sync + 'static {
    /// Sends bench message `number` of run `run_id`, the `turn`-th message
    /// (from 0) of the channel of index `channel_index`, and returns the
    /// seq the server gave it (or that stands for it). Retries are counted
    /// in `stats`.
    fn send(
        &self,
        channel_index: usize,
        turn: u64,
        run_id: &str,
        number: u64,
        stats: &Mutex<SendStats>,
    ) -> impl Future<Output = Result<u64, String>> + Send;

    /// Ends what the publisher started on the server (talk: the sender
    /// sessions).
    fn leave(&self) -> impl Future<Output = ()> {
        async {}
    }
}

/// Where a subscriber counts the errors it met while starting.
pub struct ErrorLog<'a> {
    pub(crate) window: &'a Mutex<Window>,
}

impl ErrorLog<'_> {
    /// Counts `error` in the worker's window.
    pub fn record(&self, error: &PollError) {
        self.window.lock().expect("window lock").record_error(error);
    }
}

/// Why one poll failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The HTTP exchange failed (no connection, reset, closed, bad framing).
    #[error("http: {0}")]
    Http(#[from] HttpError),
    /// The server answered with a protocol error.
    #[error("server said {status} {code}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The protocol error code.
        code: String,
    },
    /// The answer was not what the protocol answers.
    #[error("undecodable answer (status {status}): {reason}")]
    Decode {
        /// The HTTP status.
        status: u16,
        /// What was wrong.
        reason: String,
    },
    /// The server ended the poller's session in its own way (a peer's
    /// close packet, say); the poller cannot go on, as with talk's
    /// `unknown_session`.
    #[error("session closed: {reason}")]
    SessionClosed {
        /// What the server said or did.
        reason: String,
    },
    /// The poll got no answer within the poll timeout and a margin.
    #[error("no answer in time")]
    Timeout,
    /// An error from the client library.
    #[error("{0}")]
    Client(#[from] talk_client::Error),
}

impl PollError {
    /// A short stable name for counting errors by kind.
    pub fn kind(&self) -> String {
        match self {
            PollError::Http(HttpError::Connect(_)) => "connect".into(),
            PollError::Http(_) => "http".into(),
            PollError::Server { code, .. } => code.clone(),
            PollError::Decode { .. } => "decode".into(),
            PollError::SessionClosed { .. } => "session_closed".into(),
            PollError::Timeout => "timeout".into(),
            PollError::Client(error) => match error.code() {
                Some(code) => code.to_owned(),
                None => match error {
                    talk_client::Error::Transport(_) => "http".into(),
                    _ => "decode".into(),
                },
            },
        }
    }

    /// True when the poller's session is over and it cannot go on.
    pub(crate) fn ends_session(&self) -> bool {
        matches!(self, PollError::SessionClosed { .. }) || self.kind() == "unknown_session"
    }
}
