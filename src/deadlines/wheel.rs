//! A hierarchical hashed timer wheel with 1 ms ticks: the in-memory index of pending deadlines.
//!
//! The wheel is a pure data structure: it never reads a clock; the caller passes the time, in
//! milliseconds (e.g. since the Unix epoch), to [`TimerWheel::new`] and [`TimerWheel::poll`].
//! Firing is exact to the millisecond: `poll(now)` returns every entry whose deadline is at or
//! before `now`, and none whose deadline is later.
//!
//! # Layout
//!
//! Entries live in a slab (`Vec` plus an intrusive free list) and are addressed by `u32`
//! indices; each list of entries is doubly linked through those indices, so insert and cancel
//! are O(1) and need no allocation once the slab has grown. An entry is a key, its deadline,
//! two links, a generation (so that a stale [`TimerId`] is harmless) and the number of the list
//! it is on: 48 bytes for a `u128` key. The fixed part (list heads and occupancy bitmaps) is
//! about 2 KiB, so at a million pending deadlines the wheel costs about 48 bytes per entry, plus
//! at most as much again of `Vec` growth slack.
//!
//! # Levels
//!
//! There are 4 levels; a slot of level `l` spans 64^`l` ms (1 ms, 64 ms, 4.1 s,
//! 262 s). Each level is a ring of 128 slots (twice the 64 needed to cover the level above
//! its own slots) and an entry sits at the lowest level where its slot is fewer than 128 slots
//! ahead of the current time. Deadlines up to about 9.2 hours ahead (127 × 2^18 ms, at least)
//! therefore fit; later ones go to an overflow list that is redistributed once, when the
//! earliest of them comes within range (payment deadlines are at most 30 minutes away, so in
//! practice the overflow list stays empty).
//!
//! When the clock reaches the start of a slot of level `l ≥ 1`, its entries move to lower
//! levels ("cascade"). A synchronous cascade of a top-level slot could move a few hundred
//! thousand entries at once, stalling the caller for tens of milliseconds; so each `poll` also
//! moves, in the background, up to 128 entries per level out of the slot that comes *next* on
//! each level (the second half of each ring exists to receive them). Normally that slot is
//! empty by the time the clock reaches it, and the work of cascading is spread evenly.
//!
//! Polling skips empty slots through one 128-bit occupancy bitmap per level, so a jump of hours
//! costs time proportional to the entries and occupied slots passed, not to the milliseconds.

use std::mem;

/// Number of levels below the overflow list.
const LEVELS: usize = 4;
/// Each level's slots are 2^`LEVEL_BITS` times longer than those of the level below.
const LEVEL_BITS: u32 = 6;
/// Slots per level: twice 2^`LEVEL_BITS`, so a level can hold the next slot of the level above
/// while that slot is being moved down in the background.
const SLOTS: usize = 2 << LEVEL_BITS;
const SLOT_MASK: u64 = SLOTS as u64 - 1;
/// Shift of the top level (its slots are 2^18 ms long).
const TOP_SHIFT: u32 = (LEVELS as u32 - 1) * LEVEL_BITS;
/// List of entries whose deadline had already passed when they were inserted.
const DUE: u16 = (LEVELS * SLOTS) as u16;
/// List of entries too far in the future for the top level.
const OVERFLOW: u16 = DUE + 1;
/// Number of lists: every slot of every level, then `DUE` and `OVERFLOW`.
const LISTS: usize = LEVELS * SLOTS + 2;
/// The `list` of an entry that is on the free list.
const FREE: u16 = u16::MAX;
/// The null link.
const NIL: u32 = u32::MAX;
/// Entries moved per level and per poll out of each level's next slot, ahead of its time.
const BACKGROUND_BUDGET: usize = 128;

/// Handle of one inserted deadline, for [`TimerWheel::cancel`].
///
/// It names a slab slot and the generation of that slot's occupant, so an id whose deadline
/// has fired or been cancelled is recognised as stale even if the slot has been reused (until
/// the same slot has been reused 2^32 times).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

/// One slab slot: a pending deadline, or (with `list == FREE`) a link of the free list.
struct Entry<K> {
    key: K,
    deadline: u64,
    prev: u32,
    next: u32,
    generation: u32,
    /// The list the entry is on (a slot, `DUE` or `OVERFLOW`), or `FREE`.
    list: u16,
}

/// A hierarchical hashed timer wheel mapping keys (payment tokens) to deadlines in ms.
///
/// See the [module documentation](self) for the design.
pub struct TimerWheel<K> {
    entries: Vec<Entry<K>>,
    /// Head of the free list of slab slots, linked through `next`.
    free: u32,
    /// Head of every list, indexed by list number.
    heads: Box<[u32; LISTS]>,
    /// Per level, bit `i` is set when slot `i` is not empty.
    occupied: [u128; LEVELS],
    /// The wheel's clock: every pending entry with a deadline at or before it is on `DUE`.
    now: u64,
    /// While `DUE` is not empty, a lower bound of its deadlines (cancellations do not raise it).
    due_min: u64,
    /// While `OVERFLOW` is not empty, a lower bound of its deadlines.
    overflow_min: u64,
    len: usize,
}

fn shift(level: usize) -> u32 {
    level as u32 * LEVEL_BITS
}

fn slot_list(level: usize, slot: u64) -> u16 {
    (level * SLOTS) as u16 + (slot & SLOT_MASK) as u16
}

impl<K: Copy + Eq> TimerWheel<K> {
    /// An empty wheel whose clock reads `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self {
            entries: Vec::new(),
            free: NIL,
            heads: Box::new([NIL; LISTS]),
            occupied: [0; LEVELS],
            now: now_ms,
            due_min: u64::MAX,
            overflow_min: u64::MAX,
            len: 0,
        }
    }

    /// Adds `key` with its deadline; a deadline at or before the wheel's clock (the time of
    /// the last poll, or of `new`) fires on the next [`poll`](Self::poll).
    ///
    /// # Panics
    ///
    /// If 2^32 − 1 entries are already pending.
    pub fn insert(&mut self, key: K, deadline_ms: u64) -> TimerId {
        let index = if self.free == NIL {
            let index = self.entries.len();
            assert!(index < NIL as usize, "timer wheel full");
            self.entries.push(Entry {
                key,
                deadline: deadline_ms,
                prev: NIL,
                next: NIL,
                generation: 0,
                list: FREE,
            });
            index as u32
        } else {
            let index = self.free;
            let entry = &mut self.entries[index as usize];
            self.free = entry.next;
            entry.key = key;
            entry.deadline = deadline_ms;
            index
        };
        self.len += 1;
        self.place(index);
        TimerId {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// Removes a pending deadline in O(1) and returns its key; `None` if `id` has already
    /// fired or been cancelled.
    pub fn cancel(&mut self, id: TimerId) -> Option<K> {
        let entry = self.entries.get(id.index as usize)?;
        if entry.generation != id.generation || entry.list == FREE {
            return None;
        }
        self.unlink(id.index);
        Some(self.release(id.index).0)
    }

    /// Advances the clock to `now_ms` and appends to `out`, as `(key, deadline)`, every pending
    /// entry whose deadline is at or before it.
    ///
    /// The order of `out` is unspecified (it follows the deadlines within a poll that advances
    /// the clock by a few milliseconds, not across a large jump). The clock never goes back: an
    /// earlier `now_ms` than the last one is treated as the last one.
    pub fn poll(&mut self, now_ms: u64, out: &mut Vec<(K, u64)>) {
        let due = self.take(DUE);
        self.fire(due, out);
        while let Some((time, level)) = self.next_event().filter(|&(time, _)| time <= now_ms) {
            if level == 0 {
                // A level-0 slot holds exactly the entries whose deadline is `time`.
                self.now = time;
                let list = self.take(slot_list(0, time));
                self.fire(list, out);
            } else {
                // Everything due before `time` has fired; the entries of this slot (or of the
                // overflow list) are all due at or after it and go to lower levels.
                self.now = time - 1;
                let list = if level == LEVELS {
                    self.take(OVERFLOW)
                } else {
                    self.take(slot_list(level, time >> shift(level)))
                };
                let mut index = list;
                while index != NIL {
                    let Entry { next, deadline, .. } = self.entries[index as usize];
                    if deadline <= now_ms {
                        // Due anyway (a jump of the clock): firing it at once saves moving it
                        // down level by level.
                        out.push(self.release(index));
                    } else {
                        self.place(index);
                    }
                    index = next;
                }
            }
        }
        self.now = self.now.max(now_ms);
        self.move_next_slots();
    }

    /// A time before which polling is pointless: `None` if nothing is pending, otherwise a
    /// lower bound of every pending deadline.
    ///
    /// It is the earliest deadline, or an earlier time when the wheel has cascading work to do:
    /// when a slot becomes the next one of its level, or one millisecond after the last poll
    /// while a level's next slot still has entries to move down (a driver that sleeps until
    /// then keeps every cascade small). It may also be the deadline of an entry since
    /// cancelled. Costs a few bit operations per level.
    pub fn next_deadline(&self) -> Option<u64> {
        let mut best = (self.heads[DUE as usize] != NIL).then_some(self.due_min);
        let mut consider = |time: u64| best = Some(best.map_or(time, |b| b.min(time)));
        if self.heads[OVERFLOW as usize] != NIL {
            consider(self.overflow_event());
        }
        for level in 0..LEVELS {
            if let Some(slot) = self.first_occupied(level) {
                consider(if level == 0 {
                    slot
                } else if slot == (self.now >> shift(level)) + 1 {
                    self.now + 1
                } else {
                    (slot - 1) << shift(level)
                });
            }
        }
        best
    }

    /// Number of pending deadlines.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no deadline is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes allocated by the wheel: the slab's capacity (it never shrinks) plus the
    /// table of list heads.
    pub fn memory_bytes(&self) -> usize {
        self.entries.capacity() * mem::size_of::<Entry<K>>() + mem::size_of::<[u32; LISTS]>()
    }

    /// Links a detached entry into the list its deadline calls for, given the clock.
    fn place(&mut self, index: u32) {
        let deadline = self.entries[index as usize].deadline;
        let list = if deadline <= self.now {
            DUE
        } else if let Some(level) =
            (0..LEVELS).find(|&l| (deadline >> shift(l)) - (self.now >> shift(l)) < SLOTS as u64)
        {
            let list = slot_list(level, deadline >> shift(level));
            self.occupied[level] |= 1 << (list as usize % SLOTS);
            list
        } else {
            OVERFLOW
        };
        let head = mem::replace(&mut self.heads[list as usize], index);
        if head != NIL {
            self.entries[head as usize].prev = index;
        }
        let bound = match list {
            DUE => Some(&mut self.due_min),
            OVERFLOW => Some(&mut self.overflow_min),
            _ => None,
        };
        if let Some(bound) = bound {
            // The bound restarts with the list: a stale one could lie behind the clock.
            *bound = if head == NIL {
                deadline
            } else {
                deadline.min(*bound)
            };
        }
        let entry = &mut self.entries[index as usize];
        entry.prev = NIL;
        entry.next = head;
        entry.list = list;
    }

    /// Detaches an entry from its list.
    fn unlink(&mut self, index: u32) {
        let Entry {
            prev, next, list, ..
        } = self.entries[index as usize];
        if prev == NIL {
            self.heads[list as usize] = next;
            if next == NIL && (list as usize) < LEVELS * SLOTS {
                self.occupied[list as usize / SLOTS] &= !(1 << (list as usize % SLOTS));
            }
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
    }

    /// Empties a list and returns its former head; the entries keep their `next` links.
    fn take(&mut self, list: u16) -> u32 {
        if (list as usize) < LEVELS * SLOTS {
            self.occupied[list as usize / SLOTS] &= !(1 << (list as usize % SLOTS));
        }
        mem::replace(&mut self.heads[list as usize], NIL)
    }

    /// Frees every entry of a detached chain, appending it to `out`.
    fn fire(&mut self, mut index: u32, out: &mut Vec<(K, u64)>) {
        while index != NIL {
            let next = self.entries[index as usize].next;
            out.push(self.release(index));
            index = next;
        }
    }

    /// Puts a detached entry on the free list; returns its key and deadline.
    fn release(&mut self, index: u32) -> (K, u64) {
        let entry = &mut self.entries[index as usize];
        entry.generation = entry.generation.wrapping_add(1);
        entry.list = FREE;
        entry.next = self.free;
        self.free = index;
        self.len -= 1;
        (entry.key, entry.deadline)
    }

    /// The first non-empty slot of `level` after the clock's, as an absolute slot number.
    fn first_occupied(&self, level: usize) -> Option<u64> {
        let base = (self.now >> shift(level)) + 1;
        let rotated = self.occupied[level].rotate_right((base & SLOT_MASK) as u32);
        (rotated != 0).then(|| base + u64::from(rotated.trailing_zeros()))
    }

    /// When the overflow list must be redistributed: the earliest time at which its earliest
    /// entry fits in the top level (when the clock is just before it, that entry's top-level
    /// slot is 127 slots ahead).
    fn overflow_event(&self) -> u64 {
        ((self.overflow_min >> TOP_SHIFT) - (SLOTS as u64 - 2)) << TOP_SHIFT
    }

    /// The earliest `(time, level)` at which a list must be processed: level 0 fires a slot,
    /// a higher level cascades one, `LEVELS` stands for the overflow list. On a tie the
    /// highest level wins, so that cascades land before the slot they feed fires.
    fn next_event(&self) -> Option<(u64, usize)> {
        let mut best =
            (self.heads[OVERFLOW as usize] != NIL).then(|| (self.overflow_event(), LEVELS));
        for level in (0..LEVELS).rev() {
            if let Some(slot) = self.first_occupied(level) {
                let time = slot << shift(level);
                if best.is_none_or(|(b, _)| time < b) {
                    best = Some((time, level));
                }
            }
        }
        best
    }

    /// Moves a bounded number of entries out of each level's next slot to lower levels, so
    /// that the slot is (normally) empty when the clock reaches it.
    fn move_next_slots(&mut self) {
        for level in (1..LEVELS).rev() {
            let list = slot_list(level, (self.now >> shift(level)) + 1);
            for _ in 0..BACKGROUND_BUDGET {
                let index = self.heads[list as usize];
                if index == NIL {
                    break;
                }
                self.unlink(index);
                self.place(index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use proptest::prelude::*;

    use super::*;

    fn polled(wheel: &mut TimerWheel<u128>, now: u64) -> Vec<(u128, u64)> {
        let mut out = Vec::new();
        wheel.poll(now, &mut out);
        out
    }

    #[test]
    fn entry_is_compact() {
        assert_eq!(mem::size_of::<Entry<u128>>(), 48);
    }

    #[test]
    fn fires_exactly_at_the_deadline() {
        let mut wheel = TimerWheel::new(1_000);
        for (key, deadline) in [(1, 1_001), (2, 1_064), (3, 5_000), (4, 300_000), (5, 1_001)] {
            wheel.insert(key, deadline);
        }
        assert_eq!(wheel.next_deadline(), Some(1_001));
        assert!(polled(&mut wheel, 1_000).is_empty());
        let mut fired = polled(&mut wheel, 1_001);
        fired.sort();
        assert_eq!(fired, [(1, 1_001), (5, 1_001)]);
        assert!(polled(&mut wheel, 1_063).is_empty());
        assert_eq!(polled(&mut wheel, 1_064), [(2, 1_064)]);
        assert!(polled(&mut wheel, 4_999).is_empty());
        assert_eq!(polled(&mut wheel, 5_000), [(3, 5_000)]);
        assert!(polled(&mut wheel, 299_999).is_empty());
        assert_eq!(polled(&mut wheel, 300_000), [(4, 300_000)]);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn overdue_entries_fire_on_next_poll() {
        let mut wheel = TimerWheel::new(10_000);
        wheel.insert(1, 3);
        wheel.insert(2, 10_000);
        assert_eq!(wheel.next_deadline(), Some(3));
        let mut fired = polled(&mut wheel, 10_000);
        fired.sort();
        assert_eq!(fired, [(1, 3), (2, 10_000)]);
    }

    #[test]
    fn cancel_is_exact_and_stale_ids_are_harmless() {
        let mut wheel = TimerWheel::new(0);
        let a = wheel.insert(1, 50);
        let b = wheel.insert(2, 50);
        assert_eq!(wheel.cancel(a), Some(1));
        assert_eq!(wheel.cancel(a), None);
        // The freed slot is reused: the old id must not cancel the new entry.
        let c = wheel.insert(3, 60);
        assert_eq!(c.index, a.index);
        assert_eq!(wheel.cancel(a), None);
        assert_eq!(polled(&mut wheel, 100).len(), 2);
        assert_eq!(wheel.cancel(b), None);
        assert_eq!(wheel.cancel(c), None);
        assert!(wheel.is_empty());
    }

    #[test]
    fn huge_jumps_and_overflow() {
        let hour = 3_600_000;
        let mut wheel = TimerWheel::new(0);
        wheel.insert(1, 100 * hour);
        wheel.insert(2, 20 * hour);
        wheel.insert(3, 2 * hour);
        assert_ne!(wheel.heads[OVERFLOW as usize], NIL);
        assert!(polled(&mut wheel, 2 * hour - 1).is_empty());
        assert_eq!(polled(&mut wheel, 19 * hour), [(3, 2 * hour)]);
        assert!(wheel.next_deadline().unwrap() <= 20 * hour);
        assert!(polled(&mut wheel, 20 * hour - 1).is_empty());
        assert_eq!(polled(&mut wheel, 20 * hour), [(2, 20 * hour)]);
        assert_eq!(polled(&mut wheel, 1_000 * hour), [(1, 100 * hour)]);
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn next_slots_are_emptied_in_the_background() {
        // 5,000 deadlines in one level-2 slot (4,096 ms long) 100 s ahead.
        let start = 1 << 30;
        let slot_start = start + (25 << 12);
        let mut wheel = TimerWheel::new(start);
        for key in 0..5_000u128 {
            wheel.insert(key, slot_start + (key as u64 % 4_096));
        }
        let list = slot_list(2, slot_start >> shift(2));
        assert_ne!(wheel.heads[list as usize], NIL);
        let mut out = Vec::new();
        let mut now = start;
        while now < slot_start - 1 {
            now = wheel
                .next_deadline()
                .unwrap()
                .clamp(now + 1, slot_start - 1);
            wheel.poll(now, &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(wheel.heads[list as usize], NIL);
        wheel.poll(slot_start + 4_095, &mut out);
        assert_eq!(out.len(), 5_000);
    }

    #[test]
    fn memory_per_entry_at_a_million() {
        let mut wheel = TimerWheel::new(0);
        for key in 0..1_000_000u128 {
            wheel.insert(key, (key as u64 * 7_919) % 1_800_000 + 1);
        }
        let per_entry = wheel.memory_bytes() / wheel.len();
        assert!(per_entry <= 60, "{per_entry} bytes per entry");
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Insert with a deadline relative to the clock (may be in the past).
        Insert(i64),
        /// Cancel the n-th id ever returned (modulo their number), pending or not.
        Cancel(usize),
        /// Poll this many ms after the clock.
        Advance(u64),
        /// Poll at `next_deadline() - 1`: nothing may fire.
        JustBeforeNext,
        /// Poll at `next_deadline()`.
        ToNext,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (-100i64..300).prop_map(Op::Insert),
            3 => (0i64..400_000).prop_map(Op::Insert),
            1 => (0i64..1 << 37).prop_map(Op::Insert),
            3 => any::<usize>().prop_map(Op::Cancel),
            3 => (0u64..70).prop_map(Op::Advance),
            2 => (0u64..300_000).prop_map(Op::Advance),
            1 => (0u64..1 << 38).prop_map(Op::Advance),
            1 => Just(Op::JustBeforeNext),
            1 => Just(Op::ToNext),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn behaves_like_a_sorted_map(start in 0u64..1 << 40, ops in prop::collection::vec(op(), 1..300)) {
            let mut wheel = TimerWheel::new(start);
            let mut now = start;
            // Pending keys and their deadlines; keys are insertion numbers.
            let mut model = BTreeMap::<u128, u64>::new();
            let mut ids = Vec::<TimerId>::new();
            let mut fired = HashSet::<u128>::new();
            let mut out = Vec::new();
            for op in ops {
                let poll_at = match op {
                    Op::Insert(offset) => {
                        let key = ids.len() as u128;
                        let deadline = now.saturating_add_signed(offset);
                        ids.push(wheel.insert(key, deadline));
                        model.insert(key, deadline);
                        None
                    }
                    Op::Cancel(n) => {
                        if !ids.is_empty() {
                            let key = n % ids.len();
                            let expected = model.remove(&(key as u128)).map(|_| key as u128);
                            prop_assert_eq!(wheel.cancel(ids[key]), expected);
                        }
                        None
                    }
                    Op::Advance(by) => Some(now + by),
                    Op::JustBeforeNext => wheel.next_deadline().filter(|&t| t > now).map(|t| t - 1),
                    Op::ToNext => wheel.next_deadline().map(|t| t.max(now)),
                };
                if let Some(at) = poll_at {
                    now = at;
                    out.clear();
                    wheel.poll(now, &mut out);
                    let mut expected: Vec<(u128, u64)> =
                        model.iter().filter(|&(_, &d)| d <= now).map(|(&k, &d)| (k, d)).collect();
                    model.retain(|_, &mut d| d > now);
                    let mut got = out.clone();
                    got.sort();
                    expected.sort();
                    prop_assert_eq!(&got, &expected);
                    for &(key, deadline) in &out {
                        prop_assert!(deadline <= now);
                        prop_assert!(fired.insert(key), "key {} fired twice", key);
                    }
                }
                prop_assert_eq!(wheel.len(), model.len());
                match (wheel.next_deadline(), model.values().min()) {
                    (None, None) => {}
                    (Some(next), Some(&earliest)) => prop_assert!(next <= earliest),
                    (next, earliest) => prop_assert!(false, "next {:?} vs {:?}", next, earliest),
                }
            }
        }
    }
}
