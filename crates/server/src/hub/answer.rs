//! A poll's answer, encoded once: shared by every poll it answers, and
//! handed by the publish to the parked polls' waiters.

use bytes::Bytes;

/// A complete poll answer, encoded.
#[derive(Clone)]
pub(crate) struct PollBody {
    /// The JSON of the answer.
    pub(crate) json: Bytes,
    /// How many events it carries, for metrics.
    pub(crate) n_events: usize,
}
