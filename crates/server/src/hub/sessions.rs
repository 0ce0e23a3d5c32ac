//! The hub's sessions: starting one, its name and color, moving it between
//! channels, and ending it (asked, or when it stops polling).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use talk_protocol::{ChannelName, Color, EventKind, LeaveReason, Member, Name};

use super::{Error, Hub, MayCreate, Session};
use crate::engine::{ClaimedName, EngineApi, NameTaken};

/// This server's sessions, by token; their names are the engine's.
#[derive(Default)]
pub(super) struct Sessions {
    /// Looked up for every poll. Hashed with foldhash rather than SipHash:
    /// the tokens are random and made here, so a client cannot choose keys
    /// that collide, and SipHash showed in fan-out profiles.
    by_token: foldhash::HashMap<Arc<str>, Arc<Session>>,
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

impl Hub {
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
        let ClaimedName {
            name,
            name_was_taken,
        } = self.engine.claim_name(&token, name).await;
        let session = Arc::new(Session::new(
            token.clone(),
            name.clone(),
            color,
            joined.clone(),
        ));
        {
            let mut sessions = self.sessions.lock().expect("sessions lock");
            sessions.by_token.insert(token, session.clone());
            self.metrics.sessions.set(sessions.by_token.len() as i64);
        }
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

    /// Takes a session out of the map by token, and lets go of its name.
    pub(super) fn forget_session(&self, session: &Session, name: &Name) {
        {
            let mut sessions = self.sessions.lock().expect("sessions lock");
            sessions.by_token.remove(&session.token);
            self.metrics.sessions.set(sessions.by_token.len() as i64);
        }
        self.engine.release_name(&session.token, name);
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
        channel.unpark_session(session.key());
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
        old.unpark_session(session.key());
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
        let before = session.snapshot().name;
        if self
            .engine
            .rename(&session.token, &before, &name)
            .await
            .is_err()
        {
            return Err(Error::NameTaken {
                name: name.as_str().to_owned(),
            });
        }
        session.update(|state| state.name = name.clone());
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
                // Refused: the session keeps its name, as nobody saw it
                // change; unless someone took that name meanwhile.
                match self.engine.rename(&session.token, &name, &before).await {
                    Ok(()) => session.update(|state| state.name = before),
                    Err(NameTaken) => tracing::warn!(
                        name = name.as_str(),
                        "a refused rename keeps its new name: the old one was taken meanwhile"
                    ),
                }
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

    /// The people in the session's channel, by name. It takes no turn of
    /// the session (`changes`): it changes nothing, so it need not wait
    /// for the session's sends. An ended session is unknown.
    pub(crate) fn who(&self, session: &Session) -> Result<(ChannelName, Vec<Member>), Error> {
        let (channel, ended) = session.update(|state| (state.channel.clone(), state.ended));
        if ended {
            return Err(Error::UnknownSession);
        }
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
        Ok((channel_name, members))
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
}

/// 128 bits from the operating system's random source, as 32 hex digits.
fn new_token() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
