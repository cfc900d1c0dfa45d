//! Reading the journal: the state changes (the `events` table of the node's database, which
//! the store writes in the transaction of each change) merged by id with the SOAP exchanges of
//! the segment files.

use std::path::Path;

use rusqlite::{Connection, Row};

use super::{
    Category, Cursor, JournalEntry, JournalError, JournalQuery, JournalRow, Subtype, segment,
};

/// Parses a time bound: epoch milliseconds or an RFC 3339 timestamp.
pub fn parse_time(s: &str) -> Result<u64, String> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis().max(0) as u64)
        .map_err(|e| format!("'{s}': {e}"))
}

/// One page of journal rows matching `q`, in time order (then by id): the state changes
/// (`events` of `c`) merged with the SOAP exchanges of the segments in `exchanges`. The store
/// and the read-only `pagonode journal` reader both read the journal this way.
pub fn query(
    c: &Connection,
    exchanges: &Path,
    q: &JournalQuery,
) -> Result<Vec<JournalRow>, JournalError> {
    let limit = q.limit.clamp(1, 10_000);
    let mut rows = query_events(c, q).map_err(|e| JournalError(e.to_string()))?;
    rows.extend(
        segment::query(exchanges, q)
            .map_err(|e| JournalError(format!("{}: {e}", exchanges.display())))?,
    );
    rows.sort_unstable_by_key(Cursor::of);
    rows.truncate(limit);
    Ok(rows)
}

fn query_events(c: &Connection, q: &JournalQuery) -> rusqlite::Result<Vec<JournalRow>> {
    let mut sql = "SELECT * FROM events WHERE 1 = 1".to_string();
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let text = |v: &Option<String>| v.clone().map(rusqlite::types::Value::Text);
    let int = |v: Option<i64>| v.map(rusqlite::types::Value::Integer);
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
    for (column, op, value) in filters {
        if let Some(v) = value {
            args.push(v);
            sql.push_str(&format!(" AND {column} {op} ?{}", args.len()));
        }
    }
    if let Some(c) = q.after {
        args.push(rusqlite::types::Value::Integer(c.at as i64));
        args.push(rusqlite::types::Value::Integer(c.id));
        let (at, id) = (args.len() - 1, args.len());
        sql.push_str(&format!(" AND at >= ?{at} AND (at > ?{at} OR id > ?{id})"));
    }
    sql.push_str(&format!(
        " ORDER BY at, id LIMIT {}",
        q.limit.clamp(1, 10_000)
    ));
    let mut st = c.prepare(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(args), journal_from)?;
    rows.collect()
}

pub(super) fn journal_from(row: &Row<'_>) -> rusqlite::Result<JournalRow> {
    let category = match row.get::<_, Option<String>>("category")?.as_deref() {
        Some("INTERFACCIA") => Some(Category::Interface),
        Some("INTERNO") => Some(Category::Internal),
        _ => None,
    };
    let subtype = match row.get::<_, Option<String>>("subtype")?.as_deref() {
        Some("REQ") => Some(Subtype::Req),
        Some("RESP") => Some(Subtype::Resp),
        Some("INTERN") => Some(Subtype::Intern),
        _ => None,
    };
    Ok(JournalRow {
        id: row.get("id")?,
        entry: JournalEntry {
            at: row.get::<_, i64>("at")? as u64,
            component: row.get("component")?,
            category,
            primitive: row.get("primitive")?,
            subtype,
            fiscal_code: row.get("fiscal_code")?,
            notice_number: row.get("notice_number")?,
            iuv: row.get("iuv")?,
            token: row.get("token")?,
            psp: row.get("psp")?,
            channel: row.get("channel")?,
            station: row.get("station")?,
            outcome: row.get("outcome")?,
            caller: row.get("caller")?,
            callee: row.get("callee")?,
            payload: row.get("payload")?,
            detail: row.get("detail")?,
            duration_ms: row.get::<_, Option<i64>>("duration_ms")?.map(|d| d as u64),
        },
    })
}
