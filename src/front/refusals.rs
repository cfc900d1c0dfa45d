//! What the front door refused, counted, and told about at a bounded rate: a stranger sending
//! thousands of wrong passwords a second gets each one counted, but the log and the journal get
//! at most one line a second per address (and [`GLOBAL_PER_SECOND`] in all), each saying how
//! many refusals from that address went untold since the previous one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::limits::AddressKey;

/// Why the front door refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// PSP, broker, channel or password unknown or wrong, or the broker/channel/PSP relation.
    Authentication,
    /// A client certificate the claimed broker does not allow (or none, where it needs one).
    Certificate,
    /// No subscription key, an unknown one, or another broker's.
    SubscriptionKey,
    /// Over the per-address request rate.
    AddressRate,
    /// Over the per-broker request rate.
    BrokerRate,
    /// The body did not arrive within `limits.body_timeout_ms`.
    BodyTimeout,
    /// A request the node could not read or does not serve, whose credentials do not
    /// authenticate: answered with its fault, and only a summary journaled.
    Unauthenticated,
}

const REASONS: [Reason; 7] = [
    Reason::Authentication,
    Reason::Certificate,
    Reason::SubscriptionKey,
    Reason::AddressRate,
    Reason::BrokerRate,
    Reason::BodyTimeout,
    Reason::Unauthenticated,
];

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Authentication => "authentication",
            Reason::Certificate => "certificate",
            Reason::SubscriptionKey => "subscription_key",
            Reason::AddressRate => "address_rate",
            Reason::BrokerRate => "broker_rate",
            Reason::BodyTimeout => "body_timeout",
            Reason::Unauthenticated => "unauthenticated",
        }
    }
}

/// Told refusals per second, all addresses together.
const GLOBAL_PER_SECOND: u32 = 20;
/// Addresses whose untold refusals are counted one by one; beyond, they are counted together.
const TRACKED_ADDRESSES: usize = 10_000;

/// The refusal counters and the pace of telling about them.
#[derive(Debug)]
pub struct Refusals {
    counts: [AtomicU64; REASONS.len()],
    per_address: DefaultKeyedRateLimiter<AddressKey>,
    global: DefaultDirectRateLimiter,
    /// Refusals not told, per address, since the last told one.
    untold: Mutex<HashMap<AddressKey, u64>>,
    /// Untold refusals of addresses beyond [`TRACKED_ADDRESSES`].
    untold_elsewhere: AtomicU64,
}

impl Default for Refusals {
    fn default() -> Self {
        let one = NonZeroU32::MIN;
        let global = NonZeroU32::new(GLOBAL_PER_SECOND).unwrap_or(one);
        Refusals {
            counts: Default::default(),
            per_address: RateLimiter::keyed(Quota::per_second(one)),
            global: RateLimiter::direct(Quota::per_second(global)),
            untold: Mutex::new(HashMap::new()),
            untold_elsewhere: AtomicU64::new(0),
        }
    }
}

impl Refusals {
    /// Counts a refusal of a request from `ip`. `Some(n)` when it is to be told (logged, and
    /// journaled where the caller journals it), `n` being the refusals from that address not
    /// told since the previous one.
    pub fn record(&self, reason: Reason, ip: Option<IpAddr>) -> Option<u64> {
        self.counts[reason as usize].fetch_add(1, Ordering::Relaxed);
        let key = ip.map(AddressKey::of).unwrap_or_else(AddressKey::unknown);
        let mut untold = self.untold.lock().unwrap_or_else(|p| p.into_inner());
        if self.per_address.check_key(&key).is_ok() && self.global.check().is_ok() {
            return Some(untold.remove(&key).unwrap_or(0));
        }
        if untold.len() < TRACKED_ADDRESSES || untold.contains_key(&key) {
            *untold.entry(key).or_insert(0) += 1;
        } else {
            self.untold_elsewhere.fetch_add(1, Ordering::Relaxed);
        }
        None
    }

    /// Refusals since start, by reason.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        REASONS
            .iter()
            .map(|r| (r.as_str(), self.counts[*r as usize].load(Ordering::Relaxed)))
            .collect()
    }

    /// Refusals never told because their address was beyond [`TRACKED_ADDRESSES`].
    pub fn untold_untracked(&self) -> u64 {
        self.untold_elsewhere.load(Ordering::Relaxed)
    }

    /// Forgets the pace of addresses gone quiet (their memory).
    pub fn forget_idle(&self) {
        self.per_address.retain_recent();
        self.per_address.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_is_counted_few_are_told() {
        let r = Refusals::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let told: Vec<Option<u64>> = (0..1000)
            .map(|_| r.record(Reason::Authentication, Some(ip)))
            .collect();
        assert_eq!(told[0], Some(0));
        assert!(
            told[1..].iter().filter(|t| t.is_some()).count() <= 2,
            "{told:?}"
        );
        // Another address is told at once.
        assert_eq!(
            r.record(Reason::Authentication, Some("10.0.0.2".parse().unwrap())),
            Some(0)
        );
        assert_eq!(r.counts()[0], ("authentication", 1001));
    }
}
