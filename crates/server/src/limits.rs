//! Flood control: token buckets per session for sends and new channels, and
//! per client address for session starts and new channels, kept by the
//! `governor` crate.
//!
//! An IPv6 client is counted by its /64: one host usually has a whole /64
//! to choose addresses from, so a bucket per address would not slow it.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{Config, Rate};

/// The rate limiters of one server.
pub(crate) struct Limits {
    sends: Option<DefaultKeyedRateLimiter<Arc<str>>>,
    starts: Option<DefaultKeyedRateLimiter<IpAddr>>,
    channels_per_session: Option<DefaultKeyedRateLimiter<Arc<str>>>,
    channels_per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

fn quota(rate: Rate) -> Quota {
    let per_request = rate.period / rate.per_period;
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(per_request.max(Duration::from_nanos(1)))
        .expect("the period is positive")
        .allow_burst(burst)
}

fn limiter<K: Clone + std::hash::Hash + Eq>(
    rate: Option<Rate>,
) -> Option<DefaultKeyedRateLimiter<K>> {
    rate.map(|rate| RateLimiter::keyed(quota(rate)))
}

/// The key an address is counted under: an IPv6 address by its /64 (and an
/// IPv4 address written as IPv6 as that IPv4 address), others as they are.
pub(crate) fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(network))
            }
        },
    }
}

impl Limits {
    pub(crate) fn new(config: &Config) -> Self {
        Limits {
            sends: limiter(config.send_rate),
            starts: limiter(config.session_start_rate),
            channels_per_session: limiter(config.channel_create_rate),
            channels_per_address: limiter(config.channel_create_rate_per_address),
        }
    }

    /// Takes a send from the session's bucket, or says how long to wait.
    pub(crate) fn check_send(&self, token: &Arc<str>) -> Result<(), Duration> {
        check(self.sends.as_ref(), token)
    }

    /// Takes a session start from the address's bucket, or says how long to wait.
    pub(crate) fn check_start(&self, address: IpAddr) -> Result<(), Duration> {
        check(self.starts.as_ref(), &address_key(address))
    }

    /// Takes a new channel from the session's bucket (if there is a session
    /// yet) and from the address's, or says how long to wait.
    pub(crate) fn check_new_channel(
        &self,
        token: Option<&Arc<str>>,
        address: IpAddr,
    ) -> Result<(), Duration> {
        if let Some(token) = token {
            check(self.channels_per_session.as_ref(), token)?;
        }
        check(self.channels_per_address.as_ref(), &address_key(address))
    }

    /// Forgets the buckets that are full again, so memory follows the active clients.
    pub(crate) fn forget_idle(&self) {
        for limiter in [&self.sends, &self.channels_per_session]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
        }
        for limiter in [&self.starts, &self.channels_per_address]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
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
        let limits = Limits::new(&Config {
            send_rate: Some(rate),
            session_start_rate: None,
            ..Config::default()
        });
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

    fn check_key(address: &str, expected: &str) {
        let key = address_key(address.parse().unwrap());
        assert_eq!(key, expected.parse::<IpAddr>().unwrap(), "{address}");
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        check_key("192.0.2.7", "192.0.2.7");
        check_key("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::");
        check_key("2001:db8:1:2::ffff", "2001:db8:1:2::");
        check_key("2001:db8:1:3::1", "2001:db8:1:3::");
        check_key("::ffff:192.0.2.7", "192.0.2.7");
        check_key("::1", "::");
    }

    #[test]
    fn new_channels_are_counted_per_session_and_per_address() {
        let per = |n| Rate {
            per_period: n,
            period: Duration::from_secs(60),
            burst: n,
        };
        let limits = Limits::new(&Config {
            channel_create_rate: Some(per(2)),
            channel_create_rate_per_address: Some(per(3)),
            ..Config::default()
        });
        let (ada, bob): (Arc<str>, Arc<str>) = ("ada".into(), "bob".into());
        let home: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::2".parse().unwrap();
        assert!(limits.check_new_channel(Some(&ada), home).is_ok());
        assert!(limits.check_new_channel(Some(&ada), home).is_ok());
        assert!(
            limits.check_new_channel(Some(&ada), home).is_err(),
            "ada's own limit"
        );
        assert!(limits.check_new_channel(Some(&bob), same_64).is_ok());
        assert!(
            limits.check_new_channel(Some(&bob), same_64).is_err(),
            "the /64's limit"
        );
        let elsewhere: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert!(limits.check_new_channel(None, elsewhere).is_ok());
    }
}
