//! Time as the node reads it. The node never asks the system for the time: it is given a
//! [`Clock`], the system's in production, a [`VirtualClock`] that tests and the simulation move
//! by hand.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::Millis;

/// Where the node reads `now` from.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the UNIX epoch.
    fn now_ms(&self) -> Millis;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct VirtualClock {
    now: AtomicU64,
}

impl VirtualClock {
    pub fn new(start: Millis) -> VirtualClock {
        VirtualClock {
            now: AtomicU64::new(start),
        }
    }

    /// Moves the clock to `at`; it never goes back (an earlier `at` leaves it where it is).
    pub fn set(&self, at: Millis) {
        self.now.fetch_max(at, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Millis) {
        self.now.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for VirtualClock {
    fn now_ms(&self) -> Millis {
        self.now.load(Ordering::SeqCst)
    }
}
