//! The server's settings, as a plain validated value.
//!
//! The binary builds this from its flags; the library never sees the
//! command line.

use std::path::PathBuf;
use std::time::Duration;

/// A token-bucket rate: `burst` at once, refilled at `per_period` every `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many are allowed per period, on average.
    pub per_period: u32,
    /// The period.
    pub period: Duration,
    /// How many are allowed at once.
    pub burst: u32,
}

/// Everything the server can be told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the history store lives.
    pub data_dir: PathBuf,
    /// How long a poll is held when nothing happens.
    pub poll_timeout: Duration,
    /// How long a session lives with no poll held before it ends.
    pub session_grace: Duration,
    /// How many events of each channel are kept for clients to catch up.
    pub history_window: usize,
    /// How many events a client gets when it joins a channel.
    pub history_on_join: usize,
    /// The longest message, in characters.
    pub max_message_chars: usize,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Sends allowed per session; `None` for no limit.
    pub send_rate: Option<Rate>,
    /// Session starts allowed per client address; `None` for no limit.
    pub session_start_rate: Option<Rate>,
    /// New channels (ones with no history) a session may create; `None`
    /// for no limit.
    pub channel_create_rate: Option<Rate>,
    /// New channels the sessions of one client address may create; `None`
    /// for no limit.
    pub channel_create_rate_per_address: Option<Rate>,
    /// The most channels kept in memory at once; a new one beyond it is
    /// refused (`503 channel_limit`) unless an unused one can leave.
    pub max_channels: usize,
    /// How long a channel nobody is in or waits in stays in memory; its
    /// history stays on disk and is loaded again when it is next used.
    pub channel_idle: Duration,
    /// Channels with more members than this do not announce joins and leaves.
    pub presence_limit: usize,
    /// Origins allowed to use the chat; empty for any.
    pub allow_origins: Vec<String>,
    /// A header set by a trusted proxy that carries the client's address
    /// (e.g. `x-forwarded-for`); the last address in it is used.
    pub client_ip_header: Option<String>,
    /// How long a client may take to send a whole request, head and body,
    /// from its first byte; also how long a connection may stay open
    /// waiting for the first byte of its next request.
    pub request_timeout: Duration,
    /// How long shutdown waits for connections to finish.
    pub shutdown_grace: Duration,
    /// For tests only: makes the store's commits fail or slow down.
    #[doc(hidden)]
    pub store_faults: Option<crate::StoreFaults>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("talk-data"),
            poll_timeout: Duration::from_secs(25),
            session_grace: Duration::from_secs(40),
            history_window: 1000,
            history_on_join: 50,
            max_message_chars: 1000,
            max_body_bytes: 16 * 1024,
            send_rate: Some(Rate {
                per_period: 5,
                period: Duration::from_secs(1),
                burst: 10,
            }),
            session_start_rate: Some(Rate {
                per_period: 30,
                period: Duration::from_secs(60),
                burst: 30,
            }),
            channel_create_rate: Some(Rate {
                per_period: 10,
                period: Duration::from_secs(60),
                burst: 10,
            }),
            channel_create_rate_per_address: Some(Rate {
                per_period: 30,
                period: Duration::from_secs(60),
                burst: 30,
            }),
            max_channels: 10_000,
            channel_idle: Duration::from_secs(10 * 60),
            presence_limit: 200,
            allow_origins: Vec::new(),
            client_ip_header: None,
            request_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            store_faults: None,
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A number is out of its range.
    #[error("{setting} must be {rule}")]
    OutOfRange {
        /// The setting.
        setting: &'static str,
        /// What it must be.
        rule: &'static str,
    },
    /// An origin is not `scheme://host[:port]`.
    #[error("--allow-origin takes origins like https://example.com, not {0:?}")]
    Origin(String),
    /// A header name is not valid.
    #[error("--client-ip-header takes a header name, not {0:?}")]
    Header(String),
}

impl Config {
    /// Checks that every setting can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let out_of_range = |setting, rule| Err(ConfigError::OutOfRange { setting, rule });
        if self.poll_timeout < Duration::from_millis(10)
            || self.poll_timeout > Duration::from_secs(300)
        {
            return out_of_range(
                "the poll timeout",
                "between 10 ms and 300 s (keep it below your proxies' timeouts)",
            );
        }
        if self.request_timeout < Duration::from_millis(10)
            || self.request_timeout > Duration::from_secs(3600)
        {
            return out_of_range("the request timeout", "between 10 ms and 3,600 s");
        }
        if self.history_window == 0 || self.history_window > 1_000_000 {
            return out_of_range("the history window", "between 1 and 1,000,000 events");
        }
        if self.history_on_join > self.history_window {
            return out_of_range("the history on join", "at most the history window");
        }
        if self.max_message_chars == 0 || self.max_message_chars * 4 + 512 > self.max_body_bytes {
            return out_of_range(
                "the message length",
                "at least 1, and small enough that 4 bytes a character fit the body limit",
            );
        }
        if self.max_channels == 0 {
            return out_of_range("the channel limit", "at least 1");
        }
        let rates = [
            self.send_rate,
            self.session_start_rate,
            self.channel_create_rate,
            self.channel_create_rate_per_address,
        ];
        for rate in rates.into_iter().flatten() {
            if rate.per_period == 0 || rate.burst == 0 || rate.period.is_zero() {
                return out_of_range("a rate", "positive (use no rate for no limit)");
            }
        }
        for origin in &self.allow_origins {
            let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && origin.parse::<axum::http::HeaderValue>().is_ok();
            if !valid {
                return Err(ConfigError::Origin(origin.clone()));
            }
        }
        if let Some(header) = &self.client_ip_header {
            if header.parse::<axum::http::HeaderName>().is_err() {
                return Err(ConfigError::Header(header.clone()));
            }
        }
        Ok(())
    }
}
