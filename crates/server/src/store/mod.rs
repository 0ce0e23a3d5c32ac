//! Durable history: every channel's events, kept in an embedded SQLite
//! database so that an acknowledged message survives a crash.
//!
//! SQLite calls block, so they never run on the async runtime: one writer
//! thread owns the connection and takes work from a queue. It commits
//! whatever has queued up in one transaction (group commit), which keeps the
//! cost per message low when many arrive at once. Each append carries a callback
//! that the writer calls once the event is committed.
//!
//! A commit that fails takes its events with it, and every later event of
//! the same channel that was queued before the channel learnt of it: the
//! writer refuses those without writing them (they carry the channel's
//! *generation*, which the channel moves on when it rolls back). So a
//! channel's events on disk never have a gap, and none is written after
//! one that was refused.

pub(crate) mod faults;
mod sqlite;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::metrics::histogram::Histogram;

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data folder could not be created.
    #[error("cannot create the data folder {path}: {source}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database file could not be created.
    #[error("cannot create the history database {path}: {source}")]
    CreateDatabase {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite refused an operation.
    #[error("the history store failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The transaction holding the event failed.
    #[error("the history store failed to commit: {reason}")]
    CommitFailed {
        /// SQLite's words.
        reason: String,
    },
    /// An earlier event of the channel could not be committed, so this one,
    /// queued after it, was not written either.
    #[error("the history store failed to commit an earlier event of this channel")]
    EarlierCommitFailed,
    /// The writer thread is gone (the store was closed or crashed).
    #[error("the history store is closed")]
    Closed,
}

/// One stored event, as the store keeps and returns it.
#[derive(Debug, Clone)]
pub(crate) struct StoredEvent {
    /// Its position in the channel's stream.
    pub seq: u64,
    /// Who sent it under which id, for messages, so that retries can be
    /// recognised, also after a restart.
    pub send: Option<SendKey>,
    /// The event encoded as it goes on the wire.
    pub body: Bytes,
}

/// A message's send id, scoped to its sender: two people may use the same
/// id in one channel, and a person who comes back under the same name
/// (a new session) retries under the same key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SendKey {
    /// The sender's name as names are compared: lowercased.
    pub sender: String,
    /// The id the client gave the message.
    pub id: String,
}

/// A channel as it was found on disk.
#[derive(Debug)]
pub(crate) struct LoadedChannel {
    /// The life of its history.
    pub epoch: String,
    /// The last sequence number it used.
    pub head: u64,
    /// Its most recent events, oldest first.
    pub events: Vec<StoredEvent>,
}

enum Job {
    /// An event to write; the channel's row is written with its first event,
    /// in the same transaction, so no event is ever on disk without it.
    Append {
        channel: String,
        epoch: Arc<str>,
        /// The channel's generation when the event was queued (see the
        /// module's comment).
        generation: u64,
        event: StoredEvent,
        on_commit: OnCommit,
    },
    Prune {
        channel: String,
        up_to_seq: u64,
    },
    /// Ends the writer once everything queued before it is committed.
    Stop,
}

/// Called on the writer thread once an append is committed (or failed).
pub(crate) type OnCommit = Box<dyn FnOnce(Result<(), Error>) + Send>;

/// What the writer thread reports to `/metrics`: an operator sees at once
/// when commits slow down (a slow disk, a long WAL checkpoint), which delays
/// every acknowledgement and every delivery.
#[derive(Clone)]
pub(crate) struct StoreMetrics {
    /// How long each transaction took, from its first statement to its commit.
    pub(crate) commit_seconds: Histogram,
    /// How many jobs each transaction held (group commit's batch size).
    pub(crate) commit_jobs: Histogram,
}

/// A commit slower than this is logged as a warning, with its size.
const SLOW_COMMIT: Duration = Duration::from_millis(250);

/// The handle to the store; cheap to clone.
#[derive(Clone)]
pub(crate) struct Store {
    jobs: mpsc::Sender<Job>,
    /// Why the last commit failed, until one succeeds.
    failure: Arc<Mutex<Option<String>>>,
    /// A connection of its own for loading channels, which WAL mode lets
    /// read while the writer writes; loads are rare (a channel's first use
    /// since start, or since it left memory), so one is enough.
    reader: Arc<Mutex<rusqlite::Connection>>,
    /// How many events of a channel are loaded.
    window: usize,
}

/// Owns the writer thread; `close` waits for everything queued to be committed.
pub(crate) struct StoreCloser {
    jobs: mpsc::Sender<Job>,
    writer: JoinHandle<()>,
}

impl Store {
    /// Opens (or creates) the store in `data_dir`, whose channels load the
    /// last `window` events each. Blocks: call it off the runtime.
    pub(crate) fn open(
        data_dir: &Path,
        window: usize,
        metrics: StoreMetrics,
        faults: Option<faults::StoreFaults>,
    ) -> Result<(Store, StoreCloser), Error> {
        // The history is the chat's, not the machine's other users': the
        // folder is made readable by its owner only (and so is the
        // database, in `sqlite::open`). A folder that exists is left as it is.
        let mut folder = std::fs::DirBuilder::new();
        folder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut folder, 0o700);
        folder.create(data_dir).map_err(|source| Error::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join("talk.sqlite3");
        let connection = sqlite::open(&path)?;
        let reader = sqlite::open_reader(&path)?;
        let (jobs, queue) = mpsc::channel();
        let failure = Arc::new(Mutex::new(None));
        let mut writer = Writer {
            connection,
            metrics,
            faults,
            failure: failure.clone(),
            refused: HashMap::new(),
            read_only: false,
        };
        let writer = std::thread::Builder::new()
            .name("talk-store".into())
            .spawn(move || writer.run(queue))
            .expect("spawning the store thread");
        let store = Store {
            jobs: jobs.clone(),
            failure,
            reader: Arc::new(Mutex::new(reader)),
            window,
        };
        Ok((store, StoreCloser { jobs, writer }))
    }

    /// The channel `name` as it is on disk (its epoch, head and last
    /// events), or `None` if it has no history. Blocks: call it off the
    /// runtime. Every commit made before the call is seen.
    pub(crate) fn load_channel(&self, name: &str) -> Result<Option<LoadedChannel>, Error> {
        let reader = self.reader.lock().expect("store reader lock");
        Ok(sqlite::load_channel(&reader, name, self.window)?)
    }

    /// How many channels have history on disk. Blocks.
    pub(crate) fn n_channels(&self) -> Result<u64, Error> {
        let reader = self.reader.lock().expect("store reader lock");
        Ok(sqlite::n_channels(&reader)?)
    }

    /// Queues an event; `on_commit` runs on the writer thread once the event
    /// is committed, or failed to be.
    ///
    /// The writer commits jobs in queue order and reports them in that
    /// order, so events of one channel must be queued in sequence order
    /// (under the channel's lock): then they are committed, and reported,
    /// in sequence order. Running the callback on the writer thread, rather
    /// than in the caller's task, means a caller that goes away (its client
    /// hung up) cannot leave a committed event unreported.
    pub(crate) fn append(
        &self,
        channel: &str,
        epoch: &Arc<str>,
        generation: u64,
        event: StoredEvent,
        on_commit: OnCommit,
    ) {
        let job = Job::Append {
            channel: channel.to_owned(),
            epoch: epoch.clone(),
            generation,
            event,
            on_commit,
        };
        if let Err(mpsc::SendError(Job::Append { on_commit, .. })) = self.jobs.send(job) {
            on_commit(Err(Error::Closed));
        }
    }

    /// Forgets a channel's events up to and including `up_to_seq`.
    pub(crate) fn prune(&self, channel: &str, up_to_seq: u64) {
        let _ = self.jobs.send(Job::Prune {
            channel: channel.to_owned(),
            up_to_seq,
        });
    }

    /// Why the store cannot commit, while the last commit (or probe) failed.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure.lock().expect("store failure lock").clone()
    }
}

impl StoreCloser {
    /// Commits everything queued and stops the writer thread. Blocks.
    pub(crate) fn close(self) {
        let _ = self.jobs.send(Job::Stop);
        if self.writer.join().is_err() {
            tracing::error!("the store thread panicked while closing");
        }
    }
}

/// The most jobs one transaction takes, so a flood cannot delay the first
/// caller's acknowledgement without bound.
pub(crate) const MAX_JOBS_PER_COMMIT: usize = 4096;

/// How often a failing store tries a small write on its own, so that it
/// learns it has recovered (and `/healthz` says so) with no traffic.
const PROBE_WHILE_FAILING: Duration = Duration::from_secs(1);

/// The writer thread's state.
struct Writer {
    connection: rusqlite::Connection,
    metrics: StoreMetrics,
    faults: Option<faults::StoreFaults>,
    failure: Arc<Mutex<Option<String>>>,
    /// Per channel, the newest generation with a failed commit: its events
    /// still in the queue are refused, not written.
    refused: HashMap<String, u64>,
    /// Whether the connection is set read-only by a fault.
    read_only: bool,
}

impl Writer {
    fn run(&mut self, queue: mpsc::Receiver<Job>) {
        let mut stopping = false;
        while !stopping {
            let first = if self.is_failing() {
                match queue.recv_timeout(PROBE_WHILE_FAILING) {
                    Ok(job) => job,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.probe();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                let Ok(job) = queue.recv() else { break };
                job
            };
            let mut batch = vec![first];
            while batch.len() < MAX_JOBS_PER_COMMIT {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            if let Some(stop_at) = batch.iter().position(|job| matches!(job, Job::Stop)) {
                // Whatever was queued after the stop is dropped, and its callers
                // hear of it: their callbacks are dropped uncalled.
                batch.truncate(stop_at);
                stopping = true;
            }
            self.commit(batch);
        }
    }

    /// Commits a batch in one transaction, and reports each append.
    fn commit(&mut self, batch: Vec<Job>) {
        let refused: Vec<bool> = batch.iter().map(|job| self.is_refused(job)).collect();
        if refused.iter().all(|refused| *refused) {
            // Nothing to write, so nothing learnt of the disk either.
            for job in batch {
                if let Job::Append { on_commit, .. } = job {
                    on_commit(Err(Error::EarlierCommitFailed));
                }
            }
            return;
        }
        self.apply_faults();
        let started = Instant::now();
        let written = batch
            .iter()
            .zip(&refused)
            .filter(|(_, refused)| !**refused)
            .map(|(job, _)| job);
        let result =
            sqlite::commit(&mut self.connection, written).map_err(|error| error.to_string());
        let took = started.elapsed();
        self.metrics.commit_seconds.observe(took.as_secs_f64());
        self.metrics.commit_jobs.observe(batch.len() as f64);
        if took >= SLOW_COMMIT {
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                jobs = batch.len(),
                "a history commit was slow"
            );
        }
        match &result {
            Ok(()) => self.set_failure(None),
            Err(reason) => {
                tracing::error!(%reason, jobs = batch.len(), "committing to the history store failed");
                self.set_failure(Some(reason.clone()));
                for (job, refused) in batch.iter().zip(&refused) {
                    if let (
                        Job::Append {
                            channel,
                            generation,
                            ..
                        },
                        false,
                    ) = (job, refused)
                    {
                        let newest = self.refused.entry(channel.clone()).or_insert(*generation);
                        *newest = (*newest).max(*generation);
                    }
                }
            }
        }
        for (job, refused) in batch.into_iter().zip(refused) {
            if let Job::Append { on_commit, .. } = job {
                on_commit(match (&result, refused) {
                    (_, true) => Err(Error::EarlierCommitFailed),
                    (Ok(()), false) => Ok(()),
                    (Err(reason), false) => Err(Error::CommitFailed {
                        reason: reason.clone(),
                    }),
                });
            }
        }
    }

    /// Whether `job` is an append that an earlier failure of its channel
    /// refuses. An append of a newer generation means the channel has rolled
    /// back, and everything older has left the queue: its entry goes.
    fn is_refused(&mut self, job: &Job) -> bool {
        let Job::Append {
            channel,
            generation,
            ..
        } = job
        else {
            return false;
        };
        match self.refused.get(channel) {
            Some(newest_refused) if generation <= newest_refused => true,
            Some(_) => {
                self.refused.remove(channel);
                false
            }
            None => false,
        }
    }

    fn is_failing(&self) -> bool {
        self.failure.lock().expect("store failure lock").is_some()
    }

    fn set_failure(&self, failure: Option<String>) {
        *self.failure.lock().expect("store failure lock") = failure;
    }

    /// A small write on its own, while commits fail.
    fn probe(&mut self) {
        self.apply_faults();
        match sqlite::probe(&mut self.connection) {
            Ok(()) => {
                tracing::info!("the history store commits again");
                self.set_failure(None);
            }
            Err(error) => self.set_failure(Some(error.to_string())),
        }
    }

    /// Makes the next transaction fail inside SQLite, or take longer, as a
    /// test asked.
    fn apply_faults(&mut self) {
        let Some(faults) = &self.faults else { return };
        let fault = faults.next();
        if fault.fail != self.read_only {
            if let Err(error) = self
                .connection
                .pragma_update(None, "query_only", fault.fail)
            {
                tracing::error!(%error, "could not set the store's test fault");
            }
            self.read_only = fault.fail;
        }
        if !fault.delay.is_zero() {
            std::thread::sleep(fault.delay);
        }
    }
}
