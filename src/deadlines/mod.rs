//! Payment deadlines.
//!
//! Every activated payment has an absolute deadline: the 2-second outcome deadline of a
//! spontaneous payment, otherwise the lifetime of its payment token (up to 30 minutes).
//! Pending deadlines live in memory in a [`wheel::TimerWheel`], rebuilt from the database at
//! start-up (overdue ones fire at once); when a deadline fires the payment is cancelled.

pub mod wheel;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::codec::types::PaymentToken;
use crate::engine::Millis;
use crate::node::Node;
use wheel::{TimerId, TimerWheel};

enum Command {
    Arm(u128, Millis),
    Disarm(u128),
}

/// Arms and disarms deadlines (cheap to clone); the wheel itself lives in [`run`]'s task.
#[derive(Clone)]
pub struct Deadlines {
    tx: mpsc::UnboundedSender<Command>,
}

/// The receiving end, consumed by [`run`].
pub struct DeadlineQueue(mpsc::UnboundedReceiver<Command>);

/// Node-issued tokens are 32 hex digits: the wheel keys them as 16 bytes.
fn key_of(token: &str) -> Option<u128> {
    (token.len() == 32)
        .then(|| u128::from_str_radix(token, 16).ok())
        .flatten()
}

impl Deadlines {
    pub fn new() -> (Deadlines, DeadlineQueue) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Deadlines { tx }, DeadlineQueue(rx))
    }

    /// Fires `token` at `at` (re-arming replaces an earlier deadline).
    pub fn arm(&self, token: &PaymentToken, at: Millis) {
        match key_of(token.as_str()) {
            Some(k) => {
                let _ = self.tx.send(Command::Arm(k, at));
            }
            None => {
                tracing::error!(%token, "token not issued by this node: no deadline timer (the engine still checks it on every transition)")
            }
        }
    }

    pub fn disarm(&self, token: &PaymentToken) {
        if let Some(k) = key_of(token.as_str()) {
            let _ = self.tx.send(Command::Disarm(k));
        }
    }
}

/// Runs the wheel: sleeps until the next deadline, fires what is due into the node (each expiry
/// in its own task, so many at once commit together), applies arm/disarm commands meanwhile.
pub async fn run(DeadlineQueue(mut rx): DeadlineQueue, node: Arc<Node>) {
    let mut wheel: TimerWheel<u128> = TimerWheel::new(crate::clock::now_ms());
    let mut ids: HashMap<u128, TimerId> = HashMap::new();
    let mut fired = Vec::new();
    loop {
        let now = crate::clock::now_ms();
        fired.clear();
        wheel.poll(now, &mut fired);
        for &(key, _) in &fired {
            ids.remove(&key);
            let node = node.clone();
            tokio::spawn(async move { node.on_deadline(&format!("{key:032x}")).await });
        }
        let wait = wheel
            .next_deadline()
            .map(|at| at.saturating_sub(now))
            .unwrap_or(1_000)
            .min(1_000);
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Command::Arm(key, at)) => {
                    if let Some(old) = ids.remove(&key) {
                        wheel.cancel(old);
                    }
                    ids.insert(key, wheel.insert(key, at));
                }
                Some(Command::Disarm(key)) => {
                    if let Some(id) = ids.remove(&key) {
                        wheel.cancel(id);
                    }
                }
                None => return,
            },
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
        }
    }
}
