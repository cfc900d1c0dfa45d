//! The PostgreSQL schema: versioned migrations, applied at start by one node at a time (under an
//! advisory lock, so nodes starting together do not race), and the journal's daily partitions.

use tokio_postgres::Client;

use crate::engine::Millis;
use crate::store::{StoreError, schema};

/// The advisory lock key of schema changes and of the journal's partition upkeep.
const SCHEMA_LOCK: i64 = 0x7061_676f_6e6f_6465; // "pagonode"

/// The schema, one entry per version, recorded in `pagonode_schema`.
const MIGRATIONS: &[&str] = &[
    // 1: the state tables (the logical schema of `store::schema`) and the journal, partitioned
    // by day (retention drops whole partitions; rows of days without a partition go to the
    // default one).
    "
    CREATE TABLE notices (
        fiscal_code TEXT NOT NULL,
        notice_number TEXT NOT NULL,
        state TEXT NOT NULL,
        token TEXT,
        demanded_at BIGINT,
        revision BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (fiscal_code, notice_number)
    );
    CREATE TABLE payments (
        token TEXT PRIMARY KEY,
        fiscal_code TEXT NOT NULL,
        notice_number TEXT NOT NULL,
        status TEXT NOT NULL,
        id_psp TEXT NOT NULL,
        id_broker_psp TEXT NOT NULL,
        id_channel TEXT NOT NULL,
        psp_version BIGINT NOT NULL,
        station TEXT NOT NULL,
        station_broker TEXT NOT NULL,
        station_version BIGINT NOT NULL,
        idempotency_key TEXT,
        amount_cents BIGINT NOT NULL,
        due_date TEXT,
        payment_note TEXT,
        expiration_ms BIGINT,
        payment_method TEXT,
        touch_point TEXT,
        activated_at BIGINT NOT NULL,
        deadline BIGINT NOT NULL,
        outcome TEXT,
        outcome_at BIGINT,
        outcome_psp TEXT,
        outcome_broker TEXT,
        outcome_channel TEXT,
        outcome_version BIGINT,
        outcome_details BYTEA,
        revision BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX payments_by_notice ON payments (fiscal_code, notice_number);
    CREATE INDEX payments_paying ON payments (deadline) WHERE status = 'PAYING';
    CREATE TABLE payment_data (
        token TEXT PRIMARY KEY,
        data BYTEA NOT NULL
    );
    CREATE TABLE receipts (
        receipt_id TEXT PRIMARY KEY,
        fiscal_code TEXT NOT NULL,
        notice_number TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        body_v1 BYTEA,
        body_v2 BYTEA,
        lease_owner BIGINT NOT NULL DEFAULT 0,
        lease_until BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE recipients (
        receipt_id TEXT NOT NULL,
        station TEXT NOT NULL,
        ec TEXT NOT NULL,
        version BIGINT NOT NULL,
        status TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        next_attempt_at BIGINT NOT NULL,
        last_error TEXT,
        head TEXT NOT NULL,
        tail TEXT NOT NULL,
        PRIMARY KEY (receipt_id, station)
    );
    CREATE INDEX recipients_pending ON recipients (receipt_id) WHERE status = 'PENDING';
    CREATE TABLE idempotency (
        psp TEXT NOT NULL,
        key TEXT NOT NULL,
        primitive TEXT NOT NULL,
        request_hash BYTEA NOT NULL,
        response BYTEA NOT NULL,
        fault_code TEXT,
        token TEXT,
        valid_to BIGINT NOT NULL,
        inserted_at BIGINT NOT NULL,
        PRIMARY KEY (psp, key, primitive)
    );
    CREATE SEQUENCE journal_ids;
    CREATE TABLE journal (
        id BIGINT NOT NULL DEFAULT nextval('journal_ids'),
        at BIGINT NOT NULL,
        component TEXT NOT NULL,
        category TEXT,
        primitive TEXT NOT NULL,
        subtype TEXT,
        fiscal_code TEXT,
        notice_number TEXT,
        iuv TEXT,
        token TEXT,
        psp TEXT,
        channel TEXT,
        station TEXT,
        outcome TEXT,
        caller TEXT,
        callee TEXT,
        payload TEXT,
        detail TEXT,
        duration_ms BIGINT
    ) PARTITION BY RANGE (at);
    CREATE TABLE journal_default PARTITION OF journal DEFAULT;
    CREATE INDEX journal_id ON journal (id);
    CREATE INDEX journal_notice ON journal (notice_number);
    CREATE INDEX journal_token ON journal (token);
    ",
    // 2: status histories in the official vocabulary (`crate::engine::history`), clustered by
    // notice: one row per notice per commit, its history rows as lines
    // (`store::schema::status_rows`).
    "
    CREATE TABLE status_history (
        fiscal_code TEXT NOT NULL,
        notice_number TEXT NOT NULL,
        id BIGINT GENERATED ALWAYS AS IDENTITY,
        at BIGINT NOT NULL,
        rows TEXT NOT NULL,
        PRIMARY KEY (fiscal_code, notice_number, id)
    );
    CREATE INDEX status_history_at ON status_history (at);
    ",
    // 3: the journal is listed in time order (then by id); the failed copies are counted
    // (`/metrics`, the console).
    "
    CREATE INDEX journal_at ON journal (at, id);
    CREATE INDEX recipients_failed ON recipients (receipt_id) WHERE status = 'FAILED';
    ",
    // 4: the configuration versions applied at runtime (`crate::reconfig`), which every node
    // on the database adopts.
    "
    CREATE TABLE config_versions (
        version BIGINT PRIMARY KEY,
        applied_at BIGINT NOT NULL,
        applied_by TEXT NOT NULL,
        toml TEXT NOT NULL,
        file_hash TEXT NOT NULL,
        diff TEXT NOT NULL
    );
    ",
];

/// Brings the schema up to date. Nodes starting together wait for each other on the lock;
/// a database migrated by a newer node is refused.
pub async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(StoreError::failed)?;
    let result = apply(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(StoreError::failed);
    result.and(unlocked.map(drop))
}

async fn apply(client: &mut Client) -> Result<(), StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS pagonode_schema (
                version INTEGER PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(StoreError::failed)?;
    let row = client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM pagonode_schema", &[])
        .await
        .map_err(StoreError::failed)?;
    let version = row.get::<_, i32>(0) as usize;
    for i in schema::pending_migrations(version, MIGRATIONS.len())? {
        let tx = client.transaction().await.map_err(StoreError::failed)?;
        tx.batch_execute(MIGRATIONS[i])
            .await
            .map_err(StoreError::failed)?;
        tx.execute(
            "INSERT INTO pagonode_schema (version) VALUES ($1)",
            &[&((i + 1) as i32)],
        )
        .await
        .map_err(StoreError::failed)?;
        tx.commit().await.map_err(StoreError::failed)?;
        tracing::info!(version = i + 1, "database schema migrated");
    }
    Ok(())
}

const DAY_MS: Millis = 86_400_000;

/// The partition of day `day` (days since the epoch).
fn partition_name(day: u64) -> String {
    let date = chrono::DateTime::from_timestamp((day * 86_400) as i64, 0)
        .unwrap_or_default()
        .date_naive();
    format!("journal_p{}", date.format("%Y%m%d"))
}

/// Creates the journal partitions of yesterday to the day after tomorrow, drops those of days
/// wholly before `drop_before` and deletes older rows of the default partition. One node at a
/// time does it (the others skip the round).
pub async fn partitions(
    client: &mut Client,
    now: Millis,
    drop_before: Millis,
) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(StoreError::failed)?;
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(StoreError::failed)?
        .get(0);
    if !locked {
        return Ok(());
    }
    let today = now / DAY_MS;
    for day in today.saturating_sub(1)..=today + 2 {
        let (from, to) = (day * DAY_MS, (day + 1) * DAY_MS);
        if to <= drop_before {
            continue;
        }
        let name = partition_name(day);
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {name} PARTITION OF journal FOR VALUES FROM ({from}) TO ({to})"
        );
        // Rows of that day already in the default partition (a node that ran with no partition
        // for it) make the creation fail: the day stays in the default partition.
        tx.batch_execute("SAVEPOINT p")
            .await
            .map_err(StoreError::failed)?;
        if let Err(e) = tx.batch_execute(&sql).await {
            tracing::warn!(partition = %name, error = %e, "journal partition not created");
            tx.batch_execute("ROLLBACK TO SAVEPOINT p")
                .await
                .map_err(StoreError::failed)?;
        }
    }
    let old = tx
        .query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = 'journal' AND c.relname LIKE 'journal\\_p%'",
            &[],
        )
        .await
        .map_err(StoreError::failed)?;
    for row in old {
        let name: String = row.get(0);
        let day = chrono::NaiveDate::parse_from_str(&name["journal_p".len()..], "%Y%m%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc().timestamp_millis() as u64);
        if let Some(start) = day
            && start + DAY_MS <= drop_before
        {
            tx.batch_execute(&format!("DROP TABLE {name}"))
                .await
                .map_err(StoreError::failed)?;
            tracing::info!(partition = %name, "journal partition dropped (retention)");
        }
    }
    tx.execute(
        "DELETE FROM journal_default WHERE at < $1",
        &[&(drop_before as i64)],
    )
    .await
    .map_err(StoreError::failed)?;
    tx.commit().await.map_err(StoreError::failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_named_by_day() {
        // 2030-01-15T00:00:00Z
        assert_eq!(
            partition_name(1_894_665_600_000 / DAY_MS),
            "journal_p20300115"
        );
    }
}
