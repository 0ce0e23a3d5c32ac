//! Flood control: token buckets per session for sends and per client
//! address for session starts, kept by the `governor` crate.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Rate;

/// The rate limiters of one server.
pub(crate) struct Limits {
    sends: Option<DefaultKeyedRateLimiter<Arc<str>>>,
    starts: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

fn quota(rate: Rate) -> Quota {
    let per_request = rate.period / rate.per_period;
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(per_request.max(Duration::from_nanos(1)))
        .expect("the period is positive")
        .allow_burst(burst)
}

impl Limits {
    pub(crate) fn new(send_rate: Option<Rate>, start_rate: Option<Rate>) -> Self {
        Limits {
            sends: send_rate.map(|rate| RateLimiter::keyed(quota(rate))),
            starts: start_rate.map(|rate| RateLimiter::keyed(quota(rate))),
        }
    }

    /// Takes a send from the session's bucket, or says how long to wait.
    pub(crate) fn check_send(&self, token: &Arc<str>) -> Result<(), Duration> {
        check(self.sends.as_ref(), token)
    }

    /// Takes a session start from the address's bucket, or says how long to wait.
    pub(crate) fn check_start(&self, address: IpAddr) -> Result<(), Duration> {
        check(self.starts.as_ref(), &address)
    }

    /// Forgets the buckets that are full again, so memory follows the active clients.
    pub(crate) fn forget_idle(&self) {
        if let Some(sends) = &self.sends {
            sends.retain_recent();
        }
        if let Some(starts) = &self.starts {
            starts.retain_recent();
        }
    }
}

fn check<K: Clone + std::hash::Hash + Eq>(
    limiter: Option<&DefaultKeyedRateLimiter<K>>,
    key: &K,
) -> Result<(), Duration> {
    match limiter {
        None => Ok(()),
        Some(limiter) => limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_bucket_says_how_long_to_wait() {
        let rate = Rate {
            per_period: 1,
            period: Duration::from_secs(60),
            burst: 3,
        };
        let limits = Limits::new(Some(rate), None);
        let token: Arc<str> = "t".into();
        for _ in 0..3 {
            assert_eq!(limits.check_send(&token), Ok(()));
        }
        let wait = limits.check_send(&token).unwrap_err();
        assert!(
            wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        let other: Arc<str> = "u".into();
        assert_eq!(limits.check_send(&other), Ok(()));
        assert_eq!(limits.check_start("127.0.0.1".parse().unwrap()), Ok(()));
    }
}
