//! The connection's one timer (`Alarm`), and the grid that its long
//! waits end on, shared by every connection.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The spacing of the grid that long waits end on (see [`Alarm`]).
const DEADLINE_GRID: Duration = Duration::from_millis(250);

/// Waits shorter than this end when asked, not on the grid.
const SHORTEST_GRIDDED_WAIT: Duration = Duration::from_secs(1);

/// The connection's one timer, for each wait it bounds in turn: the next
/// request's head, then the poll that request holds.
///
/// A timer per wait showed in fan-out profiles: each was entered into
/// tokio's timer wheel and taken out again, twice per poll. This one moves
/// only when a wait's deadline is earlier than the timer's, or when the
/// timer fires before the deadline of the wait at hand, so a busy
/// connection touches the wheel about once per timeout rather than twice
/// per request.
///
/// A wait of a second or more ends on a grid of [`DEADLINE_GRID`] shared by
/// every connection, up to one step before its deadline. Held polls time
/// out a few hundred a second at 19,000 pollers, each at its own moment,
/// and the server woke up for each of them and again for each poll that
/// followed (about 60 µs of CPU per idle answer, against 20 in a
/// broadcast's burst); on the grid they time out in batches.
///
/// The timer itself lives in the connection's future (pinned there), not
/// in an allocation of its own: that cost 0.1 KiB per held poll.
pub(super) struct Alarm<'timer> {
    pub(super) sleep: Pin<&'timer mut Sleep>,
    pub(super) grid_origin: Instant,
}

impl Alarm<'_> {
    /// Completes at `deadline`, or on the grid step before it.
    pub(super) async fn until(&mut self, deadline: Instant) {
        let deadline = on_grid(deadline, Instant::now(), self.grid_origin);
        if self.sleep.deadline() > deadline {
            self.sleep.as_mut().reset(deadline);
        }
        loop {
            self.sleep.as_mut().await;
            if Instant::now() >= deadline {
                return;
            }
            self.sleep.as_mut().reset(deadline);
        }
    }
}

/// `deadline` moved back to the grid step at or before it, when it is at
/// least [`SHORTEST_GRIDDED_WAIT`] after `now`.
fn on_grid(deadline: Instant, now: Instant, grid_origin: Instant) -> Instant {
    if deadline < now + SHORTEST_GRIDDED_WAIT {
        return deadline;
    }
    let since_origin = deadline.duration_since(grid_origin);
    let past_step =
        Duration::from_nanos((since_origin.as_nanos() % DEADLINE_GRID.as_nanos()) as u64);
    deadline - past_step
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `on_grid` for a deadline `wait_ms` after a `now` that is `now_ms`
    /// after the grid's origin, as milliseconds after `now`.
    fn check(now_ms: u64, wait_ms: u64, expected_ms: u64) {
        let origin = Instant::now();
        let now = origin + Duration::from_millis(now_ms);
        let deadline = on_grid(now + Duration::from_millis(wait_ms), now, origin);
        assert_eq!(
            deadline.duration_since(now),
            Duration::from_millis(expected_ms),
            "now {now_ms} ms, wait {wait_ms} ms"
        );
    }

    #[test]
    fn long_waits_end_on_the_grid_step_at_or_before_their_deadline() {
        // Short waits end when asked.
        check(0, 0, 0);
        check(130, 200, 200);
        check(130, 999, 999);
        // Long ones move back to the step at or before the deadline.
        check(0, 1_000, 1_000);
        check(130, 1_000, 870);
        check(130, 25_000, 24_870);
        check(100, 25_150, 25_150);
        check(100, 25_149, 24_900);
        check(7_777, 27_500, 27_473);
    }
}
