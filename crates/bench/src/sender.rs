//! The senders: sessions that post bench messages on a fixed schedule.
//!
//! Each bench message says when it was sent and its number, so pollers can
//! measure the delivery latency. Sends follow a schedule (message `k` at
//! `k / rate` seconds) and run concurrently, so a slow answer does not delay
//! the next send; the server's per-session send limit is respected by
//! spreading sends over enough sessions per channel.
//!
//! How a message reaches the server is the server's [`Publisher`] (talk's:
//! sender sessions, `talk::publisher`); the schedule and the counting are
//! the same for every server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::protocol::Publisher;

/// Sends in flight at most, so a stalled server cannot make the bench pile
/// up tasks without bound.
const MAX_SENDS_IN_FLIGHT: usize = 4_096;

/// The senders of a run.
pub(crate) struct Senders<P> {
    publisher: Arc<P>,
    run_id: String,
    n_channels: usize,
    /// Per channel index, the highest seq the server acknowledged.
    acked: Arc<Mutex<Vec<u64>>>,
    /// The number of the next bench message.
    next_message: u64,
}

/// What one burst of sending did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SendStats {
    /// Messages the schedule asked for.
    pub scheduled: u64,
    /// Messages the server acknowledged.
    pub acked: u64,
    /// Sends that failed for good.
    pub failed: u64,
    /// Sends answered `rate_limited` (then retried).
    pub rate_limited: u64,
    /// The send rate reached, messages per second, from first to last send.
    pub achieved_rate: f64,
    /// How far behind its schedule the slowest send started, in milliseconds:
    /// large values mean the bench could not keep up.
    pub max_lag_ms: u64,
    /// Some error messages, as examples.
    pub error_samples: Vec<String>,
}

impl<P: Publisher> Senders<P> {
    /// The senders of a run of `n_channels` channels, through `publisher`.
    pub(crate) fn new(publisher: P, run_id: &str, n_channels: usize) -> Senders<P> {
        Senders {
            publisher: Arc::new(publisher),
            run_id: run_id.to_owned(),
            n_channels,
            acked: Arc::new(Mutex::new(vec![0; n_channels])),
            next_message: 1,
        }
    }

    /// Per channel index, the highest seq acknowledged so far.
    pub(crate) fn acked(&self) -> Vec<u64> {
        self.acked.lock().expect("acked lock").clone()
    }

    /// Sends `count` messages at `rate` per second in all, round robin over
    /// the channels, and waits for their answers (at most `answer_limit`
    /// after the last send).
    pub(crate) async fn send(
        &mut self,
        count: u64,
        rate: f64,
        answer_limit: Duration,
    ) -> SendStats {
        let stats = Arc::new(Mutex::new(SendStats {
            scheduled: count,
            ..SendStats::default()
        }));
        let permits = Arc::new(Semaphore::new(MAX_SENDS_IN_FLIGHT));
        let mut sends = JoinSet::new();
        let n_channels = self.n_channels as u64;
        let began = Instant::now();
        let mut last_send = began;
        for k in 0..count {
            let due = began + Duration::from_secs_f64(k as f64 / rate);
            tokio::time::sleep_until(due).await;
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let now = Instant::now();
            last_send = now;
            {
                let lag = now.saturating_duration_since(due).as_millis() as u64;
                let mut stats = stats.lock().expect("stats lock");
                stats.max_lag_ms = stats.max_lag_ms.max(lag);
            }
            let number = self.next_message;
            self.next_message += 1;
            let channel_index = (k % n_channels) as usize;
            let turn = k / n_channels;
            let publisher = self.publisher.clone();
            let run_id = self.run_id.clone();
            let acked = self.acked.clone();
            let stats = stats.clone();
            sends.spawn(async move {
                let _permit = permit;
                let outcome = publisher
                    .send(channel_index, turn, &run_id, number, &stats)
                    .await;
                let mut stats = stats.lock().expect("stats lock");
                match outcome {
                    Ok(seq) => {
                        stats.acked += 1;
                        let mut acked = acked.lock().expect("acked lock");
                        acked[channel_index] = acked[channel_index].max(seq);
                    }
                    Err(message) => {
                        stats.failed += 1;
                        if stats.error_samples.len() < 5 {
                            stats.error_samples.push(message);
                        }
                    }
                }
            });
        }
        let elapsed = last_send.duration_since(began).as_secs_f64();
        let _ = tokio::time::timeout(answer_limit, async {
            while sends.join_next().await.is_some() {}
        })
        .await;
        let abandoned = sends.len() as u64;
        sends.abort_all();
        let mut stats = stats.lock().expect("stats lock").clone();
        stats.failed += abandoned;
        stats.achieved_rate = if count > 1 && elapsed > 0.0 {
            (count - 1) as f64 / elapsed
        } else {
            rate
        };
        stats
    }

    /// Ends what the publisher started (talk: the sender sessions).
    pub(crate) async fn leave(&self) {
        self.publisher.leave().await;
    }
}
