//! Probe specs, options and report assertions for tests that drive the prober in-process.

use mailflow_exporter::config::{DomainPattern, HostName, HostPort, Routing, TlsSettings};
use mailflow_exporter::probe::{Phase, ProbeReport, ProbeSpec, Prober, ProberOptions};
use mailflow_exporter::taxonomy::{Code, Reason};
use std::net::SocketAddr;
use std::time::Duration;

/// A smart host given by address (lab servers listen on ephemeral ports).
pub fn at(sa: SocketAddr) -> HostPort {
    HostPort::from(sa)
}

/// A smart host given by name with an explicit port.
pub fn named(name: &str, port: u16) -> HostPort {
    HostPort::name(host_name(name), Some(port))
}

/// A host name the test wrote, so a parse failure is a bug in the test: panic naming it.
pub fn host_name(name: &str) -> HostName {
    HostName::parse(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A recipient domain or TLS domain pattern the test wrote (see [`host_name`]).
pub fn pattern(name: &str) -> DomainPattern {
    DomainPattern::parse(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A smart-host connector with short step timeouts; tests adjust the fields they care about.
pub fn spec(hosts: Vec<HostPort>, tls: TlsSettings) -> ProbeSpec {
    ProbeSpec {
        connector: "test".into(),
        routing: Routing::SmartHosts(hosts),
        port: 25,
        recipient_domains: vec![],
        tls_settings: tls,
        tls_domain: None,
        helo: host_name("probe.test"),
        timeout: Duration::from_secs(2),
        // Far above any test's steps: tests of the deadline set their own.
        deadline: Duration::from_secs(60),
    }
}

/// An MX-routed connector for these recipient domains, on a lab port instead of 25.
pub fn mx_spec(domains: &[&str], port: u16, tls: TlsSettings) -> ProbeSpec {
    ProbeSpec {
        connector: "test-mx".into(),
        routing: Routing::Mx(domains.iter().map(|d| host_name(d)).collect()),
        port,
        recipient_domains: domains.iter().map(|d| pattern(d)).collect(),
        tls_settings: tls,
        tls_domain: None,
        helo: host_name("probe.test"),
        timeout: Duration::from_secs(2),
        // Far above any test's steps: tests of the deadline set their own.
        deadline: Duration::from_secs(60),
    }
}

/// Options with a given DNS server and optional extra CA (PEM).
pub fn opts(dns: Option<SocketAddr>, ca_pem: Option<String>) -> ProberOptions {
    ProberOptions {
        dns_servers: dns.into_iter().collect(),
        extra_ca: ca_pem
            .into_iter()
            .map(|p| ("test CA".to_string(), p.into_bytes()))
            .collect(),
        ..ProberOptions::default()
    }
}

/// One probe in-process, exactly as `check` and the agent run it.
pub async fn probe(o: ProberOptions, s: &ProbeSpec) -> ProbeReport {
    Prober::new(o).expect("prober").probe(s).await
}

/// Asserts a failed report with this code, reason and phase, and a consistent Exchange line.
#[track_caller]
pub fn assert_fails(r: &ProbeReport, code: Code, reason: Reason, phase: Phase) {
    let dump = serde_json::to_string_pretty(r).unwrap();
    assert!(!r.delivered, "expected failure, got delivered:\n{dump}");
    assert_eq!(r.code, Some(code), "code\n{dump}");
    assert_eq!(r.reason, Some(reason), "reason\n{dump}");
    assert_eq!(r.phase, Some(phase), "phase\n{dump}");
    assert!(r.message.starts_with(code.smtp_prefix()), "message {:?}", r.message);
    assert!(
        r.message.contains("[LastAttemptedServerName="),
        "message {:?}",
        r.message
    );
}

/// Asserts a delivered report that no attempt-level detail contradicts.
#[track_caller]
pub fn assert_delivered(r: &ProbeReport) {
    let dump = serde_json::to_string_pretty(r).unwrap();
    assert!(r.delivered, "expected delivered:\n{dump}");
    assert_eq!(r.code, None, "{dump}");
    assert!(r.attempts.iter().any(|a| a.delivered), "{dump}");
}
