//! Every open connection, so that the server can close some when it runs
//! short of files: those stalled in the middle of a request first, the one
//! that began it longest ago first, then idle keep-alive connections, the
//! longest idle first. Never a connection answering a request, which
//! includes every held poll.
//!
//! A connection is one slot here for its whole life, whichever front
//! serves it; what it is doing is its [`Phase`], which it updates itself
//! without taking the registry's lock. The lock is taken when a
//! connection opens, is handed over and closes, and to choose connections
//! to close, which reads every phase: that happens only near the limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::Waker;

use slab::Slab;

use super::phase::{Activity, Deadline, Phase, Seen};

/// The open connections.
#[derive(Default)]
pub(crate) struct Registry {
    entries: Mutex<Slab<Entry>>,
    /// Connections chosen to be closed whose tasks have not ended yet:
    /// their files are about to be free.
    n_closing: AtomicUsize,
}

/// One connection, as the registry knows it. Weak, so that a connection's
/// socket closes when its task ends, whatever the registry holds.
enum Entry {
    /// Served by the lean path (`connection`).
    Lean(Weak<dyn LeanConnection>),
    /// Served by hyper and the router.
    HandedOver(Weak<HandedOver>),
    /// Chosen to be closed; its task has not ended yet.
    Closing,
}

/// What a connection served by the lean path shares with the registry: a
/// trait, so that the registry does not import the connection layer back
/// (the lean path registers itself here), and so that connections over
/// other streams can share one registry. Only the rare choice of
/// connections to close calls through it.
pub(crate) trait LeanConnection: Send + Sync {
    /// What the connection is doing.
    fn phase(&self) -> &Phase;
    /// Shuts the socket down both ways, so that the connection's task,
    /// waiting for bytes, finds it closed, and the client learns at once.
    fn shut_down(&self);
}

/// What a connection handed over to hyper shares with the registry.
pub(crate) struct HandedOver {
    pub(crate) phase: Phase,
    /// The task that reads the connection, while it waits for bytes: woken
    /// when the connection is chosen to be closed.
    reader: Mutex<Option<Waker>>,
}

impl HandedOver {
    /// A connection handed over while it reads a request due by `deadline`.
    pub(crate) fn reading(deadline: Deadline) -> Self {
        HandedOver {
            phase: Phase::new(Activity::Reading(deadline)),
            reader: Mutex::new(None),
        }
    }

    /// Notes the task to wake if the connection is chosen to be closed.
    pub(crate) fn wake_on_close(&self, waker: &Waker) {
        let mut reader = self.reader.lock().expect("reader lock");
        if !reader.as_ref().is_some_and(|known| known.will_wake(waker)) {
            *reader = Some(waker.clone());
        }
    }
}

/// How many connections were closed for room, by what they were doing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed {
    pub(crate) reading: usize,
    pub(crate) idle: usize,
}

impl Closed {
    pub(crate) fn total(self) -> usize {
        self.reading + self.idle
    }
}

impl Registry {
    /// Enters a connection of the connection layer, until the returned
    /// registration is dropped.
    pub(crate) fn register<C: LeanConnection + 'static>(
        &self,
        connection: &Arc<C>,
    ) -> Registration<'_> {
        let connection: Weak<C> = Arc::downgrade(connection);
        let connection: Weak<dyn LeanConnection> = connection;
        let entry = Entry::Lean(connection);
        let key = self.entries.lock().expect("registry lock").insert(entry);
        Registration {
            registry: self,
            key,
        }
    }

    /// How many connections were chosen to be closed and are not closed yet.
    pub(crate) fn n_closing(&self) -> usize {
        self.n_closing.load(Ordering::Acquire)
    }

    /// Closes up to `count` connections to make room: stalled requests
    /// first, the earliest begun first, then idle connections, the longest
    /// idle first. A connection closes once its task sees it; until then
    /// it counts in [`Registry::n_closing`].
    pub(crate) fn close_for_room(&self, count: usize) -> Closed {
        let mut entries = self.entries.lock().expect("registry lock");
        // Stalled requests before idle connections; within each, the
        // earliest deadline (the oldest) first.
        let mut candidates: Vec<(bool, Deadline, usize, Seen)> = entries
            .iter()
            .filter_map(|(key, entry)| {
                let seen = entry.phase_seen()?;
                match seen.activity() {
                    Activity::Reading(deadline) => Some((false, deadline, key, seen)),
                    Activity::Idle(deadline) => Some((true, deadline, key, seen)),
                    Activity::Answering | Activity::Closing => None,
                }
            })
            .collect();
        if candidates.len() > count {
            candidates.select_nth_unstable_by_key(count, |&(idle, deadline, ..)| (idle, deadline));
            candidates.truncate(count);
        }
        let mut closed = Closed::default();
        for (idle, _, key, seen) in candidates {
            if entries[key].close_if_still(seen) {
                entries[key] = Entry::Closing;
                self.n_closing.fetch_add(1, Ordering::AcqRel);
                if idle {
                    closed.idle += 1;
                } else {
                    closed.reading += 1;
                }
            }
        }
        closed
    }
}

impl Entry {
    /// What the connection is doing, unless it is closing or closed.
    fn phase_seen(&self) -> Option<Seen> {
        match self {
            Entry::Lean(connection) => Some(connection.upgrade()?.phase().seen()),
            Entry::HandedOver(handed_over) => Some(handed_over.upgrade()?.phase.seen()),
            Entry::Closing => None,
        }
    }

    /// Closes the connection if it is still doing what `seen` says: false
    /// if it has moved on (a request arrived whole, say) or has closed.
    fn close_if_still(&self, seen: Seen) -> bool {
        match self {
            Entry::Lean(connection) => connection.upgrade().is_some_and(|connection| {
                // Shutting the socket down ends the task's wait for bytes.
                connection.phase().close_if_still(seen) && {
                    connection.shut_down();
                    true
                }
            }),
            Entry::HandedOver(handed_over) => handed_over.upgrade().is_some_and(|handed_over| {
                handed_over.phase.close_if_still(seen) && {
                    let reader = handed_over.reader.lock().expect("reader lock").take();
                    if let Some(reader) = reader {
                        reader.wake();
                    }
                    true
                }
            }),
            Entry::Closing => false,
        }
    }
}

/// A connection's place in the registry, given up when dropped.
pub(crate) struct Registration<'registry> {
    registry: &'registry Registry,
    key: usize,
}

impl Registration<'_> {
    /// The connection is now served by hyper: false if it was chosen to be
    /// closed meanwhile.
    pub(crate) fn hand_over(&self, handed_over: &Arc<HandedOver>) -> bool {
        let mut entries = self.registry.entries.lock().expect("registry lock");
        let entry = &mut entries[self.key];
        if matches!(entry, Entry::Closing) {
            return false;
        }
        *entry = Entry::HandedOver(Arc::downgrade(handed_over));
        true
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let entry = self
            .registry
            .entries
            .lock()
            .expect("registry lock")
            .remove(self.key);
        if let Entry::Closing = entry {
            self.registry.n_closing.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
