//! Talk's publishing end: sender sessions that post bench messages, each
//! with its own id, waiting out `rate_limited` answers; the server's seq
//! of each acknowledged send is what its pollers must see.

use std::sync::Mutex;
use std::time::Duration;

use talk_client::Api;
use talk_protocol::PollRequest;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::poller::bench_text;
use crate::protocol::Publisher;
use crate::sender::SendStats;
use crate::Error;

/// How often a send refused with `rate_limited` is tried again.
const RATE_LIMIT_RETRIES: u32 = 5;

/// Talk sender sessions, each channel's in turn. The server ends a session
/// that has had no poll for its grace period (sends do not count), so each
/// sender session also keeps a poll open.
pub struct TalkPublisher {
    api: Api,
    /// Per channel index, the tokens of its sender sessions.
    tokens: Vec<Vec<String>>,
    /// Tells the senders' keep-alive polls to stop.
    stop_polls: watch::Sender<bool>,
}

impl TalkPublisher {
    /// Starts `per_channel` sender sessions in each channel.
    pub(crate) async fn start(
        api: Api,
        run_id: &str,
        channels: &[String],
        per_channel: usize,
    ) -> Result<TalkPublisher, Error> {
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
        Ok(TalkPublisher {
            api,
            tokens,
            stop_polls,
        })
    }
}

impl Publisher for TalkPublisher {
    async fn send(
        &self,
        channel_index: usize,
        turn: u64,
        run_id: &str,
        number: u64,
        stats: &Mutex<SendStats>,
    ) -> Result<u64, String> {
        let sessions = &self.tokens[channel_index];
        let token = &sessions[turn as usize % sessions.len()];
        let id = format!("b{run_id}m{number}");
        send_with_retries(&self.api, token, &id, run_id, number, stats).await
    }

    async fn leave(&self) {
        let _ = self.stop_polls.send(true);
        for token in self.tokens.iter().flatten() {
            let _ = self.api.leave(token).await;
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
async fn start_with_patience(api: &Api, name: &str, channel: &str) -> Result<String, Error> {
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
