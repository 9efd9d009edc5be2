//! When each connector is probed: a deterministic offset within its interval (so many
//! connectors don't fire at once and a restart keeps the rhythm), then every interval.

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
    Duration::from_millis(u64::try_from(u128::from(h) % ms).unwrap_or(0))
}

/// The first probe's offset; `max` (the demo's) squeezes the spread into a shorter window.
pub fn first_offset(name: &str, interval: Duration, max: Option<Duration>) -> Duration {
    let offset = spread(name, interval);
    match max {
        Some(max) => spread(name, max.min(interval)),
        None => offset,
    }
}

/// One connector's loop: wait for its offset, then probe every interval until shutdown.
pub(super) async fn run_connector(agent: Arc<Agent>, name: String, interval: Duration, offset: Duration) {
    let token = agent.shutdown.clone();
    tokio::select! {
        _ = token.cancelled() => return,
        _ = tokio::time::sleep(offset) => {}
    }
    let mut tick = tokio::time::interval(interval);
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
