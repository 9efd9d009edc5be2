//! The queue clock file (`queue-clock.json`) on arbitrary bytes: whatever is on disk, the agent
//! must start, and what it keeps must survive its own save and reload.
//!
//! Checked on every input:
//! * no panic;
//! * every kept entry has a usable name (not blank, at most 128 characters, no control
//!   characters), a start time no later than `now`, and a code that is short printable ASCII;
//! * every entry of the file's `connectors` object is accounted for: kept or counted as skipped,
//!   and only kept entries are counted as clamped;
//! * round trip: `serialize` then `parse` (same `now`) loses no entry, skips nothing, keeps the
//!   same names and codes, and the same start times. The file stores seconds as a JSON float, so
//!   a time is compared to within one microsecond: a float near today's epoch resolves about
//!   240 ns, and a start clamped to a `now` with nanoseconds cannot come back bit for bit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailflow_exporter::agent::store::{parse, serialize};
use mailflow_exporter::config::MAX_CONNECTOR_NAME_CHARS;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A fixed, realistic "now" (2030-03-17, with nanoseconds as the real clock has them).
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::new(1_900_000_000, 123_456_789)
}

const TOLERANCE: Duration = Duration::from_micros(1);

fn close(a: SystemTime, b: SystemTime) -> bool {
    let d = a
        .duration_since(b)
        .or_else(|_| b.duration_since(a))
        .unwrap_or(Duration::MAX);
    d <= TOLERANCE
}

fuzz_target!(|data: &[u8]| {
    let now = now();
    let Ok(loaded) = parse(data, now) else {
        return;
    };

    // Every entry is kept or skipped (serde_json keeps the last of duplicate keys, as parse sees).
    let root: serde_json::Value = serde_json::from_slice(data).expect("parse accepted it, so it is JSON");
    let entries = root
        .get("connectors")
        .and_then(serde_json::Value::as_object)
        .expect("parse accepted it, so it has a connectors object");
    assert_eq!(
        loaded.streaks.len() + loaded.skipped,
        entries.len(),
        "kept {} + skipped {} != entries {}",
        loaded.streaks.len(),
        loaded.skipped,
        entries.len()
    );
    assert!(loaded.clamped <= loaded.streaks.len());

    for (name, (since, code)) in &loaded.streaks {
        assert!(!name.trim().is_empty(), "blank name kept");
        assert!(
            name.chars().count() <= MAX_CONNECTOR_NAME_CHARS,
            "long name kept: {name:?}"
        );
        assert!(
            !name.chars().any(char::is_control),
            "control character kept in {name:?}"
        );
        assert!(*since <= now, "{name:?}: start {since:?} after now {now:?}");
        if let Some(c) = code {
            assert!(
                c.len() <= 16 && c.bytes().all(|b| b.is_ascii_graphic()),
                "{name:?}: code {c:?}"
            );
        }
    }

    // Save and reload.
    let bytes = serialize(&loaded.streaks);
    let again = parse(&bytes, now).expect("our own file must load");
    assert_eq!(
        again.skipped,
        0,
        "entries lost in a save and reload; written file:\n{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(
        again.streaks.keys().collect::<Vec<_>>(),
        loaded.streaks.keys().collect::<Vec<_>>(),
        "names changed in a save and reload"
    );
    for (name, (since, code)) in &loaded.streaks {
        let (since2, code2) = &again.streaks[name];
        assert_eq!(code, code2, "{name:?}: code changed in a save and reload");
        assert!(
            close(*since, *since2),
            "{name:?}: start {since:?} came back as {since2:?}; written file:\n{}",
            String::from_utf8_lossy(&bytes)
        );
    }
});
