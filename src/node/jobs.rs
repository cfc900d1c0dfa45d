//! The official node's scheduler jobs pagonode runs, as its monitoring API triggers them
//! (`GET /monitoring/v1/jobs/trigger/{job}`, which the official BDD suite calls before
//! checking their effects): `mod3CancelV2` cancels the expired tokens, `paSendRt` retries every
//! receipt copy still to deliver. Each returns when its pass is complete (committed).

use futures_util::future::join_all;

use super::Node;
use crate::engine::RecipientKey;

/// Gives up waiting for a `paSendRt` pass after this long (each attempt is bounded by its
/// station's receipt timeout; many copies to one slow station queue behind its concurrency).
const RETRY_PASS_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// A `paSendRt` pass that did not end within [`RETRY_PASS_LIMIT`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pending} of {copies} receipt copies still attempting after {limit:?}")]
pub struct PassIncomplete {
    pub copies: usize,
    pub pending: usize,
    pub limit: std::time::Duration,
}

impl Node {
    /// `mod3CancelV2`: cancels every payment whose deadline has passed (CANCELLED, the notice
    /// INSERTED, the activation's idempotency entry deleted; official BDD tests REV_ANN_01/02,
    /// IDMP_ACT_10). The driver runs it every `timings.cancellation_job_interval_ms` in
    /// official expiry mode; in eager mode tokens are cancelled at their deadline and a pass
    /// finds only those whose cancellation is not done yet. Runs do not overlap: a run asked for
    /// while one is in progress starts after it. Returns how many payments it cancelled.
    pub async fn cancellation_job(&self) -> usize {
        let _run = self.cancellation.lock().await;
        let expired = self.schedule().take_expired(self.now());
        let cancelled = join_all(expired.iter().map(|t| self.expire(t)))
            .await
            .into_iter()
            .filter(|c| *c)
            .count();
        if cancelled > 0 {
            tracing::info!(
                expired = expired.len(),
                cancelled,
                "mod3CancelV2: expired tokens cancelled"
            );
        }
        cancelled
    }

    /// `paSendRt`: every receipt copy still to deliver is attempted once now (a copy whose
    /// attempt is in flight counts that one); returns when each has had its attempt, with how
    /// many copies were attempted.
    pub async fn retry_receipts_now(&self) -> Result<usize, PassIncomplete> {
        let mut copies: Vec<(RecipientKey, u32)> = Vec::new();
        let queued = self.run(|e, now| {
            let (step, due) = e.retry_pending(now);
            copies = due;
            step
        });
        if let Err(f) = self.finish(queued).await {
            let fault = crate::fault::NodeFault::from(f);
            tracing::error!(%fault, "paSendRt: the retry was not committed");
        }
        if !self
            .attempts_end_when(RETRY_PASS_LIMIT, || self.pending_copies(&copies) == 0)
            .await
        {
            return Err(PassIncomplete {
                copies: copies.len(),
                pending: self.pending_copies(&copies),
                limit: RETRY_PASS_LIMIT,
            });
        }
        tracing::info!(
            copies = copies.len(),
            "paSendRt: pending receipt copies attempted"
        );
        Ok(copies.len())
    }

    /// Waits, at most `within`, until no receipt delivery attempt is in flight; false if some
    /// still is. A harness that stops the node once a station has answered waits for the
    /// answer to be recorded (a stop drops attempts in flight, leaving their copies PENDING).
    pub async fn deliveries_settled(&self, within: std::time::Duration) -> bool {
        self.attempts_end_when(within, || self.schedule().deliveries().1 == 0)
            .await
    }

    /// Waits, at most `within`, until `done` holds, looking again each time an attempt ends.
    async fn attempts_end_when(
        &self,
        within: std::time::Duration,
        done: impl Fn() -> bool,
    ) -> bool {
        let waiting = async {
            loop {
                let ended = self.attempt_ended.notified();
                tokio::pin!(ended);
                ended.as_mut().enable();
                if done() {
                    return;
                }
                ended.await;
            }
        };
        tokio::time::timeout(within, waiting).await.is_ok()
    }

    /// How many of `copies` (each with the attempts it had) have not made another attempt, or
    /// have one in flight.
    fn pending_copies(&self, copies: &[(RecipientKey, u32)]) -> usize {
        let unattempted: Vec<bool> = {
            let engine = self.engine();
            copies
                .iter()
                .map(|(k, n)| !engine.attempted_since(k, *n))
                .collect()
        };
        // An attempt the engine has counted is done once it is no longer in flight: its
        // result is committed by then.
        let schedule = self.schedule();
        copies
            .iter()
            .zip(unattempted)
            .filter(|((k, _), unattempted)| *unattempted || schedule.attempting(k))
            .count()
    }
}
