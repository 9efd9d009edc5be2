//! The configuration loader on arbitrary UTF-8 text.
//!
//! Checked on every input:
//! * no panic (absurd numbers, deep nesting and odd YAML are config errors with a location);
//! * an error names the file it was given;
//! * a config that loads keeps every promise the agent relies on: connector names 1..=128
//!   characters, no control characters and unique; every connector's step timeout and whole-probe
//!   deadline within its interval; interval, timeout and deadline inside their documented bounds;
//!   port not 0; a smart-host connector has a host and an enabled MX connector a domain; `max_concurrent_probes` in 1..=4096; at most `MAX_CONNECTORS` connectors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailflow_exporter::config::{
    Config, MAX_CONCURRENT_PROBES, MAX_CONNECTOR_NAME_CHARS, MAX_CONNECTORS, MAX_EXPIRATION, MAX_INTERVAL, MAX_TIMEOUT,
    MIN_EXPIRATION, MIN_INTERVAL, MIN_TIMEOUT, Routing,
};
use std::collections::HashSet;
use std::path::Path;

fuzz_target!(|text: &str| {
    let cfg = match Config::parse(Path::new("fuzz.yaml"), text) {
        Ok(cfg) => cfg,
        Err(e) => {
            assert_eq!(e.file, "fuzz.yaml");
            let _ = e.to_string();
            return;
        }
    };
    assert!(
        (1..=MAX_CONCURRENT_PROBES).contains(&cfg.max_concurrent_probes),
        "max_concurrent_probes {}",
        cfg.max_concurrent_probes
    );
    assert!(cfg.connectors.len() <= MAX_CONNECTORS);
    let d = &cfg.defaults;
    assert!(
        (MIN_INTERVAL..=MAX_INTERVAL).contains(&d.interval),
        "defaults.interval {:?}",
        d.interval
    );
    assert!(
        (MIN_TIMEOUT..=MAX_TIMEOUT).contains(&d.timeout),
        "defaults.timeout {:?}",
        d.timeout
    );
    assert!((MIN_EXPIRATION..=MAX_EXPIRATION).contains(&d.message_expiration));
    let mut names = HashSet::new();
    for c in &cfg.connectors {
        let name = c.name();
        let chars = name.chars().count();
        assert!(
            (1..=MAX_CONNECTOR_NAME_CHARS).contains(&chars),
            "name of {chars} characters: {name:?}"
        );
        assert!(
            !name.chars().any(char::is_control),
            "control character in name {name:?}"
        );
        assert!(names.insert(name.to_string()), "duplicate name {name:?}");
        let p = &c.probe;
        assert!(
            p.timeout <= c.interval,
            "{name:?}: timeout {:?} > interval {:?}",
            p.timeout,
            c.interval
        );
        assert!(
            p.deadline <= c.interval,
            "{name:?}: deadline {:?} > interval {:?}",
            p.deadline,
            c.interval
        );
        assert!(
            (MIN_INTERVAL..=MAX_INTERVAL).contains(&c.interval),
            "{name:?}: interval {:?}",
            c.interval
        );
        assert!(
            (MIN_TIMEOUT..=MAX_TIMEOUT).contains(&p.timeout),
            "{name:?}: timeout {:?}",
            p.timeout
        );
        assert!(p.deadline >= MIN_TIMEOUT, "{name:?}: deadline {:?}", p.deadline);
        assert_ne!(p.port, 0, "{name:?}: port 0");
        match &p.routing {
            Routing::SmartHosts(h) => assert!(!h.is_empty(), "{name:?}: no smart host"),
            Routing::Mx(d) => assert!(!c.enabled || !d.is_empty(), "{name:?}: enabled, but no MX domain"),
        }
    }
});
