//! The project store: one SQLite file per project holding images, classes, users, the
//! append-only revision log of every annotation change, the current-state cache and versions.
//!
//! Invariants:
//! - every change to an annotation appends a revision with its full new value, and updates the
//!   `annotations` cache in the same transaction (`rebuild_current` recomputes the cache);
//! - the current value of an annotation is its revision with the greatest (hlc, client);
//! - integer row ids never leave the file: callers see UUIDs and names;
//! - the file is in WAL mode with `synchronous = FULL`, so an edit is durable when the call returns;
//! - every edit holds the review policy ([`crate::policy`]), checked inside its transaction;
//! - all SQL of the crate is here: the connection is private to this module, and every other
//!   module uses the typed functions of its submodules (one per concern: users, classes, images,
//!   annotations and the revision writer, runs, bulk writes, stats, versions, external ids, the
//!   data loop's lookups, evaluation and batches, the sync log and its merge rule).

mod annotations;
mod batches;
mod bulk;
mod classes;
mod embeddings;
mod evaluation;
mod existing;
mod external;
mod images;
mod lookups;
pub mod merge;
mod runs;
mod schema;
mod stats;
mod sync_log;
mod time;
mod users;
mod versions;

pub use annotations::{Edit, Revision};
pub(crate) use annotations::{RevisionWriter, RowValue, attributes_from_column};
pub use batches::{AuditDecision, BatchImage, BatchInfo, BatchState, QueueOrder, Verdict};
pub(crate) use batches::{AuditRecord, BatchRecord, NewAudit};
pub use bulk::{Bulk, ImageInput, Upsert};
use classes::class_row_tx;
pub use embeddings::{EmbeddingKey, EmbeddingSet, NewEmbedding};
pub(crate) use evaluation::{GtStates, SliceRows};
pub use existing::ExistingLabel;
pub(crate) use external::IndexedImage;
pub use external::{ExternalKind, ExternalTarget, IdSource};
pub use images::{FRAME_KEY, ImageFilter, ImageRow, ImageStatus, SLICE_KEY, STACK_KEY, Shard};
pub(crate) use lookups::{LogRevision, MetaWrite, OwnedLabel};
pub use merge::RevId;
pub use runs::{NewRun, RunImageTiming, RunInfo, RunProgress, WorkerProgress};
pub use stats::Stats;
pub use sync_log::{
    Applied, Conflict, ConflictHead, ImageRef, NamedRef, OutRevision, RunCoverage, SharedRevision,
    SyncRefusal,
};
pub(crate) use sync_log::{IncomingError, IncomingPack, IncomingRules, UnsharedLists};
pub use time::{ImageTime, TimeVisit, UserTime};
pub use versions::{BoxChange, ClassTotals, Version, VersionDiff};

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use crate::model::{
    Annotation, AnnotationValue, Attributes, BBox, BoxFlags, Class, ImageRecord, PALETTE,
    ReviewState, Role, Source, User,
};
use crate::policy::Refusal;

/// Errors from the project store. Each names the project file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite's error; the message names a damaged file, a read-only project and a full disk
    /// as such (see [`describe_sqlite`]).
    #[error("{}: {}", path.display(), describe_sqlite(source))]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "{path}: written by a newer Loupe (schema {found}, this build knows up to {known}); upgrade Loupe to open it"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("{path}: not a Loupe project ({reason})")]
    NotAProject { path: PathBuf, reason: String },
    /// An SQLite file whose structure is broken (a truncated file, a bad header or page).
    #[error("{path}: damaged ({reason}): run `loupe check`")]
    Damaged { path: PathBuf, reason: String },
    #[error("{0}: already exists")]
    Exists(PathBuf),
    #[error("{0}: no such project file")]
    Missing(PathBuf),
    #[error("{what} not found: {key}")]
    NotFound { what: &'static str, key: String },
    #[error("{0}")]
    Invalid(String),
    /// The review policy ([`crate::policy`]) refuses an edit of box `id`; nothing of the call
    /// that made it was written.
    #[error("box {id}: {refusal}")]
    Refused { id: Uuid, refusal: Refusal },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// SQLite's error in the user's terms: what a damaged file, a read-only project and a full disk
/// mean for them, then SQLite's own words.
fn describe_sqlite(e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            format!("damaged ({e}): run `loupe check`")
        }
        Some(ErrorCode::ReadOnly) => format!(
            "read-only ({e}): this command changes the project; make the file and its folder writable"
        ),
        Some(ErrorCode::DiskFull) => {
            format!("disk full ({e}): the change was not written; free some space and retry")
        }
        _ => e.to_string(),
    }
}

/// The version of the SQLite library the store is built with (for `loupe doctor`).
pub fn sqlite_version() -> &'static str {
    rusqlite::version()
}

impl StoreError {
    /// Whether another connection holds the lock the call needed (SQLite's busy or locked):
    /// waiting and retrying may succeed.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            StoreError::Sqlite {
                source: rusqlite::Error::SqliteFailure(f, _),
                ..
            } if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            )
        )
    }

    /// Whether the project file is damaged (its structure, not its contents, is broken).
    pub fn is_damaged(&self) -> bool {
        match self {
            StoreError::Damaged { .. } => true,
            StoreError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
            ),
            _ => false,
        }
    }
}

/// The first bytes of every SQLite file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Checks the SQLite header of `path` without SQLite: a file that is not SQLite at all is not a
/// project; one that is, but whose header is cut or inconsistent with the file's size, is
/// damaged. It reads 100 bytes, so every command can afford it; the pages themselves are
/// checked by `quick_check` ([`Project::quick_check`]).
fn check_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let damaged = |reason: String| StoreError::Damaged {
        path: path.to_path_buf(),
        reason,
    };
    let not_project = |reason: &str| StoreError::NotAProject {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let mut file = std::fs::File::open(path).map_err(|e| {
        StoreError::Invalid(format!(
            "{}: cannot read the project file: {e}",
            path.display()
        ))
    })?;
    let len = file
        .metadata()
        .map_err(|e| StoreError::Invalid(format!("{}: {e}", path.display())))?
        .len();
    if len == 0 {
        return Err(not_project("the file is empty"));
    }
    let mut header = [0u8; 100];
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(StoreError::Invalid(format!(
                    "{}: cannot read the project file: {e}",
                    path.display()
                )));
            }
        }
    }
    let magic_len = read.min(SQLITE_MAGIC.len());
    if header[..magic_len] != SQLITE_MAGIC[..magic_len] {
        return Err(not_project("not an SQLite file"));
    }
    if read < header.len() {
        return Err(damaged(format!(
            "the file is {len} bytes, shorter than SQLite's 100-byte header"
        )));
    }
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        n => u64::from(n),
    };
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(damaged(format!(
            "the header gives a page size of {page_size}"
        )));
    }
    if len % page_size != 0 {
        return Err(damaged(format!(
            "the file is {len} bytes, not a whole number of {page_size}-byte pages: it was cut short"
        )));
    }
    // The page count in the header is valid when the two change counters agree (SQLite 3.7.0+);
    // in WAL mode the file may hold more pages than it says, never fewer.
    let field = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let pages = u64::from(field(28));
    if pages > 0 && field(24) == field(92) && pages * page_size > len {
        return Err(damaged(format!(
            "the header counts {pages} pages, the file holds {}: it was cut short",
            len / page_size
        )));
    }
    Ok(())
}

/// Whether `path` is to be opened read-only: the file or its folder is marked read-only.
/// (Root may write to both anyway; Loupe does not.)
fn marked_read_only(path: &Path) -> bool {
    let read_only = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.permissions().readonly());
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    read_only(path) || read_only(folder)
}

/// An SQLite URI for `path` with `query` (`mode=ro`, `immutable=1`).
fn sqlite_uri(path: &Path, query: &str) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut uri = String::from("file:");
    for c in abs.to_string_lossy().chars() {
        match c {
            '?' => uri.push_str("%3F"),
            '#' => uri.push_str("%23"),
            '%' => uri.push_str("%25"),
            c => uri.push(c),
        }
    }
    format!("{uri}?{query}")
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A hybrid logical clock: 48 bits of wall-clock milliseconds and a 16-bit counter.
/// Monotonic per client even when the wall clock steps back; merges with remote clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hlc {
    last: i64,
}

impl Hlc {
    /// The next timestamp, strictly greater than every timestamp seen so far.
    pub fn tick(&mut self) -> i64 {
        let physical = now_ms() << 16;
        self.last = if physical > self.last {
            physical
        } else {
            self.last + 1
        };
        self.last
    }

    /// Takes a remote timestamp into account so the next local one is greater.
    pub fn observe(&mut self, remote: i64) {
        self.last = self.last.max(remote);
    }

    pub fn last(&self) -> i64 {
        self.last
    }
}
/// An open project file.
pub struct Project {
    conn: Connection,
    path: PathBuf,
    root: PathBuf,
    client: i64,
    client_uuid: Uuid,
    user: i64,
    hlc: Hlc,
    /// The highest revision seq whose clock `hlc` has observed: revisions written by another
    /// connection (the app's sync thread, a CLI run) have greater seqs.
    hlc_seen_seq: i64,
    /// Opened read-only (the file or its folder is not writable): writes fail naming that.
    read_only: bool,
}

/// The greatest clock and seq among revisions after `seq` (0s when there are none).
fn observed_since(conn: &Connection, seq: i64) -> rusqlite::Result<(i64, i64)> {
    conn.prepare_cached(
        "SELECT COALESCE(MAX(hlc), 0), COALESCE(MAX(seq), 0) FROM revisions WHERE seq > ?1",
    )?
    .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?)))
}

fn state_str(s: ReviewState) -> &'static str {
    s.as_str()
}

impl Project {
    /// A project on an open connection, before its client, user and clock are read.
    fn unidentified(conn: Connection, path: &Path, read_only: bool) -> Self {
        Project {
            conn,
            path: path.to_path_buf(),
            root: Self::root_of(path),
            client: 0,
            client_uuid: Uuid::nil(),
            user: 0,
            hlc: Hlc::default(),
            hlc_seen_seq: 0,
            read_only,
        }
    }

    /// Creates a new project file. Fails if it exists.
    pub fn create(path: &Path) -> Result<Project> {
        if path.exists() {
            return Err(StoreError::Exists(path.to_path_buf()));
        }
        Self::open_inner(path, true)
    }

    /// Opens an existing project, upgrading its schema if it is older. A project whose file
    /// or folder is read-only is opened read-only (see [`Project::is_read_only`]); a file that
    /// is SQLite but cut short or with a broken header is refused as damaged.
    pub fn open(path: &Path) -> Result<Project> {
        if !path.is_file() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        check_header(path)?;
        if marked_read_only(path) {
            return Self::open_read_only(path);
        }
        match Self::open_inner(path, false) {
            // The OS refused writing even though the permissions allow it (an immutable file, a
            // read-only mount): read what can be read.
            Err(StoreError::Sqlite { source, .. })
                if matches!(
                    source.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen)
                ) =>
            {
                Self::open_read_only(path)
            }
            other => other,
        }
    }

    /// Whether the project was opened read-only: reading works, every write fails with a
    /// "read-only" error.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Opens `path` read-only. In WAL mode SQLite needs the `-shm` file beside the project; in
    /// a folder where it cannot be created the file is opened as immutable, which is sound
    /// because nothing can write there either.
    fn open_read_only(path: &Path) -> Result<Project> {
        use rusqlite::OpenFlags;
        let sq = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let version_of = |conn: &Connection| -> rusqlite::Result<i64> {
            conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        };
        let mut conn =
            Connection::open_with_flags(sqlite_uri(path, "mode=ro"), flags).map_err(sq)?;
        let version = match version_of(&conn) {
            Ok(v) => v,
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
                ) =>
            {
                conn = Connection::open_with_flags(sqlite_uri(path, "immutable=1"), flags)
                    .map_err(sq)?;
                version_of(&conn).map_err(sq)?
            }
            Err(e) => return Err(sq(e)),
        };
        if version == 0 {
            return Err(StoreError::NotAProject {
                path: path.to_path_buf(),
                reason: "no Loupe schema in the file".into(),
            });
        }
        if version > schema::latest() {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: version,
                known: schema::latest(),
            });
        }
        if version < schema::latest() {
            return Err(StoreError::Invalid(format!(
                "{}: read-only, and written by an older Loupe (schema {version}); open it once where it is writable to upgrade it",
                path.display()
            )));
        }
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sq)?;
        let mut project = Self::unidentified(conn, path, true);
        project.read_identity()?;
        Ok(project)
    }

    /// The folder image paths are relative to, as users see it.
    fn root_of(path: &Path) -> PathBuf {
        let root = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        // `dunce` rather than std: the root is shown to users, and on Windows std's canonical
        // form carries the `\\?\` prefix.
        dunce::canonicalize(&root).unwrap_or(root)
    }

    /// [`Project::init_identity`] without writing: the client and user the file names, if any.
    fn read_identity(&mut self) -> Result<()> {
        let sq = self.sq();
        let meta = |key: &str| -> rusqlite::Result<Option<String>> {
            self.conn
                .query_row("SELECT value FROM meta WHERE key=?1", [key], |r| r.get(0))
                .optional()
        };
        let client_uuid = meta("client")
            .map_err(&sq)?
            .and_then(|s| Uuid::parse_str(&s).ok())
            .unwrap_or_else(Uuid::nil);
        let client: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM clients WHERE uuid=?1",
                [client_uuid.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(&sq)?;
        let user_key = meta("user").map_err(&sq)?;
        let first: Option<i64> = self
            .conn
            .query_row("SELECT id FROM users ORDER BY id LIMIT 1", [], |r| r.get(0))
            .optional()
            .map_err(&sq)?;
        drop(sq);
        let named = match user_key {
            Some(u) => self.user_row(&u)?,
            None => None,
        };
        self.client = client.unwrap_or(0);
        self.client_uuid = client_uuid;
        self.user = named.or(first).unwrap_or(0);
        self.observe_hlc()?;
        Ok(())
    }

    /// Runs SQLite's `quick_check` (every page and B-tree of the file, not the indexes'
    /// contents): about a second per 350 MB of project. Readers whose output would silently
    /// miss or misread damaged pages (`stats`, `export`) run it first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Damaged`] with SQLite's first complaint.
    pub fn quick_check(&self) -> Result<()> {
        let result: String = self
            .conn
            .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
            .map_err(self.sq())?;
        if result == "ok" {
            Ok(())
        } else {
            Err(StoreError::Damaged {
                path: self.path.clone(),
                reason: format!("SQLite's quick check: {result}"),
            })
        }
    }

    fn open_inner(path: &Path, create: bool) -> Result<Project> {
        let sq = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(sq)?;
        let not_project = |reason: String| StoreError::NotAProject {
            path: path.to_path_buf(),
            reason,
        };
        // A file that is not SQLite fails on the first read; one whose header says SQLite
        // (checked by `open`) but fails here is damaged, read-only or unreadable: say which.
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| {
                if create || e.sqlite_error_code().is_none() {
                    not_project(e.to_string())
                } else {
                    sq(e)
                }
            })?;
        if version > schema::latest() {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: version,
                known: schema::latest(),
            });
        }
        if !create && version == 0 {
            return Err(not_project("no Loupe schema in the file".into()));
        }
        if create {
            // Larger pages: shallower B-trees for projects with millions of boxes.
            conn.pragma_update(None, "page_size", 16384).map_err(sq)?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sq)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sq)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(sq)?;
        conn.pragma_update(None, "cache_size", -65536).map_err(sq)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sq)?;
        let mut project = Self::unidentified(conn, path, false);
        project.migrate(version)?;
        project.init_identity()?;
        Ok(project)
    }

    fn sq(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn migrate(&mut self, from: i64) -> Result<()> {
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sq)?;
        for (i, sql) in schema::MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(from).unwrap_or(0))
        {
            tx.execute_batch(sql).map_err(sq)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)
                .map_err(sq)?;
        }
        tx.commit().map_err(sq)
    }

    /// Sets up this file's client id and a default user on first open.
    fn init_identity(&mut self) -> Result<()> {
        let sq = self.sq();
        let client_uuid: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key='client'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(&sq)?;
        let client_uuid = match client_uuid.and_then(|s| Uuid::parse_str(&s).ok()) {
            Some(u) => u,
            None => {
                let u = Uuid::now_v7();
                self.conn
                    .execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES ('client', ?1)",
                        [u.to_string()],
                    )
                    .map_err(&sq)?;
                u
            }
        };
        self.conn
            .execute(
                "INSERT OR IGNORE INTO clients(uuid) VALUES (?1)",
                [client_uuid.to_string()],
            )
            .map_err(&sq)?;
        let client: i64 = self
            .conn
            .query_row(
                "SELECT id FROM clients WHERE uuid=?1",
                [client_uuid.to_string()],
                |r| r.get(0),
            )
            .map_err(&sq)?;
        drop(sq);
        self.client = client;
        self.client_uuid = client_uuid;
        self.observe_hlc()?;
        // The current user: the one named in meta, else the first, else a default lead.
        let current: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key='user'", [], |r| r.get(0))
            .optional()
            .map_err(self.sq())?;
        let user = match current {
            Some(u) => self.user_row(&u)?,
            None => None,
        };
        let user = match user {
            Some(id) => id,
            None => {
                let first: Option<i64> = self
                    .conn
                    .query_row("SELECT id FROM users ORDER BY id LIMIT 1", [], |r| r.get(0))
                    .optional()
                    .map_err(self.sq())?;
                match first {
                    Some(id) => id,
                    None => {
                        let name = std::env::var("LOUPE_USER")
                            .or_else(|_| std::env::var("USER"))
                            .unwrap_or_else(|_| "me".into());
                        let u = self.add_user(&name, Role::Lead)?;
                        self.user_row(&u.id.to_string())?.unwrap_or_default()
                    }
                }
            }
        };
        self.user = user;
        Ok(())
    }

    fn user_row(&self, uuid_or_name: &str) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT id FROM users WHERE uuid=?1 OR name=?1 ORDER BY id LIMIT 1",
                [uuid_or_name],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sq())
    }

    /// The project file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder image paths are relative to: the folder holding the project file.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This file's client id (used by sync).
    pub fn client_id(&self) -> Uuid {
        self.client_uuid
    }

    /// Takes into account the clocks of revisions other connections wrote since this one last
    /// looked (a sync merged on another thread, a CLI run), so the next local revision is
    /// stamped after every revision in the file. Returns the clock's last timestamp.
    ///
    /// Every write of revisions calls it inside its transaction, once it holds the write lock,
    /// so a long-open connection never stamps an edit behind a merged one. It reads only the
    /// revisions added since its last call (a range of the primary key), so it is cheap.
    pub fn observe_hlc(&mut self) -> Result<i64> {
        let seen = self.hlc_seen_seq;
        let (hlc, seq) = observed_since(&self.conn, seen).map_err(self.sq())?;
        self.hlc.observe(hlc);
        self.hlc_seen_seq = self.hlc_seen_seq.max(seq);
        Ok(self.hlc.last())
    }

    /// The raw connection, for the store's own tests. Every other module reaches the file
    /// through the store's typed API (`tests/architecture.rs` fails if one names SQLite).
    #[cfg(test)]
    fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Runs SQLite's own consistency check; `Ok(())` when it says "ok".
    pub fn integrity_check(&self) -> Result<()> {
        let result: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(self.sq())?;
        if result == "ok" {
            Ok(())
        } else {
            Err(StoreError::Damaged {
                path: self.path.clone(),
                reason: format!("integrity check failed: {result}"),
            })
        }
    }
}

#[cfg(test)]
mod tests;
