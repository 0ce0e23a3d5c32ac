//! Publishing: an event gets its position and goes to the store; once it
//! is committed it is shown to the channel's parked polls (or, when the
//! commit failed, taken back), and its sender is answered.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use talk_protocol::{Color, Event, EventKind, Name};
use tokio::sync::{mpsc, oneshot};

use super::channel::{Channel, FanOut, Published};
use super::{waiter, Error, Hub, PollBody, Session};
use crate::engine::EngineApi;
use crate::metrics::Metrics;
use crate::store::{self, SendKey, StoredEvent};

/// An event the store has committed (or failed to), on its way from the
/// store's thread to the runtime, where it is made visible.
pub(super) struct Committed {
    channel: Arc<Channel>,
    seq: u64,
    /// The channel's generation when the event was queued.
    generation: u64,
    result: Result<(), store::Error>,
    done: oneshot::Sender<Result<(), store::Error>>,
}

impl Hub {
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

    /// Gives an event its position and queues it for the store, which shows
    /// it to the channel's polls once it is committed; `Queued::committed`
    /// waits for that.
    pub(super) fn publish(
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
            self.engine
                .append(&channel.name, epoch, generation, event, on_commit);
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
        // The engine takes jobs in order, so the prune comes after the append.
        if seq % PRUNE_EVERY == 0 {
            if let Some(up_to_seq) = channel.prunable_up_to() {
                self.engine.prune(&channel.name, up_to_seq);
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
pub(super) async fn show_committed(
    mut committed: mpsc::UnboundedReceiver<Committed>,
    metrics: Arc<Metrics>,
) {
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

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use talk_protocol::ChannelName;

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
