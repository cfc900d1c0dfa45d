//! What one peer may hold of the node: open connections per address, and requests per second
//! per address and per PSP broker (governor's GCRA limiters, one state per key).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::FrontLimits;

/// The address limits count by: an IPv4 address, or the /64 an IPv6 address is in (a host
/// commonly holds a whole /64, so counting single IPv6 addresses would count nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressKey(IpAddr);

impl AddressKey {
    pub fn of(ip: IpAddr) -> AddressKey {
        AddressKey(match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
            },
            v4 => v4,
        })
    }

    /// A peer whose address is not known (a request handed to the node in process).
    pub fn unknown() -> AddressKey {
        AddressKey(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

impl std::fmt::Display for AddressKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
            v4 => write!(f, "{v4}"),
        }
    }
}

/// Open connections per address, against a cap.
#[derive(Debug)]
pub struct Connections {
    per_address: usize,
    open: Mutex<HashMap<AddressKey, usize>>,
    /// Connections closed at once for being over the cap.
    refused: AtomicU64,
}

/// One open connection, counted until it is dropped (with the connection).
#[derive(Debug)]
pub struct ConnectionGuard {
    connections: Arc<Connections>,
    key: AddressKey,
}

impl Connections {
    pub fn new(per_address: usize) -> Arc<Connections> {
        Arc::new(Connections {
            per_address,
            open: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        })
    }

    /// Counts a new connection from `ip`; the flag says whether it is within the cap (one over
    /// it is counted too, until it is closed).
    pub fn open(self: &Arc<Self>, ip: IpAddr) -> (ConnectionGuard, bool) {
        let key = AddressKey::of(ip);
        let within = {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let n = open.entry(key).or_insert(0);
            *n += 1;
            *n <= self.per_address
        };
        if !within {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        let guard = ConnectionGuard {
            connections: self.clone(),
            key,
        };
        (guard, within)
    }

    /// Connections refused for being over the per-address cap, since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections open now, all addresses together.
    pub fn open_now(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Descriptors the process keeps for itself beside connections: the database and its WAL, the
/// journal's segments, the station connections, the listeners.
const RESERVED_DESCRIPTORS: u64 = 128;

/// `max_connections`, lowered (with a warning) to what the process's descriptor limit allows:
/// a listener past that limit fails every accept ("Too many open files") and serves no one,
/// while one at its cap only makes new connections wait.
pub fn connections_within_descriptors(max_connections: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes the struct it is given, which lives on this stack frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return max_connections;
    }
    let allowed = limit.rlim_cur.saturating_sub(RESERVED_DESCRIPTORS).max(16) as usize;
    if max_connections > allowed {
        tracing::warn!(
            configured = max_connections,
            allowed,
            descriptor_limit = limit.rlim_cur,
            "limits.max_connections lowered to what the descriptor limit allows"
        );
        allowed
    } else {
        max_connections
    }
}

/// Requests per second per address and per PSP broker; off where the rate is 0.
#[derive(Debug)]
pub struct RateLimits {
    address: Option<DefaultKeyedRateLimiter<AddressKey>>,
    broker: Option<DefaultKeyedRateLimiter<String>>,
}

fn limiter<K: Clone + std::hash::Hash + Eq>(
    per_second: u32,
    burst: u32,
) -> Option<DefaultKeyedRateLimiter<K>> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(burst).unwrap_or(rate);
    Some(RateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

/// `Err(wait)` when the key is over its rate: the time until its next request is allowed.
fn check<K: Clone + std::hash::Hash + Eq>(
    limiter: &Option<DefaultKeyedRateLimiter<K>>,
    key: &K,
) -> Result<(), Duration> {
    match limiter {
        None => Ok(()),
        Some(l) => l
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
    }
}

impl RateLimits {
    pub fn new(limits: &FrontLimits) -> RateLimits {
        RateLimits {
            address: limiter(limits.address_requests_per_second, limits.address_burst),
            broker: limiter(limits.broker_requests_per_second, limits.broker_burst),
        }
    }

    /// Counts a request from `ip` against its address's rate.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), Duration> {
        check(&self.address, &AddressKey::of(ip))
    }

    /// Counts an authenticated request of `broker` against the broker's rate.
    pub fn check_broker(&self, broker: &str) -> Result<(), Duration> {
        check(&self.broker, &broker.to_string())
    }

    /// Forgets the keys whose state is back to rest (their memory), as governor recommends
    /// doing periodically.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.address {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.broker {
            l.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_by_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(AddressKey::of(a), AddressKey::of(b));
        assert_ne!(AddressKey::of(a), AddressKey::of(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            AddressKey::of(mapped),
            AddressKey::of("10.0.0.1".parse().unwrap())
        );
        assert_eq!(AddressKey::of(a).to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn connections_over_the_cap_are_flagged_and_released() {
        let c = Connections::new(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let (g1, ok1) = c.open(ip);
        let (g2, ok2) = c.open(ip);
        let (g3, ok3) = c.open(ip);
        let (_other, ok_other) = c.open("10.0.0.2".parse().unwrap());
        assert!(ok1 && ok2 && !ok3 && ok_other);
        assert_eq!(c.refused(), 1);
        drop((g1, g2, g3));
        assert_eq!(c.open_now(), 1);
        assert!(c.open(ip).1);
    }

    #[test]
    fn rates_are_per_key_and_off_at_zero() {
        let limits = FrontLimits {
            broker_requests_per_second: 1,
            broker_burst: 2,
            ..FrontLimits::default()
        };
        let r = RateLimits::new(&limits);
        assert!(r.check_broker("a").is_ok() && r.check_broker("a").is_ok());
        let wait = r.check_broker("a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(r.check_broker("b").is_ok());
        let ip = "10.0.0.1".parse().unwrap();
        assert!((0..1000).all(|_| r.check_address(ip).is_ok()));
    }
}
