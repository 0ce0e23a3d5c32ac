//! One poll: answered at once with what is after its cursor, or parked in
//! its channel until there is something, its time is up, its session moves
//! or ends, or the server stops.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use talk_protocol::{ChannelName, Cursor, Reset};

use super::channel::Lookup;
use super::waiter::Outcome;
use super::{Deliver, Error, Hub, PollBody, Session, Waiter};

/// How a poll ended.
pub(crate) enum Polled {
    /// The answer, for the poll's task to send.
    Answer(PollBody),
    /// The waiter's sink sent the answer; with `finish`, it began and the
    /// poll's task must send the rest.
    Sent { finish: bool },
}

impl Hub {
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
            let park =
                match channel.lookup_or_park(cursor, history_len, session.key(), waiter, stays) {
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
}
