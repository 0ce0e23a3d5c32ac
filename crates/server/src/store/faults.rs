//! Store faults on demand, for tests: commits that fail inside SQLite, or
//! that take longer, while a test watches what clients see.
//!
//! A failing commit is a real SQLite failure on the writer's own
//! connection (`PRAGMA query_only`, so every write of the transaction is
//! refused with `SQLITE_READONLY`), not a fake result: the code that
//! handles it is the code that handles a full disk. Lowering
//! `max_page_count` would fail only the commits that need a new page,
//! which small events mostly do not.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A handle that makes the store's commits fail or slow down; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct StoreFaults(Arc<Settings>);

#[derive(Debug, Default)]
struct Settings {
    failing: AtomicBool,
    /// Fails one commit in this many, at random (0: none).
    fail_one_in: AtomicU32,
    /// The longest extra time a commit takes, at random, in microseconds.
    max_delay_micros: AtomicU64,
}

/// What the writer does to the next commit.
pub(crate) struct Fault {
    pub(crate) fail: bool,
    pub(crate) delay: Duration,
}

impl StoreFaults {
    /// Every commit fails while `failing` is set.
    pub fn fail_commits(&self, failing: bool) {
        self.0.failing.store(failing, Ordering::SeqCst);
    }

    /// One commit in `one_in` fails, at random (0: none).
    pub fn fail_commits_at_random(&self, one_in: u32) {
        self.0.fail_one_in.store(one_in, Ordering::SeqCst);
    }

    /// Each commit takes up to `max_delay` longer, at random.
    pub fn delay_commits(&self, max_delay: Duration) {
        let micros = u64::try_from(max_delay.as_micros()).unwrap_or(u64::MAX);
        self.0.max_delay_micros.store(micros, Ordering::SeqCst);
    }

    /// Draws what happens to the next commit.
    pub(crate) fn next(&self) -> Fault {
        let one_in = self.0.fail_one_in.load(Ordering::SeqCst);
        let fail =
            self.0.failing.load(Ordering::SeqCst) || (one_in > 0 && fastrand::u32(..one_in) == 0);
        let max_delay = self.0.max_delay_micros.load(Ordering::SeqCst);
        let delay = Duration::from_micros(if max_delay == 0 {
            0
        } else {
            fastrand::u64(..=max_delay)
        });
        Fault { fail, delay }
    }
}
