//! The engine: what the servers of a cluster would share, behind one
//! trait, so that the hub runs the same on one process or on many.
//!
//! An engine owns what the hub must not keep to itself: the names of the
//! sessions online (so a name is unique wherever its session polls), the
//! channels' durable history (loading a channel's window when it is first
//! used, committing its events in sequence order, forgetting what fell
//! out of the window), and telling the other servers that an event is
//! committed, so that their parked polls are answered too. The hub keeps
//! the rest: its sessions' state, the channels' windows in memory (where
//! a channel numbers its events, under its lock, before they go to the
//! engine), and the parked polls.
//!
//! [`LocalEngine`] (`local.rs`) is one process with the embedded SQLite
//! store; there are no other servers to tell. [`open`] chooses the engine,
//! once, at start; the hub holds it as [`Engine`], an enum, so every call
//! is dispatched statically, without a boxed future. No engine call is
//! made for a poll.

mod local;

use std::future::Future;
use std::sync::Arc;

use talk_protocol::{ChannelName, Name};

pub(crate) use local::LocalEngine;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{self, LoadedChannel, OnCommit, StoredEvent};

/// What an engine does for the hub. Methods the hub calls while it holds
/// a lock are plain functions and must not block; the others may wait on
/// the engine's own I/O.
pub(crate) trait EngineApi: Send + Sync {
    /// Gives the session `token` the name it wished for if nobody online
    /// has it, else a free guest name.
    fn claim_name(
        &self,
        token: &Arc<str>,
        wished: Option<Name>,
    ) -> impl Future<Output = ClaimedName> + Send;

    /// Moves the session `token` from the name `from` to `to`; fails, and
    /// changes nothing, when someone else online has `to`.
    fn rename(
        &self,
        token: &Arc<str>,
        from: &Name,
        to: &Name,
    ) -> impl Future<Output = Result<(), NameTaken>> + Send;

    /// Lets go of `name` if the session `token` holds it.
    fn release_name(&self, token: &str, name: &Name);

    /// The channel `name` as it is stored (its epoch, head and last
    /// events), or `None` if it has no history. Sees every commit that was
    /// reported before the call.
    fn load_channel(
        &self,
        name: &ChannelName,
    ) -> impl Future<Output = Result<Option<LoadedChannel>, store::Error>> + Send;

    /// Queues a channel's event to be committed; `on_commit` is told how
    /// the commit ended, and the other servers learn of the event once it
    /// is committed. Called under the channel's lock, so a channel's
    /// events are queued, committed and reported in sequence order.
    fn append(
        &self,
        channel: &ChannelName,
        epoch: &Arc<str>,
        generation: u64,
        event: StoredEvent,
        on_commit: OnCommit,
    );

    /// Forgets a channel's events up to and including `up_to_seq`.
    fn prune(&self, channel: &ChannelName, up_to_seq: u64);

    /// Why events cannot be committed right now, if they cannot.
    fn failure(&self) -> Option<String>;
}

/// The name a new session got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimedName {
    pub(crate) name: Name,
    /// Set when it asked for a name that someone online has.
    pub(crate) name_was_taken: bool,
}

/// Someone else online has the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NameTaken;

/// The engine a server runs on. One variant per engine; the match in each
/// method is the only place that names them all.
pub(crate) enum Engine {
    Local(LocalEngine),
}

/// What ends an engine when the server stops: it commits what was queued.
pub(crate) enum EngineCloser {
    Local(store::StoreCloser),
}

/// Chooses and opens the engine for this server: the one place that
/// decides. The only engine today is the local one, on the data folder.
pub(crate) async fn open(
    config: &Config,
    metrics: &Metrics,
) -> Result<(Engine, EngineCloser), store::Error> {
    let (local, closer) = LocalEngine::open(config, metrics).await?;
    Ok((Engine::Local(local), EngineCloser::Local(closer)))
}

impl EngineCloser {
    /// Commits everything queued and lets the engine go.
    pub(crate) async fn close(self) {
        match self {
            EngineCloser::Local(closer) => local::close(closer).await,
        }
    }
}

impl EngineApi for Engine {
    async fn claim_name(&self, token: &Arc<str>, wished: Option<Name>) -> ClaimedName {
        match self {
            Engine::Local(local) => local.claim_name(token, wished).await,
        }
    }

    async fn rename(&self, token: &Arc<str>, from: &Name, to: &Name) -> Result<(), NameTaken> {
        match self {
            Engine::Local(local) => local.rename(token, from, to).await,
        }
    }

    fn release_name(&self, token: &str, name: &Name) {
        match self {
            Engine::Local(local) => local.release_name(token, name),
        }
    }

    async fn load_channel(
        &self,
        name: &ChannelName,
    ) -> Result<Option<LoadedChannel>, store::Error> {
        match self {
            Engine::Local(local) => local.load_channel(name).await,
        }
    }

    fn append(
        &self,
        channel: &ChannelName,
        epoch: &Arc<str>,
        generation: u64,
        event: StoredEvent,
        on_commit: OnCommit,
    ) {
        match self {
            Engine::Local(local) => local.append(channel, epoch, generation, event, on_commit),
        }
    }

    fn prune(&self, channel: &ChannelName, up_to_seq: u64) {
        match self {
            Engine::Local(local) => local.prune(channel, up_to_seq),
        }
    }

    fn failure(&self) -> Option<String> {
        match self {
            Engine::Local(local) => local.failure(),
        }
    }
}
