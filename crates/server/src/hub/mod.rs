//! The hub: sessions, channels, publishing, and the polls that wait.
//!
//! A poll parks here until its channel has something after its cursor; a
//! publish stores the event, and once it is committed hands the answer to
//! every parked poll's waiter (see `waiter`). The hub knows no HTTP and does
//! no I/O itself: the store's writer thread does the disk work, and a
//! waiter's sink, which the HTTP layer gives, sends the answer.

mod channel;
mod session;
mod waiter;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use talk_protocol::{
    ChannelInfo, ChannelName, Color, Cursor, Event, EventKind, LeaveReason, Member, Name, Reset,
};
use tokio::sync::{mpsc, oneshot};

pub(crate) use channel::PollBody;
use channel::{Channel, FanOut, Lookup, Published};
pub(crate) use session::Session;
use waiter::Outcome;
pub(crate) use waiter::{Deliver, Delivery, Waiter, WakeTask};

use crate::metrics::Metrics;
use crate::store::{self, SendKey, Store, StoredEvent};

/// What the hub needs to know of the configuration.
#[derive(Debug, Clone)]
pub(crate) struct HubSettings {
    pub(crate) history_window: usize,
    pub(crate) history_on_join: usize,
    pub(crate) presence_limit: usize,
    pub(crate) session_grace: Duration,
    /// How long a channel nobody uses stays in memory.
    pub(crate) channel_idle: Duration,
    /// The most channels in memory at once.
    pub(crate) max_channels: usize,
}

/// Asked before a channel that has no history is created: whether the
/// client may create another one now (rate limits live in `http`).
pub(crate) type MayCreate<'check> = &'check (dyn Fn() -> Result<(), Error> + Sync);

/// What can go wrong in the hub; `http::error` turns each into an answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The token names no live session.
    #[error("this session is unknown or has expired; start a new one")]
    UnknownSession,
    /// Someone online has that name.
    #[error("the name {name} is taken")]
    NameTaken {
        /// The name asked for.
        name: String,
    },
    /// The store could not keep the event, so it was not acknowledged.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The client has created too many channels lately.
    #[error("too many new channels; wait a moment, or join one that exists")]
    TooManyChannels {
        /// When it may create another.
        retry_after: Duration,
    },
    /// As many channels as the server keeps in memory are in use.
    #[error("this server has {max} channels in use, its limit; join one that exists")]
    ChannelLimit {
        /// The limit.
        max: usize,
    },
    /// The server is stopping.
    #[error("the server is shutting down; try again in a moment")]
    ShuttingDown,
}

/// The sessions, by token and by name.
#[derive(Default)]
struct Sessions {
    /// Looked up for every poll. Hashed with foldhash rather than SipHash:
    /// the tokens are random and made here, so a client cannot choose keys
    /// that collide, and SipHash showed in fan-out profiles.
    by_token: foldhash::HashMap<Arc<str>, Arc<Session>>,
    /// Lowercased names of the sessions online, to keep names unique.
    by_name: HashMap<String, Arc<str>>,
}

/// How a poll ended.
pub(crate) enum Polled {
    /// The answer, for the poll's task to send.
    Answer(PollBody),
    /// The waiter's sink sent the answer; with `finish`, it began and the
    /// poll's task must send the rest.
    Sent { finish: bool },
}

/// A new session, as `start` reports it.
pub(crate) struct Started {
    pub(crate) session: Arc<Session>,
    pub(crate) name: Name,
    pub(crate) color: Color,
    pub(crate) channel: ChannelName,
    /// Set when the session did not get the name it asked for.
    pub(crate) name_was_taken: bool,
}

/// An event the store has committed (or failed to), on its way from the
/// store's thread to the runtime, where it is made visible.
struct Committed {
    channel: Arc<Channel>,
    seq: u64,
    /// The channel's generation when the event was queued.
    generation: u64,
    result: Result<(), store::Error>,
    done: oneshot::Sender<Result<(), store::Error>>,
}

/// The hub of one server.
pub(crate) struct Hub {
    settings: HubSettings,
    store: Store,
    /// To `show_committed`, the task that makes committed events visible.
    committed: mpsc::UnboundedSender<Committed>,
    channels: Mutex<HashMap<ChannelName, Arc<Channel>>>,
    sessions: Mutex<Sessions>,
    /// Set once when the server begins to stop; read by every poll.
    shutting_down: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// A hub with no channel in memory: each is loaded from the store when
    /// it is first used.
    pub(crate) fn new(settings: HubSettings, store: Store, metrics: Arc<Metrics>) -> Self {
        let (committed, to_show) = mpsc::unbounded_channel();
        tokio::spawn(show_committed(to_show, metrics.clone()));
        Hub {
            settings,
            store,
            committed,
            channels: Mutex::new(HashMap::new()),
            sessions: Mutex::new(Sessions::default()),
            shutting_down: AtomicBool::new(false),
            metrics,
        }
    }

    /// The channel `name` with `token` added to its members, and how many
    /// members it has now: from memory, else loaded from the store (off the
    /// runtime's threads), else created with a new epoch if `may_create`
    /// lets the client create one.
    ///
    /// The member is added under the lock of the channel map, which
    /// eviction takes too, so a channel entered is never one that has just
    /// left memory.
    async fn enter_channel(
        &self,
        name: &ChannelName,
        token: &Arc<str>,
        may_create: MayCreate<'_>,
    ) -> Result<(Arc<Channel>, usize), Error> {
        if let Some(entered) = self.enter_in_memory(name, token) {
            return Ok(entered);
        }
        let store = self.store.clone();
        let key = name.as_str().to_owned();
        let loaded = tokio::task::spawn_blocking(move || store.load_channel(&key))
            .await
            .map_err(|_| store::Error::Closed)??;
        let window = self.settings.history_window;
        let channel = match loaded {
            Some(loaded) => Channel::new(
                name.clone(),
                loaded.epoch,
                loaded.head,
                loaded.events,
                window,
            ),
            None => {
                // The default channel is always there to be used, so
                // using it first creates nothing a client asked for.
                if *name != ChannelName::default_channel() {
                    may_create()?;
                }
                // The store writes the channel's row with its first event.
                Channel::new(name.clone(), new_epoch(), 0, Vec::new(), window)
            }
        };
        let mut channels = self.channels.lock().expect("channels lock");
        // Loaded meanwhile by another request: that copy is the one.
        if let Some(channel) = channels.get(name) {
            let n_members = channel.add_member(token);
            return Ok((channel.clone(), n_members));
        }
        if channels.len() >= self.settings.max_channels {
            // Make room with the channels nobody uses, however recently.
            let now = Instant::now();
            channels.retain(|_, channel| !channel.is_idle(now, Duration::ZERO));
            if channels.len() >= self.settings.max_channels {
                self.metrics.channels.set(channels.len() as i64);
                return Err(Error::ChannelLimit {
                    max: self.settings.max_channels,
                });
            }
        }
        let channel = Arc::new(channel);
        let n_members = channel.add_member(token);
        channels.insert(name.clone(), channel.clone());
        self.metrics.channels.set(channels.len() as i64);
        Ok((channel, n_members))
    }

    /// As `enter_channel`, for a channel in memory.
    fn enter_in_memory(
        &self,
        name: &ChannelName,
        token: &Arc<str>,
    ) -> Option<(Arc<Channel>, usize)> {
        let channels = self.channels.lock().expect("channels lock");
        let channel = channels.get(name)?;
        let n_members = channel.add_member(token);
        Some((channel.clone(), n_members))
    }

    /// Lets the channels that nobody has used for the idle time leave
    /// memory; their history stays on disk, to be loaded when next used.
    pub(crate) fn evict_idle_channels(&self) {
        let now = Instant::now();
        let idle = self.settings.channel_idle;
        let mut channels = self.channels.lock().expect("channels lock");
        channels.retain(|_, channel| !channel.is_idle(now, idle));
        self.metrics.channels.set(channels.len() as i64);
    }

    /// The live session whose token this is.
    pub(crate) fn session(&self, token: &str) -> Result<Arc<Session>, Error> {
        let sessions = self.sessions.lock().expect("sessions lock");
        sessions
            .by_token
            .get(token)
            .cloned()
            .ok_or(Error::UnknownSession)
    }

    /// Starts a session in `channel`, with the name and color asked for
    /// where they are free, and announces it there.
    pub(crate) async fn start_session(
        &self,
        name: Option<Name>,
        color: Option<Color>,
        channel: ChannelName,
        may_create: MayCreate<'_>,
    ) -> Result<Started, Error> {
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        let token: Arc<str> = new_token().into();
        let (joined, n_members) = self.enter_channel(&channel, &token, may_create).await?;
        let color = color.unwrap_or_else(|| Color::from_hue(fastrand::u16(0..360)));
        let (session, name, name_was_taken) = {
            let mut sessions = self.sessions.lock().expect("sessions lock");
            let asked_for_a_name = name.is_some();
            let wished = name.filter(|name| !sessions.by_name.contains_key(&name.key()));
            let name_was_taken = asked_for_a_name && wished.is_none();
            let name = wished.unwrap_or_else(|| guest_name(&sessions.by_name));
            let session = Arc::new(Session::new(
                token.clone(),
                name.clone(),
                color,
                joined.clone(),
            ));
            sessions.by_name.insert(name.key(), token.clone());
            sessions.by_token.insert(token, session.clone());
            self.metrics.sessions.set(sessions.by_token.len() as i64);
            (session, name, name_was_taken)
        };
        if n_members <= self.settings.presence_limit {
            let announced = self
                .publish(&joined, &name, color, EventKind::Join, None)
                .committed()
                .await;
            if let Err(error) = announced {
                // Nobody has the token yet: the session goes as if it had
                // never started, name and membership with it.
                session.update(|state| state.ended = true);
                joined.remove_member(&session.token);
                self.forget_session(&session, &name);
                return Err(error);
            }
        }
        Ok(Started {
            session,
            name,
            color,
            channel,
            name_was_taken,
        })
    }

    /// Takes a session out of the maps by token and by name.
    fn forget_session(&self, session: &Session, name: &Name) {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        sessions.by_token.remove(&session.token);
        if sessions.by_name.get(&name.key()) == Some(&session.token) {
            sessions.by_name.remove(&name.key());
        }
        self.metrics.sessions.set(sessions.by_token.len() as i64);
    }

    /// Ends a session: it leaves its channel, and its token stops working.
    /// A session that has ended already is unknown.
    pub(crate) async fn end_session(
        &self,
        session: &Arc<Session>,
        reason: LeaveReason,
    ) -> Result<(), Error> {
        let _changes = session.changes.lock().await;
        let state = session.update(|state| {
            let was_live = !state.ended;
            state.ended = true;
            was_live.then(|| state.clone())
        });
        let Some(state) = state else {
            return Err(Error::UnknownSession);
        };
        self.forget_session(session, &state.name);
        let channel = state.channel;
        channel.unpark_session(session);
        session.wake.notify_waiters();
        // Announced while still a member: only members publish to a
        // channel, which is what lets an idle channel leave memory safely.
        let announced = if channel.n_members() <= self.settings.presence_limit {
            let leave = EventKind::Leave { reason };
            self.publish(&channel, &state.name, state.color, leave, None)
                .committed()
                .await
                .map(|_| ())
        } else {
            Ok(())
        };
        channel.remove_member(&session.token);
        announced
    }

    /// Ends every session that has had no poll for the grace period.
    pub(crate) async fn end_expired_sessions(&self) {
        let now = Instant::now();
        let expired: Vec<Arc<Session>> = {
            let sessions = self.sessions.lock().expect("sessions lock");
            sessions
                .by_token
                .values()
                // Read in place: a snapshot would copy every session's
                // name, and this runs over all of them every few seconds.
                .filter(|session| {
                    session.update(|state| {
                        state.active_polls == 0
                            && now.duration_since(state.last_seen) > self.settings.session_grace
                    })
                })
                .cloned()
                .collect()
        };
        for session in expired {
            match self.end_session(&session, LeaveReason::Timeout).await {
                // It left by itself meanwhile.
                Ok(()) | Err(Error::UnknownSession) => {}
                Err(error) => tracing::warn!(%error, "announcing an expired session failed"),
            }
        }
    }

    /// Posts a message (or `/me` action) from the session to its channel:
    /// gives it its position and queues it for the store at once; the
    /// returned [`Queued`] says when it is committed. A send id that the
    /// same sender (by name) used before in the channel posts nothing and
    /// reports the earlier position, with `true` for "duplicate", once that
    /// event is committed.
    pub(crate) fn post(&self, session: &Arc<Session>, send_id: &str, kind: EventKind) -> Queued {
        let state = session.snapshot();
        self.metrics.messages_in.inc();
        let send = SendKey {
            sender: state.name.key(),
            id: send_id.to_owned(),
        };
        self.publish(&state.channel, &state.name, state.color, kind, Some(send))
    }

    /// Moves the session to `target`, announcing it in both channels, then
    /// releases its held polls, so that the history they get from the new
    /// channel already holds the session's own join. Returns false when it
    /// was there already.
    ///
    /// The join is announced first: if the store refuses it, the session
    /// stays where it was, and nothing of the move is visible. Once the
    /// join is committed the move stands, even if the leave is refused.
    pub(crate) async fn switch_channel(
        &self,
        session: &Arc<Session>,
        target: ChannelName,
        may_create: MayCreate<'_>,
    ) -> Result<bool, Error> {
        let before = session.update(|state| {
            state.switching = state.channel.name != target;
            state.clone()
        });
        if !before.switching {
            return Ok(false);
        }
        let old = before.channel.clone();
        let entered = self
            .enter_channel(&target, &session.token, may_create)
            .await;
        let (new, n_members) = match entered {
            Ok(entered) => entered,
            Err(error) => {
                session.update(|state| state.switching = false);
                session.wake.notify_waiters();
                return Err(error);
            }
        };
        // Parked polls must not be answered with the session's own leave.
        old.unpark_session(session);
        if n_members <= self.settings.presence_limit {
            let joined = self
                .publish(&new, &before.name, before.color, EventKind::Join, None)
                .committed()
                .await;
            if let Err(error) = joined {
                new.remove_member(&session.token);
                session.update(|state| state.switching = false);
                session.wake.notify_waiters();
                return Err(error);
            }
        }
        // Announced while still a member (see `end_session`).
        if old.n_members() <= self.settings.presence_limit {
            let leave = EventKind::Leave {
                reason: LeaveReason::Exit,
            };
            let left = self
                .publish(&old, &before.name, before.color, leave, None)
                .committed()
                .await;
            if let Err(error) = left {
                tracing::warn!(%error, channel = %old.name.as_str(), "announcing a leave failed");
            }
        }
        old.remove_member(&session.token);
        session.update(|state| {
            state.channel = new;
            state.switching = false;
        });
        session.wake.notify_waiters();
        Ok(true)
    }

    /// Renames the session, if nobody else online has the name; returns the
    /// position of the `nick` event.
    pub(crate) async fn rename(&self, session: &Arc<Session>, name: Name) -> Result<u64, Error> {
        let before = {
            let mut sessions = self.sessions.lock().expect("sessions lock");
            if let Some(owner) = sessions.by_name.get(&name.key()) {
                if *owner != session.token {
                    return Err(Error::NameTaken {
                        name: name.as_str().to_owned(),
                    });
                }
            }
            let before = session.update(|state| std::mem::replace(&mut state.name, name.clone()));
            sessions.by_name.remove(&before.key());
            sessions.by_name.insert(name.key(), session.token.clone());
            before
        };
        let state = session.snapshot();
        let channel = &state.channel;
        let kind = EventKind::Nick {
            to: name.as_str().to_owned(),
        };
        let announced = self
            .publish(channel, &before, state.color, kind, None)
            .committed()
            .await;
        match announced {
            Ok((seq, _)) => Ok(seq),
            Err(error) => {
                // Refused: the session keeps its name, as nobody saw it change.
                let mut sessions = self.sessions.lock().expect("sessions lock");
                if sessions.by_name.get(&name.key()) == Some(&session.token) {
                    sessions.by_name.remove(&name.key());
                }
                sessions.by_name.insert(before.key(), session.token.clone());
                session.update(|state| state.name = before);
                Err(error)
            }
        }
    }

    /// Changes the session's color and announces it; returns the position
    /// of the `color` event.
    pub(crate) async fn recolor(&self, session: &Arc<Session>, color: Color) -> Result<u64, Error> {
        let (before, state) = session.update(|state| {
            let before = std::mem::replace(&mut state.color, color);
            (before, state.clone())
        });
        let channel = &state.channel;
        let announced = self
            .publish(channel, &state.name, color, EventKind::Color, None)
            .committed()
            .await;
        if announced.is_err() {
            // Refused: the session keeps its color, as nobody saw it change.
            session.update(|state| state.color = before);
        }
        Ok(announced?.0)
    }

    /// The channels with people in them, largest first.
    pub(crate) fn list(&self) -> Vec<ChannelInfo> {
        let channels: Vec<Arc<Channel>> = self
            .channels
            .lock()
            .expect("channels lock")
            .values()
            .cloned()
            .collect();
        let mut list: Vec<ChannelInfo> = channels
            .iter()
            .map(|channel| ChannelInfo {
                name: channel.name.as_str().to_owned(),
                members: channel.n_members(),
            })
            .filter(|info| info.members > 0)
            .collect();
        list.sort_by(|a, b| b.members.cmp(&a.members).then_with(|| a.name.cmp(&b.name)));
        list
    }

    /// The people in the session's channel, by name.
    pub(crate) fn who(&self, session: &Session) -> (ChannelName, Vec<Member>) {
        let channel = session.update(|state| state.channel.clone());
        let channel_name = channel.name.clone();
        let tokens = channel.member_tokens();
        let sessions: Vec<Arc<Session>> = {
            let sessions = self.sessions.lock().expect("sessions lock");
            tokens
                .iter()
                .filter_map(|token| sessions.by_token.get(token).cloned())
                .collect()
        };
        let mut members: Vec<Member> = sessions
            .iter()
            .map(|session| {
                let state = session.snapshot();
                Member {
                    name: state.name.as_str().to_owned(),
                    color: state.color.to_string(),
                }
            })
            .collect();
        members.sort_by_key(|member| member.name.to_ascii_lowercase());
        (channel_name, members)
    }

    /// One poll: answers at once with what is after `cursor`, or parks
    /// `waiter` in the channel until there is something after it, `expiry`
    /// completes, the session changes channel, or the server stops.
    pub(crate) async fn poll<S: Deliver>(
        &self,
        session: &Arc<Session>,
        asked_channel: Option<ChannelName>,
        cursor: Option<Cursor>,
        expiry: impl Future<Output = ()>,
        waiter: &Arc<Waiter<S>>,
    ) -> Result<Polled, Error> {
        let held = session.poll_started();
        let gauge = self.metrics.held_poll();
        let started = Instant::now();
        tokio::pin!(expiry);
        let history_len = self.settings.history_on_join;
        let body = loop {
            let session_changed = session.wake.notified();
            tokio::pin!(session_changed);
            session_changed.as_mut().enable();
            let (channel, switching, ended) =
                session.update(|state| (state.channel.clone(), state.switching, state.ended));
            if ended {
                return Err(Error::UnknownSession);
            }
            let cursor = match (&asked_channel, &cursor) {
                (_, None) => break channel.history(Reset::Start, history_len),
                (Some(asked), Some(cursor)) if *asked == channel.name => cursor,
                _ => break channel.history(Reset::Switch, history_len),
            };
            // While a switch is announced, the old channel's events (the
            // session's own leave) must not answer the poll: the switch
            // wakes it when it is done.
            if switching {
                if self.is_shutting_down() {
                    break channel.empty_answer(cursor, true);
                }
                tokio::select! {
                    _ = &mut session_changed => continue,
                    () = &mut expiry => break channel.empty_answer(cursor, false),
                }
            }
            // What there is goes out even while the server stops; nothing
            // parks once it has begun to.
            let stays = || {
                !self.is_shutting_down()
                    && session.update(|state| {
                        !state.switching && !state.ended && Arc::ptr_eq(&state.channel, &channel)
                    })
            };
            let park = match channel.lookup_or_park(cursor, history_len, session, waiter, stays) {
                Lookup::Answer(body) => break body,
                Lookup::Left if self.is_shutting_down() => {
                    break channel.empty_answer(cursor, true)
                }
                Lookup::Left => continue,
                Lookup::Parked(park) => park,
            };
            // The shutdown wakes held polls through `session_changed`
            // (see `begin_shutdown`): one wait fewer to join and leave per poll.
            let outcome = tokio::select! {
                outcome = waiter.outcome() => outcome,
                _ = &mut session_changed => {
                    if park.unpark() {
                        continue;
                    }
                    waiter.outcome().await
                }
                () = &mut expiry => {
                    if park.unpark() {
                        break channel.empty_answer(cursor, false);
                    }
                    waiter.outcome().await
                }
            };
            match outcome {
                // The publish counted it, and the poll was no longer held
                // from then on (see `deliver`).
                Outcome::Sent { finish, at } => {
                    gauge.disarm();
                    held.ended_at(at);
                    return Ok(Polled::Sent { finish });
                }
                Outcome::Returned(body) => break body,
                Outcome::Unparked => continue,
            }
        };
        self.metrics.poll_answers.inc();
        self.metrics.events_out.inc_by(body.n_events as u64);
        self.metrics
            .poll_hold_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(Polled::Answer(body))
    }

    /// Answers every held poll with a reconnect hint, and refuses new sessions.
    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        // A held poll has enabled its session's wake before it checked for
        // the shutdown, so it either saw the shutdown or is woken here.
        let sessions = self.sessions.lock().expect("sessions lock");
        for session in sessions.by_token.values() {
            session.wake.notify_waiters();
        }
    }

    /// True once shutdown has begun.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Why the store cannot commit right now, if it cannot.
    pub(crate) fn store_failure(&self) -> Option<String> {
        self.store.failure()
    }

    /// Gives an event its position and queues it for the store, which shows
    /// it to the channel's polls once it is committed; `Queued::committed`
    /// waits for that.
    fn publish(
        &self,
        channel: &Arc<Channel>,
        from: &Name,
        color: Color,
        kind: EventKind,
        send: Option<SendKey>,
    ) -> Queued {
        let ts = now_ms();
        let build = |seq| {
            let event = Event {
                seq,
                ts,
                from: from.as_str().to_owned(),
                color: color.to_string(),
                kind,
            };
            Bytes::from(talk_protocol::to_json(&event))
        };
        let queue = |epoch: &Arc<str>, generation, event: StoredEvent| {
            let seq = event.seq;
            let (done, committed) = oneshot::channel();
            let to_show = self.committed.clone();
            let committed_channel = channel.clone();
            let on_commit = Box::new(move |result| {
                let event = Committed {
                    channel: committed_channel,
                    seq,
                    generation,
                    result,
                    done,
                };
                // Fails only once the runtime is gone; the sender then
                // learns that the store closed.
                let _ = to_show.send(event);
            });
            self.store
                .append(channel.name.as_str(), epoch, generation, event, on_commit);
            committed
        };
        let (seq, wait) = match channel.publish(send, build, queue) {
            Published::New { seq, queued } => (seq, Wait::Commit(queued)),
            Published::Visible(seq) => {
                return Queued {
                    seq,
                    wait: Wait::Visible,
                }
            }
            Published::InFlight { seq, original } => {
                return Queued {
                    seq,
                    wait: Wait::Original(original),
                }
            }
        };
        // The store takes jobs in order, so the prune comes after the append.
        if seq % PRUNE_EVERY == 0 {
            if let Some(up_to_seq) = channel.prunable_up_to() {
                self.store.prune(channel.name.as_str(), up_to_seq);
            }
        }
        Queued { seq, wait }
    }
}

/// An event with its position, queued for the store.
#[must_use = "an event is acknowledged only once it is committed"]
pub(crate) struct Queued {
    seq: u64,
    wait: Wait,
}

/// What a queued event's acknowledgement waits for.
enum Wait {
    /// The commit of the new event.
    Commit(oneshot::Receiver<Result<(), store::Error>>),
    /// Nothing: the event was posted before under the same send key, and
    /// is visible, so committed.
    Visible,
    /// The commit of the event posted before under the same send key, so
    /// that a retry is never acknowledged ahead of the commit it repeats,
    /// nor when that commit fails.
    Original(oneshot::Receiver<Result<(), store::Error>>),
}

impl Queued {
    /// Waits for the event's commit; returns its position, and `true` when
    /// it was a duplicate of an earlier send.
    pub(crate) async fn committed(self) -> Result<(u64, bool), Error> {
        let (outcome, duplicate) = match self.wait {
            Wait::Commit(committed) => (committed, false),
            Wait::Visible => return Ok((self.seq, true)),
            Wait::Original(original) => (original, true),
        };
        outcome.await.map_err(|_| store::Error::Closed)??;
        Ok((self.seq, duplicate))
    }
}

/// Makes committed events visible, in the order the store committed them.
///
/// This runs on the runtime rather than on the store's thread: the answers
/// it sends, and the polls it wakes, come ahead of the requests that arrive
/// meanwhile, so a broadcast's answers go out before the next polls are
/// read. Woken from another thread, polls trickled in through the
/// runtime's shared queue, between those requests (5,000 pollers at 10
/// msgs/s, BENCHMARKS.md: p50 34 → 23–27 ms together with the bench's own
/// ordering).
///
/// It takes everything committed so far in one turn. Taking events one by
/// one spends the task's cooperative budget after 128 of them, and the task
/// waits at the back of the run queue, behind every task it just queued,
/// before it shows more: under load that held acknowledgements for up to a
/// second (2,000 msgs/s to 100 channels × 100 pollers).
async fn show_committed(mut committed: mpsc::UnboundedReceiver<Committed>, metrics: Arc<Metrics>) {
    let mut ready = Vec::with_capacity(SHOWN_PER_TURN);
    while committed.recv_many(&mut ready, SHOWN_PER_TURN).await > 0 {
        for event in ready.drain(..) {
            let Committed {
                channel,
                seq,
                generation,
                result,
                done,
            } = event;
            if result.is_err() {
                // Taken back before the sender hears of it, so that its
                // retry is a new send.
                channel.take_back_uncommitted(generation);
                let _ = done.send(result);
                continue;
            }
            // The sender's acknowledgement first, so that it is not queued
            // behind every poll this event wakes; it runs only after the
            // event is visible, as nothing here awaits in between.
            let _ = done.send(result);
            if let Some(fan_out) = channel.make_visible(seq) {
                fan_out_answer(fan_out, &metrics);
            }
        }
    }
}

/// Hands the answer to the polls that were parked on the channel: the
/// first [`DELIVERED_INLINE`] at once, the rest in tasks of that many
/// each. So the acknowledgement of the send and the events committed after
/// it do not wait for thousands of writes, and a runtime with several
/// threads shares the writes out.
fn fan_out_answer(fan_out: FanOut, metrics: &Arc<Metrics>) {
    let FanOut { body, waiters } = fan_out;
    let mut waiters = waiters.into_iter();
    deliver(&body, waiters.by_ref().take(DELIVERED_INLINE), metrics);
    loop {
        let chunk: Vec<_> = waiters.by_ref().take(DELIVERED_INLINE).collect();
        if chunk.is_empty() {
            return;
        }
        let body = body.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move { deliver(&body, chunk, &metrics) });
    }
}

/// Delivers `body` to each waiter still parked, and counts the answers.
fn deliver(
    body: &PollBody,
    waiters: impl IntoIterator<Item = Arc<dyn waiter::Parked>>,
    metrics: &Metrics,
) {
    let now = Instant::now();
    let mut answered = 0;
    for waiter in waiters {
        if let Some(held) = waiter.answer(body, now) {
            metrics.poll_hold_seconds.observe(held.as_secs_f64());
            answered += 1;
        }
    }
    metrics.poll_answers.inc_by(answered);
    metrics.events_out.inc_by(answered * body.n_events as u64);
    // Their polls' own gauge guards are disarmed when they learn of it.
    metrics.polls_held.dec_by(answered as i64);
}

/// How many parked polls a fan-out answers in one go.
const DELIVERED_INLINE: usize = 256;

/// The most committed events shown in one turn of `show_committed`: as many
/// as the store commits at once.
const SHOWN_PER_TURN: usize = store::MAX_JOBS_PER_COMMIT;

/// How often (in events of a channel) the store forgets what fell out of the window.
const PRUNE_EVERY: u64 = 256;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// 128 bits from the operating system's random source, as 32 hex digits.
fn new_token() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A short random name for a new life of a channel's history.
fn new_epoch() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]))
        .collect()
}

/// A free `guest-NNNN` name; longer numbers once the short ones fill up.
fn guest_name(taken: &HashMap<String, Arc<str>>) -> Name {
    let mut upper = 10_000;
    loop {
        for _ in 0..16 {
            let name = format!("guest-{}", fastrand::u32(upper / 10..upper));
            if !taken.contains_key(&name) {
                return Name::parse(&name).expect("guest names are valid");
            }
        }
        upper *= 10;
    }
}

#[cfg(test)]
impl Hub {
    /// A hub on a fresh store in `data`, which must outlive it; on a runtime.
    pub(crate) fn for_tests(data: &std::path::Path) -> Hub {
        let metrics = Arc::new(Metrics::new());
        let (store, _closer) = Store::open(data, 100, metrics.store.clone(), None).unwrap();
        let settings = HubSettings {
            history_window: 100,
            history_on_join: 10,
            presence_limit: 10,
            session_grace: Duration::from_secs(10),
            channel_idle: Duration::from_secs(600),
            max_channels: 100,
        };
        Hub::new(settings, store, metrics)
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    fn hub(data: &tempfile::TempDir) -> Hub {
        Hub::for_tests(data.path())
    }

    fn message(text: &str) -> EventKind {
        EventKind::Message {
            text: text.to_owned(),
            id: "same".to_owned(),
        }
    }

    /// On this single-threaded runtime nothing is shown until the test
    /// awaits, so the original cannot be visible when the retry is queued.
    #[tokio::test]
    async fn a_retry_is_acknowledged_only_once_its_original_is_visible() {
        let data = tempfile::tempdir().unwrap();
        let hub = hub(&data);
        let token: Arc<str> = "ada".into();
        let lobby = ChannelName::default_channel();
        let (channel, _) = hub.enter_channel(&lobby, &token, &|| Ok(())).await.unwrap();
        let name = Name::parse("ada").unwrap();
        let color = Color::parse("ffcc00").unwrap();
        let key = || {
            Some(SendKey {
                sender: name.key(),
                id: "same".into(),
            })
        };
        let original = hub.publish(&channel, &name, color, message("hi"), key());
        let retry = hub.publish(&channel, &name, color, message("hi"), key());
        let mut retry = Box::pin(retry.committed());
        assert!(
            (&mut retry).now_or_never().is_none(),
            "acknowledged too soon"
        );
        assert_eq!(original.committed().await.unwrap(), (1, false));
        assert_eq!(retry.await.unwrap(), (1, true));
    }
}
