//! `POST /poll`: the long-poll.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use talk_protocol::{ChannelName, PollRequest};

use crate::http::answer::chat_answer;
use crate::http::error::ApiError;
use crate::http::request::JsonBody;
use crate::http::state::AppState;
use crate::hub::{Deliver, Polled, Session, Waiter, WakeTask};

pub(crate) async fn poll(
    State(app): State<AppState>,
    JsonBody(request): JsonBody<PollRequest>,
) -> Response {
    // Answered through hyper: the poll's task sends the answer.
    let waiter = Arc::new(Waiter::new(WakeTask));
    match answer(&app, request, &mut None, &waiter, tokio::time::sleep).await {
        Ok(Polled::Answer(body)) => chat_answer(body.json),
        Ok(Polled::Sent { .. }) => unreachable!("a WakeTask waiter sends nothing itself"),
        Err(error) => app.error_answer(error),
    }
}

/// Answers one poll, holding it until there is something to say.
///
/// `last_session` is the session of the connection's previous poll: a
/// connection nearly always polls for one session, and the token map
/// behind its lock showed in fan-out profiles. A session that has ended
/// since is refused by the hub all the same. `hold_for` makes the wait that
/// ends a held poll with an empty answer, given how long to hold it (the
/// connection's own timer, or a new one). `waiter` is what the poll parks
/// while it waits; its sink may send the answer itself.
pub(crate) async fn answer<Expiry: Future<Output = ()>, S: Deliver>(
    app: &AppState,
    request: PollRequest,
    last_session: &mut Option<Arc<Session>>,
    waiter: &Arc<Waiter<S>>,
    hold_for: impl FnOnce(Duration) -> Expiry,
) -> Result<Polled, ApiError> {
    let session = match last_session {
        Some(session) if same_token(&session.token, &request.token) => session.clone(),
        _ => {
            let session = app.hub.session(&request.token)?;
            *last_session = Some(session.clone());
            session
        }
    };
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
        .poll(&session, channel, request.cursor, hold_for(wait), waiter)
        .await?;
    Ok(polled)
}

/// Compares tokens in time that does not depend on where they differ: the
/// connection may be a proxy's, carrying other people's polls.
fn same_token(known: &str, asked: &str) -> bool {
    known.len() == asked.len()
        && known
            .bytes()
            .zip(asked.bytes())
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
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
    fn tokens_are_the_same_only_when_every_byte_is() {
        assert!(same_token("abc123", "abc123"));
        assert!(!same_token("abc123", "abc124"));
        assert!(!same_token("abc123", "xbc123"));
        assert!(!same_token("abc123", "abc12"));
        assert!(!same_token("", "a"));
    }

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
