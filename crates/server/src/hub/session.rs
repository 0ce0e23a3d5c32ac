//! A session: one person online, known by a secret token.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use talk_protocol::{Color, Name};
use tokio::sync::Notify;

use super::channel::{Channel, SessionKey};

/// One person online.
pub(crate) struct Session {
    /// The secret the client sends with every request.
    pub(crate) token: Arc<str>,
    state: Mutex<SessionState>,
    /// Wakes the session's held polls when its channel changes or it ends.
    pub(crate) wake: Notify,
    /// Serialises the session's own changes (commands, ending), so that a
    /// `/join` racing an expiry cannot leave the session half in a channel.
    /// A message holds it only until it has its position, not through its
    /// commit, so that a session's sends do not wait for each other.
    pub(crate) changes: tokio::sync::Mutex<()>,
}

/// What a session is now.
#[derive(Clone)]
pub(crate) struct SessionState {
    pub(crate) name: Name,
    pub(crate) color: Color,
    /// The channel the session is in, held directly so that a poll does
    /// not look it up by name.
    pub(crate) channel: Arc<Channel>,
    /// Set while a channel switch is being announced: held polls wait for
    /// the switch instead of answering with the old channel's last events.
    pub(crate) switching: bool,
    /// Polls held right now; a session with one is online whatever its age.
    pub(crate) active_polls: u32,
    /// When the session last had a poll or request.
    pub(crate) last_seen: Instant,
    pub(crate) ended: bool,
}

impl Session {
    /// What tells this session's polls apart in a channel's parked list.
    pub(crate) fn key(&self) -> SessionKey {
        SessionKey::of(self)
    }

    pub(crate) fn new(token: Arc<str>, name: Name, color: Color, channel: Arc<Channel>) -> Self {
        Session {
            token,
            state: Mutex::new(SessionState {
                name,
                color,
                channel,
                switching: false,
                active_polls: 0,
                last_seen: Instant::now(),
                ended: false,
            }),
            wake: Notify::new(),
            changes: tokio::sync::Mutex::new(()),
        }
    }

    /// A copy of the session's state.
    pub(crate) fn snapshot(&self) -> SessionState {
        self.state.lock().expect("session lock").clone()
    }

    /// Whether the session has ended: then nothing it asks for is done.
    pub(crate) fn has_ended(&self) -> bool {
        self.state.lock().expect("session lock").ended
    }

    /// Changes the state under its lock.
    pub(crate) fn update<T>(&self, change: impl FnOnce(&mut SessionState) -> T) -> T {
        change(&mut self.state.lock().expect("session lock"))
    }

    /// Marks a poll as held until the returned guard is dropped.
    pub(crate) fn poll_started(self: &Arc<Self>) -> HeldPoll {
        self.update(|state| {
            state.active_polls += 1;
            state.last_seen = Instant::now();
        });
        HeldPoll {
            session: self.clone(),
            ended_at: None,
        }
    }
}

/// A poll being held; dropping it (also when the client hangs up) updates
/// the session's last-seen time, from which its expiry is counted.
pub(crate) struct HeldPoll {
    session: Arc<Session>,
    /// When its answer went out, if that was before the guard is dropped.
    ended_at: Option<Instant>,
}

impl HeldPoll {
    /// Ends the held poll as of `at`, when its answer went out, which may
    /// be a while before its task learns of it.
    pub(crate) fn ended_at(mut self, at: Instant) {
        self.ended_at = Some(at);
    }
}

impl Drop for HeldPoll {
    fn drop(&mut self) {
        let ended_at = self.ended_at.unwrap_or_else(Instant::now);
        self.session.update(|state| {
            state.active_polls -= 1;
            state.last_seen = state.last_seen.max(ended_at);
        });
    }
}
