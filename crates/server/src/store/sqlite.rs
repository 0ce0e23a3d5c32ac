//! The SQL of the store: schema and its migrations, loading at start, and
//! one commit of a batch.
//!
//! WAL mode with `synchronous = NORMAL`: a committed transaction is in the
//! WAL file before `commit` returns, so it survives the process being
//! killed; only a power loss could take the last commits back.

use std::collections::HashSet;
use std::path::Path;

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};

use super::{Error, Job, LoadedChannel, SendKey, StoredEvent};

/// The schema this code writes, kept in SQLite's `user_version`.
///
/// 0. `channels (name, epoch)` and `events (channel, seq, send_id, body)`.
/// 1. `events.sender`: send ids are scoped to their sender; and every
///    channel with events has its row.
const SCHEMA_VERSION: i64 = 1;

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
    let mut connection = Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    migrate(&mut connection)?;
    Ok(connection)
}

/// Brings the schema to [`SCHEMA_VERSION`], in one transaction.
fn migrate(connection: &mut Connection) -> rusqlite::Result<()> {
    let transaction = connection.transaction()?;
    let version: i64 = transaction.pragma_query_value(None, "user_version", |row| row.get(0))?;
    transaction.execute_batch(
        "CREATE TABLE IF NOT EXISTS channels (
             name  TEXT PRIMARY KEY,
             epoch TEXT NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS events (
             channel TEXT NOT NULL,
             seq     INTEGER NOT NULL,
             send_id TEXT,
             body    BLOB NOT NULL,
             sender  TEXT,
             PRIMARY KEY (channel, seq)
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS probe (
             id      INTEGER PRIMARY KEY,
             written INTEGER NOT NULL
         );",
    )?;
    if version < 1 {
        let has_sender = transaction
            .prepare("SELECT 1 FROM pragma_table_info('events') WHERE name = 'sender'")?
            .exists([])?;
        if !has_sender {
            transaction.execute_batch("ALTER TABLE events ADD COLUMN sender TEXT")?;
        }
        // The sender is the event's `from`, lowercased as names are compared.
        let senders = transaction.execute(
            "UPDATE events SET sender = lower(json_extract(CAST(body AS TEXT), '$.from'))
             WHERE send_id IS NOT NULL AND sender IS NULL AND json_valid(CAST(body AS TEXT))",
            [],
        )?;
        // Events whose channel row was never written (a creation that failed
        // while its first events did not): give them a row, so that the
        // channel keeps its positions and is never written over.
        let orphans = transaction.execute(
            "INSERT INTO channels (name, epoch)
             SELECT DISTINCT channel, lower(hex(randomblob(4))) FROM events
             WHERE channel NOT IN (SELECT name FROM channels)",
            [],
        )?;
        if senders > 0 || orphans > 0 {
            tracing::info!(
                senders,
                orphans,
                "history store migrated: senders added to send ids, rows added for channels"
            );
        }
    }
    if version < SCHEMA_VERSION {
        transaction.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    transaction.commit()
}

/// A second connection, for reading only.
pub(super) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    connection.pragma_update(None, "query_only", true)?;
    Ok(connection)
}

/// One channel's epoch, head and last `window` events, if it has a row.
pub(super) fn load_channel(
    connection: &Connection,
    name: &str,
    window: usize,
) -> rusqlite::Result<Option<LoadedChannel>> {
    let mut epoch = connection.prepare_cached("SELECT epoch FROM channels WHERE name = ?1")?;
    let Some(epoch) = epoch
        .query_row([name], |row| row.get::<_, String>(0))
        .optional()?
    else {
        return Ok(None);
    };
    let mut head = connection.prepare_cached("SELECT max(seq) FROM events WHERE channel = ?1")?;
    let mut recent = connection.prepare_cached(
        "SELECT seq, sender, send_id, body FROM events
         WHERE channel = ?1 ORDER BY seq DESC LIMIT ?2",
    )?;
    let head: Option<i64> = head.query_row([name], |row| row.get(0))?;
    let mut events: Vec<StoredEvent> = recent
        .query_map(params![name, window as i64], |row| {
            let sender: Option<String> = row.get(1)?;
            let send_id: Option<String> = row.get(2)?;
            Ok(StoredEvent {
                seq: row.get::<_, i64>(0)? as u64,
                send: send_id.map(|id| SendKey {
                    sender: sender.unwrap_or_default(),
                    id,
                }),
                body: Bytes::from(row.get::<_, Vec<u8>>(3)?),
            })
        })?
        .collect::<Result<_, _>>()?;
    events.reverse();
    Ok(Some(LoadedChannel {
        epoch,
        head: head.unwrap_or(0) as u64,
        events,
    }))
}

/// How many channels have a row.
pub(super) fn n_channels(connection: &Connection) -> rusqlite::Result<u64> {
    let n: i64 = connection.query_row("SELECT count(*) FROM channels", [], |row| row.get(0))?;
    Ok(n as u64)
}

/// Writes `jobs` in one transaction. An event goes in with a plain
/// `INSERT`: a position is never written twice, and if it ever were, the
/// commit would fail rather than replace what was acknowledged.
pub(super) fn commit<'job>(
    connection: &mut Connection,
    jobs: impl Iterator<Item = &'job Job>,
) -> rusqlite::Result<()> {
    let transaction = connection.transaction()?;
    {
        let mut create = transaction
            .prepare_cached("INSERT OR IGNORE INTO channels (name, epoch) VALUES (?1, ?2)")?;
        let mut append = transaction.prepare_cached(
            "INSERT INTO events (channel, seq, sender, send_id, body) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut prune =
            transaction.prepare_cached("DELETE FROM events WHERE channel = ?1 AND seq <= ?2")?;
        let mut created: HashSet<&str> = HashSet::new();
        for job in jobs {
            match job {
                Job::Append {
                    channel,
                    epoch,
                    event,
                    ..
                } => {
                    if created.insert(channel) {
                        create.execute(params![channel, &**epoch])?;
                    }
                    let (sender, send_id) = match &event.send {
                        Some(key) => (Some(&key.sender), Some(&key.id)),
                        None => (None, None),
                    };
                    append.execute(params![
                        channel,
                        event.seq as i64,
                        sender,
                        send_id,
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

/// A small transaction of its own, to learn whether the store can commit.
pub(super) fn probe(connection: &mut Connection) -> rusqlite::Result<()> {
    let transaction = connection.transaction()?;
    transaction.execute(
        "INSERT OR REPLACE INTO probe (id, written) VALUES (1, unixepoch())",
        [],
    )?;
    transaction.commit()
}
