//! The publishing end of a peer server's channels (Nchan, the peer bench's
//! Socket.IO server): `POST /pub/<channel>` with a bench text as the body,
//! one at a time per channel, so that messages enter each channel in the
//! order of their numbers even when an answer is slow. Each peer says which
//! answers mean "published".
//!
//! A peer has no seqs: a message's number within its channel stands for
//! one. Numbers start at 1, after Nchan's first message (0, published
//! before the pollers start) and after a Socket.IO socket's stream starts
//! (see `nchan`, `socketio`).

use std::sync::Mutex;
use std::time::Duration;

use talk_bench::{bench_text, Publisher, SendStats};

/// Whether a peer's answer (status, body) says the message was published.
pub type Accepts = fn(u16, &[u8]) -> Result<(), String>;

/// Publishes bench messages to a peer server's channels.
pub struct PeerPublisher {
    http: reqwest::Client,
    /// Per channel index, its publishing URL.
    urls: Vec<String>,
    /// Per channel index, the turn to publish; tokio's mutex is fair, so
    /// sends take their turns in the order they asked.
    turns: Vec<tokio::sync::Mutex<()>>,
    accepts: Accepts,
}

impl PeerPublisher {
    /// A publisher to `channels` of the server at `base_url`, whose answers
    /// `accepts` judges.
    pub fn new(base_url: &str, channels: &[String], accepts: Accepts) -> PeerPublisher {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .expect("a plain reqwest client builds");
        let base_url = base_url.trim_end_matches('/');
        PeerPublisher {
            http,
            urls: channels
                .iter()
                .map(|channel| format!("{base_url}/pub/{channel}"))
                .collect(),
            turns: channels
                .iter()
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            accepts,
        }
    }

    /// Publishes `text` to channel `channel_index`, after the messages
    /// already waiting for their turn there.
    pub async fn publish(&self, channel_index: usize, text: String) -> Result<(), String> {
        let _turn = self.turns[channel_index].lock().await;
        let answer = self
            .http
            .post(&self.urls[channel_index])
            .header("content-type", "text/plain")
            .body(text)
            .send()
            .await
            .map_err(|error| format!("publish: {error}"))?;
        let status = answer.status().as_u16();
        // Read the body whole, so the connection is kept for the next one.
        let body = answer.bytes().await.unwrap_or_default();
        (self.accepts)(status, &body)
    }
}

impl Publisher for PeerPublisher {
    async fn send(
        &self,
        channel_index: usize,
        turn: u64,
        run_id: &str,
        _number: u64,
        _stats: &Mutex<SendStats>,
    ) -> Result<u64, String> {
        let seq = turn + 1;
        self.publish(channel_index, bench_text(run_id, seq))
            .await
            .map(|()| seq)
    }
}
