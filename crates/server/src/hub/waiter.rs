//! A held poll's place in its channel, and how a publish answers it.
//!
//! A poll with nothing to answer yet parks its connection's [`Waiter`] in
//! the channel. When events become visible, the task that shows them hands
//! the one answer they make to every parked waiter in turn, and each
//! waiter's [`Deliver`] sends it at once if it can: the HTTP layer's writes
//! it to the socket. So a broadcast to 10,000 held polls is 10,000 writes in
//! one loop, not 10,000 tasks woken and run one after the other, and the
//! poll's own task hears of it only when its client sends the next request.
//! A waiter that cannot send at once is handed the answer and woken, and its
//! task sends it.
//!
//! Each park is claimed exactly once, by whoever moves the waiter's state
//! out of `PARKED` first: the publish that answers it, or the poll itself
//! (timed out, or its session changed), or the hub unparking a session that
//! is switching channels or ending.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::answer::PollBody;

/// How a parked poll's answer leaves: implemented by the HTTP layer.
pub(crate) trait Deliver: Send + Sync + 'static {
    /// Sends `body` as the answer of the parked poll, if that can be done
    /// without waiting. Called by the task that makes events visible, for
    /// every parked poll of the channel, so it must be quick.
    fn deliver(&self, body: &PollBody) -> Delivery;
}

/// What [`Deliver::deliver`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Sent in full: the poll's task need not wake for it.
    Sent,
    /// Begun but not finished: the poll's task wakes to finish it.
    Begun,
    /// Nothing was sent: the poll's task wakes and answers with the body.
    Declined,
}

/// A waiter that never sends by itself: its task is woken with the answer.
pub(crate) struct WakeTask;

impl Deliver for WakeTask {
    fn deliver(&self, _body: &PollBody) -> Delivery {
        Delivery::Declined
    }
}

/// Not parked (between polls, or the outcome has been taken).
const IDLE: u8 = 0;
/// In a channel's list of parked polls.
const PARKED: u8 = 1;
/// Claimed by a publish, which is delivering it now.
const DELIVERING: u8 = 2;
/// Sent in full by the publish.
const SENT: u8 = 3;
/// Begun by the publish; the poll's task finishes the sending.
const BEGUN: u8 = 4;
/// Declined by the sink: the answer waits in the slot for the poll's task.
const RETURNED: u8 = 5;
/// Unparked by the hub: the poll looks at its session again.
const UNPARKED: u8 = 6;
/// Set by the poll's task when it found the waiter `DELIVERING` and must be
/// woken when the delivery is done (only when the runtime has threads).
const WAKE_ME: u8 = 0x80;

/// One connection's parked poll, reused by each poll on the connection.
pub(crate) struct Waiter<S> {
    state: AtomicU8,
    slot: Mutex<Slot>,
    /// Wakes the poll's task when it has to act: never for a poll sent in full.
    wake: Notify,
    sink: S,
}

struct Slot {
    /// When the current park began, for the hold-time metric.
    parked_at: Instant,
    /// When the publish sent the answer.
    sent_at: Instant,
    /// The answer the sink declined to send.
    returned: Option<PollBody>,
}

/// How a park ended, as the poll's task learns it.
pub(crate) enum Outcome {
    /// The publish sent the answer at `at`; `finish` when the sink began it
    /// and the task must send the rest.
    Sent { finish: bool, at: Instant },
    /// The task sends this answer itself.
    Returned(PollBody),
    /// The hub unparked the poll: look at the session again.
    Unparked,
}

impl<S: Deliver> Waiter<S> {
    pub(crate) fn new(sink: S) -> Self {
        Waiter {
            state: AtomicU8::new(IDLE),
            slot: Mutex::new(Slot {
                parked_at: Instant::now(),
                sent_at: Instant::now(),
                returned: None,
            }),
            wake: Notify::new(),
            sink,
        }
    }

    /// How this waiter's answers leave.
    pub(crate) fn sink(&self) -> &S {
        &self.sink
    }

    /// The sink, once nothing else holds the waiter.
    pub(crate) fn into_sink(self) -> S {
        self.sink
    }

    /// The outcome, once the park has ended.
    fn take_outcome(&self) -> Option<Outcome> {
        let sent_at = || self.slot.lock().expect("waiter lock").sent_at;
        let outcome = match self.state.load(Ordering::Acquire) & !WAKE_ME {
            SENT => Outcome::Sent {
                finish: false,
                at: sent_at(),
            },
            BEGUN => Outcome::Sent {
                finish: true,
                at: sent_at(),
            },
            RETURNED => {
                let body = self.slot.lock().expect("waiter lock").returned.take();
                Outcome::Returned(body.expect("a returned answer is in the slot"))
            }
            UNPARKED => Outcome::Unparked,
            _ => return None,
        };
        self.state.store(IDLE, Ordering::Release);
        Some(outcome)
    }

    /// Completes when the park has ended. It checks the state each time the
    /// task is polled, so a poll sent in full completes when anything wakes
    /// the task (its client's next request, a hang-up, the poll's timer).
    pub(super) async fn outcome(&self) -> Outcome {
        let mut notified = pin!(self.wake.notified());
        std::future::poll_fn(|cx| loop {
            if let Some(outcome) = self.take_outcome() {
                return Poll::Ready(outcome);
            }
            if self.state.load(Ordering::Acquire) & !WAKE_ME == DELIVERING {
                // Another thread is delivering: ask to be woken, unless it
                // finished meanwhile.
                let before = self.state.fetch_or(WAKE_ME, Ordering::AcqRel);
                if before & !WAKE_ME != DELIVERING {
                    continue;
                }
            }
            match notified.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                // Woken: wait again (registered by the next turn's poll),
                // after looking at the state.
                Poll::Ready(()) => notified.set(self.wake.notified()),
            }
        })
        .await
    }
}

/// A parked waiter as its channel lists it, whatever its sink.
pub(crate) trait Parked: Send + Sync {
    /// Marks the waiter parked; called under the channel's lock, just
    /// before the channel lists it.
    fn park(&self);

    /// Takes the park back for the poll's task, if nobody has claimed it:
    /// true when it was still parked (the caller then unlists it).
    fn unpark_self(&self) -> bool;

    /// Delivers `body` if the waiter is still parked; returns how long it
    /// was held, or `None` when somebody else had claimed it.
    fn answer(&self, body: &PollBody, now: Instant) -> Option<Duration>;

    /// Unparks the waiter for the hub and wakes its task; false when
    /// somebody else had claimed it.
    fn unpark(&self) -> bool;
}

impl<S: Deliver> Parked for Waiter<S> {
    fn park(&self) {
        self.slot.lock().expect("waiter lock").parked_at = Instant::now();
        self.state.store(PARKED, Ordering::Release);
    }

    fn unpark_self(&self) -> bool {
        self.state
            .compare_exchange(PARKED, IDLE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn answer(&self, body: &PollBody, now: Instant) -> Option<Duration> {
        self.state
            .compare_exchange(PARKED, DELIVERING, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        let delivery = self.sink.deliver(body);
        let mut slot = self.slot.lock().expect("waiter lock");
        let held = now.saturating_duration_since(slot.parked_at);
        let (next, wake) = match delivery {
            Delivery::Sent => (SENT, false),
            Delivery::Begun => (BEGUN, true),
            Delivery::Declined => {
                slot.returned = Some(body.clone());
                (RETURNED, true)
            }
        };
        slot.sent_at = now;
        drop(slot);
        let before = self.state.swap(next, Ordering::AcqRel);
        if wake || before & WAKE_ME != 0 {
            self.wake.notify_one();
        }
        Some(held)
    }

    fn unpark(&self) -> bool {
        let unparked = self
            .state
            .compare_exchange(PARKED, UNPARKED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if unparked {
            self.wake.notify_one();
        }
        unparked
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use bytes::Bytes;
    use futures::FutureExt;

    use super::*;

    /// A sink that answers as told and counts its deliveries.
    struct Scripted {
        delivery: Delivery,
        calls: AtomicUsize,
    }

    fn waiter(delivery: Delivery) -> Waiter<Scripted> {
        Waiter::new(Scripted {
            delivery,
            calls: AtomicUsize::new(0),
        })
    }

    impl Deliver for Scripted {
        fn deliver(&self, _body: &PollBody) -> Delivery {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.delivery
        }
    }

    fn body() -> PollBody {
        PollBody {
            json: Bytes::from_static(b"{}"),
            n_events: 1,
        }
    }

    /// The outcome if the park has ended, without waiting.
    fn outcome_now(waiter: &Waiter<Scripted>) -> Option<Outcome> {
        waiter.outcome().now_or_never()
    }

    #[test]
    fn a_park_is_claimed_once() {
        let waiter = waiter(Delivery::Sent);
        waiter.park();
        assert!(waiter.answer(&body(), Instant::now()).is_some());
        assert!(waiter.answer(&body(), Instant::now()).is_none());
        assert!(!waiter.unpark_self(), "the publish claimed it");
        assert!(!waiter.unpark());
        assert_eq!(waiter.sink().calls.load(Ordering::Relaxed), 1);
        assert!(matches!(
            outcome_now(&waiter),
            Some(Outcome::Sent { finish: false, .. })
        ));
        assert!(outcome_now(&waiter).is_none(), "the outcome is taken once");
    }

    #[test]
    fn a_poll_that_takes_its_park_back_is_not_answered() {
        let waiter = waiter(Delivery::Sent);
        waiter.park();
        assert!(outcome_now(&waiter).is_none(), "still parked");
        assert!(waiter.unpark_self());
        assert!(waiter.answer(&body(), Instant::now()).is_none());
        assert_eq!(waiter.sink().calls.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn each_delivery_ends_the_park_as_it_should() {
        let waiter = waiter(Delivery::Begun);
        waiter.park();
        waiter.answer(&body(), Instant::now());
        assert!(matches!(
            outcome_now(&waiter),
            Some(Outcome::Sent { finish: true, .. })
        ));
        let waiter = self::waiter(Delivery::Declined);
        waiter.park();
        waiter.answer(&body(), Instant::now());
        let Some(Outcome::Returned(returned)) = outcome_now(&waiter) else {
            panic!("a declined answer goes back to the poll");
        };
        assert_eq!(returned.json, body().json);
        let waiter = self::waiter(Delivery::Sent);
        waiter.park();
        assert!(waiter.unpark());
        assert!(matches!(outcome_now(&waiter), Some(Outcome::Unparked)));
    }

    #[tokio::test]
    async fn a_declined_answer_wakes_the_waiting_poll() {
        let waiter = std::sync::Arc::new(waiter(Delivery::Declined));
        waiter.park();
        let polling = tokio::spawn({
            let waiter = waiter.clone();
            async move { matches!(waiter.outcome().await, Outcome::Returned(_)) }
        });
        tokio::task::yield_now().await;
        waiter.answer(&body(), Instant::now());
        assert!(polling.await.unwrap());
    }
}
