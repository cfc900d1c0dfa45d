//! Crash safety and power-loss safety, proven under load (the driver: `crash/run.rs`; the
//! checks: `crash/checks.rs`).
//!
//! - The crash test: the node is killed with SIGKILL at random moments and at named windows
//!   (failpoints); the page cache keeps every write, so it proves the node's logic (what it
//!   commits before answering, what it recovers), not its syncs.
//! - The power-cut test: the node runs on a filesystem that loses everything not fsynced
//!   (`crash/lazyfs.rs`), and the power is cut at random moments and at the same windows: it
//!   proves the syncs (SQLite's WAL with synchronous=FULL, the journal's segments).
//!
//! Each run checks, after the deliveries drain: every acknowledged outcome completed and
//! delivered to every recipient with the stored bytes, no receipt id with two bodies, no copy
//! FAILED, no early, double or missed expiry (against the node's deadline and against the
//! `expirationTime` the PSP asked for), every deadline pending at a disruption fired after the
//! restart, nothing acknowledged lost, EC failures answered with the right codes and leaving no
//! lock, every state change in the journal and every answered outcome's exchange but those a
//! disruption took by design.
//!
//! CI runs 21 disruptions of each kind (the default). `PAGONODE_CRASH_KILLS` and
//! `PAGONODE_POWER_KILLS` set the number, `PAGONODE_CRASH_SEED`/`PAGONODE_POWER_SEED` replay a
//! schedule (the workers' interleaving still varies), `PAGONODE_CRASH_WORKERS` and
//! `PAGONODE_POWER_WORKERS` the number of PSP workers (default 8). Only the power-cut test:
//! `cargo test --test crash power -- --nocapture`.

#[path = "crash/checks.rs"]
mod checks;
mod common;
#[path = "crash/lazyfs.rs"]
mod lazyfs;
#[path = "crash/load.rs"]
mod load;
#[path = "crash/node_proc.rs"]
mod node_proc;
#[path = "crash/run.rs"]
mod run;

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use lazyfs::PowerLayer;
use run::Disruption;

/// The two runs share the machine's two cores: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let _one = ONE_AT_A_TIME.lock().await;
    run::run(Disruption::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn power_cuts_under_load_lose_nothing_acknowledged() {
    let _one = ONE_AT_A_TIME.lock().await;
    run::run(Disruption::PowerCut).await;
}

/// A mounted layer over fresh directories.
fn layer() -> (tempfile::TempDir, PowerLayer) {
    let dir = tempfile::tempdir().unwrap();
    let (disk, mnt) = (dir.path().join("disk"), dir.path().join("mnt"));
    std::fs::create_dir_all(&disk).unwrap();
    std::fs::create_dir_all(&mnt).unwrap();
    let layer = PowerLayer::mount(&disk, &mnt).unwrap_or_else(|e| panic!("{e}"));
    (dir, layer)
}

fn sync_dir(path: &Path) {
    std::fs::File::open(path).unwrap().sync_all().unwrap();
}

/// The layer itself: after a cut, exactly what was synced (bytes by fsync, names by the fsync
/// of their directory).
#[test]
fn the_power_cut_filesystem_keeps_exactly_what_was_synced() {
    let (_dir, mut layer) = layer();
    let root = layer.path().to_path_buf();
    let (a, b, c, sub) = (
        root.join("a"),
        root.join("b"),
        root.join("c"),
        root.join("sub"),
    );
    // a: written, synced, named durably; then appended and cut short without a sync.
    let mut f = std::fs::File::create(&a).unwrap();
    f.write_all(b"durable").unwrap();
    f.sync_data().unwrap();
    sync_dir(&root);
    f.write_all(b" and lost").unwrap();
    f.set_len(3).unwrap();
    drop(f);
    // c: named durably, its bytes never synced.
    let mut f = std::fs::File::create(&c).unwrap();
    sync_dir(&root);
    f.write_all(b"unsynced").unwrap();
    drop(f);
    // b: synced, but its name never is.
    let mut f = std::fs::File::create(&b).unwrap();
    f.write_all(b"nameless").unwrap();
    f.sync_all().unwrap();
    drop(f);
    // sub/: made after the root's last sync.
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("x"), b"x").unwrap();
    layer.restart().unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), b"durable");
    assert!(
        !b.exists(),
        "a name whose directory was never synced survived"
    );
    assert_eq!(std::fs::read(&c).unwrap(), b"", "unsynced bytes survived");
    assert!(!sub.exists());

    // Shrinking then writing past the old end: the gap reads as zeros after the sync.
    let f = std::fs::OpenOptions::new().write(true).open(&a).unwrap();
    f.set_len(2).unwrap();
    f.write_all_at(b"!!", 10).unwrap();
    f.sync_all().unwrap();
    drop(f);
    // A rename is durable once its directory is synced; a later one is not.
    std::fs::write(root.join("tmp"), b"renamed").unwrap();
    std::fs::File::open(root.join("tmp"))
        .unwrap()
        .sync_all()
        .unwrap();
    std::fs::rename(root.join("tmp"), root.join("final")).unwrap();
    sync_dir(&root);
    std::fs::rename(root.join("final"), root.join("again")).unwrap();
    std::fs::remove_file(&a).unwrap();
    layer.restart().unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), b"du\0\0\0\0\0\0\0\0!!");
    assert_eq!(std::fs::read(root.join("final")).unwrap(), b"renamed");
    assert!(!root.join("again").exists() && !root.join("tmp").exists());
    let st = layer.stats();
    assert!(st.file_syncs >= 4 && st.dir_syncs >= 3, "{st:?}");
}

/// What the power-cut test rests on: on this layer a SQLite database in WAL mode keeps every
/// commit with synchronous=FULL, and loses commits with synchronous=OFF.
#[test]
fn sqlite_commits_survive_a_cut_with_synchronous_full_only() {
    let count_after_cut = |synchronous: &str| -> (i64, i64) {
        let (_dir, mut layer) = layer();
        let path = layer.path().join("t.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", synchronous)
            .unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER)").unwrap();
        let commits = 50;
        for i in 0..commits {
            conn.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
        }
        layer.cut();
        drop(conn);
        layer.restart().unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let n = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap_or(-1);
        (n, commits)
    };
    let (kept, made) = count_after_cut("FULL");
    assert_eq!(kept, made, "synchronous=FULL lost commits");
    let (kept, made) = count_after_cut("OFF");
    assert!(
        kept < made,
        "synchronous=OFF kept all {made} commits: the layer does not model a power cut"
    );
}

/// `flush` promises that every journal row queued before it is durable: on a fresh database
/// that includes the name of the journal's new directory.
#[tokio::test]
async fn a_flushed_journal_survives_a_power_cut() {
    use pagonode::journal::JournalQuery;
    use pagonode::journal::segment::{RowRef, Rows};
    use pagonode::store::{SqliteStore, Store};
    let (_dir, mut layer) = layer();
    let db = layer.path().join("node.db");
    let store = SqliteStore::open(&db).unwrap();
    let mut rows = Rows::new();
    for i in 0..10 {
        rows.push(&RowRef {
            at: 1_000 + i,
            component: "nodeForPsp",
            primitive: "activatePaymentNotice",
            payload: Some("<x/>"),
            ..RowRef::default()
        });
    }
    store.journal(rows);
    store.flush().await.unwrap();
    layer.cut();
    store.close();
    drop(store);
    layer.restart().unwrap();
    let reader =
        pagonode::cli::journal::JournalReader::open(&pagonode::config::Database::Sqlite(db))
            .unwrap();
    let mut found = 0;
    reader
        .query_all(&JournalQuery::default(), None, |_| found += 1)
        .unwrap();
    assert_eq!(found, 10, "journal rows flushed before the cut were lost");
}

/// The crash test again on PostgreSQL (see `common::pg`), not alongside the others.
#[test]
fn on_postgresql() {
    let _one = ONE_AT_A_TIME.blocking_lock();
    common::pg::run_again_on_postgres();
}
