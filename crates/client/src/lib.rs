//! A client library for the talk protocol (`docs/protocol.md`).
//!
//! [`Client`] is a session on a talk server that survives poll timeouts,
//! network blips and server restarts. [`Client::next_update`] hands over
//! every event of the session's channel exactly once and in order, plus
//! *resets* (replace what you show by the channel's recent history) and news
//! about the connection. An event of a type this build does not know (from
//! a newer server) comes too, with the kind `EventKind::Unknown`: show
//! nothing for it. [`Client::send`] says something or runs a command,
//! and is retried with the same id until the server has it, exactly once.
//! `Client` is cheap to clone: one task polls while others send.
//!
//! [`Api`] underneath makes one HTTP request per protocol operation, with no
//! state and no retries, for tests and tools that want to see exactly what
//! the server answers.
//!
//! # Example
//!
//! A bot that answers `ping` with `pong`:
//!
//! ```no_run
//! use talk_client::protocol::EventKind;
//! use talk_client::{Client, ClientConfig, Update};
//!
//! # async fn bot() -> Result<(), talk_client::Error> {
//! let mut config = ClientConfig::new("http://localhost:8000");
//! config.name = Some("pingbot".to_owned());
//! let client = Client::connect(config).await?;
//! client.send("/join games").await?;
//! while let Some(update) = client.next_update().await? {
//!     match update {
//!         Update::Reset { channel, events, .. } => {
//!             println!("now in {channel}, {} events of history", events.len());
//!         }
//!         Update::Event { event, .. } => {
//!             if let EventKind::Message { text, .. } = &event.kind {
//!                 println!("{}: {text}", event.from);
//!                 if text == "ping" {
//!                     client.send("pong").await?;
//!                 }
//!             }
//!         }
//!         other => eprintln!("{other:?}"),
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod api;
mod backoff;
mod session;

pub use api::{Api, Error, IDLE_CONNECTION_LIMIT};
pub use backoff::Backoff;
pub use session::{
    is_retryable, new_send_id, Client, ClientConfig, Identity, LostReason, ResumePoint, Update,
    MAX_POLL_WAIT_MS,
};
pub use talk_protocol as protocol;
