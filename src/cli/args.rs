//! Value parsers shared by several commands, with typed errors clap can print.

use crate::config::{MAX_TIMEOUT, MIN_TIMEOUT};
use std::time::Duration;

/// A flag value that does not parse; clap prints it after the flag name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?}: {problem}")]
pub struct ValueError {
    pub value: String,
    pub problem: String,
}

fn bad(value: &str, problem: impl Into<String>) -> ValueError {
    ValueError {
        value: value.to_string(),
        problem: problem.into(),
    }
}

fn duration(s: &str) -> Result<Duration, ValueError> {
    humantime::parse_duration(s.trim()).map_err(|e| bad(s, format!("{e} (write e.g. 10s)")))
}

/// A per-step deadline: 100ms to 5m, as in the config file.
pub fn step_timeout(s: &str) -> Result<Duration, ValueError> {
    let d = duration(s)?;
    if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&d) {
        return Err(bad(s, "must be between 100ms and 5m"));
    }
    Ok(d)
}

/// A probe interval: at least 1s.
pub fn interval(s: &str) -> Result<Duration, ValueError> {
    let d = duration(s)?;
    if d < Duration::from_secs(1) {
        return Err(bad(s, "at least 1s"));
    }
    Ok(d)
}

/// A cache age: 0s to 1h.
pub fn max_age(s: &str) -> Result<Duration, ValueError> {
    let d = duration(s)?;
    if d > Duration::from_secs(3600) {
        return Err(bad(s, "at most 1h"));
    }
    Ok(d)
}

/// How often to look at a file: 0 (never) or 100ms to 1h.
pub fn watch_interval(s: &str) -> Result<Duration, ValueError> {
    let d = duration(s)?;
    if !d.is_zero() && !(MIN_TIMEOUT..=Duration::from_secs(3600)).contains(&d) {
        return Err(bad(s, "0s (off) or between 100ms and 1h"));
    }
    Ok(d)
}

/// A whole-probe deadline: 100ms to 24h.
pub fn deadline(s: &str) -> Result<Duration, ValueError> {
    let d = duration(s)?;
    if !(MIN_TIMEOUT..=crate::config::MAX_INTERVAL).contains(&d) {
        return Err(bad(s, "must be between 100ms and 24h"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(step_timeout("2s"), Ok(Duration::from_secs(2)));
        assert!(step_timeout("10ms").is_err());
        assert!(step_timeout("6m").is_err());
        assert!(step_timeout("soon").is_err());
        assert_eq!(interval("1s"), Ok(Duration::from_secs(1)));
        assert!(interval("500ms").is_err());
    }
}
