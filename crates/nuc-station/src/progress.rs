//! Progress the operator sees: one line per step on stderr, with its number and how long it
//! took (`[3/8] PIN accepted — 4 ms`), so a slow card, registry or HSM shows where it is slow.
//! The console follows the same steps through an observer: each step has a stable key
//! (`registry`, `card`, `pin`, …) that the page translates, so the page never parses the
//! English line (which may carry the applicant's name).

use std::time::{Duration, Instant};

/// What an observer hears: a step started or finished.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepNews {
    /// The step's stable key (see [`crate::enroll`] for the keys of F4).
    pub key: &'static str,
    /// 1-based position of the step, and how many steps there are.
    pub number: usize,
    pub total: usize,
    /// False when the step just started, true when it finished.
    pub done: bool,
    /// How long the step took (0 while it runs).
    pub ms: u64,
}

type Observer = Box<dyn FnMut(&StepNews) + Send>;

pub struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    step_started: Instant,
    step_key: &'static str,
    quiet: bool,
    observer: Option<Observer>,
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
            step_key: "",
            quiet,
            observer: None,
            steps: Vec::new(),
        }
    }

    /// Quiet on stderr; every step is told to `observer` instead.
    pub fn observed(total: usize, observer: impl FnMut(&StepNews) + Send + 'static) -> Self {
        let mut p = Self::new(total, true);
        p.observer = Some(Box::new(observer));
        p
    }

    /// Starts counting again for a follow-up (finishing a write) of `total` steps.
    pub fn restart(&mut self, total: usize) {
        self.total = total;
        self.done = 0;
    }

    fn tell(&mut self, done: bool, ms: u64) {
        let news = StepNews {
            key: self.step_key,
            number: if done { self.done } else { self.done + 1 },
            total: self.total,
            done,
            ms,
        };
        if let Some(o) = self.observer.as_mut() {
            o(&news);
        }
    }

    /// Announces the step `key` about to run (shown while it runs: a card may wait for a PIN
    /// pad).
    pub fn start(&mut self, key: &'static str, what: &str) {
        self.step_started = Instant::now();
        self.step_key = key;
        if !self.quiet {
            eprintln!("[{}/{}] {what} …", self.done + 1, self.total);
        }
        self.tell(false, 0);
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
        self.tell(true, u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn an_observer_hears_each_step_start_and_finish_by_key() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let h = heard.clone();
        let mut p = Progress::observed(2, move |n| h.lock().unwrap().push(n.clone()));
        p.start("pin", "PIN: the applicant enters the PIN");
        p.done("PIN: accepted");
        p.start("keys", "keys: generating");
        let heard = heard.lock().unwrap();
        let keys: Vec<_> = heard.iter().map(|n| (n.key, n.number, n.done)).collect();
        assert_eq!(
            keys,
            [("pin", 1, false), ("pin", 1, true), ("keys", 2, false)]
        );
        assert!(heard.iter().all(|n| n.total == 2));
        assert_eq!(p.steps.len(), 1);
    }
}
