//! Durable history: every channel's events, kept in an embedded SQLite
//! database so that an acknowledged message survives a crash.
//!
//! SQLite calls block, so they never run on the async runtime: one writer
//! thread owns the connection and takes work from a queue. It commits
//! whatever has queued up in one transaction (group commit), which keeps the
//! cost per message low when many arrive at once. Each append carries a callback
//! that the writer calls once the event is committed.

mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
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
    /// The writer thread is gone (the store was closed or crashed).
    #[error("the history store is closed")]
    Closed,
}

/// One stored event, as the store keeps and returns it.
#[derive(Debug, Clone)]
pub(crate) struct StoredEvent {
    /// Its position in the channel's stream.
    pub seq: u64,
    /// The sender's id, for messages, so that retries can be recognised after a restart.
    pub send_id: Option<String>,
    /// The event encoded as it goes on the wire.
    pub body: Bytes,
}

/// A channel as it was found on disk at start.
#[derive(Debug)]
pub(crate) struct LoadedChannel {
    /// The channel's name.
    pub name: String,
    /// The life of its history.
    pub epoch: String,
    /// The last sequence number it used.
    pub head: u64,
    /// Its most recent events, oldest first.
    pub events: Vec<StoredEvent>,
}

enum Job {
    CreateChannel {
        name: String,
        epoch: String,
    },
    Append {
        channel: String,
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
}

/// Owns the writer thread; `close` waits for everything queued to be committed.
pub(crate) struct StoreCloser {
    jobs: mpsc::Sender<Job>,
    writer: JoinHandle<()>,
}

impl Store {
    /// Opens (or creates) the store in `data_dir` and reads the last
    /// `window` events of every channel. Blocks: call it off the runtime.
    pub(crate) fn open(
        data_dir: &Path,
        window: usize,
        metrics: StoreMetrics,
    ) -> Result<(Store, StoreCloser, Vec<LoadedChannel>), Error> {
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
        let mut connection = sqlite::open(&data_dir.join("talk.sqlite3"))?;
        let loaded = sqlite::load(&connection, window)?;
        let (jobs, queue) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("talk-store".into())
            .spawn(move || write_loop(&mut connection, queue, &metrics))
            .expect("spawning the store thread");
        let store = Store { jobs: jobs.clone() };
        Ok((store, StoreCloser { jobs, writer }, loaded))
    }

    /// Records a new channel and the epoch of its history.
    pub(crate) fn create_channel(&self, name: &str, epoch: &str) {
        // A send fails only when the writer is gone; the appends that follow
        // will report that to their callers.
        let _ = self.jobs.send(Job::CreateChannel {
            name: name.to_owned(),
            epoch: epoch.to_owned(),
        });
    }

    /// Queues an event; `on_commit` runs on the writer thread once the event
    /// is committed, or failed to be.
    ///
    /// The writer commits jobs in queue order and reports them in that
    /// order, so events of one channel queued in sequence order are reported
    /// in sequence order. Running the callback on the writer thread, rather
    /// than in the caller's task, means a caller that goes away (its client
    /// hung up) cannot leave a committed event unreported.
    pub(crate) fn append(&self, channel: &str, event: StoredEvent, on_commit: OnCommit) {
        let job = Job::Append {
            channel: channel.to_owned(),
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

fn write_loop(
    connection: &mut rusqlite::Connection,
    queue: mpsc::Receiver<Job>,
    metrics: &StoreMetrics,
) {
    let mut stopping = false;
    while !stopping {
        let Ok(first) = queue.recv() else { break };
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
        let started = Instant::now();
        let result = sqlite::commit(connection, &batch).map_err(|error| error.to_string());
        let took = started.elapsed();
        metrics.commit_seconds.observe(took.as_secs_f64());
        metrics.commit_jobs.observe(batch.len() as f64);
        if took >= SLOW_COMMIT {
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                jobs = batch.len(),
                "a history commit was slow"
            );
        }
        if let Err(reason) = &result {
            tracing::error!(%reason, jobs = batch.len(), "committing to the history store failed");
        }
        for job in batch {
            if let Job::Append { on_commit, .. } = job {
                on_commit(
                    result
                        .clone()
                        .map_err(|reason| Error::CommitFailed { reason }),
                );
            }
        }
    }
}
