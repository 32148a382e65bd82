//! Progress the operator sees: one line per step on stderr, with its number and how long it
//! took (`[3/8] PIN accepted — 4 ms`), so a slow card, registry or HSM shows where it is slow.

use std::time::{Duration, Instant};

pub struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    step_started: Instant,
    quiet: bool,
    /// (step text, duration) of every completed step, for a summary or a benchmark.
    pub steps: Vec<(String, Duration)>,
}

impl Progress {
    pub fn new(total: usize, quiet: bool) -> Self {
        let now = Instant::now();
        Self {
            total,
            done: 0,
            started: now,
            step_started: now,
            quiet,
            steps: Vec::new(),
        }
    }

    /// Announces the step about to run (shown while it runs: a card may wait for a PIN pad).
    pub fn start(&mut self, what: &str) {
        self.step_started = Instant::now();
        if !self.quiet {
            eprintln!("[{}/{}] {what} …", self.done + 1, self.total);
        }
    }

    /// The step just started is done; `outcome` says with what.
    pub fn done(&mut self, outcome: &str) {
        let took = self.step_started.elapsed();
        self.done += 1;
        if !self.quiet {
            eprintln!(
                "[{}/{}] {outcome} — {} ms",
                self.done,
                self.total,
                took.as_millis()
            );
        }
        self.steps.push((outcome.to_owned(), took));
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}
