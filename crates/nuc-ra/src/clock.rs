//! Time, injectable: the 30-day deadline and certificate validity are tested by moving a
//! clock, not by waiting.

use std::sync::atomic::{AtomicI64, Ordering};

pub trait Clock: Send + Sync {
    /// Unix seconds.
    fn now(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        nuc_core::time::now_unix()
    }
}

/// Wall clock plus an offset that tests (or a dev-only admin call) can move forward.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset: AtomicI64,
}

impl OffsetClock {
    pub fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> i64 {
        nuc_core::time::now_unix() + self.offset.load(Ordering::SeqCst)
    }
}
