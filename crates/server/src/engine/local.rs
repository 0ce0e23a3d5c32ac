//! The engine of a server on its own: names are unique in this process,
//! history is the embedded SQLite store, and there are no other servers to
//! tell of a commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use talk_protocol::{ChannelName, Name};

use super::{ClaimedName, EngineApi, NameTaken};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{self, LoadedChannel, OnCommit, Store, StoreCloser, StoredEvent};

/// One process's engine.
pub(crate) struct LocalEngine {
    store: Store,
    /// The names of the sessions online, lowercased, and whose they are.
    names: Mutex<HashMap<String, Arc<str>>>,
}

impl LocalEngine {
    /// Opens the store in the configured data folder (creating it if it is
    /// missing), off the runtime's threads.
    pub(crate) async fn open(
        config: &Config,
        metrics: &Metrics,
    ) -> Result<(LocalEngine, StoreCloser), store::Error> {
        let data_dir = config.data_dir.clone();
        let window = config.history_window;
        let store_metrics = metrics.store.clone();
        let faults = config.store_faults.clone();
        let (store, closer) = tokio::task::spawn_blocking(move || {
            let (store, closer) = Store::open(&data_dir, window, store_metrics, faults)?;
            let n_channels = store.n_channels()?;
            tracing::info!(channels = n_channels, data = %data_dir.display(), "history store open");
            Ok::<_, store::Error>((store, closer))
        })
        .await
        .expect("opening the store does not panic")?;
        Ok((LocalEngine::new(store), closer))
    }

    pub(crate) fn new(store: Store) -> Self {
        LocalEngine {
            store,
            names: Mutex::new(HashMap::new()),
        }
    }
}

/// Commits everything queued and stops the store's writer thread.
pub(super) async fn close(closer: StoreCloser) {
    match tokio::task::spawn_blocking(move || closer.close()).await {
        Ok(()) => tracing::info!("history committed; goodbye"),
        // The runtime is going away under us (its owner dropped it): the
        // writer thread still commits what was queued before it ends.
        Err(error) => tracing::warn!(%error, "could not wait for the history store to close"),
    }
}

impl EngineApi for LocalEngine {
    async fn claim_name(&self, token: &Arc<str>, wished: Option<Name>) -> ClaimedName {
        let mut names = self.names.lock().expect("names lock");
        let asked_for_a_name = wished.is_some();
        let wished = wished.filter(|name| !names.contains_key(&name.key()));
        let name_was_taken = asked_for_a_name && wished.is_none();
        let name = wished.unwrap_or_else(|| guest_name(&names));
        names.insert(name.key(), token.clone());
        ClaimedName {
            name,
            name_was_taken,
        }
    }

    async fn rename(&self, token: &Arc<str>, from: &Name, to: &Name) -> Result<(), NameTaken> {
        let mut names = self.names.lock().expect("names lock");
        if let Some(owner) = names.get(&to.key()) {
            if owner != token {
                return Err(NameTaken);
            }
        }
        if names.get(&from.key()) == Some(token) {
            names.remove(&from.key());
        }
        names.insert(to.key(), token.clone());
        Ok(())
    }

    fn release_name(&self, token: &str, name: &Name) {
        let mut names = self.names.lock().expect("names lock");
        if names
            .get(&name.key())
            .is_some_and(|owner| &**owner == token)
        {
            names.remove(&name.key());
        }
    }

    async fn load_channel(
        &self,
        name: &ChannelName,
    ) -> Result<Option<LoadedChannel>, store::Error> {
        // SQLite blocks: the read runs on a thread of its own.
        let store = self.store.clone();
        let key = name.as_str().to_owned();
        tokio::task::spawn_blocking(move || store.load_channel(&key))
            .await
            .map_err(|_| store::Error::Closed)?
    }

    fn append(
        &self,
        channel: &ChannelName,
        epoch: &Arc<str>,
        generation: u64,
        event: StoredEvent,
        on_commit: OnCommit,
    ) {
        self.store
            .append(channel.as_str(), epoch, generation, event, on_commit);
    }

    fn prune(&self, channel: &ChannelName, up_to_seq: u64) {
        self.store.prune(channel.as_str(), up_to_seq);
    }

    fn failure(&self) -> Option<String> {
        self.store.failure()
    }
}

/// A free `guest-NNNN` name; longer numbers once the short ones fill up.
fn guest_name(taken: &HashMap<String, Arc<str>>) -> Name {
    let mut upper = 10_000;
    loop {
        for _ in 0..16 {
            let name = format!("guest-{}", fastrand::u32(upper / 10..upper));
            if !taken.contains_key(&name) {
                return Name::parse(&name).expect("guest names are valid");
            }
        }
        upper *= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(data: &tempfile::TempDir) -> LocalEngine {
        let metrics = Metrics::new();
        let (store, _closer) = Store::open(data.path(), 10, metrics.store.clone(), None).unwrap();
        LocalEngine::new(store)
    }

    fn name(name: &str) -> Name {
        Name::parse(name).unwrap()
    }

    #[tokio::test]
    async fn a_name_belongs_to_one_session_until_it_lets_go() {
        let data = tempfile::tempdir().unwrap();
        let engine = engine(&data);
        let (ada, bob): (Arc<str>, Arc<str>) = ("ada-token".into(), "bob-token".into());

        let first = engine.claim_name(&ada, Some(name("Ada"))).await;
        assert_eq!(first.name, name("Ada"));
        assert!(!first.name_was_taken);

        // Names compare ignoring case; the second asker gets a guest name.
        let second = engine.claim_name(&bob, Some(name("ADA"))).await;
        assert!(second.name_was_taken);
        assert!(second.name.as_str().starts_with("guest-"));

        assert_eq!(
            engine.rename(&bob, &second.name, &name("ada")).await,
            Err(NameTaken)
        );
        // Only its owner lets a name go.
        engine.release_name(&bob, &name("Ada"));
        assert_eq!(
            engine.rename(&bob, &second.name, &name("ada")).await,
            Err(NameTaken)
        );
        engine.release_name(&ada, &name("Ada"));
        assert_eq!(
            engine.rename(&bob, &second.name, &name("ada")).await,
            Ok(())
        );

        // The guest name bob left is free again; ada's is bob's now.
        let third = engine.claim_name(&ada, Some(second.name.clone())).await;
        assert_eq!(third.name, second.name);
        let fourth = engine.claim_name(&ada, Some(name("Ada"))).await;
        assert!(fourth.name_was_taken);
    }

    #[tokio::test]
    async fn a_session_may_change_the_case_of_its_own_name() {
        let data = tempfile::tempdir().unwrap();
        let engine = engine(&data);
        let ada: Arc<str> = "ada-token".into();
        engine.claim_name(&ada, Some(name("ada"))).await;
        assert_eq!(
            engine.rename(&ada, &name("ada"), &name("Ada")).await,
            Ok(())
        );
        engine.release_name(&ada, &name("Ada"));
        let again = engine.claim_name(&ada, Some(name("ADA"))).await;
        assert!(!again.name_was_taken);
    }
}
