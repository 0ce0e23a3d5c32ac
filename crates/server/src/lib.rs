//! The talk server: real-time chat over HTTP long-polling.
//!
//! `run` takes a bound listener, a `Config` and a shutdown signal, and serves
//! until the signal fires. See `ARCHITECTURE.md` for the map of the modules.

mod command;
mod config;
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

/// Serves the chat on `listener` until `shutdown` resolves, then answers
/// every held poll with a reconnect hint, lets answers finish, commits the
/// history and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    config.validate()?;
    let data_dir = config.data_dir.clone();
    let window = config.history_window;
    let metrics = Arc::new(metrics::Metrics::new());
    let store_metrics = metrics.store.clone();
    let (store, store_closer, loaded) =
        tokio::task::spawn_blocking(move || store::Store::open(&data_dir, window, store_metrics))
            .await
            .expect("opening the store does not panic")?;
    let n_channels = loaded.len();
    if let Ok(limit) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        metrics.open_files_limit.set(limit.0 as i64);
    }
    let settings = hub::HubSettings {
        history_window: config.history_window,
        history_on_join: config.history_on_join,
        presence_limit: config.presence_limit,
        session_grace: config.session_grace,
    };
    let hub = Arc::new(hub::Hub::new(settings, store, loaded, metrics.clone()));
    let limits = Arc::new(limits::Limits::new(
        config.send_rate,
        config.session_start_rate,
    ));
    let config = Arc::new(config);
    tracing::info!(channels = n_channels, data = %config.data_dir.display(), "history loaded");

    let reaper = tokio::spawn(end_expired_sessions(
        hub.clone(),
        limits.clone(),
        config.session_grace,
    ));
    let app = http::AppState::new(http::App {
        hub: hub.clone(),
        config: config.clone(),
        limits,
        metrics: metrics.clone(),
    });
    let router = http::router(app.clone());
    let stop = async {
        shutdown.await;
        tracing::info!("shutting down: answering held polls");
        hub.begin_shutdown();
    };
    let connections =
        listener::serve(listener, app, router, metrics, config.request_timeout, stop).await;
    if tokio::time::timeout(config.shutdown_grace, connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after the shutdown grace period");
    }
    reaper.abort();
    match tokio::task::spawn_blocking(move || store_closer.close()).await {
        Ok(()) => tracing::info!("history committed; goodbye"),
        // The runtime is going away under us (its owner dropped it): the
        // writer thread still commits what was queued before it ends.
        Err(error) => tracing::warn!(%error, "could not wait for the history store to close"),
    }
    Ok(())
}

/// Ends sessions that stopped polling, every quarter of the grace period.
async fn end_expired_sessions(hub: Arc<hub::Hub>, limits: Arc<limits::Limits>, grace: Duration) {
    let mut ticks =
        tokio::time::interval((grace / 4).clamp(Duration::from_millis(50), Duration::from_secs(5)));
    loop {
        ticks.tick().await;
        hub.end_expired_sessions().await;
        limits.forget_idle();
    }
}
