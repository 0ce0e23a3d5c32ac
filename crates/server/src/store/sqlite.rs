//! The SQL of the store: schema, loading at start, and one commit of a batch.
//!
//! WAL mode with `synchronous = NORMAL`: a committed transaction is in the
//! WAL file before `commit` returns, so it survives the process being
//! killed; only a power loss could take the last commits back.

use std::path::Path;

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};

use super::{Error, Job, LoadedChannel, StoredEvent};

pub(super) fn open(path: &Path) -> Result<Connection, Error> {
    // Created empty (which SQLite takes as a new database) and readable by
    // its owner only before SQLite opens it: SQLite gives the `-wal` and
    // `-shm` files it makes beside it the database file's mode. A database
    // that exists keeps its mode.
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    file.open(path).map_err(|source| Error::CreateDatabase {
        path: path.to_owned(),
        source,
    })?;
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    connection.execute_batch(
        "CREATE TABLE IF NOT EXISTS channels (
             name  TEXT PRIMARY KEY,
             epoch TEXT NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS events (
             channel TEXT NOT NULL,
             seq     INTEGER NOT NULL,
             send_id TEXT,
             body    BLOB NOT NULL,
             PRIMARY KEY (channel, seq)
         ) WITHOUT ROWID;",
    )?;
    Ok(connection)
}

pub(super) fn load(connection: &Connection, window: usize) -> rusqlite::Result<Vec<LoadedChannel>> {
    let mut channels = connection.prepare("SELECT name, epoch FROM channels ORDER BY name")?;
    let mut head = connection.prepare("SELECT max(seq) FROM events WHERE channel = ?1")?;
    let mut recent = connection.prepare(
        "SELECT seq, send_id, body FROM events WHERE channel = ?1 ORDER BY seq DESC LIMIT ?2",
    )?;
    let names: Vec<(String, String)> = channels
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut loaded = Vec::with_capacity(names.len());
    for (name, epoch) in names {
        let head: Option<i64> = head
            .query_row([&name], |row| row.get(0))
            .optional()?
            .flatten();
        let mut events: Vec<StoredEvent> = recent
            .query_map(params![name, window as i64], |row| {
                Ok(StoredEvent {
                    seq: row.get::<_, i64>(0)? as u64,
                    send_id: row.get(1)?,
                    body: Bytes::from(row.get::<_, Vec<u8>>(2)?),
                })
            })?
            .collect::<Result<_, _>>()?;
        events.reverse();
        loaded.push(LoadedChannel {
            name,
            epoch,
            head: head.unwrap_or(0) as u64,
            events,
        });
    }
    Ok(loaded)
}

pub(super) fn commit(connection: &mut Connection, batch: &[Job]) -> rusqlite::Result<()> {
    let transaction = connection.transaction()?;
    {
        let mut create = transaction
            .prepare_cached("INSERT OR IGNORE INTO channels (name, epoch) VALUES (?1, ?2)")?;
        let mut append = transaction.prepare_cached(
            "INSERT OR REPLACE INTO events (channel, seq, send_id, body) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut prune =
            transaction.prepare_cached("DELETE FROM events WHERE channel = ?1 AND seq <= ?2")?;
        for job in batch {
            match job {
                Job::CreateChannel { name, epoch } => {
                    create.execute(params![name, epoch])?;
                }
                Job::Append { channel, event, .. } => {
                    append.execute(params![
                        channel,
                        event.seq as i64,
                        event.send_id,
                        &event.body[..]
                    ])?;
                }
                Job::Prune { channel, up_to_seq } => {
                    prune.execute(params![channel, *up_to_seq as i64])?;
                }
                Job::Stop => {}
            }
        }
    }
    transaction.commit()
}
