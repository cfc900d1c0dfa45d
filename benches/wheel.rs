//! Measures the deadline wheel against its targets: at most 200 bytes per pending deadline
//! with 1,000,000 pending, and p99 lateness of firing ≤ 10 ms under load.
//!
//! Run with `cargo bench --bench wheel`. `WHEEL_BENCH_SECS` (default 60) sets the length of the
//! real-clock lateness run; the whole bench takes that plus a few seconds.
//!
//! 1. Memory and speed: 1,000,000 deadlines (random `u128` keys) spread uniformly over the
//!    next 30 minutes go into the wheel, then into a std baseline (a `BinaryHeap` ordered by
//!    deadline plus a `HashMap` from key to deadline for cancellation, heap entries being
//!    discarded lazily). Reports the bytes each structure accounts for, the growth of the
//!    process's resident set (`/proc/self/statm`) per entry, insert throughput, the cost of
//!    firing everything in one huge jump, and the cost of single polls when the clock moves
//!    1 ms at a time across a top-level (2^18 ms) slot boundary.
//! 2. Lateness: a driver thread owns a wheel of ~1,000,000 deadlines on the real clock
//!    (`Instant`) and sleeps until `next_deadline()` in `recv_timeout` on the channel that
//!    carries inserts and cancels from a producer thread (so commands wake it at once; no
//!    spinning: the kernel's timer slack, ~50 µs, is far below the target). Meanwhile one thread
//!    per CPU churns through a 32 MiB buffer, keeping every CPU busy and evicting the wheel
//!    from the caches. The producer inserts 6,000 deadlines/s (two thirds 2 s outcome
//!    deadlines, the rest token lifetimes up to 30 min) and cancels 1,000/s recent ones (some
//!    already fired: stale ids). Lateness = the instant `poll` returns an entry − its deadline;
//!    about 3,500 deadlines/s come due. The clock's origin puts a top-level slot boundary 20 s
//!    into the run, where the largest cascade happens.
//! 3. A summary line starting with `wheel:`.

use std::collections::{BinaryHeap, HashMap};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use pagonode::deadlines::wheel::{TimerId, TimerWheel};

const PENDING: usize = 1_000_000;
/// Token lifetimes reach 30 minutes.
const HORIZON_MS: u64 = 30 * 60 * 1000;
/// Length of a top-level slot of the wheel.
const TOP_SLOT_MS: u64 = 1 << 18;
/// Epoch ms of 2026-01-01, rounded up to a top-level slot boundary.
const ORIGIN_MS: u64 = 1_767_225_600_000_u64.next_multiple_of(TOP_SLOT_MS);
const INSERTS_PER_SEC: u64 = 6_000;
/// One insert in six is followed by a cancel.
const CANCEL_EVERY: u64 = 6;
/// Cancels pick among this many most recent inserts.
const CANCEL_WINDOW: u64 = 1_000;

/// SplitMix64: a small, fast, reproducible generator (keys and deadlines need no more).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn key(&mut self) -> u128 {
        (u128::from(self.next()) << 64) | u128::from(self.next())
    }

    /// Uniform in `low..high` (the modulo bias is irrelevant here).
    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}

/// Resident set size: `/proc/self/statm`'s second field, in pages of `AT_PAGESZ` bytes.
fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * page_size()
}

/// The page size, from the auxiliary vector (pairs of native words; `AT_PAGESZ` is 6).
fn page_size() -> usize {
    const WORD: usize = size_of::<usize>();
    let auxv = std::fs::read("/proc/self/auxv").expect("/proc/self/auxv");
    let word = |chunk: &[u8]| usize::from_ne_bytes(chunk.try_into().unwrap());
    auxv.chunks_exact(2 * WORD)
        .find(|pair| word(&pair[..WORD]) == 6)
        .map_or(4096, |pair| word(&pair[WORD..]))
}

fn per_sec(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// The `q`-quantile of sorted values.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

struct Memory {
    accounted_per_entry: f64,
    rss_per_entry: f64,
    inserts_per_sec: f64,
}

fn wheel_memory() -> Memory {
    let mut rng = Rng(1);
    let rss_before = rss_bytes();
    let started = Instant::now();
    let mut wheel = TimerWheel::new(0);
    for _ in 0..PENDING {
        let key = rng.key();
        wheel.insert(key, rng.range(1, HORIZON_MS + 1));
    }
    let inserting = started.elapsed();
    let rss = rss_bytes().saturating_sub(rss_before);
    let memory = Memory {
        accounted_per_entry: wheel.memory_bytes() as f64 / wheel.len() as f64,
        rss_per_entry: rss as f64 / PENDING as f64,
        inserts_per_sec: per_sec(PENDING, inserting),
    };
    let mut out = Vec::with_capacity(PENDING);
    let started = Instant::now();
    wheel.poll(HORIZON_MS, &mut out);
    let draining = started.elapsed();
    assert_eq!(out.len(), PENDING);
    println!(
        "wheel:    {} pending, {:.1} B/entry accounted, RSS +{:.1} B/entry, insert {:.2} M/s, \
         fire all in one poll {:.0} ms ({:.2} M/s)",
        PENDING,
        memory.accounted_per_entry,
        memory.rss_per_entry,
        memory.inserts_per_sec / 1e6,
        draining.as_secs_f64() * 1e3,
        per_sec(PENDING, draining) / 1e6,
    );
    memory
}

/// The std baseline: min-heap of `(deadline, key)` plus `key → deadline` for cancellation.
fn baseline_memory() -> Memory {
    let mut rng = Rng(1);
    let rss_before = rss_bytes();
    let started = Instant::now();
    let mut heap = BinaryHeap::new();
    let mut live = HashMap::new();
    for _ in 0..PENDING {
        let key = rng.key();
        let deadline = rng.range(1, HORIZON_MS + 1);
        heap.push(std::cmp::Reverse((deadline, key)));
        live.insert(key, deadline);
    }
    let inserting = started.elapsed();
    let rss = rss_bytes().saturating_sub(rss_before);
    // hashbrown keeps a power of two of buckets, at most 7/8 full, each the entry plus a
    // control byte (plus one group of trailing control bytes, negligible here).
    let buckets = (live.capacity() * 8 / 7).next_power_of_two();
    let accounted = heap.capacity() * size_of::<std::cmp::Reverse<(u64, u128)>>()
        + buckets * (size_of::<(u128, u64)>() + 1);
    let memory = Memory {
        accounted_per_entry: accounted as f64 / live.len() as f64,
        rss_per_entry: rss as f64 / PENDING as f64,
        inserts_per_sec: per_sec(PENDING, inserting),
    };
    println!(
        "baseline: {} pending, {:.1} B/entry accounted, RSS +{:.1} B/entry, insert {:.2} M/s \
         (BinaryHeap<(u64, u128)> + HashMap<u128, u64>)",
        PENDING,
        memory.accounted_per_entry,
        memory.rss_per_entry,
        memory.inserts_per_sec / 1e6,
    );
    black_box((heap, live));
    memory
}

/// Polls 1 ms at a time for 10 simulated minutes across a top-level slot boundary, with
/// 1,000,000 deadlines over 30 minutes: the cost of a single poll, cascades included.
fn stepped_polls() {
    let mut rng = Rng(2);
    let start = ORIGIN_MS - 5 * 60 * 1000;
    let mut wheel = TimerWheel::new(start);
    for _ in 0..PENDING {
        let key = rng.key();
        wheel.insert(key, start + rng.range(1, HORIZON_MS + 1));
    }
    let mut out = Vec::new();
    let mut costs = Vec::with_capacity(600_000);
    let mut fired = 0;
    for now in start + 1..=start + 10 * 60 * 1000 {
        let started = Instant::now();
        wheel.poll(now, &mut out);
        costs.push(started.elapsed().as_nanos() as u64);
        fired += out.len();
        out.clear();
    }
    costs.sort_unstable();
    println!(
        "stepped:  {} polls of 1 ms firing {}, poll cost p50 {:.1} µs p99.9 {:.1} µs max {:.1} µs",
        costs.len(),
        fired,
        quantile(&costs, 0.5) as f64 / 1e3,
        quantile(&costs, 0.999) as f64 / 1e3,
        *costs.last().unwrap() as f64 / 1e3,
    );
}

enum Command {
    Insert(u128, u64),
    /// Cancel the n-th insert of the producer.
    Cancel(u64),
}

struct Lateness {
    fired: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// The real-clock run: see the module documentation.
fn lateness(run: Duration) -> Lateness {
    // The run starts 20 s before a top-level slot boundary.
    let origin = ORIGIN_MS - 20_000;
    let mut rng = Rng(3);
    let mut wheel = TimerWheel::new(origin);
    for _ in 0..PENDING {
        let key = rng.key();
        // Nothing due in the first second, while the threads start.
        wheel.insert(key, origin + rng.range(1_000, HORIZON_MS + 1));
    }
    let base = Instant::now();
    let stop_at = base + run;
    let clock_ms = move |at: Instant| origin + (at - base).as_millis() as u64;
    let instant_of = move |ms: u64| base + Duration::from_millis(ms - origin);

    let stop = Arc::new(AtomicBool::new(false));
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let load: Vec<_> = (0..cpus)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut buffer = vec![1u64; 4 << 20];
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..4096 {
                        // A stride of 4,099 words (prime) hits a new cache line every time.
                        i = (i + 4_099) % buffer.len();
                        buffer[i] = buffer[i].wrapping_mul(31).wrapping_add(i as u64);
                    }
                }
                black_box(buffer);
            })
        })
        .collect();

    let (tx, rx) = mpsc::channel::<Vec<Command>>();
    let producer = thread::spawn(move || {
        let mut rng = Rng(4);
        let mut sent = 0;
        while Instant::now() < stop_at {
            thread::sleep(Duration::from_millis(1));
            let now = Instant::now();
            let now_ms = clock_ms(now);
            let target = (now - base).as_micros() as u64 * INSERTS_PER_SEC / 1_000_000;
            let mut batch = Vec::new();
            while sent < target {
                let deadline = if sent % 3 < 2 {
                    now_ms + 2_000
                } else {
                    now_ms + rng.range(2_000, HORIZON_MS)
                };
                batch.push(Command::Insert(rng.key(), deadline));
                if sent % CANCEL_EVERY == 0 && sent > 0 {
                    batch.push(Command::Cancel(
                        sent - 1 - rng.next() % sent.min(CANCEL_WINDOW),
                    ));
                }
                sent += 1;
            }
            if tx.send(batch).is_err() {
                break;
            }
        }
    });

    let mut ids: Vec<TimerId> = Vec::new();
    let mut out = Vec::new();
    let mut late_us: Vec<u64> = Vec::with_capacity(run.as_secs() as usize * 5_000);
    let mut poll_ns: Vec<u64> = Vec::with_capacity(run.as_millis() as usize * 2);
    loop {
        let now = Instant::now();
        if now >= stop_at {
            break;
        }
        wheel.poll(clock_ms(now), &mut out);
        let fired_at = Instant::now();
        poll_ns.push((fired_at - now).as_nanos() as u64);
        for (_, deadline) in out.drain(..) {
            let late = fired_at.saturating_duration_since(instant_of(deadline));
            late_us.push(late.as_micros() as u64);
        }
        let wake_at = wheel
            .next_deadline()
            .map_or(stop_at, |ms| instant_of(ms).min(stop_at));
        let mut received = rx.recv_timeout(wake_at.saturating_duration_since(Instant::now()));
        while let Ok(batch) = received {
            for command in batch {
                match command {
                    Command::Insert(key, deadline) => ids.push(wheel.insert(key, deadline)),
                    Command::Cancel(n) => {
                        wheel.cancel(ids[n as usize]);
                    }
                }
            }
            received = rx.try_recv().map_err(|_| mpsc::RecvTimeoutError::Timeout);
        }
    }
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    for thread in load {
        thread.join().unwrap();
    }

    late_us.sort_unstable();
    poll_ns.sort_unstable();
    assert!(!late_us.is_empty(), "nothing fired: the run is too short");
    let ms = |us: u64| us as f64 / 1e3;
    let result = Lateness {
        fired: late_us.len(),
        p50_ms: ms(quantile(&late_us, 0.5)),
        p99_ms: ms(quantile(&late_us, 0.99)),
        max_ms: ms(*late_us.last().unwrap()),
    };
    println!(
        "lateness: {:.0} s on the real clock, {} load threads, {} inserted, {} fired, {} pending \
         at the end; p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms max {:.2} ms",
        run.as_secs_f64(),
        cpus,
        ids.len(),
        result.fired,
        wheel.len(),
        result.p50_ms,
        result.p99_ms,
        ms(quantile(&late_us, 0.999)),
        result.max_ms,
    );
    // What the wheel itself adds to lateness, as opposed to waiting for a CPU; the load
    // average tells how contended the CPUs were (the bench's own threads count for cpus + 2).
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "polls:    {} on the real clock, wall time per poll p50 {:.1} µs p99 {:.1} µs p99.9 \
         {:.1} µs max {:.1} µs; load average {}",
        poll_ns.len(),
        quantile(&poll_ns, 0.5) as f64 / 1e3,
        quantile(&poll_ns, 0.99) as f64 / 1e3,
        quantile(&poll_ns, 0.999) as f64 / 1e3,
        *poll_ns.last().unwrap() as f64 / 1e3,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
    result
}

fn main() {
    let secs = std::env::var("WHEEL_BENCH_SECS").map_or(60, |s| {
        s.parse()
            .expect("WHEEL_BENCH_SECS: a whole number of seconds")
    });
    let wheel = wheel_memory();
    let baseline = baseline_memory();
    stepped_polls();
    let late = lateness(Duration::from_secs(secs));
    println!(
        "wheel: {PENDING} pending, {:.1} B/entry (RSS {:.1}; baseline heap+map {:.1} B/entry, \
         RSS {:.1}, ratio {:.2}), insert {:.1} M/s (baseline {:.1} M/s), lateness p50 {:.2} ms \
         p99 {:.2} ms max {:.2} ms over {} fired",
        wheel.accounted_per_entry,
        wheel.rss_per_entry,
        baseline.accounted_per_entry,
        baseline.rss_per_entry,
        wheel.accounted_per_entry / baseline.accounted_per_entry,
        wheel.inserts_per_sec / 1e6,
        baseline.inserts_per_sec / 1e6,
        late.p50_ms,
        late.p99_ms,
        late.max_ms,
        late.fired,
    );
}
