//! The state store of one instance that remembers across restarts: the memory store's working
//! set, with what changed written to an embedded database (redb) every 100 ms and at shutdown.
//!
//! Claims in flight are not written: they die with the process. What is written expires like
//! the memory store's entries and is deleted from the file as it does, so the file stays as
//! bounded as the ledger (`memory::DEFAULT_CAPACITY` SMS).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::runtime::Handle;
use tokio::time::Instant;

use super::Taken;
use super::memory::{DEFAULT_CAPACITY, Snapshot};
use super::{Begin, ClaimId, ContentKey, MemoryStore, Settlement, Start, StateError, StateStore};
use crate::clock::{Clock, Millis};
use crate::ratelimit::Reservation;

/// How long a change may wait before it is written: what a crash (not a shutdown) can forget.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// The layout of the tables below; a file of another layout is refused, not misread.
const FORMAT: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Content-key hash -> (settlement, expiry in Unix ms).
const LEDGER: TableDefinition<&[u8; 32], (u8, u64)> = TableDefinition::new("ledger");
/// Phone-book name -> held-back count and rate-limit slots.
const RECIPIENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("recipients");
/// The slots of the total rate limit, under the one key `()`.
const TOTAL: TableDefinition<(), &[u8]> = TableDefinition::new("total");
/// Once-only event -> expiry in Unix ms.
const ONCE: TableDefinition<&str, u64> = TableDefinition::new("once");
/// Mark (a heartbeat) -> its latest time in Unix ms.
const MARKS: TableDefinition<&str, u64> = TableDefinition::new("marks");

#[derive(Debug, thiserror::Error)]
#[error("state file {path}: {message}")]
pub struct FileError {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Debug)]
pub struct FileStore {
    memory: MemoryStore,
    db: Arc<Database>,
    path: PathBuf,
    /// One write at a time, in order.
    writing: tokio::sync::Mutex<()>,
    /// Why the last write failed, until one succeeds.
    last_error: Mutex<Option<String>>,
}

impl FileStore {
    /// Opens or creates the file and loads what it holds. Blocking; call it before serving.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<FileStore, FileError> {
        let fail = |message: String| FileError {
            path: path.to_path_buf(),
            message,
        };
        let db = Database::create(path).map_err(|e| fail(open_error(&e)))?;
        let snapshot = load(&db).map_err(fail)?;
        let memory = MemoryStore::persisted(DEFAULT_CAPACITY, clock);
        memory.restore(snapshot);
        Ok(FileStore {
            memory,
            db: Arc::new(db),
            path: path.to_path_buf(),
            writing: tokio::sync::Mutex::new(()),
            last_error: Mutex::new(None),
        })
    }

    /// Writes what changed every `FLUSH_INTERVAL`, on `runtime`, for as long as the store lives.
    pub fn write_behind(self: &Arc<Self>, runtime: &Handle) {
        let store = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = store.upgrade() else { return };
                // A failure is kept for `ping` to report, and written again next time.
                let _ = store.flush().await;
            }
        });
    }

    /// Writes what changed since the last write, in one transaction. What a failed write held
    /// is marked as changed again, so that the next one writes its values of then.
    pub async fn flush(&self) -> Result<(), StateError> {
        let _one_at_a_time = self.writing.lock().await;
        let snapshot = self.memory.snapshot();
        if snapshot.is_empty() {
            return self.written(None);
        }
        let db = self.db.clone();
        let written = tokio::task::spawn_blocking(move || {
            let result = write(&db, &snapshot);
            (snapshot, result)
        })
        .await;
        match written {
            Ok((_, Ok(()))) => self.written(None),
            Ok((snapshot, Err(e))) => {
                self.memory.unwritten(&snapshot);
                self.written(Some(e))
            }
            // Only a bug gets here (a panic in the database); the changes of this write are
            // lost for the file, not for the running service.
            Err(e) => self.written(Some(format!("the write did not finish: {e}"))),
        }
    }

    /// Records how the last write went, for `ping`.
    fn written(&self, error: Option<String>) -> Result<(), StateError> {
        let error = error.map(|e| format!("cannot write {}: {e}", self.path.display()));
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        if error.is_none() && last.is_none() {
            return Ok(());
        }
        *last = error.clone();
        error.map_or(Ok(()), |e| Err(StateError::Unavailable(e)))
    }
}

fn open_error(e: &redb::DatabaseError) -> String {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => {
            "is in use by another process; the file backend is for one instance (use state.redis \
             for several replicas)"
                .to_string()
        }
        other => format!(
            "cannot open it ({other}); it is not a state file of this service, or it is damaged: \
             move it away to start with an empty state"
        ),
    }
}

fn load(db: &Database) -> Result<Snapshot, String> {
    let damaged = |e: &dyn std::fmt::Display| format!("cannot read it ({e})");
    {
        // Creates the tables of a new file, and records its layout.
        let txn = db.begin_write().map_err(|e| damaged(&e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| damaged(&e))?;
            let format = meta
                .get("format")
                .map_err(|e| damaged(&e))?
                .map(|v| v.value());
            match format {
                None => {
                    meta.insert("format", FORMAT).map_err(|e| damaged(&e))?;
                }
                Some(FORMAT) => {}
                Some(other) => {
                    return Err(format!(
                        "has layout {other}, this release reads layout {FORMAT}"
                    ));
                }
            }
            txn.open_table(LEDGER).map_err(|e| damaged(&e))?;
            txn.open_table(RECIPIENTS).map_err(|e| damaged(&e))?;
            txn.open_table(TOTAL).map_err(|e| damaged(&e))?;
            txn.open_table(ONCE).map_err(|e| damaged(&e))?;
            txn.open_table(MARKS).map_err(|e| damaged(&e))?;
        }
        txn.commit().map_err(|e| damaged(&e))?;
    }
    let txn = db.begin_read().map_err(|e| damaged(&e))?;
    let mut snapshot = Snapshot::default();
    let ledger = txn.open_table(LEDGER).map_err(|e| damaged(&e))?;
    for entry in ledger.iter().map_err(|e| damaged(&e))? {
        let (key, value) = entry.map_err(|e| damaged(&e))?;
        let (kind, until) = value.value();
        let settlement = match kind {
            0 => Settlement::Sent,
            1 => Settlement::RateLimited,
            2 => Settlement::QuietHours,
            _ => return Err(damaged(&"unknown ledger entry")),
        };
        snapshot.settled.push((
            ContentKey::from_bytes(*key.value()),
            Some((settlement, until)),
        ));
    }
    let recipients = txn.open_table(RECIPIENTS).map_err(|e| damaged(&e))?;
    for entry in recipients.iter().map_err(|e| damaged(&e))? {
        let (name, value) = entry.map_err(|e| damaged(&e))?;
        let bytes = value.value();
        let (held, slots) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| damaged(&"short recipient entry"))?;
        let log = decode_slots(slots).ok_or_else(|| damaged(&"bad recipient entry"))?;
        snapshot
            .recipients
            .push((name.value().to_string(), log, u64::from_be_bytes(*held)));
    }
    let total = txn.open_table(TOTAL).map_err(|e| damaged(&e))?;
    if let Some(value) = total.get(()).map_err(|e| damaged(&e))? {
        let log = decode_slots(value.value()).ok_or_else(|| damaged(&"bad total entry"))?;
        snapshot.total = Some(log);
    }
    let once = txn.open_table(ONCE).map_err(|e| damaged(&e))?;
    for entry in once.iter().map_err(|e| damaged(&e))? {
        let (event, until) = entry.map_err(|e| damaged(&e))?;
        snapshot
            .once
            .push((event.value().to_string(), Some(until.value())));
    }
    let marks = txn.open_table(MARKS).map_err(|e| damaged(&e))?;
    for entry in marks.iter().map_err(|e| damaged(&e))? {
        let (name, at) = entry.map_err(|e| damaged(&e))?;
        snapshot.marks.push((name.value().to_string(), at.value()));
    }
    Ok(snapshot)
}

fn write(db: &Database, snapshot: &Snapshot) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut ledger = txn.open_table(LEDGER).map_err(|e| e.to_string())?;
        let mut recipients = txn.open_table(RECIPIENTS).map_err(|e| e.to_string())?;
        let mut total = txn.open_table(TOTAL).map_err(|e| e.to_string())?;
        let mut once = txn.open_table(ONCE).map_err(|e| e.to_string())?;
        let mut marks = txn.open_table(MARKS).map_err(|e| e.to_string())?;
        {
            for (key, value) in &snapshot.settled {
                match value {
                    Some((settlement, until)) => {
                        let kind = match settlement {
                            Settlement::Sent => 0,
                            Settlement::RateLimited => 1,
                            Settlement::QuietHours => 2,
                        };
                        ledger.insert(key.as_bytes(), (kind, *until))
                    }
                    None => ledger.remove(key.as_bytes()).map(|_| None),
                }
                .map_err(|e| e.to_string())?;
            }
            for (name, log, held) in &snapshot.recipients {
                if log.is_empty() && *held == 0 {
                    recipients.remove(name.as_str()).map(|_| ())
                } else {
                    let mut bytes = held.to_be_bytes().to_vec();
                    bytes.extend(encode_slots(log));
                    recipients
                        .insert(name.as_str(), bytes.as_slice())
                        .map(|_| ())
                }
                .map_err(|e| e.to_string())?;
            }
            if let Some(log) = &snapshot.total {
                total
                    .insert((), encode_slots(log).as_slice())
                    .map_err(|e| e.to_string())?;
            }
            for (name, at) in &snapshot.marks {
                marks
                    .insert(name.as_str(), *at)
                    .map_err(|e| e.to_string())?;
            }
            for (event, until) in &snapshot.once {
                match until {
                    Some(until) => once.insert(event.as_str(), *until).map(|_| ()),
                    None => once.remove(event.as_str()).map(|_| ()),
                }
                .map_err(|e| e.to_string())?;
            }
        }
    }
    txn.commit().map_err(|e| e.to_string())
}

fn encode_slots(log: &[Reservation]) -> Vec<u8> {
    log.iter()
        .flat_map(|r| r.at.to_be_bytes().into_iter().chain(r.id.to_be_bytes()))
        .collect()
}

fn decode_slots(bytes: &[u8]) -> Option<Vec<Reservation>> {
    if !bytes.len().is_multiple_of(16) {
        return None;
    }
    let word = |b: &[u8]| b.try_into().ok().map(Millis::from_be_bytes);
    bytes
        .chunks_exact(16)
        .map(|c| {
            Some(Reservation {
                at: word(&c[..8])?,
                id: word(&c[8..])?,
            })
        })
        .collect()
}

impl StateStore for FileStore {
    fn name(&self) -> &'static str {
        "file"
    }

    fn begin<'a>(&'a self, request: Begin<'a>) -> BoxFuture<'a, Result<Start, StateError>> {
        self.memory.begin(request)
    }

    fn settle(
        &self,
        key: ContentKey,
        claim: ClaimId,
        settlement: Settlement,
        window: Duration,
    ) -> BoxFuture<'_, Result<(), StateError>> {
        self.memory.settle(key, claim, settlement, window)
    }

    fn give_back<'a>(
        &'a self,
        key: ContentKey,
        recipient: &'a str,
        taken: Taken,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.memory.give_back(key, recipient, taken)
    }

    fn wait_for(&self, key: ContentKey, until: Instant) -> BoxFuture<'_, Result<bool, StateError>> {
        self.memory.wait_for(key, until)
    }

    fn claim_once<'a>(
        &'a self,
        event: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        self.memory.claim_once(event, ttl)
    }

    fn mark<'a>(
        &'a self,
        name: &'a str,
        at: Millis,
        keep: super::Keep,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.memory.mark(name, at, keep)
    }

    fn marked<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Millis>, StateError>> {
        self.memory.marked(name)
    }

    fn when_down(&self) -> &'static str {
        "dedup and rate limits still hold in memory, but what changes is not written: a restart \
         now would forget it"
    }

    /// Fails while the file cannot be written.
    fn ping(&self) -> BoxFuture<'_, Result<(), StateError>> {
        let error = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        std::future::ready(error.map_or(Ok(()), |e| Err(StateError::Unavailable(e)))).boxed()
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StateError>> {
        self.flush().boxed()
    }
}
