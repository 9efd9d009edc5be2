//! Wall-clock time behind a trait, so tests can control what "now" is for the queue clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Seconds since the Unix epoch as a float (0 for times before it).
pub fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

pub fn from_unix_secs(s: f64) -> Option<SystemTime> {
    if s.is_finite() && s > 0.0 {
        UNIX_EPOCH.checked_add(Duration::from_secs_f64(s))
    } else {
        None
    }
}
