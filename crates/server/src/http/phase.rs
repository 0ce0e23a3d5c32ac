//! What a connection is doing, in one word that other tasks can read:
//! waiting for a request, reading one (and until when), answering one, or
//! chosen to be closed.
//!
//! The registry of connections reads it to choose which connections to
//! close when the process runs short of files, and the reader of a
//! connection handed over to hyper takes its request deadline from it. A
//! held poll is "answering": nothing ever closes it for room.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The request timeout, and the origin that deadlines in a [`Phase`] count
/// from (it is also where the connections' grid of long waits starts).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestClock {
    /// How long a request may take to arrive whole, from its first byte,
    /// and how long a connection may wait for one.
    pub(crate) timeout: Duration,
    pub(crate) origin: Instant,
}

impl RequestClock {
    /// The deadline of a request (or of a wait for one) that begins now.
    pub(crate) fn deadline_from_now(&self) -> Deadline {
        self.deadline(Instant::now() + self.timeout)
    }

    /// `at`, as kept in a phase: in whole microseconds, rounded up, so
    /// that a deadline read back never falls before the one written.
    pub(crate) fn deadline(&self, at: Instant) -> Deadline {
        let since_origin = at.saturating_duration_since(self.origin);
        let micros = since_origin.as_nanos().div_ceil(1_000);
        Deadline(
            u64::try_from(micros)
                .unwrap_or(MICROS_MASK)
                .min(MICROS_MASK),
        )
    }

    /// The instant of a deadline kept in a phase.
    pub(crate) fn instant(&self, deadline: Deadline) -> Instant {
        self.origin + Duration::from_micros(deadline.0)
    }
}

/// A deadline, in microseconds after the [`RequestClock`]'s origin: small
/// enough to share a word with the phase, fine enough to tell apart the
/// ages of connections that began their requests one after the other.
/// Later deadlines compare greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline(u64);

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activity {
    /// Waiting for the first byte of a request, at most until the deadline.
    Idle(Deadline),
    /// Reading a request that must be whole by the deadline.
    Reading(Deadline),
    /// Answering a whole request, which may be a held poll.
    Answering,
    /// Being closed: its request came too late, or the connection was
    /// chosen to make room for new ones. Nothing more is read or answered.
    Closing,
}

/// The connection was chosen to be closed; it must not begin anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closing;

/// One connection's [`Activity`], readable from any thread.
///
/// Two bits say what the connection does and the rest hold the deadline,
/// so that each change is one atomic exchange and a reader never sees a
/// phase with another phase's deadline.
#[derive(Debug)]
pub(crate) struct Phase(AtomicU64);

const TAG_SHIFT: u32 = 62;
const MICROS_MASK: u64 = (1 << TAG_SHIFT) - 1;
const IDLE: u64 = 0;
const READING: u64 = 1;
const ANSWERING: u64 = 2;
const CLOSING: u64 = 3;

/// What a phase's word says, with the word itself, so that the registry can
/// close the connection only if it is still doing what it was seen doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    word: u64,
}

impl Seen {
    pub(crate) fn activity(self) -> Activity {
        let deadline = Deadline(self.word & MICROS_MASK);
        match self.word >> TAG_SHIFT {
            IDLE => Activity::Idle(deadline),
            READING => Activity::Reading(deadline),
            ANSWERING => Activity::Answering,
            _ => Activity::Closing,
        }
    }
}

fn word(activity: Activity) -> u64 {
    match activity {
        Activity::Idle(deadline) => (IDLE << TAG_SHIFT) | deadline.0,
        Activity::Reading(deadline) => (READING << TAG_SHIFT) | deadline.0,
        Activity::Answering => ANSWERING << TAG_SHIFT,
        Activity::Closing => CLOSING << TAG_SHIFT,
    }
}

impl Phase {
    pub(crate) fn new(activity: Activity) -> Phase {
        Phase(AtomicU64::new(word(activity)))
    }

    /// What the connection is doing now.
    pub(crate) fn seen(&self) -> Seen {
        Seen {
            word: self.0.load(Ordering::Acquire),
        }
    }

    /// Moves the connection on to `activity`, unless it has been chosen to
    /// be closed, which stays.
    pub(crate) fn enter(&self, activity: Activity) -> Result<(), Closing> {
        let previous = self.0.swap(word(activity), Ordering::AcqRel);
        if previous >> TAG_SHIFT == CLOSING {
            // `Closing` is written once, and whoever wrote it never looks
            // at the connection's phase again: putting it back is safe.
            self.0.store(previous, Ordering::Release);
            return Err(Closing);
        }
        Ok(())
    }

    /// Marks the connection to be closed if it is still doing what `seen`
    /// says; false if it has moved on since.
    pub(crate) fn close_if_still(&self, seen: Seen) -> bool {
        self.0
            .compare_exchange(
                seen.word,
                word(Activity::Closing),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_reads_back_what_was_entered() {
        let clock = RequestClock {
            timeout: Duration::from_secs(10),
            origin: Instant::now(),
        };
        let later = clock.deadline(clock.origin + Duration::from_nanos(12_345_001));
        assert_eq!(later, Deadline(12_346), "rounded up to the microsecond");
        assert!(clock.instant(later) >= clock.origin + Duration::from_nanos(12_345_001));
        let phase = Phase::new(Activity::Idle(later));
        assert_eq!(phase.seen().activity(), Activity::Idle(later));
        for activity in [
            Activity::Reading(Deadline(MICROS_MASK)),
            Activity::Answering,
            Activity::Idle(Deadline(0)),
        ] {
            assert_eq!(phase.enter(activity), Ok(()));
            assert_eq!(phase.seen().activity(), activity);
        }
    }

    #[test]
    fn a_connection_chosen_to_close_stays_chosen() {
        let phase = Phase::new(Activity::Idle(Deadline(5)));
        let seen = phase.seen();
        assert_eq!(phase.enter(Activity::Reading(Deadline(7))), Ok(()));
        // It moved on: the registry's choice no longer holds.
        assert!(!phase.close_if_still(seen));
        assert!(phase.close_if_still(phase.seen()));
        assert_eq!(phase.enter(Activity::Answering), Err(Closing));
        assert_eq!(phase.seen().activity(), Activity::Closing);
    }
}
