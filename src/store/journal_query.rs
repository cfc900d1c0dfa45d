//! Reading the journal: the state changes (the `events` table of the node's database, which
//! the store writes in the transaction of each change) merged in time order with the SOAP exchanges of
//! the segment files.

use std::path::Path;

use rusqlite::Connection;

use super::schema::{Fields, Val};
use crate::journal::{
    Category, Cursor, JournalEntry, JournalError, JournalQuery, JournalRow, Subtype, segment,
};

/// One page of journal rows matching `q`, in time order (then by id): the state changes
/// (`events` of `c`) merged with the SOAP exchanges of the segments in `exchanges`. The store
/// and the read-only `pagonode journal` reader both read the journal this way.
pub fn query(
    c: &Connection,
    exchanges: &Path,
    q: &JournalQuery,
) -> Result<Vec<JournalRow>, JournalError> {
    let limit = q.limit.clamp(1, 10_000);
    let mut rows = query_events(c, q)?;
    rows.extend(
        segment::query(exchanges, q)
            .map_err(|e| JournalError(format!("{}: {e}", exchanges.display())))?,
    );
    rows.sort_unstable_by_key(Cursor::of);
    rows.truncate(limit);
    Ok(rows)
}

fn query_events(c: &Connection, q: &JournalQuery) -> Result<Vec<JournalRow>, JournalError> {
    let (filter, args) = filters(q);
    let sql = format!(
        "SELECT * FROM events WHERE {filter} ORDER BY at, id LIMIT {}",
        q.limit.clamp(1, 10_000)
    );
    let mut st = c.prepare(&sql)?;
    let mut rows = st.query(rusqlite::params_from_iter(args.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(journal_from(row).map_err(JournalError)?);
    }
    Ok(out)
}

/// The conditions of a journal query (`$1`... in order) and their values: the same for the
/// events table of SQLite and the journal table of PostgreSQL.
pub fn filters<'q>(q: &'q JournalQuery) -> (String, Vec<Val<'q>>) {
    let text = |v: &'q Option<String>| v.as_deref().map(Val::from);
    let int = |v: Option<i64>| v.map(Val::Int);
    let filters = [
        ("notice_number", "=", text(&q.notice_number)),
        ("fiscal_code", "=", text(&q.fiscal_code)),
        ("token", "=", text(&q.token)),
        ("psp", "=", text(&q.psp)),
        ("primitive", "=", text(&q.primitive)),
        ("outcome", "=", text(&q.outcome)),
        ("at", ">=", int(q.from.map(|v| v as i64))),
        ("at", "<", int(q.to.map(|v| v as i64))),
    ];
    let mut sql = "TRUE".to_string();
    let mut args = Vec::new();
    for (column, op, value) in filters {
        if let Some(v) = value {
            args.push(v);
            sql.push_str(&format!(" AND {column} {op} ${}", args.len()));
        }
    }
    if let Some(c) = q.after {
        // Three parameters, not two used twice: SQLite numbers `$n` by first appearance.
        args.extend([Val::Int(c.at as i64), Val::Int(c.at as i64), Val::Int(c.id)]);
        let n = args.len();
        sql.push_str(&format!(
            " AND at >= ${} AND (at > ${} OR id > ${n})",
            n - 2,
            n - 1
        ));
    }
    (sql, args)
}

/// A journal row from a row of either store.
pub fn journal_from(row: &impl Fields) -> Result<JournalRow, String> {
    let category = match row.text("category")?.as_deref() {
        Some("INTERFACCIA") => Some(Category::Interface),
        Some("INTERNO") => Some(Category::Internal),
        _ => None,
    };
    let subtype = match row.text("subtype")?.as_deref() {
        Some("REQ") => Some(Subtype::Req),
        Some("RESP") => Some(Subtype::Resp),
        Some("INTERN") => Some(Subtype::Intern),
        _ => None,
    };
    let need = |col: &str| row.text(col)?.ok_or_else(|| format!("{col}: missing"));
    Ok(JournalRow {
        id: row.int("id")?.ok_or("id: missing")?,
        entry: JournalEntry {
            at: row.int("at")?.ok_or("at: missing")? as u64,
            component: need("component")?,
            category,
            primitive: need("primitive")?,
            subtype,
            fiscal_code: row.text("fiscal_code")?,
            notice_number: row.text("notice_number")?,
            iuv: row.text("iuv")?,
            token: row.text("token")?,
            psp: row.text("psp")?,
            channel: row.text("channel")?,
            station: row.text("station")?,
            outcome: row.text("outcome")?,
            caller: row.text("caller")?,
            callee: row.text("callee")?,
            payload: row.text("payload")?,
            detail: row.text("detail")?,
            duration_ms: row.int("duration_ms")?.map(|d| d as u64),
        },
    })
}
