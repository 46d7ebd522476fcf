//! The project store: one SQLite file per project holding images, classes, users, the
//! append-only revision log of every annotation change, the current-state cache and versions.
//!
//! Invariants:
//! - every change to an annotation appends a revision with its full new value, and updates the
//!   `annotations` cache in the same transaction (`rebuild_current` recomputes the cache);
//! - the current value of an annotation is its revision with the greatest (hlc, client);
//! - integer row ids never leave the file: callers see UUIDs and names;
//! - the file is in WAL mode with `synchronous = FULL`, so an edit is durable when the call returns.

mod existing;
mod external;
mod schema;
mod versions;

pub use existing::ExistingLabel;
pub(crate) use external::IndexedImage;
pub use external::{ExternalKind, ExternalTarget, IdSource};
pub use versions::{BoxChange, ClassTotals, Version, VersionDiff};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use uuid::Uuid;

use crate::model::{
    Annotation, AnnotationValue, Attributes, BBox, BoxFlags, Class, ImageRecord, PALETTE,
    ReviewState, Role, Source, User,
};

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

impl StoreError {
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

/// One change to one annotation.
#[derive(Clone, Debug, PartialEq)]
pub enum Edit {
    /// A new annotation. `id` should be a fresh UUIDv7 (`Uuid::now_v7()`).
    Create { id: Uuid, value: AnnotationValue },
    /// A new full value for an existing annotation; `note` is a reason (e.g. for a return).
    Update {
        id: Uuid,
        value: AnnotationValue,
        note: Option<String>,
    },
    /// Tombstones an annotation; its history stays.
    Delete { id: Uuid },
}

impl Edit {
    pub fn id(&self) -> Uuid {
        match self {
            Edit::Create { id, .. } | Edit::Update { id, .. } | Edit::Delete { id } => *id,
        }
    }
}

/// One row of an annotation's history.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Revision {
    pub annotation: Uuid,
    pub author: String,
    pub client: Uuid,
    pub hlc: i64,
    pub op: String,
    pub value: AnnotationValue,
    pub note: Option<String>,
}

/// Which images to list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageFilter {
    pub status: ImageStatus,
    pub class: Option<String>,
    pub tag: Option<String>,
    /// `key=value` metadata match.
    pub meta: Option<(String, String)>,
    /// Substring of the path, case-insensitive.
    pub path_contains: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImageStatus {
    #[default]
    All,
    /// Has proposals nobody has reviewed yet, or no boxes at all and never marked done.
    Unreviewed,
    HasProposals,
    Flagged,
    Missing,
}

/// A row of the image list: the record plus counts, cheap enough for 100k images.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ImageRow {
    pub id: Uuid,
    pub path: String,
    pub width: u32,
    pub height: u32,
    pub missing: bool,
    pub boxes: u32,
    pub proposals: u32,
    /// Tagged `done` (someone finished it).
    pub done: bool,
    /// Tagged `flagged`.
    pub flagged: bool,
    /// The stack (a series, or a multi-frame file) the image is a frame of: image meta
    /// [`STACK_KEY`], written by `add`.
    pub stack: Option<String>,
    /// Its place in the stack, from 0 (meta [`FRAME_KEY`]).
    pub frame: u32,
    /// The slice position along the series' normal, in mm (meta [`SLICE_KEY`]).
    pub slice_mm: Option<f64>,
}

/// Image meta naming the stack an image belongs to: `series:UID` for the slices of a DICOM
/// series, `file:PATH` for the frames of a multi-frame file.
pub const STACK_KEY: &str = "stack";
/// Image meta: the image's index in its stack, from 0.
pub const FRAME_KEY: &str = "frame";
/// Image meta: the slice's position along the series' normal, in mm.
pub const SLICE_KEY: &str = "slice_mm";

impl ImageRow {
    /// Nobody has finished it: proposals wait, or it has no boxes and is not marked done
    /// (the "unreviewed" filter's rule).
    pub fn unreviewed(&self) -> bool {
        !self.done && (self.proposals > 0 || self.boxes == 0)
    }
}

/// Project-wide counts for `loupe stats`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    pub images: u64,
    pub missing_images: u64,
    pub image_bytes: u64,
    pub classes: u64,
    pub boxes: u64,
    pub proposals: u64,
    pub revisions: u64,
    pub versions: u64,
    pub runs: u64,
    pub boxes_per_class: Vec<(String, u64)>,
    pub proposals_per_class: Vec<(String, u64)>,
    pub boxes_per_state: Vec<(String, u64)>,
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

    /// The raw connection, for modules of the core that own their own tables.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Mutable access to the connection for multi-statement transactions of the core.
    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    // ---------------------------------------------------------------- users

    pub fn add_user(&mut self, name: &str, role: Role) -> Result<User> {
        let id = Uuid::now_v7();
        self.conn
            .execute(
                "INSERT INTO users(uuid, name, role, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![id.to_string(), name, role.as_str(), now_ms()],
            )
            .map_err(self.sq())?;
        Ok(User {
            id,
            name: name.to_owned(),
            role,
        })
    }

    pub fn users(&self) -> Result<Vec<User>> {
        let mut stmt = self
            .conn
            .prepare("SELECT uuid, name, role FROM users ORDER BY id")
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(self.sq())?;
        let mut out = Vec::new();
        for row in rows {
            let (id, name, role) = row.map_err(self.sq())?;
            out.push(User {
                id: Uuid::parse_str(&id).unwrap_or_default(),
                name,
                role: Role::parse(&role).unwrap_or(Role::Annotator),
            });
        }
        Ok(out)
    }

    /// The person edits are attributed to.
    pub fn current_user(&self) -> Result<User> {
        self.conn
            .query_row(
                "SELECT uuid, name, role FROM users WHERE id=?1",
                [self.user],
                |r| {
                    Ok(User {
                        id: Uuid::parse_str(&r.get::<_, String>(0)?).unwrap_or_default(),
                        name: r.get(1)?,
                        role: Role::parse(&r.get::<_, String>(2)?).unwrap_or(Role::Annotator),
                    })
                },
            )
            .map_err(self.sq())
    }

    /// Attributes this connection's edits to `name_or_id` (created as an annotator if new)
    /// without changing the project's remembered user.
    pub fn act_as(&mut self, name_or_id: &str) -> Result<User> {
        let id = match self.user_row(name_or_id)? {
            Some(id) => id,
            None => {
                let u = self.add_user(name_or_id, Role::Annotator)?;
                self.user_row(&u.id.to_string())?.unwrap_or_default()
            }
        };
        self.user = id;
        self.current_user()
    }

    /// Makes `name_or_id` the current user, creating it with `role` if it does not exist.
    pub fn switch_user(&mut self, name_or_id: &str, role: Option<Role>) -> Result<User> {
        let id = match self.user_row(name_or_id)? {
            Some(id) => {
                if let Some(role) = role {
                    self.conn
                        .execute(
                            "UPDATE users SET role=?1 WHERE id=?2",
                            params![role.as_str(), id],
                        )
                        .map_err(self.sq())?;
                }
                id
            }
            None => {
                let u = self.add_user(name_or_id, role.unwrap_or(Role::Annotator))?;
                self.user_row(&u.id.to_string())?.unwrap_or_default()
            }
        };
        self.user = id;
        let uuid: String = self
            .conn
            .query_row("SELECT uuid FROM users WHERE id=?1", [id], |r| r.get(0))
            .map_err(self.sq())?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('user', ?1)",
                [uuid],
            )
            .map_err(self.sq())?;
        self.current_user()
    }

    // ---------------------------------------------------------------- classes

    pub fn classes(&self) -> Result<Vec<Class>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT uuid, name, color, ord FROM classes ORDER BY ord, id")
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Class {
                    id: Uuid::parse_str(&r.get::<_, String>(0)?).unwrap_or_default(),
                    name: r.get(1)?,
                    color: r.get(2)?,
                    order: r.get(3)?,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// Returns the class with this name, creating it (last in order) if needed.
    pub fn ensure_class(&mut self, name: &str) -> Result<Class> {
        let tx = self
            .conn
            .transaction()
            .map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                source,
            })?;
        let class = ensure_class_tx(&tx, name).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })?;
        tx.commit().map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })?;
        Ok(class)
    }

    pub fn rename_class(&mut self, id: Uuid, name: &str) -> Result<()> {
        let n = self
            .conn
            .execute(
                "UPDATE classes SET name=?1 WHERE uuid=?2",
                params![name, id.to_string()],
            )
            .map_err(self.sq())?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "class",
                key: id.to_string(),
            });
        }
        Ok(())
    }

    // ---------------------------------------------------------------- images

    fn image_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRecord> {
        Ok(ImageRecord {
            id: Uuid::parse_str(&r.get::<_, String>(0)?).unwrap_or_default(),
            hash: r.get(1)?,
            path: r.get(2)?,
            width: r.get(3)?,
            height: r.get(4)?,
            bytes: r.get::<_, i64>(5)?.try_into().unwrap_or(0),
            missing: r.get::<_, i64>(6)? != 0,
            external_id: r.get(7)?,
        })
    }

    const IMAGE_COLS: &'static str = "uuid, hash, path, width, height, bytes, missing, external_id";

    pub fn image(&self, id: Uuid) -> Result<ImageRecord> {
        self.conn
            .query_row(
                &format!("SELECT {} FROM images WHERE uuid=?1", Self::IMAGE_COLS),
                [id.to_string()],
                Self::image_from_row,
            )
            .optional()
            .map_err(self.sq())?
            .ok_or_else(|| StoreError::NotFound {
                what: "image",
                key: id.to_string(),
            })
    }

    pub fn image_by_path(&self, path: &str) -> Result<Option<ImageRecord>> {
        self.conn
            .query_row(
                &format!("SELECT {} FROM images WHERE path=?1", Self::IMAGE_COLS),
                [path],
                Self::image_from_row,
            )
            .optional()
            .map_err(self.sq())
    }

    /// The content hash of every image that has one, by path (the key of seeded splits).
    pub fn image_hashes(&self) -> Result<HashMap<String, String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT path, hash FROM images WHERE hash IS NOT NULL")
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(self.sq())?;
        rows.collect::<rusqlite::Result<HashMap<_, _>>>()
            .map_err(self.sq())
    }

    /// Every image of the project, in path order (placeholders of missing files included).
    pub fn all_images(&self) -> Result<Vec<ImageRecord>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {} FROM images ORDER BY path",
                Self::IMAGE_COLS
            ))
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], Self::image_from_row)
            .map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.sq())
    }

    /// The absolute path of an image file.
    pub fn image_file(&self, image: &ImageRecord) -> PathBuf {
        self.root.join(&image.path)
    }

    /// Lists images in path order with their box counts.
    pub fn list_images(&self, filter: &ImageFilter) -> Result<Vec<ImageRow>> {
        let mut sql = String::from(
            "SELECT i.uuid, i.path, i.width, i.height, i.missing,
                (SELECT COUNT(*) FROM annotations a WHERE a.image=i.id AND a.deleted=0 AND a.state NOT IN ('proposed','rejected')),
                (SELECT COUNT(*) FROM annotations a WHERE a.image=i.id AND a.deleted=0 AND a.state='proposed'),
                EXISTS (SELECT 1 FROM image_tags t WHERE t.image=i.id AND t.tag='done'),
                EXISTS (SELECT 1 FROM image_tags t WHERE t.image=i.id AND t.tag='flagged'),
                (SELECT value FROM image_meta m WHERE m.image=i.id AND m.key='stack'),
                (SELECT value FROM image_meta m WHERE m.image=i.id AND m.key='frame'),
                (SELECT value FROM image_meta m WHERE m.image=i.id AND m.key='slice_mm')
             FROM images i WHERE 1=1",
        );
        let mut args: Vec<String> = Vec::new();
        match filter.status {
            ImageStatus::All => {}
            ImageStatus::Unreviewed => sql.push_str(
                " AND (EXISTS (SELECT 1 FROM annotations a WHERE a.image=i.id AND a.deleted=0 AND a.state='proposed')
                   OR NOT EXISTS (SELECT 1 FROM annotations a WHERE a.image=i.id))
                   AND NOT EXISTS (SELECT 1 FROM image_tags t WHERE t.image=i.id AND t.tag='done')",
            ),
            ImageStatus::HasProposals => sql.push_str(
                " AND EXISTS (SELECT 1 FROM annotations a WHERE a.image=i.id AND a.deleted=0 AND a.state='proposed')",
            ),
            ImageStatus::Flagged => sql.push_str(
                " AND EXISTS (SELECT 1 FROM image_tags t WHERE t.image=i.id AND t.tag='flagged')",
            ),
            ImageStatus::Missing => sql.push_str(" AND i.missing=1"),
        }
        if let Some(class) = &filter.class {
            args.push(class.clone());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM annotations a JOIN classes c ON c.id=a.class WHERE a.image=i.id AND a.deleted=0 AND c.name=?{})",
                args.len()
            ));
        }
        if let Some(tag) = &filter.tag {
            args.push(tag.clone());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM image_tags t WHERE t.image=i.id AND t.tag=?{})",
                args.len()
            ));
        }
        if let Some((k, v)) = &filter.meta {
            args.push(k.clone());
            args.push(v.clone());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM image_meta m WHERE m.image=i.id AND m.key=?{} AND m.value=?{})",
                args.len() - 1,
                args.len()
            ));
        }
        if let Some(p) = &filter.path_contains {
            args.push(format!("%{}%", p.to_lowercase()));
            sql.push_str(&format!(" AND lower(i.path) LIKE ?{}", args.len()));
        }
        sql.push_str(" ORDER BY i.path");
        let mut stmt = self.conn.prepare(&sql).map_err(self.sq())?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok(ImageRow {
                    id: Uuid::parse_str(&r.get::<_, String>(0)?).unwrap_or_default(),
                    path: r.get(1)?,
                    width: r.get(2)?,
                    height: r.get(3)?,
                    missing: r.get::<_, i64>(4)? != 0,
                    boxes: r.get(5)?,
                    proposals: r.get(6)?,
                    done: r.get::<_, i64>(7)? != 0,
                    flagged: r.get::<_, i64>(8)? != 0,
                    stack: r.get(9)?,
                    frame: r
                        .get::<_, Option<String>>(10)?
                        .and_then(|f| f.parse().ok())
                        .unwrap_or(0),
                    slice_mm: r.get::<_, Option<String>>(11)?.and_then(|f| f.parse().ok()),
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// Sets or removes (empty value) a key=value on an image.
    pub fn set_image_meta(&mut self, image: Uuid, key: &str, value: &str) -> Result<()> {
        let id = self.image_row(image)?;
        if value.is_empty() {
            self.conn
                .execute(
                    "DELETE FROM image_meta WHERE image=?1 AND key=?2",
                    params![id, key],
                )
                .map_err(self.sq())?;
        } else {
            self.conn
                .execute(
                    "INSERT OR REPLACE INTO image_meta(image, key, value) VALUES (?1, ?2, ?3)",
                    params![id, key, value],
                )
                .map_err(self.sq())?;
        }
        Ok(())
    }

    pub fn image_meta(&self, image: Uuid) -> Result<Vec<(String, String)>> {
        let id = self.image_row(image)?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, value FROM image_meta WHERE image=?1 ORDER BY key")
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    pub fn set_tag(&mut self, image: Uuid, tag: &str, on: bool) -> Result<()> {
        let id = self.image_row(image)?;
        let sql = if on {
            "INSERT OR IGNORE INTO image_tags(image, tag) VALUES (?1, ?2)"
        } else {
            "DELETE FROM image_tags WHERE image=?1 AND tag=?2"
        };
        self.conn
            .execute(sql, params![id, tag])
            .map_err(self.sq())?;
        Ok(())
    }

    pub fn tags(&self, image: Uuid) -> Result<Vec<String>> {
        let id = self.image_row(image)?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT tag FROM image_tags WHERE image=?1 ORDER BY tag")
            .map_err(self.sq())?;
        let rows = stmt.query_map([id], |r| r.get(0)).map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    fn image_row(&self, image: Uuid) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT id FROM images WHERE uuid=?1",
                [image.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sq())?
            .ok_or_else(|| StoreError::NotFound {
                what: "image",
                key: image.to_string(),
            })
    }

    // ---------------------------------------------------------------- annotations

    const ANN_COLS: &'static str = "a.uuid, i.uuid, c.uuid, a.x, a.y, a.w, a.h, r.uuid, a.score, a.state, a.flags, a.deleted, a.attributes";
    const ANN_JOINS: &'static str = "annotations a JOIN images i ON i.id=a.image JOIN classes c ON c.id=a.class LEFT JOIN runs r ON r.id=a.run";

    fn annotation_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Annotation> {
        let uuid_blob = |i: usize| -> rusqlite::Result<Uuid> {
            let b: Vec<u8> = r.get(i)?;
            Ok(Uuid::from_slice(&b).unwrap_or_default())
        };
        let uuid_text = |i: usize| -> rusqlite::Result<Uuid> {
            Ok(Uuid::parse_str(&r.get::<_, String>(i)?).unwrap_or_default())
        };
        let run: Option<String> = r.get(7)?;
        let source = match run {
            Some(run) => Source::Model {
                run: Uuid::parse_str(&run).unwrap_or_default(),
                score: r.get::<_, Option<f64>>(8)?.unwrap_or(0.0) as f32,
            },
            None => Source::Human,
        };
        Ok(Annotation {
            id: uuid_blob(0)?,
            value: AnnotationValue {
                image: uuid_text(1)?,
                class: uuid_text(2)?,
                bbox: BBox::new(r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?),
                source,
                state: ReviewState::parse(&r.get::<_, String>(9)?)
                    .unwrap_or(ReviewState::Submitted),
                flags: BoxFlags::from_bits(r.get::<_, i64>(10)?.try_into().unwrap_or(0)),
                deleted: r.get::<_, i64>(11)? != 0,
                attributes: attributes_from_column(r, 12)?,
            },
        })
    }

    /// The live (not deleted) annotations of an image, in creation order.
    pub fn annotations_for_image(&self, image: Uuid) -> Result<Vec<Annotation>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {} FROM {} WHERE i.uuid=?1 AND a.deleted=0 ORDER BY a.id",
                Self::ANN_COLS,
                Self::ANN_JOINS
            ))
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([image.to_string()], Self::annotation_from_row)
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// One annotation's current value (deleted ones too).
    pub fn annotation(&self, id: Uuid) -> Result<Annotation> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {} FROM {} WHERE a.uuid=?1",
                    Self::ANN_COLS,
                    Self::ANN_JOINS
                ),
                [id.as_bytes().as_slice()],
                Self::annotation_from_row,
            )
            .optional()
            .map_err(self.sq())?
            .ok_or_else(|| StoreError::NotFound {
                what: "annotation",
                key: id.to_string(),
            })
    }

    /// Every current annotation, deleted ones excluded.
    pub fn all_annotations(&self) -> Result<Vec<Annotation>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {} FROM {} WHERE a.deleted=0 ORDER BY a.id",
                Self::ANN_COLS,
                Self::ANN_JOINS
            ))
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], Self::annotation_from_row)
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// Applies edits in one transaction, attributed to the current user. Durable on return.
    pub fn apply(&mut self, edits: &[Edit]) -> Result<Vec<Annotation>> {
        // Review rules (legal state transitions, roles) hold for every edit, wherever it comes from.
        crate::review::check_edits(self, edits).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let author = self.user;
        self.apply_as(edits, author)
    }

    fn apply_as(&mut self, edits: &[Edit], author: i64) -> Result<Vec<Annotation>> {
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let client = self.client;
        // Immediate: take the write lock first, so a read here never has to be upgraded to a
        // write while another connection (the sync thread) commits, which SQLite refuses with
        // SQLITE_BUSY instead of waiting.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sq)?;
        let (seen_hlc, seen_seq) = observed_since(&tx, self.hlc_seen_seq).map_err(sq)?;
        self.hlc.observe(seen_hlc);
        self.hlc_seen_seq = self.hlc_seen_seq.max(seen_seq);
        let mut touched = Vec::with_capacity(edits.len());
        {
            let mut w = RevisionWriter::new(&tx, author, client).map_err(sq)?;
            for edit in edits {
                let hlc = self.hlc.tick();
                match edit {
                    Edit::Create { id, value } => {
                        w.create(*id, value, hlc, "create")?;
                    }
                    Edit::Update { id, value, note } => {
                        w.update(*id, value, hlc, note.as_deref())?;
                    }
                    Edit::Delete { id } => {
                        let mut value = w.current_value(*id)?;
                        value.deleted = true;
                        w.update(*id, &value, hlc, None)?;
                    }
                }
                touched.push(edit.id());
            }
        }
        tx.commit().map_err(sq)?;
        touched.into_iter().map(|id| self.annotation(id)).collect()
    }

    /// The full history of an annotation, oldest first.
    pub fn history(&self, id: Uuid) -> Result<Vec<Revision>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT a.uuid, u.name, cl.uuid, v.hlc, v.op, i.uuid, c.uuid, v.x, v.y, v.w, v.h, r.uuid, v.score, v.state, v.flags, v.deleted, v.note, v.attributes
                 FROM revisions v JOIN annotations a ON a.id=v.ann JOIN users u ON u.id=v.author
                 JOIN clients cl ON cl.id=v.client JOIN images i ON i.id=v.image JOIN classes c ON c.id=v.class
                 LEFT JOIN runs r ON r.id=v.run
                 WHERE a.uuid=?1 ORDER BY v.hlc, cl.uuid, v.seq",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([id.as_bytes().as_slice()], revision_from_row)
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// Recomputes the `annotations` cache from the revision log: each box's revision with the
    /// greatest (hlc, client uuid), leaving out revisions the team roster refused (sync's rule,
    /// `sync::merge::winner`). Returns how many rows changed.
    pub fn rebuild_current(&mut self) -> Result<usize> {
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sq)?;
        let n = tx
            .execute(
                "WITH latest AS (
                    SELECT v.* FROM revisions v
                    WHERE v.seq = (SELECT v2.seq FROM revisions v2 JOIN clients c2 ON c2.id=v2.client
                                   WHERE v2.ann=v.ann AND NOT EXISTS (
                                       SELECT 1 FROM sync_revs s WHERE s.rev=v2.seq AND s.refused IS NOT NULL)
                                   ORDER BY v2.hlc DESC, c2.uuid DESC, v2.seq DESC LIMIT 1))
                 UPDATE annotations SET image=l.image, class=l.class, x=l.x, y=l.y, w=l.w, h=l.h,
                    run=l.run, score=l.score, state=l.state, flags=l.flags, deleted=l.deleted,
                    attributes=l.attributes, rev=l.seq
                 FROM latest l WHERE l.ann=annotations.id AND (
                    annotations.rev IS NOT l.seq OR annotations.image IS NOT l.image OR annotations.class IS NOT l.class
                    OR annotations.x IS NOT l.x OR annotations.y IS NOT l.y OR annotations.w IS NOT l.w OR annotations.h IS NOT l.h
                    OR annotations.run IS NOT l.run OR annotations.score IS NOT l.score OR annotations.state IS NOT l.state
                    OR annotations.flags IS NOT l.flags OR annotations.deleted IS NOT l.deleted
                    OR annotations.attributes IS NOT l.attributes)",
                [],
            )
            .map_err(sq)?;
        tx.commit().map_err(sq)?;
        Ok(n)
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

    // ---------------------------------------------------------------- runs

    /// Registers a model run (or an imported results file) and returns its id.
    pub fn create_run(&mut self, run: &NewRun) -> Result<Uuid> {
        let id = Uuid::now_v7();
        self.conn
            .execute(
                "INSERT INTO runs(uuid, name, kind, model_path, model_hash, settings, settings_hash, runtime_version, started_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    id.to_string(),
                    run.name,
                    run.kind,
                    run.model_path,
                    run.model_hash,
                    run.settings,
                    run.settings_hash,
                    run.runtime_version,
                    now_ms()
                ],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StoreError::Invalid(format!("a run named {:?} already exists", run.name))
                }
                e => StoreError::Sqlite {
                    path: self.path.clone(),
                    source: e,
                },
            })?;
        Ok(id)
    }

    pub fn finish_run(&mut self, run: Uuid) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET finished_ms=?1 WHERE uuid=?2",
                params![now_ms(), run.to_string()],
            )
            .map_err(self.sq())?;
        Ok(())
    }

    pub fn runs(&self) -> Result<Vec<RunInfo>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.uuid, r.name, r.kind, r.model_hash, r.settings_hash, r.runtime_version, r.started_ms, r.finished_ms,
                    (SELECT COUNT(*) FROM run_images ri WHERE ri.run=r.id),
                    (SELECT COUNT(*) FROM annotations a WHERE a.run=r.id AND a.deleted=0)
                 FROM runs r ORDER BY r.id",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(RunInfo {
                    id: Uuid::parse_str(&r.get::<_, String>(0)?).unwrap_or_default(),
                    name: r.get(1)?,
                    kind: r.get(2)?,
                    model_hash: r.get(3)?,
                    settings_hash: r.get(4)?,
                    runtime_version: r.get(5)?,
                    started_ms: r.get(6)?,
                    finished_ms: r.get(7)?,
                    images: r.get::<_, i64>(8)?.try_into().unwrap_or(0),
                    boxes: r.get::<_, i64>(9)?.try_into().unwrap_or(0),
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    pub fn run_by_name(&self, name: &str) -> Result<RunInfo> {
        self.runs()?
            .into_iter()
            .find(|r| r.name == name || r.id.to_string() == name)
            .ok_or_else(|| StoreError::NotFound {
                what: "model run",
                key: name.to_owned(),
            })
    }

    /// Image ids already done by any run with this model and settings hash (for resuming).
    pub fn images_done_by(
        &self,
        model_hash: &str,
        settings_hash: &str,
    ) -> Result<std::collections::HashSet<Uuid>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT DISTINCT i.uuid FROM run_images ri JOIN runs r ON r.id=ri.run JOIN images i ON i.id=ri.image
                 WHERE r.model_hash=?1 AND r.settings_hash=?2",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([model_hash, settings_hash], |r| r.get::<_, String>(0))
            .map_err(self.sq())?;
        let mut out = std::collections::HashSet::new();
        for r in rows {
            if let Ok(u) = Uuid::parse_str(&r.map_err(self.sq())?) {
                out.insert(u);
            }
        }
        Ok(out)
    }

    /// Stores one image's predictions as proposals of `run`, in one transaction, and records the
    /// image as done by the run. Never touches existing boxes.
    pub fn add_proposals(
        &mut self,
        run: Uuid,
        image: Uuid,
        proposals: &[(String, BBox, f32)],
        timing: RunImageTiming,
    ) -> Result<usize> {
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let author = self.user;
        let client = self.client;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sq)?;
        let (seen_hlc, seen_seq) = observed_since(&tx, self.hlc_seen_seq).map_err(sq)?;
        self.hlc.observe(seen_hlc);
        self.hlc_seen_seq = self.hlc_seen_seq.max(seen_seq);
        let run_row: i64 = tx
            .query_row(
                "SELECT id FROM runs WHERE uuid=?1",
                [run.to_string()],
                |r| r.get(0),
            )
            .map_err(sq)?;
        let image_row: i64 = tx
            .query_row(
                "SELECT id FROM images WHERE uuid=?1",
                [image.to_string()],
                |r| r.get(0),
            )
            .map_err(sq)?;
        {
            let mut classes = HashMap::new();
            let mut w = RevisionWriter::new(&tx, author, client).map_err(sq)?;
            for (class, bbox, score) in proposals {
                let class_row = match classes.get(class) {
                    Some(c) => *c,
                    None => {
                        let c = class_row_tx(&tx, class).map_err(sq)?;
                        classes.insert(class.clone(), c);
                        c
                    }
                };
                let hlc = self.hlc.tick();
                w.insert_rows(
                    Uuid::now_v7(),
                    &RowValue {
                        image: image_row,
                        class: class_row,
                        bbox: *bbox,
                        run: Some(run_row),
                        score: Some(f64::from(*score)),
                        state: ReviewState::Proposed,
                        flags: 0,
                        deleted: false,
                        attributes: None,
                    },
                    hlc,
                    "create",
                    None,
                )
                .map_err(sq)?;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO run_images(run, image, decode_ms, infer_ms, boxes, done_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![run_row, image_row, timing.decode_ms, timing.infer_ms, proposals.len() as i64, now_ms()],
        )
        .map_err(sq)?;
        tx.commit().map_err(sq)?;
        Ok(proposals.len())
    }

    // ---------------------------------------------------------------- stats

    pub fn stats(&self) -> Result<Stats> {
        let one = |sql: &str| -> Result<u64> {
            self.conn
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(self.sq())
        };
        let pairs = |sql: &str| -> Result<Vec<(String, u64)>> {
            let mut stmt = self.conn.prepare(sql).map_err(self.sq())?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    ))
                })
                .map_err(self.sq())?;
            rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
        };
        Ok(Stats {
            images: one("SELECT COUNT(*) FROM images")?,
            missing_images: one("SELECT COUNT(*) FROM images WHERE missing=1")?,
            image_bytes: one("SELECT COALESCE(SUM(bytes), 0) FROM images")?,
            classes: one("SELECT COUNT(*) FROM classes")?,
            boxes: one("SELECT COUNT(*) FROM annotations WHERE deleted=0 AND state NOT IN ('proposed','rejected')")?,
            proposals: one("SELECT COUNT(*) FROM annotations WHERE deleted=0 AND state='proposed'")?,
            revisions: one("SELECT COUNT(*) FROM revisions")?,
            versions: one("SELECT COUNT(*) FROM versions")?,
            runs: one("SELECT COUNT(*) FROM runs")?,
            boxes_per_class: pairs(
                "SELECT c.name, COUNT(a.id) FROM classes c LEFT JOIN annotations a ON a.class=c.id AND a.deleted=0 AND a.state NOT IN ('proposed','rejected')
                 GROUP BY c.id ORDER BY c.ord, c.id",
            )?,
            proposals_per_class: pairs(
                "SELECT c.name, COUNT(a.id) FROM classes c LEFT JOIN annotations a ON a.class=c.id AND a.deleted=0 AND a.state='proposed'
                 GROUP BY c.id ORDER BY c.ord, c.id",
            )?,
            boxes_per_state: pairs(
                "SELECT state, COUNT(*) FROM annotations WHERE deleted=0 GROUP BY state ORDER BY state",
            )?,
        })
    }

    /// Starts a bulk transaction for importers (see `ingest` and `formats` glue).
    ///
    /// Foreign-key checks are off for the bulk transaction (they cost more than the inserts at a
    /// million boxes): `Bulk` resolves every reference itself, and turns them back on when it
    /// commits or is dropped.
    pub fn bulk(&mut self) -> Result<Bulk<'_>> {
        let path = self.path.clone();
        let author = self.user;
        let client = self.client;
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        self.conn
            .pragma_update(None, "foreign_keys", "OFF")
            .map_err(sq)?;
        // Room for a large import's pages in memory, so the transaction does not spill to the
        // WAL before it commits (reset when the bulk ends).
        self.conn
            .pragma_update(None, "cache_size", -1_048_576)
            .map_err(sq)?;
        let conn = &self.conn;
        let tx = Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
            .map_err(|source| {
                let _ = conn.pragma_update(None, "foreign_keys", "ON");
                StoreError::Sqlite {
                    path: path.clone(),
                    source,
                }
            })?;
        let next_seq: i64 = tx
            .query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM revisions", [], |r| {
                r.get(0)
            })
            .map_err(sq)?;
        let (seen_hlc, _) = observed_since(&tx, self.hlc_seen_seq).map_err(sq)?;
        self.hlc.observe(seen_hlc);
        self.hlc_seen_seq = self.hlc_seen_seq.max(next_seq - 1);
        let next_ann: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(id), 0) + 1 FROM annotations",
                [],
                |r| r.get(0),
            )
            .map_err(sq)?;
        Ok(Bulk {
            tx: Some(tx),
            conn,
            path,
            author,
            client,
            hlc: &mut self.hlc,
            classes: HashMap::new(),
            next_seq,
            next_ann,
            pending: Vec::with_capacity(BULK_ROWS),
        })
    }
}

/// What `create_run` records about a run.
#[derive(Clone, Debug, Default)]
pub struct NewRun {
    pub name: String,
    /// `onnx` for a local model run, `import` for a results file.
    pub kind: String,
    pub model_path: Option<String>,
    pub model_hash: Option<String>,
    /// JSON of the descriptor and thresholds.
    pub settings: String,
    pub settings_hash: Option<String>,
    pub runtime_version: Option<String>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct RunImageTiming {
    pub decode_ms: f64,
    pub infer_ms: f64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunInfo {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub model_hash: Option<String>,
    pub settings_hash: Option<String>,
    pub runtime_version: Option<String>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub images: u64,
    pub boxes: u64,
}

fn revision_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Revision> {
    let text = |i: usize| -> rusqlite::Result<Uuid> {
        Ok(Uuid::parse_str(&r.get::<_, String>(i)?).unwrap_or_default())
    };
    let ann: Vec<u8> = r.get(0)?;
    let run: Option<String> = r.get(11)?;
    Ok(Revision {
        annotation: Uuid::from_slice(&ann).unwrap_or_default(),
        author: r.get(1)?,
        client: text(2)?,
        hlc: r.get(3)?,
        op: r.get(4)?,
        value: AnnotationValue {
            image: text(5)?,
            class: text(6)?,
            bbox: BBox::new(r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?),
            source: match run {
                Some(run) => Source::Model {
                    run: Uuid::parse_str(&run).unwrap_or_default(),
                    score: r.get::<_, Option<f64>>(12)?.unwrap_or(0.0) as f32,
                },
                None => Source::Human,
            },
            state: ReviewState::parse(&r.get::<_, String>(13)?).unwrap_or(ReviewState::Submitted),
            flags: BoxFlags::from_bits(r.get::<_, i64>(14)?.try_into().unwrap_or(0)),
            deleted: r.get::<_, i64>(15)? != 0,
            attributes: attributes_from_column(r, 17)?,
        },
        note: r.get(16)?,
    })
}

/// A box's attributes from their column (`Attributes::to_json`, NULL for none). A value this
/// build cannot read is a conversion error naming the column, never a silent empty set.
pub(crate) fn attributes_from_column(
    r: &rusqlite::Row<'_>,
    i: usize,
) -> rusqlite::Result<Attributes> {
    let json: Option<String> = r.get(i)?;
    Attributes::from_json(json.as_deref()).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn class_row_tx(tx: &Transaction<'_>, name: &str) -> rusqlite::Result<i64> {
    if let Some(id) = tx
        .query_row("SELECT id FROM classes WHERE name=?1", [name], |r| r.get(0))
        .optional()?
    {
        return Ok(id);
    }
    let n: i64 = tx.query_row("SELECT COUNT(*) FROM classes", [], |r| r.get(0))?;
    let color = PALETTE[usize::try_from(n).unwrap_or(0) % PALETTE.len()];
    tx.execute(
        "INSERT INTO classes(uuid, name, color, ord) VALUES (?1, ?2, ?3, ?4)",
        params![Uuid::now_v7().to_string(), name, color, n],
    )?;
    Ok(tx.last_insert_rowid())
}

fn ensure_class_tx(tx: &Transaction<'_>, name: &str) -> rusqlite::Result<Class> {
    let id = class_row_tx(tx, name)?;
    tx.query_row(
        "SELECT uuid, name, color, ord FROM classes WHERE id=?1",
        [id],
        |r| {
            Ok(Class {
                id: Uuid::parse_str(&r.get::<_, String>(0)?).unwrap_or_default(),
                name: r.get(1)?,
                color: r.get(2)?,
                order: r.get(3)?,
            })
        },
    )
}

/// An annotation value with foreign keys resolved to row ids.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RowValue {
    pub image: i64,
    pub class: i64,
    pub bbox: BBox,
    pub run: Option<i64>,
    pub score: Option<f64>,
    pub state: ReviewState,
    pub flags: i64,
    pub deleted: bool,
    /// `Attributes::to_json`: NULL when the box has none.
    pub attributes: Option<String>,
}

/// Writes revisions and keeps the current-state cache in step, inside one transaction.
pub(crate) struct RevisionWriter<'t> {
    tx: &'t Transaction<'t>,
    author: i64,
    client: i64,
}

impl<'t> RevisionWriter<'t> {
    fn new(tx: &'t Transaction<'t>, author: i64, client: i64) -> rusqlite::Result<Self> {
        Ok(Self { tx, author, client })
    }

    fn resolve(&self, value: &AnnotationValue) -> Result<RowValue> {
        let sq = |e: rusqlite::Error| StoreError::Invalid(describe_sqlite(&e));
        let image: i64 = self
            .tx
            .prepare_cached("SELECT id FROM images WHERE uuid=?1")
            .and_then(|mut s| {
                s.query_row([value.image.to_string()], |r| r.get(0))
                    .optional()
            })
            .map_err(sq)?
            .ok_or_else(|| StoreError::NotFound {
                what: "image",
                key: value.image.to_string(),
            })?;
        let class: i64 = self
            .tx
            .prepare_cached("SELECT id FROM classes WHERE uuid=?1")
            .and_then(|mut s| {
                s.query_row([value.class.to_string()], |r| r.get(0))
                    .optional()
            })
            .map_err(sq)?
            .ok_or_else(|| StoreError::NotFound {
                what: "class",
                key: value.class.to_string(),
            })?;
        let (run, score) = match &value.source {
            Source::Human => (None, None),
            Source::Model { run, score } => {
                let run: i64 = self
                    .tx
                    .prepare_cached("SELECT id FROM runs WHERE uuid=?1")
                    .and_then(|mut s| s.query_row([run.to_string()], |r| r.get(0)).optional())
                    .map_err(sq)?
                    .ok_or_else(|| StoreError::NotFound {
                        what: "model run",
                        key: run.to_string(),
                    })?;
                (Some(run), Some(f64::from(*score)))
            }
        };
        if !value.bbox.is_finite() || value.bbox.w < 0.0 || value.bbox.h < 0.0 {
            return Err(StoreError::Invalid(format!("invalid box {:?}", value.bbox)));
        }
        Ok(RowValue {
            image,
            class,
            bbox: value.bbox,
            run,
            score,
            state: value.state,
            flags: i64::from(value.flags.bits()),
            deleted: value.deleted,
            attributes: value.attributes.to_json(),
        })
    }

    fn current_value(&self, id: Uuid) -> Result<AnnotationValue> {
        let sql = format!(
            "SELECT {} FROM {} WHERE a.uuid=?1",
            Project::ANN_COLS,
            Project::ANN_JOINS
        );
        self.tx
            .prepare_cached(&sql)
            .and_then(|mut s| {
                s.query_row([id.as_bytes().as_slice()], Project::annotation_from_row)
                    .optional()
            })
            .map_err(|e| StoreError::Invalid(describe_sqlite(&e)))?
            .map(|a| a.value)
            .ok_or_else(|| StoreError::NotFound {
                what: "annotation",
                key: id.to_string(),
            })
    }

    fn create(&mut self, id: Uuid, value: &AnnotationValue, hlc: i64, op: &str) -> Result<()> {
        let row = self.resolve(value)?;
        self.insert_rows(id, &row, hlc, op, None)
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StoreError::Invalid(format!("annotation {id} already exists"))
                }
                e => StoreError::Invalid(describe_sqlite(&e)),
            })
    }

    fn update(
        &mut self,
        id: Uuid,
        value: &AnnotationValue,
        hlc: i64,
        note: Option<&str>,
    ) -> Result<()> {
        let row = self.resolve(value)?;
        let ann: i64 = self
            .tx
            .prepare_cached("SELECT id FROM annotations WHERE uuid=?1")
            .and_then(|mut s| {
                s.query_row([id.as_bytes().as_slice()], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| StoreError::Invalid(describe_sqlite(&e)))?
            .ok_or_else(|| StoreError::NotFound {
                what: "annotation",
                key: id.to_string(),
            })?;
        let op = if row.deleted { "delete" } else { "update" };
        let seq = self
            .insert_revision(ann, &row, hlc, op, note)
            .map_err(|e| StoreError::Invalid(describe_sqlite(&e)))?;
        self.tx
            .prepare_cached(
                "UPDATE annotations SET image=?2, class=?3, x=?4, y=?5, w=?6, h=?7, run=?8, score=?9, state=?10, flags=?11, deleted=?12, rev=?13, attributes=?14 WHERE id=?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    ann,
                    row.image,
                    row.class,
                    row.bbox.x,
                    row.bbox.y,
                    row.bbox.w,
                    row.bbox.h,
                    row.run,
                    row.score,
                    state_str(row.state),
                    row.flags,
                    i64::from(row.deleted),
                    seq,
                    row.attributes
                ])
            })
            .map_err(|e| StoreError::Invalid(describe_sqlite(&e)))?;
        Ok(())
    }

    /// Inserts a new annotation row plus its first revision.
    pub(crate) fn insert_rows(
        &mut self,
        id: Uuid,
        row: &RowValue,
        hlc: i64,
        op: &str,
        note: Option<&str>,
    ) -> rusqlite::Result<()> {
        let mut ins = self.tx.prepare_cached(
            "INSERT INTO annotations(uuid, image, class, x, y, w, h, run, score, state, flags, deleted, rev, attributes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 0, ?13)",
        )?;
        ins.execute(params![
            id.as_bytes().as_slice(),
            row.image,
            row.class,
            row.bbox.x,
            row.bbox.y,
            row.bbox.w,
            row.bbox.h,
            row.run,
            row.score,
            state_str(row.state),
            row.flags,
            i64::from(row.deleted),
            row.attributes
        ])?;
        let ann = self.tx.last_insert_rowid();
        let seq = self.insert_revision(ann, row, hlc, op, note)?;
        self.tx
            .prepare_cached("UPDATE annotations SET rev=?2 WHERE id=?1")?
            .execute(params![ann, seq])?;
        Ok(())
    }

    fn insert_revision(
        &mut self,
        ann: i64,
        row: &RowValue,
        hlc: i64,
        op: &str,
        note: Option<&str>,
    ) -> rusqlite::Result<i64> {
        let mut ins = self.tx.prepare_cached(
            "INSERT INTO revisions(ann, author, client, hlc, op, image, class, x, y, w, h, run, score, state, flags, deleted, note, attributes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        )?;
        ins.execute(params![
            ann,
            self.author,
            self.client,
            hlc,
            op,
            row.image,
            row.class,
            row.bbox.x,
            row.bbox.y,
            row.bbox.w,
            row.bbox.h,
            row.run,
            row.score,
            state_str(row.state),
            row.flags,
            i64::from(row.deleted),
            note,
            row.attributes
        ])?;
        Ok(self.tx.last_insert_rowid())
    }
}

/// A bulk write (an import or an `add`): one transaction, committed by `commit`, rolled back
/// if dropped. Images and classes are addressed by path and name.
pub struct Bulk<'p> {
    /// `Some` until committed.
    tx: Option<Transaction<'p>>,
    conn: &'p Connection,
    path: PathBuf,
    /// The `seq` the next revision gets: known up front, so a new box's `rev` is written with
    /// the row instead of by a second statement.
    next_seq: i64,
    /// The row id the next new annotation gets (explicit, so rows can be inserted in batches).
    next_ann: i64,
    /// New boxes not yet written: inserted `BULK_ROWS` at a time with multi-row statements.
    pending: Vec<PendingBox>,
    author: i64,
    client: i64,
    hlc: &'p mut Hlc,
    classes: HashMap<String, i64>,
}

/// Boxes per multi-row INSERT in bulk writes (17 parameters each, under SQLite's limit).
const BULK_ROWS: usize = 128;

/// A new box waiting in a `Bulk` for its batch.
struct PendingBox {
    id: Uuid,
    ann: i64,
    seq: i64,
    hlc: i64,
    row: RowValue,
}

/// What `Bulk::upsert_image` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upsert {
    Added,
    /// Same content at the same path: nothing to do.
    Unchanged,
    /// Known content found at a new path (the file was moved or renamed).
    Moved,
    /// A placeholder made by an import got its file.
    Attached,
    /// The file at a known path changed content.
    Updated,
    /// The same content is already in the project under another path that still exists; the
    /// project keeps one image per content hash.
    Duplicate,
}

/// An image as `add` or an import sees it.
#[derive(Clone, Debug, Default)]
pub struct ImageInput {
    pub path: String,
    pub hash: Option<String>,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub external_id: Option<i64>,
}

impl Bulk<'_> {
    fn sq(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Inserts or reconciles an image; returns its row id and what happened.
    pub fn upsert_image(&mut self, img: &ImageInput) -> Result<(i64, Upsert)> {
        let path = self.path.clone();
        let sq = move |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let by_hash: Option<(i64, String)> = match &img.hash {
            Some(h) => self
                .tx()
                .prepare_cached("SELECT id, path FROM images WHERE hash=?1")
                .and_then(|mut s| s.query_row([h], |r| Ok((r.get(0)?, r.get(1)?))).optional())
                .map_err(&sq)?,
            None => None,
        };
        let by_path: Option<(i64, Option<String>, i64)> = self
            .tx()
            .prepare_cached("SELECT id, hash, missing FROM images WHERE path=?1")
            .and_then(|mut s| {
                s.query_row([&img.path], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(&sq)?;
        if let Some((id, old_path)) = by_hash {
            if old_path == img.path {
                // A placeholder (known from sync packs, file not here until now) gets its file.
                if by_path
                    .as_ref()
                    .is_some_and(|(_, _, missing)| *missing == 1)
                {
                    self.tx()
                        .execute(
                            "UPDATE images SET missing=0, bytes=?2, external_id=COALESCE(external_id, ?3) WHERE id=?1",
                            params![id, img.bytes as i64, img.external_id],
                        )
                        .map_err(&sq)?;
                    return Ok((id, Upsert::Attached));
                }
                if img.external_id.is_some() {
                    self.tx()
                        .execute(
                            "UPDATE images SET external_id=COALESCE(external_id, ?2) WHERE id=?1",
                            params![id, img.external_id],
                        )
                        .map_err(&sq)?;
                }
                return Ok((id, Upsert::Unchanged));
            }
            // Same content under another path: a move if a placeholder or nothing holds the
            // new path; otherwise both paths are the same file content and we keep the first.
            match by_path {
                Some((pid, _, missing)) if missing == 1 && pid != id => {
                    // Boxes still waiting in the batch may belong to the placeholder.
                    self.flush()?;

                    // A placeholder at the new path: merge its boxes into the known image.
                    self.tx()
                        .execute(
                            "UPDATE annotations SET image=?1 WHERE image=?2",
                            params![id, pid],
                        )
                        .map_err(&sq)?;
                    self.tx()
                        .execute(
                            "UPDATE revisions SET image=?1 WHERE image=?2",
                            params![id, pid],
                        )
                        .map_err(&sq)?;
                    self.tx()
                        .execute("DELETE FROM images WHERE id=?1", [pid])
                        .map_err(&sq)?;
                }
                Some(_) => return Ok((id, Upsert::Unchanged)),
                None => {}
            }
            let old_exists = std::path::Path::new(&self.path)
                .parent()
                .is_some_and(|root| root.join(&old_path).exists());
            if old_exists {
                return Ok((id, Upsert::Duplicate));
            }
            self.tx()
                .execute(
                    "UPDATE images SET path=?2, missing=0 WHERE id=?1",
                    params![id, img.path],
                )
                .map_err(&sq)?;
            return Ok((id, Upsert::Moved));
        }
        if let Some((id, old_hash, missing)) = by_path {
            if img.hash.is_none() {
                return Ok((id, Upsert::Unchanged));
            }
            self.tx()
                .execute(
                    "UPDATE images SET hash=?2, width=?3, height=?4, bytes=?5, missing=0, external_id=COALESCE(external_id, ?6) WHERE id=?1",
                    params![id, img.hash, img.width, img.height, img.bytes as i64, img.external_id],
                )
                .map_err(&sq)?;
            let what = if missing == 1 && old_hash.is_none() {
                Upsert::Attached
            } else {
                Upsert::Updated
            };
            return Ok((id, what));
        }
        self.tx()
            .prepare_cached(
                "INSERT INTO images(uuid, hash, path, width, height, bytes, missing, external_id, added_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    Uuid::now_v7().to_string(),
                    img.hash,
                    img.path,
                    img.width,
                    img.height,
                    img.bytes as i64,
                    i64::from(img.hash.is_none()),
                    img.external_id,
                    now_ms()
                ])
            })
            .map_err(&sq)?;
        Ok((self.tx().last_insert_rowid(), Upsert::Added))
    }

    /// The row id of a class by name, created if needed.
    pub fn class(&mut self, name: &str) -> Result<i64> {
        if let Some(id) = self.classes.get(name) {
            return Ok(*id);
        }
        let id = class_row_tx(self.tx(), name).map_err(self.sq())?;
        self.classes.insert(name.to_owned(), id);
        Ok(id)
    }

    /// The row id of a run by uuid.
    pub fn run_row(&self, run: Uuid) -> Result<i64> {
        self.tx()
            .query_row(
                "SELECT id FROM runs WHERE uuid=?1",
                [run.to_string()],
                |r| r.get(0),
            )
            .map_err(self.sq())
    }

    /// True if an annotation with this id exists.
    pub fn annotation_exists(&mut self, id: Uuid) -> Result<bool> {
        if self.pending.iter().any(|b| b.id == id) {
            return Ok(true);
        }
        self.tx()
            .prepare_cached("SELECT 1 FROM annotations WHERE uuid=?1")
            .and_then(|mut s| s.exists([id.as_bytes().as_slice()]))
            .map_err(self.sq())
    }

    /// Adds an annotation (and its first revision). Written in batches; `commit` flushes.
    #[allow(clippy::too_many_arguments)]
    pub fn add_annotation(
        &mut self,
        id: Uuid,
        image: i64,
        class: i64,
        bbox: BBox,
        run: Option<(i64, f32)>,
        state: ReviewState,
        flags: BoxFlags,
        attributes: &Attributes,
    ) -> Result<()> {
        if !bbox.is_finite() || bbox.w < 0.0 || bbox.h < 0.0 {
            return Err(StoreError::Invalid(format!(
                "annotation {id}: invalid box {bbox:?}"
            )));
        }
        let hlc = self.hlc.tick();
        let seq = self.next_seq;
        self.next_seq += 1;
        let ann = self.next_ann;
        self.next_ann += 1;
        self.pending.push(PendingBox {
            id,
            ann,
            seq,
            hlc,
            row: RowValue {
                image,
                class,
                bbox,
                run: run.map(|r| r.0),
                score: run.map(|r| f64::from(r.1)),
                state,
                flags: i64::from(flags.bits()),
                deleted: false,
                attributes: attributes.to_json(),
            },
        });
        if self.pending.len() >= BULK_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the pending boxes: one multi-row INSERT into `annotations` and one into
    /// `revisions` per batch (far fewer statements than two per box).
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let n = pending.len();
        let tuples = |k: usize| {
            let one = format!("({})", vec!["?"; k].join(","));
            vec![one; n].join(",")
        };
        let ann_sql = format!(
            "INSERT INTO annotations(id, uuid, image, class, x, y, w, h, run, score, state, flags, deleted, rev, attributes) VALUES {}",
            tuples(15)
        );
        let rev_sql = format!(
            "INSERT INTO revisions(seq, ann, author, client, hlc, op, image, class, x, y, w, h, run, score, state, flags, deleted, attributes) VALUES {}",
            tuples(18)
        );
        let map_err = |e: rusqlite::Error| match e {
            rusqlite::Error::SqliteFailure(f, msg)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                StoreError::Invalid(format!(
                    "an annotation id is already in the project ({})",
                    msg.unwrap_or_default()
                ))
            }
            source => StoreError::Sqlite {
                path: self.path.clone(),
                source,
            },
        };
        {
            let tx = self.tx();
            let mut stmt = tx.prepare_cached(&ann_sql).map_err(map_err)?;
            let mut i = 1;
            for b in &pending {
                let r = &b.row;
                stmt.raw_bind_parameter(i, b.ann).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 1, b.id.as_bytes().as_slice())
                    .map_err(map_err)?;
                stmt.raw_bind_parameter(i + 2, r.image).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 3, r.class).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 4, r.bbox.x).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 5, r.bbox.y).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 6, r.bbox.w).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 7, r.bbox.h).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 8, r.run).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 9, r.score).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 10, state_str(r.state))
                    .map_err(map_err)?;
                stmt.raw_bind_parameter(i + 11, r.flags).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 12, i64::from(r.deleted))
                    .map_err(map_err)?;
                stmt.raw_bind_parameter(i + 13, b.seq).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 14, r.attributes.as_deref())
                    .map_err(map_err)?;
                i += 15;
            }
            stmt.raw_execute().map_err(map_err)?;
            let mut stmt = tx.prepare_cached(&rev_sql).map_err(map_err)?;
            let mut i = 1;
            for b in &pending {
                let r = &b.row;
                stmt.raw_bind_parameter(i, b.seq).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 1, b.ann).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 2, self.author)
                    .map_err(map_err)?;
                stmt.raw_bind_parameter(i + 3, self.client)
                    .map_err(map_err)?;
                stmt.raw_bind_parameter(i + 4, b.hlc).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 5, "create").map_err(map_err)?;
                stmt.raw_bind_parameter(i + 6, r.image).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 7, r.class).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 8, r.bbox.x).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 9, r.bbox.y).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 10, r.bbox.w).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 11, r.bbox.h).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 12, r.run).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 13, r.score).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 14, state_str(r.state))
                    .map_err(map_err)?;
                stmt.raw_bind_parameter(i + 15, r.flags).map_err(map_err)?;
                stmt.raw_bind_parameter(i + 16, i64::from(r.deleted))
                    .map_err(map_err)?;
                stmt.raw_bind_parameter(i + 17, r.attributes.as_deref())
                    .map_err(map_err)?;
                i += 18;
            }
            stmt.raw_execute().map_err(map_err)?;
        }
        Ok(())
    }

    /// Records that `run` processed `image`.
    pub fn mark_run_image(&mut self, run: i64, image: i64, boxes: usize) -> Result<()> {
        self.tx()
            .prepare_cached(
                "INSERT OR REPLACE INTO run_images(run, image, boxes, done_ms) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![run, image, boxes as i64, now_ms()]))
            .map_err(self.sq())?;
        Ok(())
    }

    /// Looks up an image row by the COCO id it was imported with.
    pub fn image_by_external_id(&self, ext: i64) -> Result<Option<i64>> {
        self.tx()
            .prepare_cached("SELECT id FROM images WHERE external_id=?1 ORDER BY id LIMIT 1")
            .and_then(|mut s| s.query_row([ext], |r| r.get(0)).optional())
            .map_err(self.sq())
    }

    /// Records the COCO id an image was imported with, unless it already has one (an image
    /// matched by name keeps the id of the file that first named it).
    pub fn note_external_id(&mut self, row: i64, ext: i64) -> Result<()> {
        self.tx()
            .prepare_cached("UPDATE images SET external_id=COALESCE(external_id, ?2) WHERE id=?1")
            .and_then(|mut s| s.execute(params![row, ext]))
            .map_err(self.sq())?;
        Ok(())
    }

    /// Looks up an image row by path relative to the root.
    pub fn image_by_path(&self, path: &str) -> Result<Option<i64>> {
        self.tx()
            .prepare_cached("SELECT id FROM images WHERE path=?1")
            .and_then(|mut s| s.query_row([path], |r| r.get(0)).optional())
            .map_err(self.sq())
    }

    fn tx(&self) -> &Transaction<'_> {
        self.tx
            .as_ref()
            .expect("a Bulk's transaction is only taken by commit, which consumes the Bulk")
    }

    /// Makes everything durable.
    pub fn commit(mut self) -> Result<()> {
        self.flush()?;
        let path = self.path.clone();
        let Some(tx) = self.tx.take() else {
            return Ok(());
        };
        tx.commit()
            .map_err(|source| StoreError::Sqlite { path, source })
        // `Drop` turns foreign keys back on.
    }
}

impl Drop for Bulk<'_> {
    fn drop(&mut self) {
        // Rolls back when not committed.
        drop(self.tx.take());
        let _ = self.conn.pragma_update(None, "cache_size", -65536);
        if let Err(e) = self.conn.pragma_update(None, "foreign_keys", "ON") {
            tracing::error!(
                "{}: cannot turn foreign keys back on: {e}",
                self.path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests;
