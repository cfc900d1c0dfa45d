//! `pagonode journal`: reads a node's event journal from its database files, read-only (safe
//! next to a running node), and prints rows, a payment's story, or a payment as a trace.
//!
//! The journal is in two places: state changes in `events` of the node's database, SOAP
//! exchanges in the segment files of `<stem>.journal/` beside it (see `journal::segment`). They
//! share one id sequence, so the two merged by id are the journal.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rusqlite::{Connection, OpenFlags};

use crate::codec::types::{FiscalCode, NoticeNumber};
use crate::config::{Config, Database};
use crate::engine::{NoticeKey, StatusRow};
use crate::journal::story::{self, Classification, row_json, timestamp};
use crate::journal::{Cursor, JournalQuery, JournalRow, parse_time};

/// Where the database is: named, or taken from a node configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct Source {
    /// The node's database: a SQLite file (its journal segments are found beside it), or the
    /// PostgreSQL URL of a cluster (every node's journal).
    #[arg(long, value_name = "FILE|URL")]
    pub database: Option<String>,
    /// A node configuration: its `node.database` is read (or `PAGONODE_DATABASE_URL`).
    #[arg(long, value_name = "FILE", conflicts_with = "database")]
    pub config: Option<PathBuf>,
}

/// Why `pagonode journal` failed (printed after `pagonode journal: `).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("say which database: --database FILE|URL or --config FILE")]
    NoDatabase,
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A fiscal code, notice number or time bound that is not one (the parser's message).
    #[error("{0}")]
    Argument(String),
    #[error("--payment '{0}': expected <fiscal code>/<notice number>")]
    Payment(String),
    #[error("the journal has nothing about {0}/{1}")]
    Nothing(String, String),
    /// The exporter's own message.
    #[error("{0}")]
    Export(String),
}

impl Source {
    fn database(&self) -> Result<Database, CommandError> {
        match (&self.database, &self.config) {
            (Some(db), _) => Ok(Database::parse(db)),
            (None, Some(cfg)) => {
                let mut config = Config::from_file(cfg)?;
                config.apply_env();
                Ok(config.node.database)
            }
            (None, None) => Err(CommandError::NoDatabase),
        }
    }
}

/// Filters and output of `pagonode journal [query]`.
#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// The database read.
    #[command(flatten)]
    pub source: Source,
    /// Notice number.
    #[arg(long)]
    pub notice: Option<String>,
    /// Payment token.
    #[arg(long)]
    pub token: Option<String>,
    /// EC fiscal code.
    #[arg(long)]
    pub ec: Option<String>,
    /// PSP id.
    #[arg(long)]
    pub psp: Option<String>,
    /// Primitive (`activatePaymentNoticeV2`, `paSendRT`, …) or state change (`EXPIRED`, …).
    #[arg(long)]
    pub primitive: Option<String>,
    /// Outcome: OK, KO, a fault code.
    #[arg(long)]
    pub outcome: Option<String>,
    /// From this time on (RFC 3339 or epoch milliseconds).
    #[arg(long)]
    pub from: Option<String>,
    /// Before this time (RFC 3339 or epoch milliseconds).
    #[arg(long)]
    pub to: Option<String>,
    /// At most this many rows (default: all).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print the SOAP messages too.
    #[arg(long)]
    pub payload: bool,
    /// One JSON object per line (the official field names).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `pagonode journal story`.
#[derive(Debug, Clone, clap::Args)]
pub struct StoryArgs {
    /// The database read.
    #[command(flatten)]
    pub source: Source,
    /// The EC's fiscal code.
    pub fiscal_code: String,
    /// The notice number.
    pub notice_number: String,
    /// The story as JSON (as `GET /admin/payments/{fc}/{notice}` gives it, without the store's
    /// payment records).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `pagonode journal export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// The database read.
    #[command(flatten)]
    pub source: Source,
    /// The payment: `<fiscal code>/<notice number>`.
    #[arg(long, value_name = "FC/NOTICE")]
    pub payment: String,
}

/// The subcommands of `pagonode journal`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum JournalCommand {
    /// Journal rows, filtered (the default).
    Query(QueryArgs),
    /// One payment's story: every attempt classified POSITIVE / NEGATIVE / TO_VERIFY, with the
    /// messages.
    Story(StoryArgs),
    /// One payment as a trace for `pagonode replay` (printed on stdout).
    Export(ExportArgs),
}

/// `pagonode journal`.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct JournalArgs {
    /// What to do (default: query).
    #[command(subcommand)]
    pub command: Option<JournalCommand>,
    /// The query, when no subcommand is given.
    #[command(flatten)]
    pub query: QueryArgs,
}

/// Why a node's journal could not be read; the message names the database.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}: no such database", .0.display())]
    Missing(PathBuf),
    #[error("{}: {source}", path.display())]
    Path {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{name}: {source}")]
    Journal {
        name: String,
        source: crate::journal::JournalError,
    },
    #[error("{name}: {source}")]
    Store {
        name: String,
        source: crate::store::StoreError,
    },
    #[error("{name}: the journal reader panicked")]
    Panicked { name: String },
}

/// The journal of a node's database, opened read-only.
pub struct JournalReader {
    backend: Backend,
    name: String,
}

enum Backend {
    Sqlite {
        conn: Connection,
        /// The segments of the SOAP exchanges.
        exchanges: PathBuf,
    },
    /// Reads run on a thread of their own (the reader is synchronous, and may be used from
    /// inside an asynchronous program).
    Postgres { url: String },
}

const PAGE: usize = 1000;

/// The URI a database is read through. A database without a `-wal` file beside it belongs to a
/// stopped node (a clean stop folds the WAL in and removes it): it is opened `immutable`, so
/// that SQLite does not create `-wal`/`-shm` files next to it. A running node's database is read
/// through its WAL like any reader would.
fn read_only_uri(db: &Path) -> Result<String, ReadError> {
    let abs = std::path::absolute(db).map_err(|source| ReadError::Path {
        path: db.to_path_buf(),
        source,
    })?;
    let mut wal = abs.clone().into_os_string();
    wal.push("-wal");
    let encoded: String = abs
        .to_string_lossy()
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let mode = if Path::new(&wal).exists() {
        "mode=ro"
    } else {
        "immutable=1"
    };
    Ok(format!("file:{encoded}?{mode}"))
}

impl JournalReader {
    /// Opens a node's journal read-only: a SQLite database (and its segments), or a
    /// PostgreSQL database (checked at once).
    pub fn open(db: &Database) -> Result<JournalReader, ReadError> {
        match db {
            Database::Sqlite(path) => JournalReader::open_file(path),
            Database::Postgres(url) => {
                let reader = JournalReader {
                    backend: Backend::Postgres { url: url.clone() },
                    name: db.to_string(),
                };
                reader.query(&JournalQuery {
                    limit: 1,
                    ..JournalQuery::default()
                })?;
                Ok(reader)
            }
        }
    }

    fn open_file(db: &Path) -> Result<JournalReader, ReadError> {
        if !db.is_file() {
            return Err(ReadError::Missing(db.to_path_buf()));
        }
        let opened = |source| ReadError::Open {
            path: db.to_path_buf(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(read_only_uri(db)?, flags).map_err(opened)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(opened)?;
        Ok(JournalReader {
            backend: Backend::Sqlite {
                conn,
                exchanges: crate::journal::writer::journal_dir(db),
            },
            name: db.display().to_string(),
        })
    }

    /// One page of rows matching `q`, oldest first.
    pub fn query(&self, q: &JournalQuery) -> Result<Vec<JournalRow>, ReadError> {
        match &self.backend {
            Backend::Sqlite { conn, exchanges } => {
                crate::store::journal_query::query(conn, exchanges, q).map_err(|source| {
                    ReadError::Journal {
                        name: self.name.clone(),
                        source,
                    }
                })
            }
            Backend::Postgres { url } => {
                self.alone(|| crate::store::postgres::read_journal(url, q))
            }
        }
    }

    /// Runs a PostgreSQL read on a thread of its own.
    fn alone<T: Send>(
        &self,
        read: impl FnOnce() -> Result<T, crate::store::StoreError> + Send,
    ) -> Result<T, ReadError> {
        std::thread::scope(|s| s.spawn(read).join())
            .map_err(|_| ReadError::Panicked {
                name: self.name.clone(),
            })?
            .map_err(|source| self.store_error(source))
    }

    fn store_error(&self, source: crate::store::StoreError) -> ReadError {
        ReadError::Store {
            name: self.name.clone(),
            source,
        }
    }

    /// Every row matching `q` (page by page), up to `limit`.
    pub fn query_all(
        &self,
        q: &JournalQuery,
        limit: Option<usize>,
        mut each: impl FnMut(&JournalRow),
    ) -> Result<usize, ReadError> {
        let mut seen = 0;
        let mut q = q.clone();
        loop {
            q.limit = limit.map_or(PAGE, |l| (l - seen).min(PAGE));
            if q.limit == 0 {
                return Ok(seen);
            }
            let page = self.query(&q)?;
            page.iter().for_each(&mut each);
            seen += page.len();
            match page.last() {
                Some(last) if page.len() == q.limit => q.after = Some(Cursor::of(last)),
                _ => return Ok(seen),
            }
        }
    }

    /// A notice's status histories (none in a database older than them).
    pub fn status_history(&self, key: &NoticeKey) -> Result<Vec<StatusRow>, ReadError> {
        match &self.backend {
            Backend::Sqlite { conn, .. } => {
                let read = || -> Result<Vec<StatusRow>, crate::store::StoreError> {
                    let exists: bool = conn.query_row(
                        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'status_history')",
                        [],
                        |r| r.get(0),
                    )?;
                    if !exists {
                        return Ok(Vec::new());
                    }
                    crate::store::sqlite::status_history(conn, key)
                };
                read().map_err(|e| self.store_error(e))
            }
            Backend::Postgres { url } => {
                self.alone(|| crate::store::postgres::read_status_history(url, key))
            }
        }
    }

    /// A notice's rows, in the order things happened.
    pub fn notice_rows(&self, key: &NoticeKey) -> Result<Vec<JournalRow>, ReadError> {
        let mut rows = Vec::new();
        let q = JournalQuery {
            notice_number: Some(key.notice_number.to_string()),
            ..JournalQuery::default()
        };
        self.query_all(&q, None, |r| rows.push(r.clone()))?;
        Ok(story::notice_rows(key, rows))
    }
}

/// The columns of a row line, in [`row_line`]'s layout: the CLI prints it above the rows.
pub fn header_line() -> String {
    columns([
        "TIME",
        "COMPONENT",
        "PRIMITIVE",
        "TYPE",
        "NOTICE",
        "TOKEN",
        "PSP",
        "STATION",
        "OUTCOME",
    ])
}

/// One row on one line: time, component, primitive, REQ/RESP, notice, token, PSP, station,
/// outcome (`-` for what the row does not have).
pub fn row_line(r: &JournalRow) -> String {
    let e = &r.entry;
    fn o(v: &Option<String>) -> &str {
        v.as_deref().unwrap_or("-")
    }
    columns([
        &timestamp(e.at),
        &e.component,
        &e.primitive,
        e.subtype.map_or("-", |s| s.as_str()),
        o(&e.notice_number),
        o(&e.token),
        o(&e.psp),
        o(&e.station),
        o(&e.outcome),
    ])
}

fn columns(c: [&str; 9]) -> String {
    format!(
        "{:<24}  {:<10} {:<28} {:<6} {:<18} {:<32} {:<11} {:<14} {}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
    )
}

/// A message, indented under its row.
fn indented(payload: &str) -> String {
    payload.lines().map(|l| format!("    {l}\n")).collect()
}

fn notice_key(fc: &str, nn: &str) -> Result<NoticeKey, CommandError> {
    Ok(NoticeKey {
        fiscal_code: FiscalCode::new(fc).map_err(CommandError::Argument)?,
        notice_number: NoticeNumber::new(nn).map_err(CommandError::Argument)?,
    })
}

fn query(args: &QueryArgs) -> Result<(), CommandError> {
    let reader = JournalReader::open(&args.source.database()?)?;
    let parse = |t: &Option<String>| {
        t.as_deref()
            .map(parse_time)
            .transpose()
            .map_err(CommandError::Argument)
    };
    let q = JournalQuery {
        notice_number: args.notice.clone(),
        fiscal_code: args.ec.clone(),
        token: args.token.clone(),
        psp: args.psp.clone(),
        primitive: args.primitive.clone(),
        outcome: args.outcome.clone(),
        from: parse(&args.from)?,
        to: parse(&args.to)?,
        after: None,
        limit: PAGE,
    };
    // Write errors (a closed pipe: `| head`) are ignored rather than fatal.
    let mut out = std::io::stdout().lock();
    // The header goes above the first row: a query that matches nothing prints nothing.
    let mut header = !args.json;
    reader.query_all(&q, args.limit, |r| {
        if std::mem::take(&mut header) {
            let _ = writeln!(out, "{}", header_line());
        }
        if args.json {
            let mut v = row_json(r);
            if !args.payload {
                v["payload"] = serde_json::Value::Null;
            }
            let _ = writeln!(out, "{v}");
        } else {
            let _ = writeln!(out, "{}", row_line(r));
            if let (true, Some(p)) = (args.payload, &r.entry.payload) {
                let _ = write!(out, "{}", indented(p));
            }
        }
    })?;
    Ok(())
}

/// The story as text: the attempts, the status histories, then every row with its message,
/// marked with its attempt.
pub fn story_text(key: &NoticeKey, rows: &[JournalRow], history: &[StatusRow]) -> String {
    let attempts = story::attempts(rows);
    let mut out = format!(
        "payment {}/{} (IUV {}): {} attempt(s)\n",
        key.fiscal_code.as_str(),
        key.notice_number.as_str(),
        key.notice_number.iuv(),
        attempts.len()
    );
    for (i, a) in attempts.iter().enumerate() {
        let who = format!(
            "PSP {} channel {}",
            a.psp.as_deref().unwrap_or("-"),
            a.channel.as_deref().unwrap_or("-")
        );
        let what = match (&a.token, &a.refused_with) {
            (Some(t), _) => format!("token {t}  station {}", a.station.as_deref().unwrap_or("-")),
            (None, refused) => format!("activation refused: {}", refused.as_deref().unwrap_or("-")),
        };
        out.push_str(&format!(
            "  #{} {:<11} {what}  {who}  at {}\n",
            i + 1,
            a.classification.as_str(),
            timestamp(a.at)
        ));
    }
    if attempts
        .iter()
        .any(|a| a.classification == Classification::ToVerify)
    {
        out.push_str("  TO_VERIFY: no outcome before the deadline, or contradicting outcomes; check with the PSP.\n");
    }
    if !history.is_empty() {
        out.push_str("\nstatus history:\n");
    }
    for h in history {
        out.push_str(&format!(
            "  {}  {:<34} {:<32} {:<14} {}\n",
            timestamp(h.at),
            h.of.table(),
            h.of.token().as_str(),
            h.of.station().map_or("-", |s| s.as_str()),
            h.of.status()
        ));
    }
    out.push('\n');
    out.push_str(&format!("    {}\n", header_line()));
    for r in rows {
        let mark = attempts
            .iter()
            .position(|a| a.row_ids.contains(&r.id))
            .map_or_else(|| "   ".to_string(), |i| format!("#{:<2}", i + 1));
        out.push_str(&format!("{mark} {}\n", row_line(r)));
        if let Some(d) = &r.entry.detail {
            out.push_str(&format!("    ({d})\n"));
        }
        if let Some(p) = &r.entry.payload {
            out.push_str(&indented(p));
        }
    }
    out
}

fn story(args: &StoryArgs) -> Result<(), CommandError> {
    let key = notice_key(&args.fiscal_code, &args.notice_number)?;
    let reader = JournalReader::open(&args.source.database()?)?;
    let rows = reader.notice_rows(&key)?;
    let history = reader.status_history(&key)?;
    if rows.is_empty() && history.is_empty() {
        return Err(CommandError::Nothing(
            args.fiscal_code.clone(),
            args.notice_number.clone(),
        ));
    }
    let text = if args.json {
        format!("{:#}\n", story::story_json(&key, &rows, &history))
    } else {
        story_text(&key, &rows, &history)
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

/// How `pagonode journal export` writes a payment's rows as a trace: `(rows, fiscal code,
/// notice number, origin) → trace` (the replay tool's format, given by the caller).
pub type Exporter = fn(&[JournalRow], &str, &str, &str) -> Result<String, String>;

/// The trace of one payment, from a database.
pub fn export_payment(
    db: &Database,
    payment: &str,
    export: Exporter,
) -> Result<String, CommandError> {
    let (fc, nn) = payment
        .split_once('/')
        .ok_or_else(|| CommandError::Payment(payment.to_string()))?;
    let key = notice_key(fc, nn)?;
    let reader = JournalReader::open(db)?;
    let rows = reader.notice_rows(&key)?;
    export(&rows, fc, nn, &db.to_string()).map_err(CommandError::Export)
}

/// `pagonode journal …`: prints, and fails with a message on stderr.
pub fn main(args: &JournalArgs, export: Exporter) -> ExitCode {
    let result = match &args.command {
        None => query(&args.query),
        Some(JournalCommand::Query(q)) => query(q),
        Some(JournalCommand::Story(s)) => story(s),
        Some(JournalCommand::Export(x)) => x
            .source
            .database()
            .and_then(|db| export_payment(&db, &x.payment, export))
            .map(|t| {
                let _ = std::io::stdout().lock().write_all(t.as_bytes());
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pagonode journal: {e}");
            ExitCode::FAILURE
        }
    }
}
