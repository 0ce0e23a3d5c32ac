//! The senders: sessions that post bench messages on a fixed schedule.
//!
//! Each bench message says when it was sent and its number, so pollers can
//! measure the delivery latency. Sends follow a schedule (message `k` at
//! `k / rate` seconds) and run concurrently, so a slow answer does not delay
//! the next send; the server's per-session send limit is respected by
//! spreading sends over enough sessions per channel.
//!
//! Against a peer, sends are posts to its publisher (`nchan`, `socketio`),
//! and a message's number within its channel stands for the `seq`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use talk_client::Api;
use talk_protocol::PollRequest;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::nchan;
use crate::peer_publisher::PeerPublisher;
use crate::poller::bench_text;
use crate::socketio;
use crate::Error;

/// Sends in flight at most, so a stalled server cannot make the bench pile
/// up tasks without bound.
const MAX_SENDS_IN_FLIGHT: usize = 4_096;
/// How often a send refused with `rate_limited` is tried again.
const RATE_LIMIT_RETRIES: u32 = 5;

/// The senders of a run.
pub(crate) struct Senders {
    publisher: Arc<Publisher>,
    run_id: String,
    n_channels: usize,
    /// Per channel index, the highest seq the server acknowledged.
    acked: Arc<Mutex<Vec<u64>>>,
    /// The number of the next bench message.
    next_message: u64,
}

/// How messages reach the server.
enum Publisher {
    /// Talk sender sessions. The server ends a session that has had no poll
    /// for its grace period (sends do not count), so each sender session
    /// also keeps a poll open.
    Talk {
        api: Api,
        /// Per channel index, the tokens of its sender sessions.
        tokens: Vec<Vec<String>>,
        /// Tells the senders' keep-alive polls to stop.
        stop_polls: watch::Sender<bool>,
    },
    /// A peer server's publishing endpoint (Nchan, the bench's Socket.IO
    /// server).
    Peer(PeerPublisher),
}

impl Publisher {
    /// Sends bench message `number`, the `turn`-th of its channel (from 0),
    /// and returns the seq the server gave it.
    async fn send(
        &self,
        channel_index: usize,
        turn: u64,
        run_id: &str,
        number: u64,
        stats: &Mutex<SendStats>,
    ) -> Result<u64, String> {
        match self {
            Publisher::Talk { api, tokens, .. } => {
                let sessions = &tokens[channel_index];
                let token = &sessions[turn as usize % sessions.len()];
                let id = format!("b{run_id}m{number}");
                send_with_retries(api, token, &id, run_id, number, stats).await
            }
            Publisher::Peer(publisher) => {
                // Numbered within the channel from 1: after Nchan's first
                // message (0), sent at the start, and after a Socket.IO
                // socket's stream starts (see `nchan`, `socketio`).
                let seq = turn + 1;
                publisher
                    .publish(channel_index, bench_text(run_id, seq))
                    .await
                    .map(|()| seq)
            }
        }
    }
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

impl Senders {
    /// Starts `per_channel` sender sessions in each channel.
    pub(crate) async fn start(
        api: Api,
        run_id: &str,
        channels: &[String],
        per_channel: usize,
    ) -> Result<Senders, Error> {
        let mut tokens = Vec::with_capacity(channels.len());
        for (channel_index, channel) in channels.iter().enumerate() {
            let mut channel_tokens = Vec::with_capacity(per_channel);
            for sender in 0..per_channel {
                let name = format!("s{run_id}{channel_index}x{sender}");
                let answer = start_with_patience(&api, &name, channel).await?;
                channel_tokens.push(answer);
            }
            tokens.push(channel_tokens);
        }
        let (stop_polls, stop_receiver) = watch::channel(false);
        for token in tokens.iter().flatten() {
            tokio::spawn(keep_polling(
                api.clone(),
                token.clone(),
                stop_receiver.clone(),
            ));
        }
        let publisher = Publisher::Talk {
            api,
            tokens,
            stop_polls,
        };
        Ok(Senders::with(publisher, run_id, channels.len()))
    }

    /// An Nchan publisher to `channels` of the server at `base_url`, which
    /// publishes each channel's first message (number 0) at once: the
    /// message every poller gets first (see `nchan`).
    pub(crate) async fn start_nchan(
        base_url: &str,
        run_id: &str,
        channels: &[String],
    ) -> Result<Senders, Error> {
        let publisher = nchan::publisher(base_url, channels);
        for channel_index in 0..channels.len() {
            publisher
                .publish(channel_index, bench_text(run_id, 0))
                .await
                .map_err(Error::Publish)?;
        }
        Ok(Senders::with(
            Publisher::Peer(publisher),
            run_id,
            channels.len(),
        ))
    }

    /// A publisher to `channels` of the bench's Socket.IO server at
    /// `base_url`. It publishes nothing now: Socket.IO has no history, so a
    /// channel's messages start once every poller is in its room.
    pub(crate) fn start_socketio(base_url: &str, run_id: &str, channels: &[String]) -> Senders {
        Senders::with(
            Publisher::Peer(socketio::publisher(base_url, channels)),
            run_id,
            channels.len(),
        )
    }

    fn with(publisher: Publisher, run_id: &str, n_channels: usize) -> Senders {
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

    /// Ends the sender sessions (a peer's publisher has none).
    pub(crate) async fn leave(&self) {
        if let Publisher::Talk {
            api,
            tokens,
            stop_polls,
        } = &*self.publisher
        {
            let _ = stop_polls.send(true);
            for token in tokens.iter().flatten() {
                let _ = api.leave(token).await;
            }
        }
    }
}

/// Polls with `token` until `stop`, throwing the events away: it only keeps
/// the session alive.
async fn keep_polling(api: Api, token: String, mut stop: watch::Receiver<bool>) {
    let mut request = PollRequest {
        token,
        channel: None,
        cursor: None,
        wait_ms: None,
    };
    loop {
        let answer = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            answer = api.poll(&request) => answer,
        };
        match answer {
            Ok(answer) => {
                request.channel = Some(answer.channel);
                request.cursor = Some(answer.cursor);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Starts a session, waiting out `too_many_sessions` for up to a minute.
pub(crate) async fn start_with_patience(
    api: &Api,
    name: &str,
    channel: &str,
) -> Result<String, Error> {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        match api.start(Some(name), None, Some(channel)).await {
            Ok(answer) => return Ok(answer.token),
            Err(talk_client::Error::Server { detail, .. })
                if detail.retry_after_ms.is_some() && Instant::now() < give_up =>
            {
                let pause = detail.retry_after_ms.unwrap_or(1_000).clamp(50, 5_000);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Err(error) => return Err(Error::Start(error)),
        }
    }
}

async fn send_with_retries(
    api: &Api,
    token: &str,
    id: &str,
    run_id: &str,
    number: u64,
    stats: &Mutex<SendStats>,
) -> Result<u64, String> {
    // The stamp is taken once, at the first try: a retry's wait is latency
    // the message really had.
    let text = bench_text(run_id, number);
    let mut tries = 0;
    loop {
        match api.send(token, id, &text).await {
            Ok(answer) => {
                return answer
                    .seq
                    .ok_or_else(|| "send answer without seq".to_owned())
            }
            Err(talk_client::Error::Server { detail, .. })
                if detail.code == "rate_limited" && tries < RATE_LIMIT_RETRIES =>
            {
                tries += 1;
                stats.lock().expect("stats lock").rate_limited += 1;
                let pause = detail.retry_after_ms.unwrap_or(200).clamp(10, 2_000);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Err(error) => return Err(error.to_string()),
        }
    }
}
