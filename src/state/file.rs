//! The state store of one instance that remembers across restarts: the memory store's working
//! set, with what changed written to an embedded database (redb) every 100 ms and at shutdown.
//!
//! Claims in flight are not written: they die with the process. What is written expires like
//! the memory store's entries and is deleted from the file as it does, so the file stays as
//! bounded as the ledger (`memory::DEFAULT_CAPACITY` SMS) plus the incidents within their time
//! to live.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::FutureExt;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::runtime::Handle;
use tokio::time::Instant;

use super::memory::{DEFAULT_CAPACITY, Incident, Snapshot};
use super::{
    Answer, Begin, GiveBack, Keep, MemoryStore, Record, Settle, Settlement, Start, StateError,
    StateStore, Swap,
};
use crate::clock::{Clock, Millis};
use crate::model::content_key::ContentKey;
use crate::ratelimit::Reservation;

/// How long a change may wait before it is written: what a crash (not a shutdown) can forget.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// The layout of the tables below; a file of another layout is refused, not misread. A table
/// added later (incidents) leaves it as it is: a file without that table opens with it empty,
/// and a release that does not know the table leaves it alone.
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
/// Incident key -> (version, expiry in Unix ms, open, value).
const INCIDENTS: TableDefinition<&str, (u64, u64, bool, &[u8])> = TableDefinition::new("incidents");

/// How often a database closed by a failed write is opened again, while that fails too.
pub const REOPEN_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("state file {path}: {message}")]
pub struct FileError {
    pub path: PathBuf,
    pub message: String,
    pub kind: FileErrorKind,
}

/// Why the file could not be opened, for what the service does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileErrorKind {
    /// Another process has it open: that one is the instance that serves with it.
    InUse,
    /// The owner, mode or a read-only mount keeps this process from writing it.
    Permission,
    /// Not a state file of this service, or damaged; it must be left as it is.
    Damaged,
    /// Anything else the operating system refused.
    Other,
}

#[derive(Debug)]
pub struct FileStore {
    memory: MemoryStore,
    path: PathBuf,
    /// The database, one write at a time, in order.
    file: tokio::sync::Mutex<File>,
    /// Why writing fails, as the outage's first failure said it (the cause, where later
    /// attempts may only say that one failed before), until a write succeeds.
    outage: Mutex<Option<String>>,
}

#[derive(Debug)]
enum File {
    /// Holds what the memory store held at the last write, but for what changed since.
    Open(Arc<Database>),
    /// A write failed and the database was closed: redb refuses every write after an I/O
    /// error, and the failed transaction may have lost earlier changes. It is opened again
    /// and written whole, not before `retry_at`.
    Lost { retry_at: Instant },
    /// It could not be opened at start: left as it is until a restart, the state kept in
    /// memory only.
    Unopened,
}

impl FileStore {
    /// Opens or creates the file and loads what it holds. Blocking; call it before serving.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<FileStore, FileError> {
        let db = open_database(path)?;
        let snapshot = load(&db).map_err(|(kind, why)| FileError {
            path: path.to_path_buf(),
            message: match kind {
                FileErrorKind::Damaged => damaged(&why),
                _ => format!("cannot read it ({why})"),
            },
            kind,
        })?;
        let memory = MemoryStore::persisted(DEFAULT_CAPACITY, clock);
        memory.restore(snapshot);
        Ok(FileStore {
            memory,
            path: path.to_path_buf(),
            file: tokio::sync::Mutex::new(File::Open(Arc::new(db))),
            outage: Mutex::new(None),
        })
    }

    /// The store of a file that could not be opened (`error`): the state lives in memory
    /// only, the file is never touched, and `ping` fails with `error` until a restart.
    pub fn unopened(error: &FileError, clock: Arc<dyn Clock>) -> FileStore {
        FileStore {
            memory: MemoryStore::new(DEFAULT_CAPACITY, clock),
            path: error.path.clone(),
            file: tokio::sync::Mutex::new(File::Unopened),
            outage: Mutex::new(Some(format!(
                "{error}; until a restart opens it, the state is kept in memory only"
            ))),
        }
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
                let _ = store.write(false).await;
            }
        });
    }

    /// Writes what changed since the last write, in one transaction; after a failed write,
    /// opens the database again and writes everything. What a failed write held is marked as
    /// changed again, so that the next one writes its values of then.
    pub async fn flush(&self) -> Result<(), StateError> {
        self.write(true).await
    }

    /// As `flush`; a database lost to a failed write is opened again only when `retry_at`
    /// passed, unless `now` (at shutdown).
    async fn write(&self, now: bool) -> Result<(), StateError> {
        let mut file = self.file.lock().await;
        let db = match &*file {
            File::Open(db) => db.clone(),
            File::Unopened => return self.failed(None),
            File::Lost { retry_at } if !now && Instant::now() < *retry_at => {
                // Everything is written once the database is back; the changes need no keeping.
                let _ = self.memory.snapshot();
                return self.failed(None);
            }
            File::Lost { .. } => {
                *file = File::Lost {
                    retry_at: Instant::now() + REOPEN_INTERVAL,
                };
                let path = self.path.clone();
                match tokio::task::spawn_blocking(move || open_database(&path)).await {
                    Ok(Ok(db)) => {
                        let db = Arc::new(db);
                        let whole = self.memory.whole();
                        return match self.commit(&db, whole, true).await {
                            Ok(()) => {
                                *file = File::Open(db);
                                self.written()
                            }
                            Err(e) => {
                                close(db).await;
                                self.failed(Some(e))
                            }
                        };
                    }
                    Ok(Err(e)) => return self.failed(Some(e.message)),
                    Err(e) => return self.failed(Some(format!("the open did not finish: {e}"))),
                }
            }
        };
        let snapshot = self.memory.snapshot();
        if snapshot.is_empty() {
            return self.written();
        }
        match self.commit(&db, snapshot, false).await {
            Ok(()) => self.written(),
            Err(e) => {
                // Closed here, so that the file is opened again for the next write.
                *file = File::Lost {
                    retry_at: Instant::now(),
                };
                close(db).await;
                self.failed(Some(e))
            }
        }
    }

    /// Writes `snapshot` in one transaction, `whole` replacing what the file held. What a
    /// failed write held is marked as changed again.
    async fn commit(
        &self,
        db: &Arc<Database>,
        snapshot: Snapshot,
        whole: bool,
    ) -> Result<(), String> {
        let db = db.clone();
        let written = tokio::task::spawn_blocking(move || {
            let result = write(&db, &snapshot, whole);
            (snapshot, result)
        })
        .await;
        match written {
            Ok((_, Ok(()))) => Ok(()),
            Ok((snapshot, Err(e))) => {
                self.memory.unwritten(&snapshot);
                Err(e)
            }
            // Only a bug gets here (a panic in the database); the database is written whole
            // once it opens again.
            Err(e) => Err(format!("the write did not finish: {e}")),
        }
    }

    /// A write succeeded: the outage, if any, is over.
    fn written(&self) -> Result<(), StateError> {
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        *outage = None;
        Ok(())
    }

    /// A write failed with `error` (`None`: not tried, the outage goes on). The outage keeps
    /// its first error for `ping`; the caller gets this one.
    fn failed(&self, error: Option<String>) -> Result<(), StateError> {
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        let error = match error {
            Some(e) => format!("cannot write {}: {e}", self.path.display()),
            None => outage
                .clone()
                .unwrap_or_else(|| format!("cannot write {}", self.path.display())),
        };
        if outage.is_none() {
            *outage = Some(error.clone());
        }
        Err(StateError::Unavailable(error))
    }
}

/// Closes a database that failed, off the async threads (dropping it tries to write), so that
/// the file is free to be opened again.
async fn close(db: Arc<Database>) {
    let _ = tokio::task::spawn_blocking(move || drop(db)).await;
}

/// Opens or creates the database; the error says what to do about it.
fn open_database(path: &Path) -> Result<Database, FileError> {
    Database::create(path).map_err(|e| {
        let kind = error_kind(&e);
        let message = match kind {
            FileErrorKind::InUse => "is in use by another process; the file backend is for one \
                                     instance (use state.redis for several replicas)"
                .to_string(),
            FileErrorKind::Permission => format!(
                "no permission to write it ({}): fix the owner or mode of the file, its folder \
                 or the mount",
                io_cause(&e)
            ),
            FileErrorKind::Damaged => damaged(&e.to_string()),
            FileErrorKind::Other => format!("cannot open it ({e})"),
        };
        FileError {
            path: path.to_path_buf(),
            message,
            kind,
        }
    })
}

fn error_kind(e: &redb::DatabaseError) -> FileErrorKind {
    use redb::{DatabaseError, StorageError};
    match e {
        DatabaseError::DatabaseAlreadyOpen => FileErrorKind::InUse,
        DatabaseError::Storage(StorageError::Io(io)) => match io.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                FileErrorKind::Permission
            }
            // A header that does not parse, or a file shorter than its header says.
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
                FileErrorKind::Damaged
            }
            _ => FileErrorKind::Other,
        },
        DatabaseError::Storage(StorageError::Corrupted(_))
        | DatabaseError::UpgradeRequired(_)
        | DatabaseError::RepairAborted => FileErrorKind::Damaged,
        _ => FileErrorKind::Other,
    }
}

/// The operating system's words, without redb's "I/O error: " before them.
fn io_cause(e: &redb::DatabaseError) -> String {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => io.to_string(),
        other => other.to_string(),
    }
}

fn damaged(why: &str) -> String {
    format!(
        "damaged or not a state file of this service ({why}); it is left as it is: move it away \
         to start afresh"
    )
}

/// What the file holds; an error says whether the file or the disk failed.
fn load(db: &Database) -> Result<Snapshot, (FileErrorKind, String)> {
    let damaged = |e: &dyn std::fmt::Display| (FileErrorKind::Damaged, e.to_string());
    {
        // Creates the tables of a new file, and records its layout.
        let txn = db.begin_write().map_err(read_error)?;
        {
            let mut meta = txn.open_table(META).map_err(read_error)?;
            let format = meta.get("format").map_err(read_error)?.map(|v| v.value());
            match format {
                None => {
                    meta.insert("format", FORMAT).map_err(read_error)?;
                }
                Some(FORMAT) => {}
                Some(other) => {
                    return Err(damaged(&format_args!(
                        "has layout {other}, this release reads layout {FORMAT}"
                    )));
                }
            }
            txn.open_table(LEDGER).map_err(read_error)?;
            txn.open_table(RECIPIENTS).map_err(read_error)?;
            txn.open_table(TOTAL).map_err(read_error)?;
            txn.open_table(ONCE).map_err(read_error)?;
            txn.open_table(MARKS).map_err(read_error)?;
            txn.open_table(INCIDENTS).map_err(read_error)?;
        }
        txn.commit().map_err(read_error)?;
    }
    let txn = db.begin_read().map_err(read_error)?;
    let mut snapshot = Snapshot::default();
    let ledger = txn.open_table(LEDGER).map_err(read_error)?;
    for entry in ledger.iter().map_err(read_error)? {
        let (key, value) = entry.map_err(read_error)?;
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
    let recipients = txn.open_table(RECIPIENTS).map_err(read_error)?;
    for entry in recipients.iter().map_err(read_error)? {
        let (name, value) = entry.map_err(read_error)?;
        let bytes = value.value();
        let (held, slots) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| damaged(&"short recipient entry"))?;
        let log = decode_slots(slots).ok_or_else(|| damaged(&"bad recipient entry"))?;
        snapshot
            .recipients
            .push((name.value().to_string(), log, u64::from_be_bytes(*held)));
    }
    let total = txn.open_table(TOTAL).map_err(read_error)?;
    if let Some(value) = total.get(()).map_err(read_error)? {
        let log = decode_slots(value.value()).ok_or_else(|| damaged(&"bad total entry"))?;
        snapshot.total = Some(log);
    }
    let once = txn.open_table(ONCE).map_err(read_error)?;
    for entry in once.iter().map_err(read_error)? {
        let (event, until) = entry.map_err(read_error)?;
        snapshot
            .once
            .push((event.value().to_string(), Some(until.value())));
    }
    let marks = txn.open_table(MARKS).map_err(read_error)?;
    for entry in marks.iter().map_err(read_error)? {
        let (name, at) = entry.map_err(read_error)?;
        snapshot.marks.push((name.value().to_string(), at.value()));
    }
    let incidents = txn.open_table(INCIDENTS).map_err(read_error)?;
    for entry in incidents.iter().map_err(read_error)? {
        let (key, value) = entry.map_err(read_error)?;
        let (version, until, open, value) = value.value();
        let incident = Incident {
            record: Record {
                version,
                value: value.to_vec(),
            },
            until,
            open,
        };
        snapshot
            .incidents
            .push((key.value().to_string(), Some(incident)));
    }
    Ok(snapshot)
}

/// A failure of the disk is not a damaged file.
fn read_error(e: impl Into<redb::Error>) -> (FileErrorKind, String) {
    let e: redb::Error = e.into();
    let kind = match &e {
        redb::Error::Io(_) | redb::Error::PreviousIo => FileErrorKind::Other,
        _ => FileErrorKind::Damaged,
    };
    (kind, e.to_string())
}

/// Writes `snapshot` in one transaction; `whole` empties the tables first, for a snapshot of
/// everything (`MemoryStore::whole`).
fn write(db: &Database, snapshot: &Snapshot, whole: bool) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    if whole {
        let emptied = [
            txn.delete_table(LEDGER),
            txn.delete_table(RECIPIENTS),
            txn.delete_table(TOTAL),
            txn.delete_table(ONCE),
            txn.delete_table(MARKS),
            txn.delete_table(INCIDENTS),
        ];
        for result in emptied {
            result.map_err(|e| e.to_string())?;
        }
    }
    {
        let mut ledger = txn.open_table(LEDGER).map_err(|e| e.to_string())?;
        let mut recipients = txn.open_table(RECIPIENTS).map_err(|e| e.to_string())?;
        let mut total = txn.open_table(TOTAL).map_err(|e| e.to_string())?;
        let mut once = txn.open_table(ONCE).map_err(|e| e.to_string())?;
        let mut marks = txn.open_table(MARKS).map_err(|e| e.to_string())?;
        let mut incidents = txn.open_table(INCIDENTS).map_err(|e| e.to_string())?;
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
            for (key, incident) in &snapshot.incidents {
                match incident {
                    Some(Incident {
                        record,
                        until,
                        open,
                    }) => incidents
                        .insert(
                            key.as_str(),
                            (record.version, *until, *open, record.value.as_slice()),
                        )
                        .map(|_| ()),
                    None => incidents.remove(key.as_str()).map(|_| ()),
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

    fn begin<'a>(&'a self, request: Begin<'a>) -> Answer<'a, Start> {
        self.memory.begin(request)
    }

    fn settle(&self, request: Settle) -> Answer<'_, ()> {
        self.memory.settle(request)
    }

    fn give_back<'a>(&'a self, request: GiveBack<'a>) -> Answer<'a, ()> {
        self.memory.give_back(request)
    }

    fn wait_for(&self, key: ContentKey, until: Instant) -> Answer<'_, bool> {
        self.memory.wait_for(key, until)
    }

    fn claim_once<'a>(&'a self, event: &'a str, ttl: Duration) -> Answer<'a, bool> {
        self.memory.claim_once(event, ttl)
    }

    fn mark<'a>(&'a self, name: &'a str, at: Millis, keep: Keep) -> Answer<'a, ()> {
        self.memory.mark(name, at, keep)
    }

    fn marked<'a>(&'a self, name: &'a str) -> Answer<'a, Option<Millis>> {
        self.memory.marked(name)
    }

    fn incident<'a>(&'a self, key: &'a str) -> Answer<'a, Option<Record>> {
        self.memory.incident(key)
    }

    fn swap_incident<'a>(&'a self, request: Swap<'a>) -> Answer<'a, Option<u64>> {
        self.memory.swap_incident(request)
    }

    fn open_incidents(&self) -> Answer<'_, Vec<String>> {
        self.memory.open_incidents()
    }

    fn when_down(&self) -> &'static str {
        "dedup and rate limits still hold in memory, but what changes is not written: a restart \
         now would forget it"
    }

    /// Fails while the file cannot be written, with the outage's first error.
    fn ping(&self) -> Answer<'_, ()> {
        let error = self
            .outage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        std::future::ready(error.map_or(Ok(()), |e| Err(StateError::Unavailable(e)))).boxed()
    }

    /// Writes what is not written yet, opening the database again if a write lost it.
    fn close(&self) -> Answer<'_, ()> {
        self.flush().boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::ratelimit::Limits;
    use crate::state::ClaimId;

    const T0: Millis = 1_700_000_000_000;

    /// A file as the releases before incidents wrote it: layout 1, without their table.
    fn file_without_incidents(path: &Path, sent: ContentKey) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            txn.open_table(META).unwrap().insert("format", 1).unwrap();
            txn.open_table(LEDGER)
                .unwrap()
                .insert(sent.as_bytes(), (0, T0 + 600_000))
                .unwrap();
            txn.open_table(RECIPIENTS).unwrap();
            txn.open_table(TOTAL).unwrap();
            txn.open_table(ONCE).unwrap();
            txn.open_table(MARKS).unwrap();
        }
        txn.commit().unwrap();
    }

    #[tokio::test]
    async fn a_file_of_the_layout_before_incidents_opens_and_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let sent = ContentKey::from_bytes([7; 32]);
        file_without_incidents(&path, sent);
        let clock = Arc::new(ManualClock::at(T0));
        let swap = Swap {
            key: "incident-1",
            expected: None,
            value: b"{\"step\":0}",
            ttl: Duration::from_secs(3600),
            open: true,
        };
        {
            let store = FileStore::open(&path, clock.clone()).unwrap();
            assert_eq!(store.swap_incident(swap).await.unwrap(), Some(1));
            store.close().await.unwrap();
        }
        let store = FileStore::open(&path, clock).unwrap();
        let begin = Begin {
            key: sent,
            claim: ClaimId(1),
            recipient: "alice",
            lease: Duration::from_secs(30),
            window: Duration::from_secs(600),
            limits: Limits::default(),
            hold: false,
            answer_by: Instant::now() + Duration::from_secs(60),
        };
        assert_eq!(
            store.begin(begin).await.unwrap(),
            Start::Settled(Settlement::Sent),
            "what the file held before is read as before"
        );
        assert_eq!(
            store.incident("incident-1").await.unwrap(),
            Some(Record {
                version: 1,
                value: b"{\"step\":0}".to_vec(),
            })
        );
        assert_eq!(store.open_incidents().await.unwrap(), ["incident-1"]);
    }
}
