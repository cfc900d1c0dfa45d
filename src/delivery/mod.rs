//! Receipt delivery: a scheduler of due outbox rows and the attempts that send them, with a
//! per-station concurrency limit. Rows come from the engine's steps (new receipts, retries,
//! re-sends) and from the store at start-up; results go back to the engine, which decides
//! NOTIFIED, retry or FAILED.

pub mod cli;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::codec::pa_for_node::{PaSendRtRes, PaSendRtV2Response};
use crate::engine::{DeliveryPolicy, Millis, RecipientKey, Version};
use crate::fault::NodeFault;
use crate::node::{Keys, Node};

/// Schedules deliveries (cheap to clone).
#[derive(Clone)]
pub struct Delivery {
    tx: mpsc::UnboundedSender<(RecipientKey, Millis)>,
}

/// The receiving end, consumed by [`run`].
pub struct DeliveryQueue(mpsc::UnboundedReceiver<(RecipientKey, Millis)>);

impl Delivery {
    pub fn new() -> (Delivery, DeliveryQueue) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Delivery { tx }, DeliveryQueue(rx))
    }

    /// Sends the outbox row `key` at `at` (or as soon as possible after).
    pub fn schedule(&self, key: RecipientKey, at: Millis) {
        let _ = self.tx.send((key, at));
    }
}

/// The duplicate-receipt answer counts as delivered (the EC already has it).
pub const RECEIPT_DUPLICATE: &str = "PAA_RECEIPT_DUPLICATA";

/// Runs the scheduler until the node shuts down.
pub async fn run(DeliveryQueue(mut rx): DeliveryQueue, node: Arc<Node>) {
    let cfg = &node.registry.config().receipts;
    let policy = DeliveryPolicy {
        max_attempts: cfg.max_attempts,
        retry_interval_ms: cfg.retry_interval_ms,
    };
    let per_station = cfg.per_station_concurrency;
    let mut due: BinaryHeap<Reverse<(Millis, u64)>> = BinaryHeap::new();
    let mut keys: HashMap<u64, RecipientKey> = HashMap::new();
    let mut seq = 0u64;
    let limits: Arc<Mutex<HashMap<String, Arc<Semaphore>>>> = Arc::default();
    let in_flight: Arc<Mutex<HashSet<RecipientKey>>> = Arc::default();
    // Attempts in flight belong to the scheduler: when the node stops (this task is aborted)
    // they are dropped before they record anything, so a shutdown never counts as a failed
    // attempt; their copies stay PENDING and are sent again after the restart.
    let mut attempts = JoinSet::new();
    loop {
        let now = crate::clock::now_ms();
        while let Some(Reverse((at, id))) = due.peek().copied() {
            if at > now {
                break;
            }
            due.pop();
            let Some(key) = keys.remove(&id) else {
                continue;
            };
            if !in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone())
            {
                // Already being sent: look again shortly, so a re-send is not lost.
                seq += 1;
                due.push(Reverse((now + 100, seq)));
                keys.insert(seq, key);
                continue;
            }
            let sem = limits
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key.station.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(per_station)))
                .clone();
            let (node, in_flight) = (node.clone(), in_flight.clone());
            attempts.spawn(async move {
                if let Ok(_permit) = sem.acquire_owned().await {
                    attempt(&node, &key, policy).await;
                }
                in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
            });
        }
        let wait = due
            .peek()
            .map(|Reverse((at, _))| at.saturating_sub(now))
            .unwrap_or(60_000);
        tokio::select! {
            msg = rx.recv() => match msg {
                Some((key, at)) => {
                    seq += 1;
                    due.push(Reverse((at, seq)));
                    keys.insert(seq, key);
                }
                None => return,
            },
            Some(_) = attempts.join_next(), if !attempts.is_empty() => {}
            _ = tokio::time::sleep(Duration::from_millis(wait.min(60_000))) => {}
        }
    }
}

/// One delivery attempt of one copy.
async fn attempt(node: &Node, key: &RecipientKey, policy: DeliveryPolicy) {
    let Some(copy) = node.engine().due_delivery(key).cloned() else {
        return;
    };
    let Some(station) = node.registry.station(&key.station) else {
        let queued = node.run(|e| {
            e.delivery_result(
                key,
                Err(format!("station {} no longer configured", key.station)),
                policy,
                crate::clock::now_ms(),
            )
        });
        let _ = node.finish(queued).await;
        return;
    };
    let timeout = Duration::from_millis(node.registry.receipt_timeout_ms(station));
    let (result, exchange, op) = match copy.version {
        Version::V1 => {
            let (r, ex) = node
                .ec
                .call_raw::<PaSendRtRes>(&station.url, "paSendRT", copy.request.clone(), timeout)
                .await;
            (r.map(drop), ex, crate::codec::Operation::PaSendRt)
        }
        Version::V2 => {
            let (r, ex) = node
                .ec
                .call_raw::<PaSendRtV2Response>(
                    &station.url,
                    "paSendRTV2",
                    copy.request.clone(),
                    timeout,
                )
                .await;
            (r.map(drop), ex, crate::codec::Operation::PaSendRtV2)
        }
    };
    let result = match result {
        Err(NodeFault::ErroreEmessoDaPaa(f)) if f.fault_code.as_str() == RECEIPT_DUPLICATE => {
            Ok(())
        }
        other => other,
    };
    crate::failpoints::failpoint!("delivery.acked", result.is_ok());
    // The payment must be in the engine for the last acknowledged copy to mark it NOTIFIED.
    if let Err(f) = node.hydrate_payment(&key.receipt_id) {
        tracing::error!(receipt = %key.receipt_id, fault = %f, "cannot load the receipt's payment");
    }
    let payment = node.engine().payment(&key.receipt_id).cloned();
    let keys = Keys {
        fiscal_code: payment.as_ref().map(|p| p.notice.fiscal_code.to_string()),
        notice_number: payment.as_ref().map(|p| p.notice.notice_number.to_string()),
        token: Some(key.receipt_id.clone()),
        psp: payment.as_ref().map(|p| p.psp.id_psp.to_string()),
        channel: payment.as_ref().map(|p| p.psp.id_channel.to_string()),
        station: Some(key.station.clone()),
    };
    node.journal_ec(
        op,
        &key.station,
        &keys,
        &exchange,
        result.as_ref().map(|_| ()),
    );
    match &result {
        Ok(()) => {
            tracing::info!(receipt = %key.receipt_id, station = %key.station, "receipt delivered")
        }
        Err(f) => {
            tracing::warn!(receipt = %key.receipt_id, station = %key.station, error = %f, "receipt delivery failed")
        }
    }
    let queued = node.run(|e| {
        e.delivery_result(
            key,
            result.map_err(|f| f.to_string()),
            policy,
            crate::clock::now_ms(),
        )
    });
    if let Err(f) = node.finish(queued).await {
        tracing::error!(receipt = %key.receipt_id, station = %key.station, fault = %f, "delivery result not committed");
    }
}
