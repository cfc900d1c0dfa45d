//! paSendRT / paSendRTV2: one attempt to deliver one copy of a receipt to one station. The copy's
//! envelope was built with the receipt and is sent byte for byte at every attempt; the engine
//! decides from the result whether the copy is NOTIFIED, retried later or FAILED.

use std::time::Duration;

use super::Node;
use crate::codec::Operation;
use crate::codec::pa_for_node::{PaSendRtRes, PaSendRtV2Response};
use crate::engine::{DeliveryPolicy, RecipientKey, RecipientStatus, Version, Write};
use crate::fault::NodeFault;
use crate::journal::Keys;
use crate::metrics::Attempt;

/// The station already has this receipt (`PAA_RECEIPT_DUPLICATA`, paForNode's fault for a
/// receipt id it holds): the copy counts as delivered.
pub const RECEIPT_DUPLICATE: &str = "PAA_RECEIPT_DUPLICATA";

/// Frees the copy's place in the delivery schedule when the attempt ends, however it ends.
struct InFlight<'a> {
    node: &'a Node,
    key: &'a RecipientKey,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.node.delivery_finished(self.key);
    }
}

impl Node {
    /// One delivery attempt of the copy `key`, as [`Node::poll_due`] handed it out.
    pub async fn deliver(&self, key: RecipientKey) {
        let _in_flight = InFlight {
            node: self,
            key: &key,
        };
        // One snapshot for the whole attempt.
        let registry = self.registry();
        let cfg = &registry.config().receipts;
        let policy = DeliveryPolicy {
            max_attempts: cfg.max_attempts,
            retry_interval_ms: cfg.retry_interval_ms,
        };
        let Some(copy) = self.engine().due_delivery(&key, self.now()).cloned() else {
            return;
        };
        let Some(station) = registry.station(&key.station) else {
            let why = format!("station {} no longer configured", key.station);
            let queued = self.run(|e, now| e.delivery_result(&key, now, Err(why), policy, now));
            let _ = self.finish(queued).await;
            return;
        };
        let timeout = Duration::from_millis(registry.receipt_timeout_ms(station));
        let sent_at = self.now();
        let (result, exchange, op) = match copy.version {
            Version::V1 => {
                let (r, ex) = self
                    .ec
                    .call_raw::<PaSendRtRes>(station, "paSendRT", copy.request, timeout)
                    .await;
                (r.map(drop), ex, Operation::PaSendRt)
            }
            Version::V2 => {
                let (r, ex) = self
                    .ec
                    .call_raw::<PaSendRtV2Response>(station, "paSendRTV2", copy.request, timeout)
                    .await;
                (r.map(drop), ex, Operation::PaSendRtV2)
            }
        };
        let result = match result {
            Err(NodeFault::ErroreEmessoDaPaa(f)) if f.fault_code.as_str() == RECEIPT_DUPLICATE => {
                Ok(())
            }
            other => other,
        };
        crate::failpoints::failpoint!("delivery.acked", result.is_ok());
        // The payment must be in the engine for the last acknowledged copy to mark it NOTIFIED;
        // with a shared store, the receipt's copies too as the store has them (the receipt's
        // lease makes this node their only writer, but its list may be older than its own last
        // commits). Unread, the result is not recorded: the copy stays PENDING and is attempted
        // again when its lease is taken over.
        if let Err(f) = self.hydrate_payment(&key.receipt_id).await {
            tracing::error!(receipt = %key.receipt_id, fault = %f, "cannot load the receipt's payment");
            if self.shared {
                return;
            }
        }
        if self.shared {
            let since = self.engine().epoch();
            match self.store.load_recipients(&key.receipt_id).await {
                Ok(copies) => self
                    .engine()
                    .refresh_receipt(&key.receipt_id, copies, since),
                Err(e) => {
                    tracing::error!(receipt = %key.receipt_id, error = %e, "cannot load the receipt's copies");
                    return;
                }
            }
        }
        let keys = match self.engine().payment(&key.receipt_id) {
            Some(p) => Keys::payment(p),
            None => Keys {
                token: Some(key.receipt_id.clone()),
                ..Keys::default()
            },
        };
        let keys = Keys {
            station: Some(key.station.clone()),
            ..keys
        };
        self.journal_ec(
            op,
            &key.station,
            &keys,
            &exchange,
            result.as_ref().map(drop),
        );
        match &result {
            // One line per copy is too many at INFO: `/metrics` counts them.
            Ok(()) => {
                tracing::debug!(receipt = %key.receipt_id, station = %key.station, "receipt delivered")
            }
            Err(f) => {
                tracing::warn!(receipt = %key.receipt_id, station = %key.station, error = %f, "receipt delivery failed")
            }
        }
        let delivered = result.is_ok();
        let result = result.map_err(|f| f.to_string());
        let mut failed = false;
        let queued = self.run(|e, now| {
            let step = e.delivery_result(&key, sent_at, result, policy, now);
            failed = step
                .writes
                .iter()
                .any(|w| matches!(w, Write::Recipient(r) if r.status == RecipientStatus::Failed));
            step
        });
        self.metrics.delivery(
            key.station.as_str(),
            match (delivered, failed) {
                (true, _) => Attempt::Delivered,
                (false, true) => Attempt::Failed,
                (false, false) => Attempt::Retry,
            },
        );
        // Not committed: the copy stays PENDING in the store, and is attempted again (here after
        // a restart; by whichever node takes its receipt's lease over, with a shared store).
        if let Err(f) = self.finish(queued).await {
            let fault = NodeFault::from(f);
            tracing::error!(receipt = %key.receipt_id, station = %key.station, %fault, "delivery result not committed");
        }
    }
}
