//! `POST /poll`: the long-poll, for either front.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use talk_protocol::{ChannelName, PollRequest};

use crate::http::error::ApiError;
use crate::http::state::App;
use crate::hub::{Deliver, Polled, Session, Waiter};

/// Answers one poll of `session`, holding it until there is something to
/// say. `waiter` is what the poll parks while it waits, and its sink may
/// send the answer itself; `hold_for` makes the wait that ends a held poll
/// with an empty answer, given how long to hold it. Each front has its
/// own: the lean path's sink writes to the socket and its timer is the
/// connection's; the router's waiter wakes its task.
pub(crate) async fn answer<Expiry: Future<Output = ()>, S: Deliver>(
    app: &App,
    session: &Arc<Session>,
    request: PollRequest,
    waiter: &Arc<Waiter<S>>,
    hold_for: impl FnOnce(Duration) -> Expiry,
) -> Result<Polled, ApiError> {
    let channel = request
        .channel
        .as_deref()
        .map(ChannelName::parse)
        .transpose()?;
    if channel.is_none() && request.cursor.is_some() {
        return Err(ApiError::BadRequest(
            "a cursor goes with the channel it belongs to".into(),
        ));
    }
    let wait = hold_time(app.config.poll_timeout, request.wait_ms);
    let polled = app
        .hub
        .poll(session, channel, request.cursor, hold_for(wait), waiter)
        .await?;
    Ok(polled)
}

/// How long to hold a poll: what the client asked for, capped by the poll
/// timeout; or the poll timeout plus up to 10% of random jitter, so that
/// clients that started together do not keep polling in lockstep.
fn hold_time(poll_timeout: Duration, asked_ms: Option<u64>) -> Duration {
    match asked_ms {
        Some(ms) => Duration::from_millis(ms).min(poll_timeout),
        None => poll_timeout + poll_timeout.mul_f64(fastrand::f64() * 0.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_within_the_timeout_and_its_jitter() {
        let timeout = Duration::from_secs(25);
        assert_eq!(hold_time(timeout, Some(100)), Duration::from_millis(100));
        assert_eq!(hold_time(timeout, Some(60_000)), timeout);
        let held: Vec<Duration> = (0..50).map(|_| hold_time(timeout, None)).collect();
        assert!(held
            .iter()
            .all(|hold| *hold >= timeout && *hold <= timeout.mul_f64(1.1)));
        assert!(
            held.iter().any(|hold| *hold != held[0]),
            "the hold times should vary"
        );
    }
}
