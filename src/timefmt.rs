//! The one place time values become text or seconds, so the CLI, the status page, metrics and
//! JSON reports spell a moment the same way (RFC 3339, UTC, whole seconds).

use serde::Serializer;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// Seconds since the Unix epoch as a float (0 for times before it).
pub fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Whole seconds since the epoch, negative before it, saturating far out.
pub fn unix_secs_i64(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map(|s| -s).unwrap_or(i64::MIN),
    }
}

/// The inverse of [`unix_secs`]; `None` for non-finite, non-positive or unrepresentable values.
pub fn from_unix_secs(s: f64) -> Option<SystemTime> {
    if !(s.is_finite() && s > 0.0) {
        return None;
    }
    let d = Duration::try_from_secs_f64(s).ok()?;
    // Below a nanosecond rounds to the epoch itself, which reads back as "no time".
    if d.is_zero() {
        return None;
    }
    UNIX_EPOCH.checked_add(d)
}

fn datetime(secs: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(secs).ok()
}

/// `2025-01-02T03:04:05Z`; `None` outside the calendar `time` can represent.
pub fn rfc3339_unix(secs: i64) -> Option<String> {
    datetime(secs)?.format(&Rfc3339).ok()
}

/// RFC 3339 in UTC, with the fraction of a second when there is one (empty when out of range).
pub fn rfc3339(t: SystemTime) -> String {
    let nanos = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_nanos()).ok(),
        Err(e) => i128::try_from(e.duration().as_nanos()).ok().map(|n| -n),
    };
    nanos
        .and_then(|n| OffsetDateTime::from_unix_timestamp_nanos(n).ok())
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// `2025-01-02 03:04:05 UTC`, for people.
pub fn utc_display(t: SystemTime) -> String {
    let fmt = format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    datetime(unix_secs_i64(t))
        .and_then(|d| d.format(&fmt).ok())
        .unwrap_or_else(|| "(time out of range)".to_string())
}

/// Serde: a `SystemTime` as an RFC 3339 string.
pub fn serialize_rfc3339<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_round_trips() {
        let t = UNIX_EPOCH + Duration::from_secs(1_741_064_767);
        assert_eq!(rfc3339(t), "2025-03-04T05:06:07Z");
        assert_eq!(rfc3339(t + Duration::from_millis(250)), "2025-03-04T05:06:07.25Z");
        assert_eq!(utc_display(t), "2025-03-04 05:06:07 UTC");
        assert_eq!(from_unix_secs(unix_secs(t)), Some(t));
        assert_eq!(from_unix_secs(f64::NAN), None);
        assert_eq!(from_unix_secs(-1.0), None);
        assert_eq!(from_unix_secs(1.9e19), None, "beyond what a Duration holds");
        assert_eq!(from_unix_secs(1e300), None);
        assert_eq!(from_unix_secs(1e-308), None, "rounds to the epoch: not a time");
        assert_eq!(rfc3339_unix(i64::MAX), None);
        assert_eq!(unix_secs_i64(UNIX_EPOCH - Duration::from_secs(5)), -5);
    }
}
