//! The talk server: real-time chat over HTTP long-polling.
//!
//! Starting a server takes two steps: `Server::open` checks the `Config`
//! and opens the history store, and `Server::serve` serves the chat on
//! bound listeners until a shutdown signal fires. A binary announces that
//! it serves only once `open` succeeded. See `ARCHITECTURE.md` for the map
//! of the modules.

mod command;
mod config;
mod engine;
// Public for the fuzz crate only; see the module's comment.
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod hub;
mod limits;
mod listener;
mod metrics;
mod store;
pub mod widget;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use config::{Config, ConfigError, Rate};
pub use listener::raise_open_files_limit;
pub use store::Error as StoreError;
// Public for tests only: makes the store's commits fail or slow down.
#[doc(hidden)]
pub use store::faults::StoreFaults;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The history store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A server whose settings are checked and whose history store is open:
/// nothing is left that could keep it from serving.
///
/// Opening and serving are two steps so that the caller learns whether the
/// server can start before it says that it does (the binary prints where
/// it listens only then), and sees a start that fails as an error, not as
/// a server that ends at once.
pub struct Server {
    config: Arc<Config>,
    hub: Arc<hub::Hub>,
    limits: Arc<limits::Limits>,
    metrics: Arc<metrics::Metrics>,
    engine_closer: engine::EngineCloser,
}

/// Where a server takes its connections.
#[derive(Debug)]
pub struct Listeners {
    /// The chat (`/poll`, `/broadcast`), its page and assets, and
    /// `/healthz`; `/metrics` too when there is no internal listener.
    pub public: TcpListener,
    /// For operators only: `/metrics` and `/healthz`, with no CORS headers.
    /// When it is set, the public listener does not serve `/metrics`.
    pub internal: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    /// The public listener alone.
    fn from(public: TcpListener) -> Self {
        Listeners {
            public,
            internal: None,
        }
    }
}

impl Server {
    /// Checks `config`, creates the data folder if it is missing, and opens
    /// the history store (channels are loaded when they are first used).
    pub async fn open(config: Config) -> Result<Server, Error> {
        config.validate()?;
        let metrics = Arc::new(metrics::Metrics::new());
        let (engine, engine_closer) = engine::open(&config, &metrics).await?;
        if let Ok(limit) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
            metrics.open_files_limit.set(limit.0 as i64);
        }
        let settings = hub::HubSettings {
            history_window: config.history_window,
            history_on_join: config.history_on_join,
            presence_limit: config.presence_limit,
            session_grace: config.session_grace,
            channel_idle: config.channel_idle,
            max_channels: config.max_channels,
        };
        let hub = Arc::new(hub::Hub::new(settings, engine, metrics.clone()));
        let limits = Arc::new(limits::Limits::new(&config));
        Ok(Server {
            config: Arc::new(config),
            hub,
            limits,
            metrics,
            engine_closer,
        })
    }

    /// Serves the chat on `listeners` (a `TcpListener` alone is the public
    /// one) until `shutdown` resolves, then answers every held poll with a
    /// reconnect hint, lets answers finish, commits the history and returns.
    pub async fn serve(
        self,
        listeners: impl Into<Listeners>,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        let Listeners { public, internal } = listeners.into();
        let Server {
            config,
            hub,
            limits,
            metrics,
            engine_closer,
        } = self;
        let reaper = tokio::spawn(end_expired_sessions(
            hub.clone(),
            limits.clone(),
            config.clone(),
        ));
        let app = http::AppState::new(http::App {
            hub: hub.clone(),
            config: config.clone(),
            limits,
            metrics: metrics.clone(),
        });
        let stop = async {
            shutdown.await;
            tracing::info!("shutting down: answering held polls");
            hub.begin_shutdown();
        };
        let metrics_on = match internal {
            Some(_) => http::MetricsOn::Internal,
            None => http::MetricsOn::Public,
        };
        let router = http::router(app.clone(), metrics_on);
        let internal = internal.map(|listener| (listener, http::internal_router(app.clone())));
        let connections = listener::serve(
            public,
            internal,
            app,
            router,
            metrics,
            config.request_timeout,
            stop,
        )
        .await;
        if tokio::time::timeout(config.shutdown_grace, connections.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("some connections were still open after the shutdown grace period");
        }
        reaper.abort();
        engine_closer.close().await;
    }
}

/// Ends sessions that stopped polling, and lets idle channels leave
/// memory, every quarter of the grace period (or of the channels' idle
/// time, if shorter).
async fn end_expired_sessions(
    hub: Arc<hub::Hub>,
    limits: Arc<limits::Limits>,
    config: Arc<Config>,
) {
    let period = (config.session_grace.min(config.channel_idle) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(5));
    let mut ticks = tokio::time::interval(period);
    loop {
        ticks.tick().await;
        hub.end_expired_sessions().await;
        hub.evict_idle_channels();
        limits.forget_idle();
    }
}
