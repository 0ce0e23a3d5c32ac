//! What the handlers and the connections share: the server's parts
//! (`AppState`) and, for the lean path and the hand-over, the router, the
//! request clock, the registry of connections and the shutdown signal
//! (`Connections`).

use std::sync::Arc;

use axum::Router;
use hyper::server::conn::http1;
use tokio_util::sync::CancellationToken;

use super::phase::RequestClock;
use super::registry::Registry;
use crate::config::Config;
use crate::hub::Hub;
use crate::limits::Limits;
use crate::metrics::Metrics;

/// What every handler can reach: one `Arc`, so that handing the state to a
/// handler costs one reference count, not one per field.
#[derive(Clone)]
pub(crate) struct AppState(Arc<App>);

/// The parts of the server the handlers use.
pub(crate) struct App {
    pub(crate) hub: Arc<Hub>,
    pub(crate) config: Arc<Config>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) metrics: Arc<Metrics>,
}

impl AppState {
    pub(crate) fn new(app: App) -> Self {
        AppState(Arc::new(app))
    }
}

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

/// What every connection shares.
pub(crate) struct Connections {
    pub(crate) app: AppState,
    /// Serves whatever the connection layer hands over.
    pub(crate) router: Router,
    pub(crate) http: http1::Builder,
    /// The request timeout, and the origin of the connections' deadlines.
    pub(crate) clock: RequestClock,
    /// Every open connection, to close some when files run short.
    pub(crate) registry: Registry,
    /// Cancelled when the server stops: idle connections close, busy ones
    /// close after their answer.
    pub(crate) closing: CancellationToken,
}
