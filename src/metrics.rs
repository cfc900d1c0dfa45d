//! Prometheus metrics, served at `GET /metrics` on the admin listener (every name prefixed
//! `pagonode_`; the README's "Metrics" lists them with their labels).
//!
//! The payment path only adds to atomics. Every labelled series is a slot in a table built when
//! the node starts (operations × outcomes, stations × operations, PSPs), found by index or by a
//! map lookup that neither locks nor allocates; histograms have fixed buckets of atomic counts.
//! A scrape reads the tables and encodes the series that have counted something with
//! prometheus-client's text encoder. (prometheus-client's own `Histogram` locks a mutex at every
//! observation and its `Family` takes a lock at every lookup: hence the tables.)

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::codec::Operation;
use crate::config::Config;
use crate::engine::Millis;
use crate::fault::FaultCode;

/// The service level stations and PSPs are held to: 98% within 2 s, measured monthly (SANP,
/// "Livelli di servizio degli Enti Creditori": TVP, TGP, TDP, TSRT for paVerifyPaymentNotice,
/// paGetPayment, paDemandPaymentNotice, paSendRT; "Livelli di servizio dei PSP": TPSPO, the
/// outcome within 2 s of the payment at the touchpoint).
pub const SLA_MS: Millis = 2_000;
/// The share of answers within [`SLA_MS`] the service levels ask for, in percent.
pub const SLA_TARGET_PERCENT: u64 = 98;
/// The window the service-level gauges look back over.
pub const SLA_WINDOW_MS: Millis = 300_000;
/// A window is kept in slots of this length.
const SLOT_MS: Millis = 10_000;
const SLOTS: usize = (SLA_WINDOW_MS / SLOT_MS) as usize;

/// Latency buckets, in microseconds: 2 s is the service level, 7 s and 15 s are the official
/// timeouts towards stations (SANP, "Livelli di servizio degli Enti Creditori").
const LATENCY_US: &[u64] = &[
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_000_000, 5_000_000, 7_000_000, 10_000_000, 15_000_000, 30_000_000,
];
/// Deadline lateness buckets, in milliseconds.
const LATENESS_MS: &[u64] = &[1, 2, 5, 10, 20, 50, 100, 250, 500, 1_000, 5_000];
/// Commits per store transaction.
const BATCH: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// The stations' operations (paForNode), in the order of their series.
const EC_OPERATIONS: &[Operation] = &[
    Operation::PaVerifyPaymentNotice,
    Operation::PaGetPayment,
    Operation::PaGetPaymentV2,
    Operation::PaDemandPaymentNotice,
    Operation::PaSendRt,
    Operation::PaSendRtV2,
];

/// The label of a station or PSP the configuration did not name when the node started.
const OTHER: &str = "(other)";

/// A histogram with fixed buckets: one atomic count per bucket and an atomic sum.
pub struct Histogram {
    /// Upper bounds, in the unit observed.
    bounds: &'static [u64],
    /// Observed units per exported unit (1e6: microseconds observed, seconds exported).
    per_unit: f64,
    /// One count per bucket (not cumulative), the last one above every bound.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [u64], per_unit: f64) -> Histogram {
        Histogram {
            bounds,
            per_unit,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Durations, observed with [`Histogram::observe_duration`], exported in seconds.
    pub fn latency() -> Histogram {
        Histogram::new(LATENCY_US, 1e6)
    }

    /// Lateness, observed in milliseconds, exported in seconds.
    pub fn lateness() -> Histogram {
        Histogram::new(LATENESS_MS, 1e3)
    }

    /// Sizes (commits in one transaction), observed and exported as counts.
    pub fn batch() -> Histogram {
        Histogram::new(BATCH, 1.0)
    }

    /// Counts `v`, in the histogram's observed unit.
    pub fn observe(&self, v: u64) {
        let bucket = self.bounds.partition_point(|&b| b < v);
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum.fetch_add(v, Relaxed);
    }

    /// Counts a duration (for histograms made by [`Histogram::latency`]).
    pub fn observe_duration(&self, d: Duration) {
        self.observe(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// How many values were observed.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// How many values were at most `bound` (a bucket bound, in the observed unit).
    fn count_up_to(&self, bound: u64) -> u64 {
        let last = self.bounds.partition_point(|&b| b <= bound);
        self.counts[..last].iter().map(|c| c.load(Relaxed)).sum()
    }

    fn encode(&self, mut e: MetricEncoder) -> fmt::Result {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Relaxed)).collect();
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .map(|&b| b as f64 / self.per_unit)
            .chain(std::iter::once(f64::INFINITY))
            .zip(counts.iter().copied())
            .collect();
        let sum = self.sum.load(Relaxed) as f64 / self.per_unit;
        e.encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)
    }
}

/// Over the last [`SLA_WINDOW_MS`]: how many answers, and how many within [`SLA_MS`]. One
/// atomic word per slot of [`SLOT_MS`]: `[slot number: 24 bits][answers: 20][within: 20]`, so a
/// slot is started over and counted into by one compare-and-swap, without a lock.
struct Window {
    slots: [AtomicU64; SLOTS],
}

const COUNT_BITS: u32 = 20;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const EPOCH_MASK: u64 = (1 << 24) - 1;

impl Window {
    fn new() -> Window {
        Window {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn record(&self, now: Millis, within: bool) {
        let number = now / SLOT_MS;
        let epoch = number & EPOCH_MASK;
        let slot = &self.slots[(number % SLOTS as u64) as usize];
        let mut current = slot.load(Relaxed);
        loop {
            let (all, ok) = if current >> (2 * COUNT_BITS) == epoch {
                ((current >> COUNT_BITS) & COUNT_MAX, current & COUNT_MAX)
            } else {
                (0, 0)
            };
            if all == COUNT_MAX {
                // A million answers in ten seconds: the slot's share stands for the rest.
                return;
            }
            let next =
                (epoch << (2 * COUNT_BITS)) | ((all + 1) << COUNT_BITS) | (ok + u64::from(within));
            match slot.compare_exchange_weak(current, next, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// (answers, answers within the service level) over the window ending at `now`.
    fn read(&self, now: Millis) -> (u64, u64) {
        let epoch = (now / SLOT_MS) & EPOCH_MASK;
        self.slots
            .iter()
            .map(|s| s.load(Relaxed))
            .filter(|w| (epoch.wrapping_sub(w >> (2 * COUNT_BITS)) & EPOCH_MASK) < SLOTS as u64)
            .fold((0, 0), |(all, ok), w| {
                (all + ((w >> COUNT_BITS) & COUNT_MAX), ok + (w & COUNT_MAX))
            })
    }
}

/// Label values known at start (station or PSP ids), by index; the last one is [`OTHER`].
struct Names {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Names {
    fn new(ids: impl IntoIterator<Item = String>) -> Names {
        let mut names: Vec<String> = Vec::new();
        let mut index = HashMap::new();
        for id in ids {
            if !index.contains_key(&id) {
                index.insert(id.clone(), names.len());
                names.push(id);
            }
        }
        names.push(OTHER.into());
        Names { names, index }
    }

    fn of(&self, id: &str) -> usize {
        self.index.get(id).copied().unwrap_or(self.names.len() - 1)
    }

    fn len(&self) -> usize {
        self.names.len()
    }
}

/// What became of one receipt delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The station acknowledged the copy.
    Delivered,
    /// It failed; the copy will be tried again.
    Retry,
    /// It failed and was the copy's last attempt: the copy is FAILED.
    Failed,
}

const ATTEMPTS: [(Attempt, &str); 3] = [
    (Attempt::Delivered, "delivered"),
    (Attempt::Retry, "retry"),
    (Attempt::Failed, "failed"),
];

/// Series of the store's own work, kept by the store (see [`crate::store::Store::metrics`]).
pub struct StoreMetrics {
    /// Time from the start of a transaction to its commit being durable (the fsync included).
    pub transaction_seconds: Histogram,
    /// Commits (engine steps) written by one transaction.
    pub batch_commits: Histogram,
    /// Bytes appended to the journal: to its segment files (compressed), or the values of the
    /// rows written to PostgreSQL.
    pub journal_bytes: Arc<AtomicU64>,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            transaction_seconds: Histogram::latency(),
            batch_commits: Histogram::batch(),
            journal_bytes: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// The node's state at a scrape: what is read, not counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub now: Millis,
    pub deadlines_pending: usize,
    /// Receipt copies scheduled or waiting for their station's turn.
    pub receipt_copies_pending: usize,
    pub receipt_copies_in_flight: usize,
    /// Receipt copies whose attempts ran out (None: the store could not say).
    pub receipt_copies_failed: Option<u64>,
    /// Payments the engine holds (waiting for their outcome, or being notified).
    pub payments_in_memory: usize,
    pub activations_in_flight: usize,
    pub store_transactions: u64,
    pub store_commits: u64,
    /// The running configuration's version (0: not stored yet).
    pub config_version: u64,
}

/// The node's counters and histograms.
pub struct Metrics {
    /// nodeForPsp requests by operation (the last index: no operation recognised) and outcome
    /// (index 0 OK, then each fault code).
    psp_requests: Box<[AtomicU64]>,
    /// Their latency by operation and OK/KO.
    psp_seconds: Box<[Histogram]>,
    stations: Names,
    /// Station calls by station, operation and outcome.
    ec_calls: Box<[AtomicU64]>,
    /// Their latency by station and operation.
    ec_seconds: Box<[Histogram]>,
    ec_sla: Box<[Window]>,
    psps: Names,
    /// Spontaneous payments' outcomes within [`SLA_MS`] of their activation, by PSP.
    psp_sla: Box<[Window]>,
    /// Receipt delivery attempts by station and [`Attempt`].
    deliveries: Box<[AtomicU64]>,
    copies_resent: AtomicU64,
    deadline_lateness: Histogram,
    commit_wait: Histogram,
}

const OPERATIONS: usize = Operation::ALL.len() + 1;
/// OK, each fault code, and a SOAP Fault (a request not even its operation was recognised in).
const OUTCOMES: usize = FaultCode::ALL.len() + 2;
const SOAP_FAULT: usize = OUTCOMES - 1;

fn outcome_index(fault: Option<FaultCode>) -> usize {
    fault.map_or(0, |f| f as usize + 1)
}

fn outcome_name(i: usize) -> &'static str {
    match i {
        0 => "OK",
        SOAP_FAULT => "SOAP_FAULT",
        i => FaultCode::ALL[i - 1].as_str(),
    }
}

fn operation_name(i: usize) -> &'static str {
    Operation::ALL
        .get(i)
        .map_or("unknown", |op| op.soap_action())
}

fn zeros(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl Metrics {
    /// Tables for the stations and PSPs of `config`.
    pub fn new(config: &Config) -> Metrics {
        let stations = Names::new(config.station.iter().map(|s| s.id.clone()));
        let psps = Names::new(config.psp.iter().map(|p| p.id.to_string()));
        let s = stations.len();
        Metrics {
            psp_requests: zeros(OPERATIONS * OUTCOMES),
            psp_seconds: (0..OPERATIONS * 2).map(|_| Histogram::latency()).collect(),
            ec_calls: zeros(s * EC_OPERATIONS.len() * OUTCOMES),
            ec_seconds: (0..s * EC_OPERATIONS.len())
                .map(|_| Histogram::latency())
                .collect(),
            ec_sla: (0..s).map(|_| Window::new()).collect(),
            psp_sla: (0..psps.len()).map(|_| Window::new()).collect(),
            deliveries: zeros(s * ATTEMPTS.len()),
            stations,
            psps,
            copies_resent: AtomicU64::new(0),
            deadline_lateness: Histogram::lateness(),
            commit_wait: Histogram::latency(),
        }
    }

    /// A nodeForPsp request answered: with `fault` in a pagoPA answer, or with a SOAP Fault
    /// (`soap_fault`: the request was for no nodeForPsp operation; `op` None: for none at all).
    pub fn psp_request(
        &self,
        op: Option<Operation>,
        fault: Option<FaultCode>,
        soap_fault: bool,
        took: Duration,
    ) {
        let op = op.map_or(OPERATIONS - 1, |op| op as usize);
        let outcome = if soap_fault {
            SOAP_FAULT
        } else {
            outcome_index(fault)
        };
        self.psp_requests[op * OUTCOMES + outcome].fetch_add(1, Relaxed);
        self.psp_seconds[op * 2 + usize::from(outcome != 0)].observe_duration(took);
    }

    /// A call to a station ended: `answered` if the station answered at all (in time), with the
    /// fault the node took from it, if any.
    pub fn ec_call(
        &self,
        station: &str,
        op: Operation,
        fault: Option<FaultCode>,
        answered: bool,
        took_ms: Millis,
        now: Millis,
    ) {
        let Some(o) = EC_OPERATIONS.iter().position(|&e| e == op) else {
            return;
        };
        let s = self.stations.of(station);
        let series = s * EC_OPERATIONS.len() + o;
        self.ec_calls[series * OUTCOMES + outcome_index(fault)].fetch_add(1, Relaxed);
        self.ec_seconds[series].observe(took_ms.saturating_mul(1000));
        self.ec_sla[s].record(now, answered && took_ms <= SLA_MS);
    }

    /// A PSP's outcome for a payment with the 2-second outcome deadline (a spontaneous payment,
    /// SANP "Pagamento spontaneo presso PSP": "entro 2sec"), `took_ms` after its activation.
    pub fn psp_outcome(&self, psp: &str, took_ms: Millis, now: Millis) {
        self.psp_sla[self.psps.of(psp)].record(now, took_ms <= SLA_MS);
    }

    /// A receipt delivery attempt ended.
    pub fn delivery(&self, station: &str, what: Attempt) {
        let a = ATTEMPTS.iter().position(|(x, _)| *x == what).unwrap_or(0);
        self.deliveries[self.stations.of(station) * ATTEMPTS.len() + a].fetch_add(1, Relaxed);
    }

    /// Copies queued again by an operator.
    pub fn resent(&self, copies: usize) {
        self.copies_resent.fetch_add(copies as u64, Relaxed);
    }

    /// A payment deadline fired `late_ms` after it was due.
    pub fn deadline_fired(&self, late_ms: Millis) {
        self.deadline_lateness.observe(late_ms);
    }

    /// A request waited `took` for its commit to be durable.
    pub fn commit_waited(&self, took: Duration) {
        self.commit_wait.observe_duration(took);
    }

    /// The service levels at `now`, for the console: per station (share of answers within
    /// [`SLA_MS`], answers) and per PSP (share of spontaneous outcomes within it, outcomes),
    /// over the last [`SLA_WINDOW_MS`]; only those with something in the window.
    pub fn service_levels(&self, now: Millis) -> ServiceLevels {
        let read = |names: &Names, windows: &[Window]| -> Vec<Level> {
            names
                .names
                .iter()
                .zip(windows)
                .filter_map(|(name, w)| {
                    let (all, within) = w.read(now);
                    (all > 0).then(|| Level {
                        name: name.clone(),
                        answers: all,
                        within,
                    })
                })
                .collect()
        };
        ServiceLevels {
            stations: read(&self.stations, &self.ec_sla),
            psps: read(&self.psps, &self.psp_sla),
        }
    }

    /// The answers and how many were within the service level since start, per station (from
    /// the latency histograms).
    fn station_totals(&self) -> impl Iterator<Item = (&str, u64, u64)> {
        self.stations.names.iter().enumerate().map(|(s, name)| {
            let series = &self.ec_seconds[s * EC_OPERATIONS.len()..(s + 1) * EC_OPERATIONS.len()];
            let all = series.iter().map(Histogram::count).sum();
            let within = series.iter().map(|h| h.count_up_to(SLA_MS * 1000)).sum();
            (name.as_str(), all, within)
        })
    }

    /// The Prometheus text exposition of everything, with `gauges` read from the node and the
    /// store's own series.
    pub fn render(
        self: &Arc<Self>,
        gauges: Gauges,
        store: Option<Arc<StoreMetrics>>,
    ) -> Result<String, fmt::Error> {
        let mut registry = Registry::with_prefix("pagonode");
        registry.register_collector(Box::new(Scrape {
            metrics: self.clone(),
            gauges,
            store,
        }));
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &registry)?;
        Ok(out)
    }
}

/// One station's or PSP's service level over the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    pub name: String,
    pub answers: u64,
    pub within: u64,
}

impl Level {
    /// The share within the service level, in percent.
    pub fn percent(&self) -> f64 {
        100.0 * self.within as f64 / self.answers.max(1) as f64
    }

    /// Whether the share meets the target.
    pub fn met(&self) -> bool {
        self.within * 100 >= self.answers * SLA_TARGET_PERCENT
    }
}

/// The service levels over the window, as [`Metrics::service_levels`] reads them.
#[derive(Debug, Clone, Default)]
pub struct ServiceLevels {
    pub stations: Vec<Level>,
    pub psps: Vec<Level>,
}

/// What one scrape encodes.
struct Scrape {
    metrics: Arc<Metrics>,
    gauges: Gauges,
    store: Option<Arc<StoreMetrics>>,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

/// Encodes one metric family, skipping it if it has no series.
fn family<'v, S: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = (S, Value<'v>)>,
) -> fmt::Result {
    let mut series = series.into_iter().peekable();
    if series.peek().is_none() {
        return Ok(());
    }
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in series {
        let m = m.encode_family(&labels)?;
        match value {
            Value::Counter(v) => encode_counter(m, v)?,
            Value::Gauge(v) => encode_gauge(m, v)?,
            Value::Histogram(h) => h.encode(m)?,
        }
    }
    Ok(())
}

fn encode_counter(mut m: MetricEncoder, v: u64) -> fmt::Result {
    m.encode_counter::<NoLabelSet, u64, u64>(&v, None)
}

fn encode_gauge(mut m: MetricEncoder, v: f64) -> fmt::Result {
    m.encode_gauge(&v)
}

enum Value<'a> {
    Counter(u64),
    Gauge(f64),
    Histogram(&'a Histogram),
}

/// A gauge without labels.
fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> fmt::Result {
    family(
        e,
        name,
        help,
        MetricType::Gauge,
        [([("", ""); 0], Value::Gauge(v))],
    )
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let m = &*self.metrics;
        let g = &self.gauges;
        let counted = |v: &AtomicU64| Some(v.load(Relaxed)).filter(|&v| v > 0);

        family(
            &mut e,
            "psp_requests",
            "nodeForPsp requests answered, by operation and outcome (OK or the fault code)",
            MetricType::Counter,
            m.psp_requests.iter().enumerate().filter_map(|(i, v)| {
                let labels = [
                    ("operation", operation_name(i / OUTCOMES)),
                    ("outcome", outcome_name(i % OUTCOMES)),
                ];
                Some((labels, Value::Counter(counted(v)?)))
            }),
        )?;
        family(
            &mut e,
            "psp_request_seconds",
            "Time to answer a nodeForPsp request (body read to answer written), by operation and OK/KO",
            MetricType::Histogram,
            m.psp_seconds.iter().enumerate().filter_map(|(i, h)| {
                let labels = [
                    ("operation", operation_name(i / 2)),
                    ("outcome", if i % 2 == 0 { "OK" } else { "KO" }),
                ];
                (h.count() > 0).then_some((labels, Value::Histogram(h)))
            }),
        )?;

        let ec_ops = EC_OPERATIONS.len();
        family(
            &mut e,
            "ec_calls",
            "Calls to EC stations, by station, operation and outcome (OK or the fault code the node took from it)",
            MetricType::Counter,
            m.ec_calls.iter().enumerate().filter_map(|(i, v)| {
                let series = i / OUTCOMES;
                let labels = [
                    ("station", m.stations.names[series / ec_ops].as_str()),
                    ("operation", EC_OPERATIONS[series % ec_ops].soap_action()),
                    ("outcome", outcome_name(i % OUTCOMES)),
                ];
                Some((labels, Value::Counter(counted(v)?)))
            }),
        )?;
        family(
            &mut e,
            "ec_call_seconds",
            "Time a station took to answer (or to fail), by station and operation",
            MetricType::Histogram,
            m.ec_seconds.iter().enumerate().filter_map(|(i, h)| {
                let labels = [
                    ("station", m.stations.names[i / ec_ops].as_str()),
                    ("operation", EC_OPERATIONS[i % ec_ops].soap_action()),
                ];
                (h.count() > 0).then_some((labels, Value::Histogram(h)))
            }),
        )?;
        let levels = m.service_levels(g.now);
        // One gauge per station or PSP with answers in the window: the share, or the count.
        let relabel = |key: &'static str, levels: &[Level], ratio: bool| {
            levels
                .iter()
                .map(|l| {
                    let value = if ratio {
                        l.within as f64 / l.answers as f64
                    } else {
                        l.answers as f64
                    };
                    ([(key, l.name.clone())], Value::Gauge(value))
                })
                .collect::<Vec<_>>()
        };
        let stations = &levels.stations;
        family(
            &mut e,
            "sla_ec_answers_within_2s_ratio",
            "Share of a station's answers that came within 2 s, over the last 5 minutes (service level: 0.98)",
            MetricType::Gauge,
            relabel("station", stations, true),
        )?;
        family(
            &mut e,
            "sla_ec_answers_window",
            "Station calls the within-2-s share is computed over (last 5 minutes)",
            MetricType::Gauge,
            relabel("station", stations, false),
        )?;
        family(
            &mut e,
            "sla_ec_answers_within_2s",
            "Station calls answered within 2 s since start (the service level's numerator; the denominator is ec_call_seconds_count)",
            MetricType::Counter,
            m.station_totals()
                .filter(|(_, all, _)| *all > 0)
                .map(|(name, _, within)| ([("station", name)], Value::Counter(within))),
        )?;
        let psps = &levels.psps;
        family(
            &mut e,
            "sla_psp_outcomes_within_2s_ratio",
            "Share of a PSP's outcomes of spontaneous payments sent within 2 s of the activation, over the last 5 minutes (service level: 0.98)",
            MetricType::Gauge,
            relabel("psp", psps, true),
        )?;
        family(
            &mut e,
            "sla_psp_outcomes_window",
            "Spontaneous payments' outcomes the PSP share is computed over (last 5 minutes)",
            MetricType::Gauge,
            relabel("psp", psps, false),
        )?;

        family(
            &mut e,
            "receipt_delivery_attempts",
            "Receipt delivery attempts, by station and result (delivered; retry: failed, tried again later; failed: the copy's last attempt failed, it is FAILED)",
            MetricType::Counter,
            m.deliveries.iter().enumerate().filter_map(|(i, v)| {
                let labels = [
                    ("station", m.stations.names[i / ATTEMPTS.len()].as_str()),
                    ("result", ATTEMPTS[i % ATTEMPTS.len()].1),
                ];
                Some((labels, Value::Counter(counted(v)?)))
            }),
        )?;
        family(
            &mut e,
            "receipt_copies_resent",
            "Receipt copies queued again by an operator (admin re-send)",
            MetricType::Counter,
            [([("", ""); 0], Value::Counter(m.copies_resent.load(Relaxed)))],
        )?;
        gauge(
            &mut e,
            "receipt_copies_pending",
            "Receipt copies waiting for their next delivery attempt",
            g.receipt_copies_pending as f64,
        )?;
        gauge(
            &mut e,
            "receipt_copies_in_flight",
            "Receipt delivery attempts in progress",
            g.receipt_copies_in_flight as f64,
        )?;
        if let Some(failed) = g.receipt_copies_failed {
            gauge(
                &mut e,
                "receipt_copies_failed",
                "Receipt copies FAILED (attempts ran out), waiting for an operator's re-send",
                failed as f64,
            )?;
        }
        gauge(
            &mut e,
            "deadlines_pending",
            "Payment deadlines armed (payments waiting for their outcome)",
            g.deadlines_pending as f64,
        )?;
        family(
            &mut e,
            "deadline_lateness_seconds",
            "How late a payment deadline fired after it was due",
            MetricType::Histogram,
            [([("", ""); 0], Value::Histogram(&m.deadline_lateness))],
        )?;
        gauge(
            &mut e,
            "payments_in_memory",
            "Payments the engine holds: waiting for their outcome, or their receipt being delivered",
            g.payments_in_memory as f64,
        )?;
        gauge(
            &mut e,
            "activations_in_flight",
            "Activations waiting for the station's payment data",
            g.activations_in_flight as f64,
        )?;
        gauge(
            &mut e,
            "config_version",
            "The version of the configuration the node runs (config_versions)",
            g.config_version as f64,
        )?;

        family(
            &mut e,
            "store_commit_wait_seconds",
            "Time a request waited for its state change to be durable",
            MetricType::Histogram,
            [([("", ""); 0], Value::Histogram(&m.commit_wait))],
        )?;
        family(
            &mut e,
            "store_transactions",
            "Store transactions committed (each one fsync)",
            MetricType::Counter,
            [([("", ""); 0], Value::Counter(g.store_transactions))],
        )?;
        family(
            &mut e,
            "store_commits",
            "Engine steps committed (several share a transaction)",
            MetricType::Counter,
            [([("", ""); 0], Value::Counter(g.store_commits))],
        )?;
        if let Some(s) = &self.store {
            family(
                &mut e,
                "store_transaction_seconds",
                "Time to write and sync one store transaction",
                MetricType::Histogram,
                [([("", ""); 0], Value::Histogram(&s.transaction_seconds))],
            )?;
            family(
                &mut e,
                "store_batch_commits",
                "Engine steps written by one store transaction (group commit)",
                MetricType::Histogram,
                [([("", ""); 0], Value::Histogram(&s.batch_commits))],
            )?;
            family(
                &mut e,
                "journal_bytes",
                "Bytes appended to the journal (segment files: compressed; PostgreSQL: the rows' values)",
                MetricType::Counter,
                [([("", ""); 0], Value::Counter(s.journal_bytes.load(Relaxed)))],
            )?;
        }
        family(
            &mut e,
            "build_info",
            "The running pagonode's version",
            MetricType::Gauge,
            [([("version", env!("CARGO_PKG_VERSION"))], Value::Gauge(1.0))],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_hold_their_upper_bound() {
        let h = Histogram::latency();
        h.observe_duration(Duration::from_micros(500));
        h.observe_duration(Duration::from_micros(501));
        h.observe_duration(Duration::from_secs(60));
        assert_eq!(h.count(), 3);
        assert_eq!(h.count_up_to(500), 1);
        assert_eq!(h.count_up_to(1_000), 2);
        assert_eq!(h.count_up_to(30_000_000), 2, "60 s is above every bound");
    }

    #[test]
    fn a_window_forgets_what_is_older_than_it() {
        let w = Window::new();
        let t0 = 1_700_000_000_000;
        w.record(t0, true);
        w.record(t0 + 1, false);
        w.record(t0 + SLA_WINDOW_MS - SLOT_MS, true);
        assert_eq!(w.read(t0 + SLA_WINDOW_MS - SLOT_MS), (3, 2));
        // One window later the first slot has aged out; its place is taken by a new slot.
        let later = t0 + SLA_WINDOW_MS;
        assert_eq!(w.read(later), (1, 1));
        w.record(later, false);
        assert_eq!(w.read(later), (2, 1));
    }

    #[test]
    fn the_exposition_names_every_family_with_the_prefix() {
        let config = Config::example();
        let m = Arc::new(Metrics::new(&config));
        let station = config.station[0].id.clone();
        let activate = Some(Operation::ActivatePaymentNotice);
        m.psp_request(activate, None, false, Duration::from_millis(3));
        m.psp_request(
            activate,
            Some(FaultCode::PagamentoInCorso),
            false,
            Duration::from_millis(1),
        );
        m.psp_request(None, None, true, Duration::from_millis(1));
        m.ec_call(&station, Operation::PaGetPayment, None, true, 2_500, 1_000);
        m.ec_call(
            "nowhere",
            Operation::PaSendRt,
            Some(FaultCode::StazioneIntPaTimeout),
            false,
            15_000,
            1_000,
        );
        let text = m
            .render(
                Gauges {
                    now: 1_000,
                    ..Gauges::default()
                },
                Some(Arc::new(StoreMetrics::default())),
            )
            .unwrap();
        for line in [
            "pagonode_psp_requests_total{operation=\"activatePaymentNotice\",outcome=\"OK\"} 1",
            "pagonode_psp_requests_total{operation=\"activatePaymentNotice\",outcome=\"PPT_PAGAMENTO_IN_CORSO\"} 1",
            "pagonode_psp_request_seconds_bucket{le=\"0.005\",operation=\"activatePaymentNotice\",outcome=\"OK\"} 1",
            &format!(
                "pagonode_ec_call_seconds_bucket{{le=\"2.0\",station=\"{station}\",operation=\"paGetPayment\"}} 0"
            ),
            &format!(
                "pagonode_ec_call_seconds_bucket{{le=\"5.0\",station=\"{station}\",operation=\"paGetPayment\"}} 1"
            ),
            &format!("pagonode_sla_ec_answers_within_2s_ratio{{station=\"{station}\"}} 0.0"),
            "pagonode_ec_calls_total{station=\"(other)\",operation=\"paSendRT\",outcome=\"PPT_STAZIONE_INT_PA_TIMEOUT\"} 1",
            "pagonode_psp_requests_total{operation=\"unknown\",outcome=\"SOAP_FAULT\"} 1",
            "pagonode_deadlines_pending 0",
            "pagonode_journal_bytes_total 0",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
