//! Measurements for `make bench`: how many APDU round trips a second the reader chain (pcscd,
//! the driver, the card) carries, to compare the card writer's steps against.

use std::time::{Duration, Instant};

use crate::card::Card;
use crate::error::CardError;

/// The outcome of [`apdu_round_trips`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoundTrips {
    pub apdus: u32,
    pub elapsed: Duration,
}

impl RoundTrips {
    pub fn per_second(&self) -> f64 {
        f64::from(self.apdus) / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// Mean time of one round trip.
    pub fn mean(&self) -> Duration {
        self.elapsed / self.apdus.max(1)
    }
}

/// Sends `n` times the smallest useful command (VERIFY without data: the PIN status, no try
/// spent, no data in the answer) and times them.
pub fn apdu_round_trips(card: &mut Card, n: u32) -> Result<RoundTrips, CardError> {
    let start = Instant::now();
    for _ in 0..n {
        card.pin_status()?;
    }
    Ok(RoundTrips {
        apdus: n,
        elapsed: start.elapsed(),
    })
}
