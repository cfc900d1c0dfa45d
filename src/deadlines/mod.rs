//! Payment deadlines.
//!
//! Every activated payment has an absolute deadline: the lifetime of its payment token (up to
//! 30 minutes), or in eager expiry the 2-second outcome deadline of a spontaneous payment.
//! [`Deadlines`] indexes the pending ones in a [`wheel::TimerWheel`]: like the wheel it never
//! reads a clock; the node arms and disarms deadlines as its steps say, asks when it must next
//! wake up, and polls the tokens whose deadline has passed (the engine then cancels them: at
//! once in eager expiry, when the cancellation job runs in official expiry). The index lives in
//! memory and is rebuilt from the store at start-up (overdue deadlines are due at once).

pub mod wheel;

use std::collections::HashMap;

use crate::codec::types::PaymentToken;
use crate::engine::Millis;
use wheel::{TimerId, TimerWheel};

/// The pending deadlines, by token.
pub struct Deadlines {
    wheel: TimerWheel<u128>,
    ids: HashMap<u128, TimerId>,
    fired: Vec<(u128, Millis)>,
}

/// Node-issued tokens are 32 hex digits: the wheel keys them as 16 bytes.
fn key_of(token: &PaymentToken) -> Option<u128> {
    let token = token.as_str();
    (token.len() == 32)
        .then(|| u128::from_str_radix(token, 16).ok())
        .flatten()
}

impl Deadlines {
    /// No deadlines; the wheel's clock starts at `now`.
    pub fn new(now: Millis) -> Deadlines {
        Deadlines {
            wheel: TimerWheel::new(now),
            ids: HashMap::new(),
            fired: Vec::new(),
        }
    }

    /// Fires `token` at `at` (re-arming replaces an earlier deadline).
    pub fn arm(&mut self, token: &PaymentToken, at: Millis) {
        let Some(key) = key_of(token) else {
            tracing::error!(%token, "token not issued by this node: no deadline timer (the engine still checks it on every transition)");
            return;
        };
        if let Some(old) = self.ids.remove(&key) {
            self.wheel.cancel(old);
        }
        self.ids.insert(key, self.wheel.insert(key, at));
    }

    pub fn disarm(&mut self, token: &PaymentToken) {
        if let Some(id) = key_of(token).and_then(|k| self.ids.remove(&k)) {
            self.wheel.cancel(id);
        }
    }

    /// When to poll next: `None` if nothing is pending (see [`TimerWheel::next_deadline`]).
    pub fn next_wakeup(&self) -> Option<Millis> {
        self.wheel.next_deadline()
    }

    /// Appends to `out` every token whose deadline is at or before `now`, and forgets them.
    pub fn poll(&mut self, now: Millis, out: &mut Vec<PaymentToken>) {
        self.fired.clear();
        self.wheel.poll(now, &mut self.fired);
        for &(key, _) in &self.fired {
            self.ids.remove(&key);
            out.push(PaymentToken::new(format!("{key:032x}")).expect("32 hex digits"));
        }
    }

    /// When each token of the last [`Deadlines::poll`] was due.
    pub fn last_fired_due(&self) -> impl Iterator<Item = Millis> + '_ {
        self.fired.iter().map(|&(_, at)| at)
    }

    /// Number of pending deadlines.
    pub fn len(&self) -> usize {
        self.wheel.len()
    }

    pub fn is_empty(&self) -> bool {
        self.wheel.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(n: u128) -> PaymentToken {
        PaymentToken::new(format!("{n:032x}")).unwrap()
    }

    #[test]
    fn fires_armed_tokens_once_and_never_disarmed_ones() {
        let mut d = Deadlines::new(1_000);
        d.arm(&token(1), 1_500);
        d.arm(&token(2), 1_200);
        d.arm(&token(2), 1_700);
        d.arm(&token(3), 1_100);
        d.disarm(&token(3));
        d.arm(&PaymentToken::new("not-a-node-token").unwrap(), 1_000);
        assert_eq!(d.len(), 2);
        let mut out = Vec::new();
        d.poll(1_499, &mut out);
        assert!(out.is_empty());
        d.poll(1_500, &mut out);
        assert_eq!(out, [token(1)]);
        assert!(d.next_wakeup().is_some_and(|t| t <= 1_700));
        out.clear();
        d.poll(5_000, &mut out);
        assert_eq!(out, [token(2)]);
        assert!(d.is_empty());
        assert_eq!(d.next_wakeup(), None);
    }
}
