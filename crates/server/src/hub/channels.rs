//! Which channels are in memory: a channel is loaded from the engine when
//! it is first used (or created, if it has no history and the client may
//! create one), and leaves memory once nobody has used it for a while.

use std::sync::Arc;
use std::time::{Duration, Instant};

use talk_protocol::{ChannelInfo, ChannelName};

use super::channel::Channel;
use super::{Error, Hub, MayCreate};
use crate::engine::EngineApi;

impl Hub {
    /// The channel `name` with `token` added to its members, and how many
    /// members it has now: from memory, else loaded from the engine (off the
    /// runtime's threads), else created with a new epoch if `may_create`
    /// lets the client create one.
    ///
    /// The member is added under the lock of the channel map, which
    /// eviction takes too, so a channel entered is never one that has just
    /// left memory.
    pub(super) async fn enter_channel(
        &self,
        name: &ChannelName,
        token: &Arc<str>,
        may_create: MayCreate<'_>,
    ) -> Result<(Arc<Channel>, usize), Error> {
        if let Some(entered) = self.enter_in_memory(name, token) {
            return Ok(entered);
        }
        let loaded = self.engine.load_channel(name).await?;
        let window = self.settings.history_window;
        let channel = match loaded {
            Some(loaded) => Channel::new(
                name.clone(),
                loaded.epoch,
                loaded.head,
                loaded.events,
                window,
            ),
            None => {
                // The default channel is always there to be used, so
                // using it first creates nothing a client asked for.
                if *name != ChannelName::default_channel() {
                    may_create()?;
                }
                // The store writes the channel's row with its first event.
                Channel::new(name.clone(), new_epoch(), 0, Vec::new(), window)
            }
        };
        let mut channels = self.channels.lock().expect("channels lock");
        // Loaded meanwhile by another request: that copy is the one.
        if let Some(channel) = channels.get(name) {
            let n_members = channel.add_member(token);
            return Ok((channel.clone(), n_members));
        }
        if channels.len() >= self.settings.max_channels {
            // Make room with the channels nobody uses, however recently.
            let now = Instant::now();
            channels.retain(|_, channel| !channel.is_idle(now, Duration::ZERO));
            if channels.len() >= self.settings.max_channels {
                self.metrics.channels.set(channels.len() as i64);
                return Err(Error::ChannelLimit {
                    max: self.settings.max_channels,
                });
            }
        }
        let channel = Arc::new(channel);
        let n_members = channel.add_member(token);
        channels.insert(name.clone(), channel.clone());
        self.metrics.channels.set(channels.len() as i64);
        Ok((channel, n_members))
    }

    /// As `enter_channel`, for a channel in memory.
    fn enter_in_memory(
        &self,
        name: &ChannelName,
        token: &Arc<str>,
    ) -> Option<(Arc<Channel>, usize)> {
        let channels = self.channels.lock().expect("channels lock");
        let channel = channels.get(name)?;
        let n_members = channel.add_member(token);
        Some((channel.clone(), n_members))
    }

    /// Lets the channels that nobody has used for the idle time leave
    /// memory; their history stays on disk, to be loaded when next used.
    pub(crate) fn evict_idle_channels(&self) {
        let now = Instant::now();
        let idle = self.settings.channel_idle;
        let mut channels = self.channels.lock().expect("channels lock");
        channels.retain(|_, channel| !channel.is_idle(now, idle));
        self.metrics.channels.set(channels.len() as i64);
    }

    /// The channels with people in them, largest first.
    pub(crate) fn list(&self) -> Vec<ChannelInfo> {
        let channels: Vec<Arc<Channel>> = self
            .channels
            .lock()
            .expect("channels lock")
            .values()
            .cloned()
            .collect();
        let mut list: Vec<ChannelInfo> = channels
            .iter()
            .map(|channel| ChannelInfo {
                name: channel.name.as_str().to_owned(),
                members: channel.n_members(),
            })
            .filter(|info| info.members > 0)
            .collect();
        list.sort_by(|a, b| b.members.cmp(&a.members).then_with(|| a.name.cmp(&b.name)));
        list
    }
}

/// A short random name for a new life of a channel's history.
fn new_epoch() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]))
        .collect()
}
