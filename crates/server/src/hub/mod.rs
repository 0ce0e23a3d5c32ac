//! The hub: sessions, channels, publishing, and the polls that wait.
//!
//! A poll parks here until its channel has something after its cursor; a
//! publish hands the event to the engine, and once it is committed hands
//! the answer to every parked poll's waiter (see `waiter`). The hub knows
//! no HTTP and does no I/O itself: the engine keeps names and history (see
//! `crate::engine`), and a waiter's sink, which the HTTP layer gives,
//! sends the answer.
//!
//! `impl Hub` is split by what each part owns: `sessions.rs` (start,
//! rename, recolor, switch, end, expire), `channels.rs` (which channels are
//! in memory: loading, creating, leaving), `publishing.rs` (publish, show
//! what is committed, fan out) and `polling.rs` (a poll, parked or
//! answered). `channel.rs` and `waiter.rs` know nothing of sessions but a
//! `SessionKey`; `answer.rs` is what both build and send.
//!
//! Locks are taken in this order, and never the other way round:
//! a session's turn (`Session::changes`, held across awaits) → the session
//! map (`Hub::sessions`) → a session's state; and a session's turn → the
//! channel map (`Hub::channels`) → a channel → a session's state → a
//! waiter's slot. The engine is called with no lock of the hub's held but
//! a session's turn. The std mutexes are never held across an await.

mod answer;
mod channel;
mod channels;
mod polling;
mod publishing;
mod session;
mod sessions;
mod waiter;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use talk_protocol::ChannelName;
use tokio::sync::mpsc;

pub(crate) use answer::PollBody;
use channel::Channel;
pub(crate) use polling::Polled;
use publishing::{show_committed, Committed};
pub(crate) use session::Session;
use sessions::Sessions;
pub(crate) use waiter::{Deliver, Delivery, Waiter, WakeTask};

use crate::engine::{Engine, EngineApi};
use crate::metrics::Metrics;
use crate::store;

/// What the hub needs to know of the configuration.
#[derive(Debug, Clone)]
pub(crate) struct HubSettings {
    pub(crate) history_window: usize,
    pub(crate) history_on_join: usize,
    pub(crate) presence_limit: usize,
    pub(crate) session_grace: Duration,
    /// How long a channel nobody uses stays in memory.
    pub(crate) channel_idle: Duration,
    /// The most channels in memory at once.
    pub(crate) max_channels: usize,
}

/// Asked before a channel that has no history is created: whether the
/// client may create another one now (rate limits live in `http`).
pub(crate) type MayCreate<'check> = &'check (dyn Fn() -> Result<(), Error> + Sync);

/// What can go wrong in the hub; `http::error` turns each into an answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The token names no live session.
    #[error("this session is unknown or has expired; start a new one")]
    UnknownSession,
    /// Someone online has that name.
    #[error("the name {name} is taken")]
    NameTaken {
        /// The name asked for.
        name: String,
    },
    /// The store could not keep the event, so it was not acknowledged.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The client has created too many channels lately.
    #[error("too many new channels; wait a moment, or join one that exists")]
    TooManyChannels {
        /// When it may create another.
        retry_after: Duration,
    },
    /// As many channels as the server keeps in memory are in use.
    #[error("this server has {max} channels in use, its limit; join one that exists")]
    ChannelLimit {
        /// The limit.
        max: usize,
    },
    /// The server is stopping.
    #[error("the server is shutting down; try again in a moment")]
    ShuttingDown,
}

/// The hub of one server.
pub(crate) struct Hub {
    settings: HubSettings,
    /// Names, history and the other servers (see `engine`).
    engine: Engine,
    /// To `show_committed`, the task that makes committed events visible.
    committed: mpsc::UnboundedSender<Committed>,
    channels: Mutex<HashMap<ChannelName, Arc<Channel>>>,
    sessions: Mutex<Sessions>,
    /// Set once when the server begins to stop; read by every poll.
    shutting_down: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// A hub with no channel in memory: each is loaded from the engine when
    /// it is first used.
    pub(crate) fn new(settings: HubSettings, engine: Engine, metrics: Arc<Metrics>) -> Self {
        let (committed, to_show) = mpsc::unbounded_channel();
        tokio::spawn(show_committed(to_show, metrics.clone()));
        Hub {
            settings,
            engine,
            committed,
            channels: Mutex::new(HashMap::new()),
            sessions: Mutex::new(Sessions::default()),
            shutting_down: AtomicBool::new(false),
            metrics,
        }
    }

    /// True once shutdown has begun.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Why the store cannot commit right now, if it cannot.
    pub(crate) fn store_failure(&self) -> Option<String> {
        self.engine.failure()
    }
}

#[cfg(test)]
impl Hub {
    /// A hub on a fresh store in `data`, which must outlive it; on a runtime.
    pub(crate) fn for_tests(data: &std::path::Path) -> Hub {
        let metrics = Arc::new(Metrics::new());
        let (store, _closer) = store::Store::open(data, 100, metrics.store.clone(), None).unwrap();
        let settings = HubSettings {
            history_window: 100,
            history_on_join: 10,
            presence_limit: 10,
            session_grace: Duration::from_secs(10),
            channel_idle: Duration::from_secs(600),
            max_channels: 100,
        };
        let engine = crate::engine::Engine::Local(crate::engine::LocalEngine::new(store));
        Hub::new(settings, engine, metrics)
    }
}
