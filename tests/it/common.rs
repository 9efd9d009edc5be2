//! Helpers shared by the test areas.
#![allow(dead_code)]

use mailflow_exporter::code::{Code, Reason};
use mailflow_exporter::config::{HostPort, Routing, TlsSettings};
use mailflow_exporter::probe::{Phase, ProbeReport, ProbeSpec, Prober, ProberOptions};
use std::net::SocketAddr;
use std::time::Duration;

/// A smart host given by address (lab servers listen on ephemeral ports).
pub fn at(sa: SocketAddr) -> HostPort {
    HostPort {
        host: sa.ip().to_string(),
        port: Some(sa.port()),
    }
}

/// A smart host given by name with an explicit port.
pub fn named(name: &str, port: u16) -> HostPort {
    HostPort {
        host: name.to_string(),
        port: Some(port),
    }
}

pub fn spec(hosts: Vec<HostPort>, tls: TlsSettings) -> ProbeSpec {
    ProbeSpec {
        connector: "test".into(),
        routing: Routing::SmartHosts(hosts),
        port: 25,
        recipient_domains: vec![],
        tls_settings: tls,
        tls_domain: None,
        helo: "probe.test".into(),
        timeout: Duration::from_secs(2),
    }
}

pub fn mx_spec(domains: &[&str], port: u16, tls: TlsSettings) -> ProbeSpec {
    ProbeSpec {
        connector: "test-mx".into(),
        routing: Routing::Mx(domains.iter().map(|d| d.to_string()).collect()),
        port,
        recipient_domains: domains.iter().map(|d| d.to_string()).collect(),
        tls_settings: tls,
        tls_domain: None,
        helo: "probe.test".into(),
        timeout: Duration::from_secs(2),
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

#[track_caller]
pub fn assert_delivered(r: &ProbeReport) {
    let dump = serde_json::to_string_pretty(r).unwrap();
    assert!(r.delivered, "expected delivered:\n{dump}");
    assert_eq!(r.code, None, "{dump}");
    assert!(r.attempts.iter().any(|a| a.delivered), "{dump}");
}
