//! The journal database earlier versions kept beside the state database (`x.db` →
//! `x.journal.db`): its exchanges are moved into segments once, when the store opens.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::journal_query::journal_from;
use crate::journal::JournalError;
use crate::journal::segment::{Rows, SegmentWriter};

/// The journal database earlier versions kept beside the state database: `x.db` →
/// `x.journal.db`.
pub fn database_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("pagonode");
    path.with_file_name(format!("{stem}.journal.db"))
}

/// Moves the exchanges of an earlier version's journal database into segments (with their ids)
/// and renames it `….journal.db.imported`. Rows already in the segments (an import cut short)
/// are not written twice.
pub fn import(
    path: &Path,
    segments: &mut SegmentWriter,
    last_id: u64,
) -> Result<u64, JournalError> {
    let legacy = database_path(path);
    if !legacy.is_file() {
        return Ok(last_id);
    }
    let conn = Connection::open(&legacy)?;
    let mut st = conn.prepare("SELECT * FROM journal WHERE id > ?1 ORDER BY id")?;
    let mut rows = st.query([last_id as i64])?;
    let (mut count, mut last) = (0u64, last_id);
    while let Some(row) = rows.next()? {
        let r = journal_from(row).map_err(JournalError)?;
        let mut encoded = Rows::new();
        encoded.push(&r.entry.as_row());
        segments
            .append(encoded, r.id as u64)
            .map_err(|e| JournalError(e.to_string()))?;
        (count, last) = (count + 1, r.id as u64);
        if count % 10_000 == 0 {
            segments.write().map_err(|e| JournalError(e.to_string()))?;
        }
    }
    drop(rows);
    drop(st);
    segments
        .write()
        .and_then(|()| segments.sync())
        .map_err(|e| JournalError(e.to_string()))?;
    conn.close().map_err(|(_, e)| JournalError::from(e))?;
    let mut done = legacy.clone().into_os_string();
    done.push(".imported");
    std::fs::rename(&legacy, &done)
        .map_err(|e| JournalError(format!("{}: {e}", legacy.display())))?;
    tracing::info!(rows = count, from = %legacy.display(), "journal database imported into segments");
    Ok(last)
}
