//! The server's metrics, exposed at `/metrics` in the Prometheus text format.
//!
//! Each server owns its registry (no global recorder), so that several
//! servers in one process, as in the tests, keep separate counts.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::StoreMetrics;

/// The label of `talk_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ErrorLabels {
    pub(crate) code: &'static str,
}

/// Every metric of one server.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) connections: Gauge,
    pub(crate) polls_held: Gauge,
    pub(crate) sessions: Gauge,
    pub(crate) channels: Gauge,
    pub(crate) messages_in: Counter,
    pub(crate) events_out: Counter,
    pub(crate) poll_answers: Counter,
    pub(crate) poll_hold_seconds: Histogram,
    pub(crate) send_seconds: Histogram,
    pub(crate) errors: Family<ErrorLabels, Counter>,
    pub(crate) accept_errors: Counter,
    pub(crate) request_timeouts: Counter,
    pub(crate) connections_closed_for_room: Counter,
    pub(crate) open_files_limit: Gauge,
    pub(crate) store: StoreMetrics,
}

impl Metrics {
    /// A fresh set of metrics, all at zero.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("talk");
        let metrics = Metrics {
            connections: Gauge::default(),
            polls_held: Gauge::default(),
            sessions: Gauge::default(),
            channels: Gauge::default(),
            messages_in: Counter::default(),
            events_out: Counter::default(),
            poll_answers: Counter::default(),
            poll_hold_seconds: Histogram::new([0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 20.0, 30.0]),
            send_seconds: Histogram::new([
                0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
            errors: Family::default(),
            accept_errors: Counter::default(),
            request_timeouts: Counter::default(),
            connections_closed_for_room: Counter::default(),
            open_files_limit: Gauge::default(),
            store: StoreMetrics {
                commit_seconds: Histogram::new([
                    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 1.0, 5.0,
                ]),
                commit_jobs: Histogram::new([1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0]),
            },
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Open client connections",
            metrics.connections.clone(),
        );
        registry.register(
            "polls_held",
            "Polls waiting for events",
            metrics.polls_held.clone(),
        );
        registry.register("sessions", "Sessions online", metrics.sessions.clone());
        registry.register("channels", "Channels known", metrics.channels.clone());
        registry.register(
            "messages_in",
            "Messages and actions posted",
            metrics.messages_in.clone(),
        );
        registry.register(
            "events_out",
            "Events delivered in poll answers",
            metrics.events_out.clone(),
        );
        registry.register(
            "poll_answers",
            "Poll answers sent",
            metrics.poll_answers.clone(),
        );
        registry.register(
            "poll_hold_seconds",
            "How long polls were held before their answer",
            metrics.poll_hold_seconds.clone(),
        );
        registry.register(
            "send_seconds",
            "How long accepted sends took, from their request to their acknowledgement",
            metrics.send_seconds.clone(),
        );
        registry.register("errors", "Error answers by code", metrics.errors.clone());
        registry.register(
            "accept_errors",
            "Failed accepts, e.g. for lack of file descriptors",
            metrics.accept_errors.clone(),
        );
        registry.register(
            "request_timeouts",
            "Requests cut off for not arriving whole within the request timeout of their first byte",
            metrics.request_timeouts.clone(),
        );
        registry.register(
            "connections_closed_for_room",
            "Connections stalled in a request, or idle, closed near the open-files limit to let new ones in",
            metrics.connections_closed_for_room.clone(),
        );
        registry.register(
            "open_files_limit",
            "The open-files limit, which bounds connections",
            metrics.open_files_limit.clone(),
        );
        registry.register(
            "store_commit_seconds",
            "How long each history transaction took to commit",
            metrics.store.commit_seconds.clone(),
        );
        registry.register(
            "store_commit_jobs",
            "Appends, channels and prunes per history transaction",
            metrics.store.commit_jobs.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// The metrics in the Prometheus text format.
    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// Counts a held poll until the guard is dropped.
    pub(crate) fn held_poll(&self) -> GaugeGuard {
        self.polls_held.inc();
        GaugeGuard(Some(self.polls_held.clone()))
    }

    /// Counts an open connection until the guard is dropped.
    pub(crate) fn open_connection(&self) -> GaugeGuard {
        self.connections.inc();
        GaugeGuard(Some(self.connections.clone()))
    }

    /// Counts an error answer.
    pub(crate) fn error(&self, code: &'static str) {
        self.errors.get_or_create(&ErrorLabels { code }).inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Decrements a gauge when dropped, unless disarmed.
pub(crate) struct GaugeGuard(Option<Gauge>);

impl GaugeGuard {
    /// Drops the guard without decrementing: somebody else has.
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        if let Some(gauge) = &self.0 {
            gauge.dec();
        }
    }
}
