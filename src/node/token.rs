//! Payment tokens: 32 lowercase hex digits (fits `stPaymentToken`'s 35 characters), the issuing
//! millisecond (48 bits) then 80 random bits. Time-ordered tokens keep the store's inserts at
//! the end of its indexes (few pages touched per commit); 80 random bits keep them unguessable
//! and unique.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::codec::types::PaymentToken;
use crate::engine::Millis;

/// Where the random bits of tokens come from.
#[derive(Debug)]
pub struct TokenIssuer {
    /// `None`: the operating system's randomness (through the thread's generator). `Some`: a
    /// sequence fixed by a seed, for a simulation that must replay exactly.
    seeded: Option<AtomicU64>,
}

const RANDOM_BITS: u32 = 80;
/// The increment of the splitmix64 sequence.
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64's output function: a bijection that scatters consecutive states.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl TokenIssuer {
    /// Unpredictable tokens: production.
    pub fn random() -> TokenIssuer {
        TokenIssuer { seeded: None }
    }

    /// The same tokens, in the same order, for the same seed (and issuing times).
    pub fn seeded(seed: u64) -> TokenIssuer {
        TokenIssuer {
            seeded: Some(AtomicU64::new(seed)),
        }
    }

    /// Where the engine's revision stamps start (see [`crate::engine::Revision`]): random, or
    /// fixed by the seed.
    pub fn stamp_base(&self) -> u64 {
        match &self.seeded {
            None => rand::random(),
            Some(state) => mix(state.load(Ordering::Relaxed) ^ 0x7265_7669_7369_6f6e),
        }
    }

    /// A fresh token issued at `now`.
    pub fn issue(&self, now: Millis) -> PaymentToken {
        let random: u128 = match &self.seeded {
            None => rand::random::<u128>(),
            Some(state) => {
                let s = state.fetch_add(GOLDEN_GAMMA.wrapping_mul(2), Ordering::Relaxed);
                (u128::from(mix(s.wrapping_add(GOLDEN_GAMMA))) << 64)
                    | u128::from(mix(s.wrapping_add(GOLDEN_GAMMA.wrapping_mul(2))))
            }
        } & ((1u128 << RANDOM_BITS) - 1);
        let n = (u128::from(now) << RANDOM_BITS) | random;
        PaymentToken::new(format!("{n:032x}")).expect("32 hex digits")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_tokens_replay_and_random_ones_differ() {
        let now = 1_700_000_000_000;
        let (a, b) = (TokenIssuer::seeded(7), TokenIssuer::seeded(7));
        let first: Vec<_> = (0..3).map(|_| a.issue(now)).collect();
        let again: Vec<_> = (0..3).map(|_| b.issue(now)).collect();
        assert_eq!(first, again);
        assert_ne!(first[0], first[1]);
        assert_ne!(first[0], TokenIssuer::seeded(8).issue(now));
        let r = TokenIssuer::random();
        assert_ne!(r.issue(now), r.issue(now));
        for t in first {
            assert_eq!(t.len(), 32);
            assert!(t.starts_with(&format!("{now:012x}")));
        }
    }
}
