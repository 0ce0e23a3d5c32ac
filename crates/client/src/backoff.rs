//! How long to wait before trying again: exponential backoff with jitter.
//!
//! Thousands of clients lose their server at the same moment when it
//! restarts; if they all came back after exactly the same pause they would
//! knock it over again. So every pause is random, between half and all of an
//! exponentially growing ceiling.

use std::time::Duration;

/// The pauses between retries of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first pause.
    pub first: Duration,
    /// The largest ceiling; the ceiling doubles after each failure up to this.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(250),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The ceiling of the pause after `failures` failures in a row (1 or more).
    pub fn ceiling(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.first
            .saturating_mul(1u32 << doublings)
            .min(self.max.max(self.first))
    }

    /// A random pause after `failures` failures in a row: between half the
    /// ceiling and the ceiling.
    pub fn pause(&self, failures: u32) -> Duration {
        jitter(self.ceiling(failures))
    }
}

/// A random duration between half of `ceiling` and `ceiling`.
pub(crate) fn jitter(ceiling: Duration) -> Duration {
    let fraction = 0.5 + 0.5 * random_unit();
    ceiling.mul_f64(fraction)
}

/// A random number in `[0, 1)`.
fn random_unit() -> f64 {
    // 53 random bits are exactly what an f64 mantissa holds.
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// 64 random bits from the operating system.
pub(crate) fn random_u64() -> u64 {
    // The OS random source does not fail on the systems we run on; if it
    // ever does, a clock-derived value still spreads clients apart, and ids
    // keep their time-based uniqueness.
    getrandom::u64().unwrap_or_else(|_| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        now.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_up_to_the_max() {
        let backoff = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        let ceilings: Vec<u64> = (1..=6)
            .map(|failures| backoff.ceiling(failures).as_millis() as u64)
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_millis(1000));
    }

    #[test]
    fn pauses_stay_between_half_and_all_of_the_ceiling() {
        let backoff = Backoff::default();
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..200 {
            let pause = backoff.pause(3);
            assert!(pause >= backoff.ceiling(3) / 2 && pause <= backoff.ceiling(3));
            distinct.insert(pause);
        }
        assert!(distinct.len() > 100, "pauses are not random: {distinct:?}");
    }
}
