//! When the node acts on its own: payment deadlines that pass, receipt copies that are due and,
//! in `official` expiry mode, the cancellation job (`mod3CancelV2`).
//!
//! The schedules are pure ([`Deadlines`], [`Deliveries`], the job's next run): the node owns
//! them, fills them from its steps, and hands due work back from [`Node::poll_due`], as the timer
//! wheel does. In `eager` expiry mode a passed deadline is due at once; in `official` mode the
//! deadlines wait in the wheel for the cancellation job, which runs every
//! `timings.cancellation_job_interval_ms` and on demand ([`Node::cancellation_job`]). [`run`] is
//! the production driver: it sleeps until [`Node::next_wakeup`] (or until the node schedules
//! something earlier), polls, and runs what is due. A test or a simulation calls the same two
//! methods on its own clock instead.

use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use tokio::task::JoinSet;

use super::Node;
use crate::codec::types::PaymentToken;
use crate::config::{ExpiryMode, Timings};
use crate::deadlines::Deadlines;
use crate::delivery::Deliveries;
use crate::engine::{Millis, RecipientKey};

/// The node's schedules.
pub(super) struct Schedule {
    deadlines: Deadlines,
    deliveries: Deliveries,
    /// In official expiry mode: the cancellation job's period and next run.
    job: Option<(Millis, Millis)>,
    /// When the driver last said it would wake up: scheduling anything earlier wakes it.
    announced: Millis,
}

impl Schedule {
    pub(super) fn new(now: Millis, per_station: usize, timings: &Timings) -> Schedule {
        let every = timings.cancellation_job_interval_ms;
        Schedule {
            deadlines: Deadlines::new(now),
            deliveries: Deliveries::new(per_station),
            job: (timings.expiry == ExpiryMode::Official).then_some((every, now + every)),
            announced: Millis::MAX,
        }
    }

    /// The tokens whose deadline is at or before `now`, handed to the cancellation job.
    pub(super) fn take_expired(&mut self, now: Millis) -> Vec<PaymentToken> {
        let mut out = Vec::new();
        self.deadlines.poll(now, &mut out);
        out
    }

    pub(super) fn pending_deadlines(&self) -> usize {
        self.deadlines.len()
    }

    /// Receipt copies waiting for an attempt, and attempts in flight.
    pub(super) fn deliveries(&self) -> (usize, usize) {
        self.deliveries.len()
    }

    pub(super) fn attempting(&self, key: &RecipientKey) -> bool {
        self.deliveries.attempting(key)
    }
}

/// Work that came due: tokens whose deadline passed (eager expiry), receipt copies to send,
/// the cancellation job's periodic run (official expiry).
#[derive(Debug, Default)]
pub struct Due {
    pub deadlines: Vec<PaymentToken>,
    pub deliveries: Vec<RecipientKey>,
    /// Run [`Node::cancellation_job`].
    pub cancellation_job: bool,
}

impl Due {
    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty() && self.deliveries.is_empty() && !self.cancellation_job
    }
}

impl Node {
    pub(super) fn schedule(&self) -> MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a committed step's scheduling effects.
    pub(super) fn schedule_effects(
        &self,
        arm: Vec<(PaymentToken, Millis)>,
        disarm: Vec<PaymentToken>,
        deliver: Vec<(RecipientKey, Millis)>,
    ) {
        if arm.is_empty() && disarm.is_empty() && deliver.is_empty() {
            return;
        }
        let mut s = self.schedule();
        let mut earliest = Millis::MAX;
        for t in &disarm {
            s.deadlines.disarm(t);
        }
        // In official mode deadlines wait for the cancellation job: they wake nobody.
        let wakes = s.job.is_none();
        for (t, at) in arm {
            s.deadlines.arm(&t, at);
            if wakes {
                earliest = earliest.min(at);
            }
        }
        for (k, at) in deliver {
            s.deliveries.schedule(k, at);
            earliest = earliest.min(at);
        }
        self.wake_before(s, earliest);
    }

    /// Wakes the driver if it sleeps past `at`.
    fn wake_before(&self, mut s: MutexGuard<'_, Schedule>, at: Millis) {
        if at < s.announced {
            s.announced = at;
            drop(s);
            self.wakeup.notify_one();
        }
    }

    /// When the node next has something to do on its own (`None`: nothing scheduled). The
    /// driver sleeps until then: scheduling something earlier wakes it.
    pub fn next_wakeup(&self) -> Option<Millis> {
        let mut s = self.schedule();
        let expiry = match s.job {
            Some((_, next)) => Some(next),
            None => s.deadlines.next_wakeup(),
        };
        let next = match (expiry, s.deliveries.next_wakeup()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        s.announced = next.unwrap_or(Millis::MAX);
        next
    }

    /// Moves what is due at `now` into `due`: expired tokens for [`Node::expire`] (eager
    /// expiry) or the cancellation job's run (official expiry), receipt copies for
    /// [`Node::deliver`] (each counted in flight until its attempt ends).
    pub fn poll_due(&self, now: Millis, due: &mut Due) {
        let mut s = self.schedule();
        match &mut s.job {
            None => {
                s.deadlines.poll(now, &mut due.deadlines);
                for at in s.deadlines.last_fired_due() {
                    self.metrics.deadline_fired(now.saturating_sub(at));
                }
            }
            Some((every, next)) if *next <= now => {
                due.cancellation_job = true;
                *next = now + *every;
            }
            Some(_) => {}
        }
        s.deliveries.poll(now, &mut due.deliveries);
    }

    /// A delivery attempt of `key` ended: its station may take the next copy, and whoever waits
    /// for attempts to end ([`Node::retry_receipts_now`]) looks again.
    pub(super) fn delivery_finished(&self, key: &RecipientKey) {
        let now = self.now();
        let mut s = self.schedule();
        s.deliveries.finished(key, now);
        let next = s.deliveries.next_wakeup().unwrap_or(Millis::MAX);
        self.wake_before(s, next);
        self.attempt_ended.notify_waiters();
    }
}

/// How long past its deadline a payment still PAYING is taken over by any node sharing the
/// store (its own node fires it at the deadline: one that has not is dead or cut off). Also how
/// long a receipt's lease outlasts the attempt its node planned.
pub const TAKEOVER_MS: Millis = 2_000;
/// How often a node sharing the store looks for work left by others.
const TAKEOVER_EVERY: Duration = Duration::from_millis(1_000);

impl Node {
    /// Takes over what nodes that died (or lost their lease) left: deadlines overdue by more
    /// than [`TAKEOVER_MS`] (armed here; the expiry is a compare-and-set, so it happens once
    /// whichever node fires it) and receipts whose lease expired (leased to this node, their
    /// copies scheduled). Nothing to do with a store of its own.
    pub async fn take_over(&self) -> Result<(), crate::store::StoreError> {
        let Some(shared) = self.store.shared() else {
            return Ok(());
        };
        let now = self.now();
        let overdue = shared
            .overdue_payments(now.saturating_sub(TAKEOVER_MS), 500)
            .await?;
        let arm = overdue
            .iter()
            .map(|(p, _)| (p.token.clone(), p.deadline))
            .collect();
        self.schedule_effects(arm, Vec::new(), Vec::new());
        let since = self.engine().epoch();
        let copies = shared.claim_receipts(now, 200).await?;
        if copies.is_empty() {
            return Ok(());
        }
        tracing::info!(copies = copies.len(), "receipt deliveries taken over");
        let owners = self.owners_of(&copies).await?;
        let step = {
            let mut engine = self.engine();
            for (payment, notice) in owners {
                let token = payment.token.clone();
                engine.refresh_payment(&token, Some((payment, notice)), now, since);
            }
            engine.adopt_receipts(copies, since)
        };
        self.schedule_effects(step.arm, step.disarm, step.deliver);
        Ok(())
    }
}

/// Takes over other nodes' work every [`TAKEOVER_EVERY`] (a little less or more, so that nodes
/// started together do not all scan at once), until aborted.
pub async fn take_over(node: Arc<Node>) {
    loop {
        let jitter = rand::random::<u64>() % 200;
        tokio::time::sleep(
            TAKEOVER_EVERY - Duration::from_millis(100) + Duration::from_millis(jitter),
        )
        .await;
        if let Err(e) = node.take_over().await {
            tracing::warn!(error = %e, "cannot take over other nodes' work");
        }
    }
}

/// The longest sleep: a clock that jumps is noticed within a second.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Runs the node's own work until aborted: each expiry in its own task (so many at once commit
/// together), delivery attempts in tasks owned here (aborting the driver drops them before they
/// record anything: a stop never counts as a failed attempt, and the copies stay PENDING).
pub async fn run(node: Arc<Node>) {
    let mut due = Due::default();
    let mut attempts = JoinSet::new();
    loop {
        let now = node.now();
        node.poll_due(now, &mut due);
        for token in due.deadlines.drain(..) {
            let node = node.clone();
            tokio::spawn(async move { node.expire(&token).await });
        }
        for key in due.deliveries.drain(..) {
            let node = node.clone();
            attempts.spawn(async move { node.deliver(key).await });
        }
        if std::mem::take(&mut due.cancellation_job) {
            let node = node.clone();
            tokio::spawn(async move { node.cancellation_job().await });
        }
        let sleep = node
            .next_wakeup()
            .map_or(MAX_SLEEP, |at| {
                Duration::from_millis(at.saturating_sub(now))
            })
            .min(MAX_SLEEP);
        tokio::select! {
            _ = node.wakeup.notified() => {}
            Some(_) = attempts.join_next(), if !attempts.is_empty() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}
