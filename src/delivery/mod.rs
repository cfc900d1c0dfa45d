//! Receipt delivery: the schedule of outbox rows (receipt copies) to send. Rows come from the
//! engine's steps (new receipts, retries, re-sends) and from the store at start-up. Like the
//! deadlines, [`Deliveries`] is pure: the node polls the copies due at `now` and reports each
//! attempt's end; the schedule keeps at most one attempt per copy and at most
//! `per_station_concurrency` per station in flight (a slow station does not take every attempt).
//! The attempt itself is the node's paSendRT primitive; the engine decides NOTIFIED, retry or
//! FAILED.

pub mod cli;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use crate::codec::types::Text35;
use crate::engine::{Millis, RecipientKey};

/// The copies to send and the attempts in flight.
pub struct Deliveries {
    /// (when, sequence number) of each scheduled copy, earliest first.
    due: BinaryHeap<Reverse<(Millis, u64)>>,
    keys: HashMap<u64, RecipientKey>,
    seq: u64,
    in_flight: HashSet<RecipientKey>,
    /// Copies that came due while an attempt of theirs was in flight: looked at again when it
    /// ends (a re-send is not lost).
    again: HashSet<RecipientKey>,
    /// Attempts in flight per station.
    busy: HashMap<Text35, usize>,
    /// Copies due while their station had no free slot, in the order they came due.
    waiting: HashMap<Text35, VecDeque<RecipientKey>>,
    waiting_keys: HashSet<RecipientKey>,
    per_station: usize,
}

impl Deliveries {
    /// An empty schedule allowing `per_station` attempts in flight per station (at least one).
    pub fn new(per_station: usize) -> Deliveries {
        Deliveries {
            due: BinaryHeap::new(),
            keys: HashMap::new(),
            seq: 0,
            in_flight: HashSet::new(),
            again: HashSet::new(),
            busy: HashMap::new(),
            waiting: HashMap::new(),
            waiting_keys: HashSet::new(),
            per_station: per_station.max(1),
        }
    }

    /// Sends the copy `key` at `at` (or as soon as possible after).
    pub fn schedule(&mut self, key: RecipientKey, at: Millis) {
        self.seq += 1;
        self.due.push(Reverse((at, self.seq)));
        self.keys.insert(self.seq, key);
    }

    /// When to poll next: `None` if nothing is scheduled.
    pub fn next_wakeup(&self) -> Option<Millis> {
        self.due.peek().map(|Reverse((at, _))| *at)
    }

    /// Appends to `out` the copies to attempt now, each now in flight until
    /// [`finished`](Self::finished).
    pub fn poll(&mut self, now: Millis, out: &mut Vec<RecipientKey>) {
        while let Some(&Reverse((at, seq))) = self.due.peek() {
            if at > now {
                break;
            }
            self.due.pop();
            let Some(key) = self.keys.remove(&seq) else {
                continue;
            };
            if self.in_flight.contains(&key) {
                self.again.insert(key);
            } else if self.waiting_keys.contains(&key) {
                // Already waiting for a slot: it will be sent once.
            } else if self.busy.get(&key.station).copied().unwrap_or(0) < self.per_station {
                *self.busy.entry(key.station.clone()).or_default() += 1;
                self.in_flight.insert(key.clone());
                out.push(key);
            } else {
                self.waiting_keys.insert(key.clone());
                self.waiting
                    .entry(key.station.clone())
                    .or_default()
                    .push_back(key);
            }
        }
    }

    /// Whether an attempt of `key` is in flight.
    pub fn attempting(&self, key: &RecipientKey) -> bool {
        self.in_flight.contains(key)
    }

    /// An attempt of `key` ended (whatever its result) at `now`: its station's slot is free.
    pub fn finished(&mut self, key: &RecipientKey, now: Millis) {
        if !self.in_flight.remove(key) {
            return;
        }
        if let Some(n) = self.busy.get_mut(&key.station) {
            *n -= 1;
            if *n == 0 {
                self.busy.remove(&key.station);
            }
        }
        if let Some(again) = self.again.take(key) {
            self.schedule(again, now);
        }
        let next = self
            .waiting
            .get_mut(&key.station)
            .and_then(VecDeque::pop_front);
        if let Some(next) = next {
            self.waiting_keys.remove(&next);
            self.schedule(next, now);
        }
        if self
            .waiting
            .get(&key.station)
            .is_some_and(VecDeque::is_empty)
        {
            self.waiting.remove(&key.station);
        }
    }

    /// Copies scheduled or waiting for a slot, and attempts in flight.
    pub fn len(&self) -> (usize, usize) {
        (
            self.keys.len() + self.waiting_keys.len(),
            self.in_flight.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::types::PaymentToken;

    fn key(receipt: u32, station: &str) -> RecipientKey {
        RecipientKey {
            receipt_id: PaymentToken::new(format!("r{receipt}")).unwrap(),
            station: Text35::new(station).unwrap(),
        }
    }

    fn polled(d: &mut Deliveries, now: Millis) -> Vec<RecipientKey> {
        let mut out = Vec::new();
        d.poll(now, &mut out);
        out
    }

    #[test]
    fn a_station_gets_at_most_its_share_of_attempts_and_waiting_copies_follow() {
        let mut d = Deliveries::new(2);
        for r in 0..4 {
            d.schedule(key(r, "A"), 10);
        }
        d.schedule(key(9, "B"), 10);
        assert_eq!(d.next_wakeup(), Some(10));
        assert!(polled(&mut d, 9).is_empty());
        assert_eq!(polled(&mut d, 10), [key(0, "A"), key(1, "A"), key(9, "B")]);
        assert_eq!(d.len(), (2, 3));
        assert_eq!(d.next_wakeup(), None);
        d.finished(&key(1, "A"), 20);
        assert_eq!(d.next_wakeup(), Some(20));
        assert_eq!(polled(&mut d, 20), [key(2, "A")]);
        d.finished(&key(0, "A"), 30);
        d.finished(&key(2, "A"), 30);
        assert_eq!(polled(&mut d, 30), [key(3, "A")]);
        assert_eq!(d.len(), (0, 2));
    }

    #[test]
    fn a_copy_due_during_its_attempt_is_sent_again_after_it() {
        let mut d = Deliveries::new(4);
        d.schedule(key(1, "A"), 0);
        assert_eq!(polled(&mut d, 0), [key(1, "A")]);
        d.schedule(key(1, "A"), 5);
        d.schedule(key(1, "A"), 6);
        assert!(polled(&mut d, 10).is_empty());
        d.finished(&key(1, "A"), 50);
        assert_eq!(polled(&mut d, 50), [key(1, "A")]);
        d.finished(&key(1, "A"), 60);
        assert_eq!(d.len(), (0, 0));
        assert_eq!(d.next_wakeup(), None);
    }
}
