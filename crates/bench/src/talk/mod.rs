//! Talk's protocol as the bench speaks it ([`Talk`]): each poller a session
//! of its own that polls with its cursor (`poll_link`), and sender sessions
//! that post the bench messages (`publisher`).

mod poll_link;
mod publisher;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use talk_client::Api;
use talk_protocol::PollRequest;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use poll_link::{PollTransport, TalkAnswer};
pub use publisher::TalkPublisher;

pub(crate) use poll_link::api_from;

use crate::poll_connection::RequestPrefix;
use crate::protocol::{ErrorLog, PollError, Pollers, Protocol, Subscriber};
use crate::scenario::Target;
use crate::worker::GroupSpec;
use crate::Error;
use poll_link::{poll_link, poll_request_prefix, PollLink};

/// How many session starts a worker has in flight, each on a kept-alive
/// connection of its own.
pub(crate) const START_CONNECTIONS: usize = 16;

/// Talk: the server the bench is made for, and the default of every run.
#[derive(Debug, Clone, Copy)]
pub struct Talk;

impl Protocol for Talk {
    const NAME: &'static str = "talk";
    type Pollers = TalkPollers;
    type Publisher = TalkPublisher;

    /// Starts and ends a session, to check the server answers and learn its
    /// poll timeout (or the run's `wait_ms`, when shorter).
    async fn probe(target: &Target, run_id: &str) -> Result<Duration, Error> {
        let api = target.coordinator_api();
        let answer = api
            .start(Some(&format!("p{run_id}")), None, None)
            .await
            .map_err(Error::Start)?;
        let _ = api.leave(&answer.token).await;
        let held = target
            .wait_ms
            .unwrap_or(answer.poll_timeout_ms)
            .min(answer.poll_timeout_ms);
        Ok(Duration::from_millis(held))
    }

    /// Sender sessions in every channel, enough to send `rate_per_channel`
    /// within the per-session limit; their joins are the channels' history.
    async fn publisher(
        target: &Target,
        run_id: &str,
        channels: &[String],
        rate_per_channel: f64,
    ) -> Result<TalkPublisher, Error> {
        TalkPublisher::start(
            target.coordinator_api(),
            run_id,
            channels,
            senders_per_channel(rate_per_channel, target.sends_per_session),
        )
        .await
    }

    fn pollers(spec: &GroupSpec, server: SocketAddr) -> Result<TalkPollers, Error> {
        let poll_limit = Duration::from_millis(spec.poll_limit_ms);
        // Session starts come in a burst during the ramp; a few kept-alive
        // connections are enough for them.
        let start_api = api_from(
            &spec.base_url,
            spec.source_ip,
            poll_limit,
            START_CONNECTIONS,
        );
        let poll_api = match spec.transport {
            PollTransport::Api => api_from(&spec.base_url, spec.source_ip, poll_limit, usize::MAX),
            PollTransport::Raw => start_api.clone(),
        };
        Ok(TalkPollers {
            spec: spec.clone(),
            server,
            prefix: poll_request_prefix(server),
            start_api,
            poll_api,
            run_id: spec.run_id.as_str().into(),
            starts: Arc::new(Semaphore::new(START_CONNECTIONS)),
            tokens: Arc::new(Mutex::new(Vec::new())),
        })
    }
}

/// Sender sessions per channel needed to send `rate_per_channel` messages
/// per second within the per-session limit.
fn senders_per_channel(rate_per_channel: f64, sends_per_session: f64) -> usize {
    ((rate_per_channel / sends_per_session).ceil() as usize).max(1)
}

/// What a worker's talk pollers share.
pub struct TalkPollers {
    spec: GroupSpec,
    server: SocketAddr,
    /// The start of every poll request, shared by the lean connections.
    prefix: RequestPrefix,
    /// The client library for session starts (and the ends of sessions).
    start_api: Api,
    /// The client library for polls with the `Api` transport.
    poll_api: Api,
    run_id: Arc<str>,
    /// Session starts in flight, at most as many as the start `Api` keeps
    /// connections: a start beyond them opened a connection of its own,
    /// and a ramp that fell behind its schedule opened thousands at once,
    /// which took the descriptors both processes need for held polls.
    starts: Arc<Semaphore>,
    /// The tokens of the sessions started, to end them at the end.
    tokens: Arc<Mutex<Vec<String>>>,
}

impl Pollers for TalkPollers {
    type Subscriber = TalkSubscriber;

    fn subscriber(&self, index: usize, channel_index: usize) -> TalkSubscriber {
        TalkSubscriber {
            name: format!("b{}{index}", self.spec.run_id),
            channel: self.spec.channels[channel_index].clone(),
            api: self.start_api.clone(),
            starts: self.starts.clone(),
            tokens: self.tokens.clone(),
            link: poll_link(
                self.spec.transport,
                self.server,
                self.spec.source_ip,
                &self.prefix,
                &self.poll_api,
            ),
            request: PollRequest {
                token: String::new(),
                channel: None,
                cursor: None,
                wait_ms: None,
            },
            wait_ms: self.spec.wait_ms,
            run_id: self.run_id.clone(),
        }
    }

    /// Ends every session, when the run asks, so the next run starts on a
    /// quiet server; bounded in concurrency and time.
    async fn finish(&self) {
        if !self.spec.leave_at_end {
            return;
        }
        let api = api_from(
            &self.spec.base_url,
            self.spec.source_ip,
            Duration::from_secs(10),
            256,
        );
        let tokens = std::mem::take(&mut *self.tokens.lock().expect("tokens lock"));
        let permits = Arc::new(Semaphore::new(256));
        let mut leaves = JoinSet::new();
        for token in tokens {
            let api = api.clone();
            let permits = permits.clone();
            leaves.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let _ = api.leave(&token).await;
            });
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), async {
            while leaves.join_next().await.is_some() {}
        })
        .await;
    }
}

/// One talk poller: a session that polls from its cursor.
pub struct TalkSubscriber {
    name: String,
    channel: String,
    /// The client library, for starting the session.
    api: Api,
    starts: Arc<Semaphore>,
    tokens: Arc<Mutex<Vec<String>>>,
    link: PollLink,
    /// The next poll: the session's token, and after the first answer
    /// its channel and cursor.
    request: PollRequest,
    /// `wait_ms` of every poll after the first.
    wait_ms: Option<u64>,
    run_id: Arc<str>,
}

impl Subscriber for TalkSubscriber {
    type Answer = TalkAnswer;

    /// Starts the poller's session, waiting out `too_many_sessions` until
    /// `deadline`.
    async fn start(&mut self, deadline: Instant, errors: &ErrorLog<'_>) -> bool {
        loop {
            let started = {
                let _permit = self
                    .starts
                    .acquire()
                    .await
                    .expect("the start semaphore is never closed");
                self.api
                    .start(Some(&self.name), None, Some(&self.channel))
                    .await
            };
            match started {
                Ok(answer) => {
                    self.tokens
                        .lock()
                        .expect("tokens lock")
                        .push(answer.token.clone());
                    self.request.token = answer.token;
                    return true;
                }
                Err(error) => {
                    let retry_after = match &error {
                        talk_client::Error::Server { detail, .. } => detail.retry_after_ms,
                        _ => None,
                    };
                    errors.record(&PollError::Client(error));
                    let pause = Duration::from_millis(retry_after.unwrap_or(500).clamp(50, 5_000));
                    if Instant::now() + pause > deadline {
                        return false;
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    async fn poll(&mut self) -> Result<TalkAnswer, PollError> {
        self.link.poll(&self.request, &self.run_id).await
    }

    fn forget_connection(&mut self) {
        self.link.forget_connection();
    }

    /// The next poll carries the answer's channel and cursor, and `wait_ms`.
    fn advance(&mut self, answer: TalkAnswer) {
        self.request.channel = Some(answer.channel);
        self.request.cursor = Some(answer.cursor);
        self.request.wait_ms = self.wait_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_senders_for_a_rate() {
        assert_eq!(senders_per_channel(10.0, 4.0), 3);
        assert_eq!(senders_per_channel(0.5, 4.0), 1);
        assert_eq!(senders_per_channel(8.0, 4.0), 2);
    }
}
