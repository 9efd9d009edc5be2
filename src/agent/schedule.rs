//! When each connector is probed: a deterministic offset within its interval (so many
//! connectors don't fire at once and a restart keeps the rhythm), then every interval. Offsets
//! are whole seconds (intervals of 10 s and more) from one agent-wide epoch, so the probes due
//! in the same second start together: one wake-up of the runtime per batch rather than one per
//! probe, which at a few probes a second was most of a probe's CPU (bench/README.md).

use super::Agent;
use std::sync::Arc;
use std::time::Duration;

/// Start offset within the interval, from an FNV-1a hash of the connector's name.
pub fn spread(name: &str, interval: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // u128 throughout: an interval's milliseconds need not fit in a u64.
    let ms = interval.as_millis().max(1);
    let mut offset = u128::from(h) % ms;
    if interval >= BATCHED_FROM {
        offset -= offset % 1000;
    }
    Duration::from_millis(u64::try_from(offset).unwrap_or(0))
}

/// Intervals from which start times are whole seconds (shorter ones keep millisecond spread).
const BATCHED_FROM: Duration = Duration::from_secs(10);

/// The first start at or after `now` of a schedule `epoch + offset + k × interval`.
pub fn first_start(
    epoch: tokio::time::Instant,
    offset: Duration,
    interval: Duration,
    now: tokio::time::Instant,
) -> tokio::time::Instant {
    let first = epoch + offset;
    if first >= now || interval.is_zero() {
        return first;
    }
    let behind = (now - first).as_nanos();
    let step = interval.as_nanos();
    let k = behind.div_ceil(step);
    let add = u64::try_from(k.saturating_mul(step))
        .map(Duration::from_nanos)
        .unwrap_or(interval);
    first + add
}

/// The first probe's offset; `max` (the demo's) squeezes the spread into a shorter window.
pub fn first_offset(name: &str, interval: Duration, max: Option<Duration>) -> Duration {
    let offset = spread(name, interval);
    match max {
        Some(max) => spread(name, max.min(interval)),
        None => offset,
    }
}

/// One connector's loop: wait for its slot (`epoch` + offset, or the next one), then probe
/// every interval until shutdown.
pub(super) async fn run_connector(
    agent: Arc<Agent>,
    name: String,
    interval: Duration,
    offset: Duration,
    epoch: tokio::time::Instant,
) {
    let token = agent.shutdown.clone();
    let start = first_start(epoch, offset, interval, tokio::time::Instant::now());
    let mut tick = tokio::time::interval_at(start, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Boxed: a probe's state machine is tens of KB, and inline it would be part of every
        // sleeping connector's task for the task's whole life (10,000 connectors: hundreds of MB).
        let probe = Box::pin(agent.probe_now(&name));
        tokio::select! {
            _ = token.cancelled() => return,
            _ = probe => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_intervals_start_on_whole_seconds() {
        for n in ["a", "b", "c", "Outbound to Contoso"] {
            assert_eq!(spread(n, Duration::from_secs(60)).subsec_millis(), 0, "{n}");
            assert_eq!(spread(n, Duration::from_secs(10)).subsec_millis(), 0, "{n}");
        }
        // Short intervals keep their millisecond spread (some name lands off the second).
        assert!(
            (0..50).any(|i| spread(&format!("c{i}"), Duration::from_secs(5)).subsec_millis() != 0),
            "5 s intervals are not quantized"
        );
    }

    #[test]
    fn the_first_start_is_the_next_slot_of_the_shared_schedule() {
        let epoch = tokio::time::Instant::now();
        let s = Duration::from_secs;
        // Before the first slot: the slot itself.
        assert_eq!(first_start(epoch, s(7), s(60), epoch), epoch + s(7));
        // Started (or reloaded) later: the next slot of the same schedule, never one in the past.
        assert_eq!(first_start(epoch, s(7), s(60), epoch + s(8)), epoch + s(67));
        assert_eq!(first_start(epoch, s(7), s(60), epoch + s(67)), epoch + s(67));
        assert_eq!(first_start(epoch, s(7), s(60), epoch + s(3600)), epoch + s(3607));
        // Two connectors with the same offset share their deadlines whatever their start time.
        assert_eq!(
            first_start(epoch, s(7), s(60), epoch + s(100)),
            first_start(epoch, s(7), s(60), epoch + s(120))
        );
    }

    #[test]
    fn spread_is_stable_and_within_interval() {
        let i = Duration::from_secs(60);
        assert_eq!(spread("a", i), spread("a", i));
        for n in ["a", "b", "Outbound to Contoso", ""] {
            assert!(spread(n, i) < i);
            assert!(first_offset(n, i, Some(Duration::from_secs(1))) < Duration::from_secs(1));
        }
        // 2^64 ms: truncating to u64 would divide by zero.
        let huge = Duration::from_millis(u64::MAX) + Duration::from_millis(1);
        assert!(spread("x", huge) <= huge);
    }
}
