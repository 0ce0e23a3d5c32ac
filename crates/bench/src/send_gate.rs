//! Reads before sends: the order in which one bench worker's pollers use
//! its one core.
//!
//! Thousands of simulated clients share a core; real ones each have their
//! own, and one client's next poll never delays another client's answer.
//! So a poller that has read its answer waits here before it sends its next
//! poll, and the gate lets waiting pollers send, a small batch at a time,
//! only when a turn of the worker's scheduler has read no answer: answers
//! that have arrived are read (and their latency stamped) first. Sending
//! the next polls in batches also lets the server find many of them in one
//! wake-up rather than being woken for each.
//!
//! A gate sees only its own worker's answers. Two worker processes on one
//! core each send while the other's answers wait unread, which showed as
//! the bench finishing 2–3 ms after the server in every 1,000-poller burst
//! (bench/HISTORY.md, round 10); one worker, which holds up to
//! 19,000 pollers, keeps every read ahead of every send.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::{Notify, Semaphore};

/// How many waiting pollers may send per quiet turn: small enough that an
/// answer arriving meanwhile waits for few sends (a send costs the bench
/// about as much as a read), large enough that the gate's own turns cost
/// little.
const SENDS_PER_TURN: usize = 32;

/// The gate of one worker's pollers (see the module's documentation).
#[derive(Debug)]
pub(crate) struct SendGate {
    /// Permits to send; the gate adds a batch once the last is used up.
    turns: Semaphore,
    /// Pollers waiting for a turn.
    waiting: AtomicUsize,
    /// Answers read so far, to tell a quiet turn from a busy one.
    reads: AtomicU64,
    /// Wakes the gate's task when a poller starts waiting.
    someone_waits: Notify,
}

impl Default for SendGate {
    fn default() -> Self {
        SendGate {
            turns: Semaphore::new(0),
            waiting: AtomicUsize::new(0),
            reads: AtomicU64::new(0),
            someone_waits: Notify::new(),
        }
    }
}

/// Counts a poller as waiting for as long as it lives, also when its wait
/// is dropped half-way (the run stopping, say).
struct Waiting<'gate>(&'gate AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SendGate {
    /// Notes that a poller has read an answer.
    pub(crate) fn answer_read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits until this poller may send its next poll.
    pub(crate) async fn wait_turn(&self) {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        self.someone_waits.notify_one();
        self.turns
            .acquire()
            .await
            .expect("the gate's semaphore is never closed")
            .forget();
    }

    /// Hands out turns for as long as the worker runs; spawn it beside the
    /// pollers. It sleeps while no poller waits.
    pub(crate) async fn run(&self) {
        loop {
            if self.waiting.load(Ordering::Relaxed) == 0 {
                self.someone_waits.notified().await;
                continue;
            }
            let reads_before = self.reads.load(Ordering::Relaxed);
            // Every task that was ready runs before this one runs again,
            // and so does every poller whose answer arrived meanwhile
            // (tokio wakes a yielded task after it has polled its sockets).
            tokio::task::yield_now().await;
            let quiet = self.reads.load(Ordering::Relaxed) == reads_before;
            if quiet && self.turns.available_permits() == 0 {
                self.turns.add_permits(SENDS_PER_TURN);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::task::JoinHandle;

    use super::*;

    /// A gate with its task running (abort the handle at the end).
    fn running_gate() -> (Arc<SendGate>, JoinHandle<()>) {
        let gate = Arc::new(SendGate::default());
        let task = tokio::spawn({
            let gate = gate.clone();
            async move { gate.run().await }
        });
        (gate, task)
    }

    /// A poller that waits for its turn, then counts its send in `sent`.
    fn poller(gate: &Arc<SendGate>, sent: &Arc<AtomicUsize>) -> JoinHandle<()> {
        let (gate, sent) = (gate.clone(), sent.clone());
        tokio::spawn(async move {
            gate.wait_turn().await;
            sent.fetch_add(1, Ordering::Relaxed);
        })
    }

    #[tokio::test(flavor = "current_thread")]
    async fn waiting_pollers_all_get_their_turn_once_reads_stop() {
        let (gate, gate_task) = running_gate();
        let sent = Arc::new(AtomicUsize::new(0));
        let pollers: Vec<_> = (0..100).map(|_| poller(&gate, &sent)).collect();
        for poller in pollers {
            tokio::time::timeout(Duration::from_secs(5), poller)
                .await
                .expect("every waiting poller gets a turn")
                .expect("the poller's task ends well");
        }
        assert_eq!(sent.load(Ordering::Relaxed), 100);
        assert_eq!(gate.waiting.load(Ordering::Relaxed), 0);
        gate_task.abort();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn no_poller_sends_while_answers_keep_being_read() {
        let (gate, gate_task) = running_gate();
        let sent = Arc::new(AtomicUsize::new(0));
        let poller = poller(&gate, &sent);
        // A reader that reads an answer on every turn of the scheduler.
        for _ in 0..1_000 {
            gate.answer_read();
            tokio::task::yield_now().await;
        }
        assert_eq!(sent.load(Ordering::Relaxed), 0, "a read on every turn");
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        poller.await.expect("the poller's task ends well");
        assert_eq!(sent.load(Ordering::Relaxed), 1, "sent once reads stopped");
        gate_task.abort();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_dropped_wait_is_no_longer_counted() {
        let gate = SendGate::default();
        let wait = gate.wait_turn();
        let outcome = tokio::time::timeout(Duration::from_millis(10), wait).await;
        assert!(outcome.is_err(), "no turn without the gate's task");
        assert_eq!(gate.waiting.load(Ordering::Relaxed), 0);
    }
}
