//! `Client`: a session that outlives poll timeouts, network blips and server
//! restarts, and hands its caller every event exactly once, in order.
//!
//! The client keeps the session's token, name and color, and the poll
//! position (channel and cursor). When the server forgets the session
//! (`401 unknown_session`, after a restart say) it starts a new one with the
//! same name and color and keeps the position, so the next poll carries on
//! where the last one stopped. Sends carry an id made here; a send whose
//! answer was lost is retried with the same id, which the server dedupes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use talk_protocol::{Cursor, Event, PollAnswer, PollRequest, Reply, Reset, SendAnswer};
use tokio::time::Instant;

use crate::backoff::{jitter, random_u64, Backoff};
use crate::{Api, Error};

/// Everything a `Client` needs to know before it starts.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server, e.g. `http://localhost:8000`.
    pub base_url: String,
    /// The name to ask for; the server picks one when absent or taken.
    pub name: Option<String>,
    /// The color to ask for, `rrggbb`; the server picks one when absent.
    pub color: Option<String>,
    /// The channel to start in; the default channel when absent.
    pub channel: Option<String>,
    /// A session to carry on instead of starting a new one.
    pub resume: Option<ResumePoint>,
    /// Asks the server to hold each poll at most this long (it caps it at its
    /// own poll timeout). `None` leaves it to the server. Either way a poll
    /// is held at most `MAX_POLL_WAIT_MS`, so that it is answered before the
    /// HTTP client's own timeout.
    pub wait_ms: Option<u64>,
    /// The pauses between retries of a failed request.
    pub backoff: Backoff,
    /// How long `send` and `connect` keep retrying before giving up with the
    /// last error.
    pub retry_for: Duration,
    /// The pause before polling again when the server says it is going away.
    pub reconnect_pause: Duration,
}

impl ClientConfig {
    /// A configuration with defaults for the server at `base_url`.
    pub fn new(base_url: impl Into<String>) -> Self {
        ClientConfig {
            base_url: base_url.into(),
            name: None,
            color: None,
            channel: None,
            resume: None,
            wait_ms: None,
            backoff: Backoff::default(),
            retry_for: Duration::from_secs(60),
            reconnect_pause: Duration::from_secs(1),
        }
    }
}

/// What a caller stores to carry a session on later, in another process say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    /// The session's secret token.
    pub token: String,
    /// The name the session has.
    pub name: String,
    /// The color the session has.
    pub color: String,
    /// The channel the poll position belongs to.
    pub channel: String,
    /// The poll position; `None` before the first poll answer.
    pub cursor: Option<Cursor>,
}

/// Who the session is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The session's name.
    pub name: String,
    /// The session's color, `rrggbb`.
    pub color: String,
    /// The channel the session is in.
    pub channel: String,
}

/// One thing for the caller to show, from `Client::next_update`.
#[derive(Debug)]
pub enum Update {
    /// Replace what is shown of the channel by `events` (its recent history).
    /// A `reason` of `Reset::Unknown` (a newer server's) is a reset all the
    /// same.
    Reset {
        /// The channel the events belong to.
        channel: String,
        /// Why the view is replaced.
        reason: Reset,
        /// The channel's recent history, oldest first.
        events: Vec<Event>,
    },
    /// One new event, after every event delivered before it.
    ///
    /// An event of a type this build does not know (a newer server's) comes
    /// too, with the kind `EventKind::Unknown`, as it does in a reset's
    /// `events`: show nothing for it. It is handed over, not dropped, so
    /// that a caller that follows where the stream is (waiting for its own
    /// send's `seq` to come back, as `talk chat` does) sees it go by; a
    /// caller matching on the kind, as every caller that shows events does,
    /// passes over it with the other kinds it does not show.
    Event {
        /// The channel the event belongs to.
        channel: String,
        /// The event.
        event: Event,
    },
    /// The server had forgotten the session, so the client started a new one;
    /// the name may differ from before (see `notice`).
    SessionRestarted {
        /// Who the session is now.
        identity: Identity,
        /// The server's word on why it did not get what it asked for.
        notice: Option<String>,
    },
    /// The client lost the server and tries again after `retry_in`.
    ConnectionLost {
        /// Why.
        reason: LostReason,
        /// How many failures in a row this is.
        failures: u32,
        /// The pause before the next try.
        retry_in: Duration,
    },
    /// A poll went through again after `ConnectionLost`.
    ConnectionRestored,
}

/// Why the client lost the server.
#[derive(Debug)]
pub enum LostReason {
    /// The server said it is shutting down (`reconnect: true`).
    ServerGoingAway,
    /// A request failed.
    Failed(Error),
}

/// The longest a poll is asked to be held: the server adds up to 10% of
/// jitter, and `Api`'s HTTP timeout is 60 s.
pub const MAX_POLL_WAIT_MS: u64 = 50_000;

/// A send's id: 128 random bits, so that no two clients ever pick the same.
pub fn new_send_id() -> String {
    format!("c{:016x}{:016x}", random_u64(), random_u64())
}

/// Whether a failed request may succeed when made again unchanged.
pub fn is_retryable(error: &Error) -> bool {
    match error {
        Error::Transport(_) => true,
        Error::Server { status, .. } | Error::Decode { status, .. } => {
            *status == 429 || *status >= 500
        }
    }
}

/// How long the server asked us to wait (429 answers), if it did.
fn retry_after(error: &Error) -> Option<Duration> {
    match error {
        Error::Server { detail, .. } => detail.retry_after_ms.map(Duration::from_millis),
        _ => None,
    }
}

fn is_unknown_session(error: &Error) -> bool {
    error.code() == Some("unknown_session")
}

/// A session on a talk server. Clones share the session: one task can poll
/// (`next_update`) while others send.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    api: Api,
    config: ClientConfig,
    /// The `wait_ms` of every poll.
    poll_wait_ms: Option<u64>,
    /// Held only for short, await-free moments.
    state: Mutex<SessionState>,
    /// Held across a whole poll, so that only one poll runs at a time and
    /// the delivery bookkeeping has a single writer.
    poll: tokio::sync::Mutex<PollState>,
    /// Held while a new session is started, so that a poll and a send that
    /// both find the session gone start only one new session.
    restart: tokio::sync::Mutex<()>,
    /// Updates made outside a poll (a restart during a send), delivered by
    /// the next `next_update`.
    notices: Mutex<VecDeque<Update>>,
    /// True once `leave` was called.
    closed: tokio::sync::watch::Sender<bool>,
}

#[derive(Debug)]
struct SessionState {
    token: String,
    name: String,
    color: String,
    /// The channel the session is in, as far as we know.
    session_channel: String,
    /// The channel the next poll names; with `cursor`, the poll position.
    poll_channel: Option<String>,
    cursor: Option<Cursor>,
}

/// The last event handed to the caller, to drop anything at or before it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Delivered {
    channel: String,
    epoch: String,
    seq: u64,
}

#[derive(Debug, Default)]
struct PollState {
    pending: VecDeque<Update>,
    delivered: Option<Delivered>,
    failures: u32,
    /// True between a `ConnectionLost` and the next answered poll.
    lost: bool,
    /// Do not poll before this (a backoff pause after a failure).
    not_before: Option<Instant>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these locks; if something did, the data
    // is still consistent (each field is written whole), so carry on.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Client {
    /// Starts a session (or takes over `config.resume`), retrying failed
    /// requests for up to `config.retry_for`.
    pub async fn connect(config: ClientConfig) -> Result<Client, Error> {
        let api = Api::new(&config.base_url);
        let mut server_poll_timeout_ms = None;
        let state = match &config.resume {
            Some(resume) => SessionState {
                token: resume.token.clone(),
                name: resume.name.clone(),
                color: resume.color.clone(),
                session_channel: resume.channel.clone(),
                poll_channel: Some(resume.channel.clone()),
                cursor: resume.cursor.clone(),
            },
            None => {
                let deadline = Instant::now() + config.retry_for;
                let mut failures = 0;
                let answer = loop {
                    let result = api
                        .start(
                            config.name.as_deref(),
                            config.color.as_deref(),
                            config.channel.as_deref(),
                        )
                        .await;
                    match result {
                        Ok(answer) => break answer,
                        Err(error) => {
                            failures += 1;
                            pause_or_give_up(&config.backoff, failures, deadline, error).await?;
                        }
                    }
                };
                server_poll_timeout_ms = Some(answer.poll_timeout_ms);
                SessionState {
                    token: answer.token,
                    name: answer.name,
                    color: answer.color,
                    session_channel: answer.channel,
                    poll_channel: None,
                    cursor: None,
                }
            }
        };
        // A server whose poll timeout is longer than the HTTP timeout would
        // have every quiet poll fail on our side; ask it to answer sooner.
        let poll_wait_ms = match (config.wait_ms, server_poll_timeout_ms) {
            (Some(wait_ms), _) => Some(wait_ms.min(MAX_POLL_WAIT_MS)),
            (None, Some(timeout_ms)) if timeout_ms > MAX_POLL_WAIT_MS => Some(MAX_POLL_WAIT_MS),
            (None, _) => None,
        };
        let (closed, _) = tokio::sync::watch::channel(false);
        Ok(Client {
            inner: Arc::new(Inner {
                api,
                config,
                poll_wait_ms,
                state: Mutex::new(state),
                poll: tokio::sync::Mutex::new(PollState::default()),
                restart: tokio::sync::Mutex::new(()),
                notices: Mutex::new(VecDeque::new()),
                closed,
            }),
        })
    }

    /// Who the session is now.
    pub fn identity(&self) -> Identity {
        let state = lock(&self.inner.state);
        Identity {
            name: state.name.clone(),
            color: state.color.clone(),
            channel: state.session_channel.clone(),
        }
    }

    /// What to store to carry this session on later (`ClientConfig::resume`).
    /// The token in it is a secret.
    pub fn resume_point(&self) -> ResumePoint {
        let state = lock(&self.inner.state);
        ResumePoint {
            token: state.token.clone(),
            name: state.name.clone(),
            color: state.color.clone(),
            channel: state
                .poll_channel
                .clone()
                .unwrap_or_else(|| state.session_channel.clone()),
            cursor: state.cursor.clone(),
        }
    }

    /// The request layer, for requests this type does not make.
    pub fn api(&self) -> &Api {
        &self.inner.api
    }

    fn token(&self) -> String {
        lock(&self.inner.state).token.clone()
    }

    fn is_closed(&self) -> bool {
        *self.inner.closed.borrow()
    }

    /// The next thing to show. Polls as often as needed: an empty poll (a
    /// timeout) is not an update. Failed polls are retried for ever with
    /// backoff, reported as `ConnectionLost`; an error comes back only when
    /// the server refuses the poll for good (a bad request, say). `None` once
    /// the session was ended with `leave`.
    ///
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn next_update(&self) -> Result<Option<Update>, Error> {
        let mut poll = self.inner.poll.lock().await;
        let mut closed = self.inner.closed.subscribe();
        loop {
            if let Some(update) = lock(&self.inner.notices).pop_front() {
                return Ok(Some(update));
            }
            if let Some(update) = poll.pending.pop_front() {
                return Ok(Some(update));
            }
            if self.is_closed() {
                return Ok(None);
            }
            if let Some(not_before) = poll.not_before {
                tokio::select! {
                    () = tokio::time::sleep_until(not_before) => poll.not_before = None,
                    _ = closed.wait_for(|closed| *closed) => return Ok(None),
                }
            }
            let request = {
                let state = lock(&self.inner.state);
                PollRequest {
                    token: state.token.clone(),
                    channel: state.poll_channel.clone(),
                    cursor: state.cursor.clone(),
                    wait_ms: self.inner.poll_wait_ms,
                }
            };
            let result = tokio::select! {
                result = self.inner.api.poll(&request) => result,
                _ = closed.wait_for(|closed| *closed) => return Ok(None),
            };
            let result = match result {
                Err(error) if is_unknown_session(&error) => {
                    if self.is_closed() {
                        return Ok(None);
                    }
                    self.restart_session(&request.token).await.map(|()| None)
                }
                other => other.map(Some),
            };
            match result {
                Ok(None) => {}
                Ok(Some(answer)) => {
                    if poll.lost {
                        poll.lost = false;
                        poll.pending.push_back(Update::ConnectionRestored);
                    }
                    poll.failures = 0;
                    if answer.reconnect {
                        let retry_in = jitter(self.inner.config.reconnect_pause);
                        poll.not_before = Some(Instant::now() + retry_in);
                        poll.lost = true;
                        poll.pending.push_back(Update::ConnectionLost {
                            reason: LostReason::ServerGoingAway,
                            failures: 0,
                            retry_in,
                        });
                    }
                    self.accept(&mut poll, answer);
                }
                Err(error) if is_retryable(&error) => {
                    poll.failures += 1;
                    let backoff = self.inner.config.backoff.pause(poll.failures);
                    let retry_in = backoff.max(retry_after(&error).unwrap_or_default());
                    poll.not_before = Some(Instant::now() + retry_in);
                    poll.lost = true;
                    let failures = poll.failures;
                    poll.pending.push_back(Update::ConnectionLost {
                        reason: LostReason::Failed(error),
                        failures,
                        retry_in,
                    });
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Takes in one poll answer: queues its events for the caller, dropping
    /// any already delivered, and moves the poll position on.
    fn accept(&self, poll: &mut PollState, answer: PollAnswer) {
        let PollAnswer {
            channel,
            cursor,
            events,
            reset,
            ..
        } = answer;
        let stream = Delivered {
            channel: channel.clone(),
            epoch: cursor.epoch.clone(),
            seq: 0,
        };
        match reset {
            Some(reason) => {
                // A reset replaces the view, so everything in it counts as
                // delivered, whatever was delivered before.
                let last_seq = events.last().map_or(cursor.seq, |event| event.seq);
                poll.delivered = Some(Delivered {
                    seq: last_seq,
                    ..stream
                });
                poll.pending.push_back(Update::Reset {
                    channel: channel.clone(),
                    reason,
                    events,
                });
            }
            None => {
                let mut delivered = match poll.delivered.take() {
                    Some(delivered)
                        if delivered.channel == stream.channel
                            && delivered.epoch == stream.epoch =>
                    {
                        Some(delivered)
                    }
                    _ => None,
                };
                for event in events {
                    if let Some(delivered) = &delivered {
                        if event.seq <= delivered.seq {
                            tracing::debug!(seq = event.seq, "dropping an event delivered before");
                            continue;
                        }
                    }
                    delivered = Some(Delivered {
                        seq: event.seq,
                        ..stream.clone()
                    });
                    poll.pending.push_back(Update::Event {
                        channel: channel.clone(),
                        event,
                    });
                }
                poll.delivered = delivered;
            }
        }
        let mut state = lock(&self.inner.state);
        state.session_channel.clone_from(&channel);
        state.poll_channel = Some(channel);
        state.cursor = Some(cursor);
    }

    /// Starts a new session in place of the one whose token was
    /// `failed_token`, unless another task did so already. Keeps the poll
    /// position, so the next poll resumes where the old session stopped.
    async fn restart_session(&self, failed_token: &str) -> Result<(), Error> {
        let _restarting = self.inner.restart.lock().await;
        let (name, color, channel) = {
            let state = lock(&self.inner.state);
            if state.token != failed_token {
                return Ok(());
            }
            (
                state.name.clone(),
                state.color.clone(),
                state.session_channel.clone(),
            )
        };
        let answer = self
            .inner
            .api
            .start(Some(&name), Some(&color), Some(&channel))
            .await?;
        tracing::info!(name = %answer.name, "the server forgot the session; started a new one");
        let identity = Identity {
            name: answer.name.clone(),
            color: answer.color.clone(),
            channel: answer.channel.clone(),
        };
        {
            let mut state = lock(&self.inner.state);
            state.token = answer.token;
            state.name = answer.name;
            state.color = answer.color;
            state.session_channel = answer.channel;
        }
        lock(&self.inner.notices).push_back(Update::SessionRestarted {
            identity,
            notice: answer.notice,
        });
        Ok(())
    }

    /// Says `text`, or runs it as a command when it starts with `/`, under a
    /// new random id. See `send_with_id`.
    pub async fn send(&self, text: &str) -> Result<SendAnswer, Error> {
        self.send_with_id(&new_send_id(), text).await
    }

    /// Says `text` under the caller's `id`. A send that fails on the way
    /// (no answer, `429`, `5xx`) is retried with the same id for up to
    /// `retry_for`, so the server posts it exactly once; a session the server
    /// forgot is started again first. Gives up with the last error.
    pub async fn send_with_id(&self, id: &str, text: &str) -> Result<SendAnswer, Error> {
        let deadline = Instant::now() + self.inner.config.retry_for;
        let mut failures = 0;
        loop {
            let token = self.token();
            let result = match self.inner.api.send(&token, id, text).await {
                Err(error) if is_unknown_session(&error) && !self.is_closed() => {
                    self.restart_session(&token).await.map(|()| None)
                }
                other => other.map(Some),
            };
            match result {
                Ok(Some(answer)) => {
                    self.note_reply(answer.reply.as_ref());
                    return Ok(answer);
                }
                Ok(None) => {}
                Err(error) => {
                    failures += 1;
                    pause_or_give_up(&self.inner.config.backoff, failures, deadline, error).await?;
                }
            }
        }
    }

    /// Keeps the identity up to date with what commands changed.
    fn note_reply(&self, reply: Option<&Reply>) {
        let mut state = lock(&self.inner.state);
        match reply {
            Some(Reply::Joined { channel }) => state.session_channel.clone_from(channel),
            Some(Reply::Nick { name }) => state.name.clone_from(name),
            Some(Reply::Color { color }) => state.color.clone_from(color),
            _ => {}
        }
    }

    /// Ends the session: the server posts a `leave` event and forgets the
    /// token. `next_update` returns `None` from now on, at once, even when a
    /// poll is held. A session the server forgot already counts as left.
    pub async fn leave(&self) -> Result<(), Error> {
        self.inner.closed.send_replace(true);
        // Leaving is what a person does on the way out: a few quick tries,
        // not a minute of them.
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut failures = 0;
        loop {
            match self.inner.api.leave(&self.token()).await {
                Ok(_) => return Ok(()),
                Err(error) if is_unknown_session(&error) => return Ok(()),
                Err(error) => {
                    failures += 1;
                    pause_or_give_up(&self.inner.config.backoff, failures, deadline, error).await?;
                }
            }
        }
    }
}

/// After a failed request: waits the backoff pause (or what a 429 asked for)
/// when the error is worth a retry and the pause ends before `deadline`;
/// gives the error back otherwise.
async fn pause_or_give_up(
    backoff: &Backoff,
    failures: u32,
    deadline: Instant,
    error: Error,
) -> Result<(), Error> {
    if !is_retryable(&error) {
        return Err(error);
    }
    let pause = backoff
        .pause(failures)
        .max(retry_after(&error).unwrap_or_default());
    if Instant::now() + pause > deadline {
        return Err(error);
    }
    tracing::debug!(%error, ?pause, "request failed; trying again");
    tokio::time::sleep(pause).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use talk_protocol::{ErrorDetail, EventKind};

    fn message(seq: u64) -> Event {
        Event {
            seq,
            ts: 0,
            from: "ada".into(),
            color: "ffffff".into(),
            kind: EventKind::Message {
                text: format!("m{seq}"),
                id: format!("i{seq}"),
            },
        }
    }

    fn answer(channel: &str, epoch: &str, seqs: &[u64], reset: Option<Reset>) -> PollAnswer {
        PollAnswer {
            channel: channel.into(),
            cursor: Cursor {
                epoch: epoch.into(),
                seq: seqs.last().copied().unwrap_or(0),
            },
            events: seqs.iter().copied().map(message).collect(),
            reset,
            reconnect: false,
        }
    }

    /// What the caller sees, one string per update: `reset:<channel>:<seqs>`
    /// or `<channel>:<seq>`.
    fn drain(poll: &mut PollState) -> Vec<String> {
        poll.pending
            .drain(..)
            .map(|update| match update {
                Update::Reset {
                    channel, events, ..
                } => {
                    let seqs: Vec<String> =
                        events.iter().map(|event| event.seq.to_string()).collect();
                    format!("reset:{channel}:{}", seqs.join(","))
                }
                Update::Event { channel, event } => format!("{channel}:{}", event.seq),
                other => format!("{other:?}"),
            })
            .collect()
    }

    async fn offline_client() -> Client {
        let mut config = ClientConfig::new("http://127.0.0.1:9");
        config.resume = Some(ResumePoint {
            token: "0".repeat(32),
            name: "ada".into(),
            color: "ffffff".into(),
            channel: "lobby".into(),
            cursor: None,
        });
        Client::connect(config).await.unwrap()
    }

    #[tokio::test]
    async fn delivers_each_event_once_in_order() {
        let client = offline_client().await;
        let mut poll = PollState::default();
        let check = |poll: &mut PollState, answer: PollAnswer, expected: &[&str]| {
            client.accept(poll, answer);
            assert_eq!(drain(poll), expected);
        };
        check(
            &mut poll,
            answer("lobby", "e1", &[1, 2], Some(Reset::Start)),
            &["reset:lobby:1,2"],
        );
        check(&mut poll, answer("lobby", "e1", &[3], None), &["lobby:3"]);
        // The same answer again (a retried poll whose first answer got
        // through after all) and an overlapping one.
        check(&mut poll, answer("lobby", "e1", &[3], None), &[]);
        check(
            &mut poll,
            answer("lobby", "e1", &[2, 3, 4, 5], None),
            &["lobby:4", "lobby:5"],
        );
        // Another life of the channel's history starts over at low seqs.
        check(
            &mut poll,
            answer("lobby", "e2", &[1], Some(Reset::Epoch)),
            &["reset:lobby:1"],
        );
        check(&mut poll, answer("lobby", "e2", &[2], None), &["lobby:2"]);
        check(
            &mut poll,
            answer("games", "g1", &[7], Some(Reset::Switch)),
            &["reset:games:7"],
        );
        check(&mut poll, answer("games", "g1", &[8], None), &["games:8"]);
        // An event of a type this build does not know is handed over like
        // any other, once, and counts as delivered.
        let mut with_unknown = answer("games", "g1", &[9, 10], None);
        with_unknown.events[1].kind = EventKind::Unknown;
        check(&mut poll, with_unknown.clone(), &["games:9", "games:10"]);
        check(&mut poll, with_unknown, &[]);
        assert_eq!(
            client.resume_point().cursor,
            Some(Cursor {
                epoch: "g1".into(),
                seq: 10
            })
        );
        assert_eq!(client.identity().channel, "games");
    }

    #[test]
    fn retries_only_what_may_succeed_later() {
        let server = |status: u16, code: &str| Error::Server {
            status,
            detail: ErrorDetail {
                code: code.into(),
                message: String::new(),
                retry_after_ms: None,
            },
        };
        assert!(is_retryable(&server(429, "rate_limited")));
        assert!(is_retryable(&server(503, "shutting_down")));
        assert!(is_retryable(&server(500, "internal")));
        assert!(!is_retryable(&server(400, "bad_request")));
        assert!(!is_retryable(&server(401, "unknown_session")));
        assert!(!is_retryable(&server(409, "name_taken")));
        assert!(is_retryable(&Error::Decode {
            status: 502,
            reason: "html from a proxy".into()
        }));
        assert!(!is_retryable(&Error::Decode {
            status: 200,
            reason: "not json".into()
        }));
    }

    #[test]
    fn send_ids_are_valid_and_distinct() {
        let first = new_send_id();
        assert!(talk_protocol::SendId::parse(&first).is_ok(), "{first}");
        assert_ne!(first, new_send_id());
    }

    // The clock is paused: the retries' pauses pass at once. Every request
    // is refused at once, so the clock never jumps while one is on its way.
    #[tokio::test(start_paused = true)]
    async fn gives_up_a_send_after_retry_for() {
        // Port 9 (discard) is closed on loopback: every request fails fast.
        let mut config = ClientConfig::new("http://127.0.0.1:9");
        config.retry_for = Duration::from_millis(300);
        config.backoff = Backoff {
            first: Duration::from_millis(20),
            max: Duration::from_millis(50),
        };
        config.resume = offline_client().await.inner.config.resume.clone();
        let client = Client::connect(config).await.unwrap();
        let started = Instant::now();
        let error = client.send("hello").await.unwrap_err();
        assert!(matches!(error, Error::Transport(_)), "{error}");
        // The message names the cause, not only reqwest's "error sending request".
        assert!(error.to_string().contains("os error"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    // Paused as above: the backoff the poller waits out and the three
    // seconds of `leave`'s own retries pass at once.
    #[tokio::test(start_paused = true)]
    async fn leave_ends_a_waiting_next_update() {
        let client = offline_client().await;
        let poller = client.clone();
        let (reported, first_report) = tokio::sync::oneshot::channel();
        let polling = tokio::spawn(async move {
            // Fails (nothing listens), reports the loss, then waits.
            let mut reported = Some(reported);
            loop {
                match poller.next_update().await {
                    Ok(Some(_)) => {
                        if let Some(reported) = reported.take() {
                            let _ = reported.send(());
                        }
                    }
                    other => return other.map(|update| update.is_none()),
                }
            }
        });
        // Once the loss is reported, the poller's next call waits out the
        // backoff, and `leave` must end it.
        tokio::time::timeout(Duration::from_secs(5), first_report)
            .await
            .expect("the failed poll is reported within 5 s")
            .unwrap();
        let _ = client.leave().await;
        let ended = tokio::time::timeout(Duration::from_secs(5), polling)
            .await
            .expect("next_update returned after leave")
            .unwrap();
        assert!(ended.unwrap(), "next_update ends with None after leave");
    }
}
