//! The built-in fault lab: one loopback server per failure code plus a healthy one, and the
//! connector spec that reaches each. `demo` prints it; the tests assert it — one source for both.

use super::dns::{Answer, FakeDns, Qtype, Record, Zone};
use super::pki::LabPki;
use super::smtp::{Behavior, BlackholeListener, FaultServer, SmtpOptions, closed_port};
use crate::code::Code;
use crate::config::{HostPort, Routing, TlsSettings};
use crate::probe::{ProbeSpec, ProberOptions};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// One scenario: a connector and the code Exchange Online would report (None = delivered).
pub struct Scenario {
    pub name: &'static str,
    pub what: &'static str,
    pub expect: Option<Code>,
    pub spec: ProbeSpec,
}

/// Everything the lab runs; dropping it stops every server.
pub struct Lab {
    pub dns: FakeDns,
    pub pki: LabPki,
    pub scenarios: Vec<Scenario>,
    _servers: Vec<FaultServer>,
    _blackhole: BlackholeListener,
}

/// The lab's DNS zone: names under `demo.test`.
pub const DOMAIN: &str = "demo.test";

impl Lab {
    pub async fn start(timeout: Duration) -> Result<Lab, String> {
        let pki = LabPki::new("mail.demo.test").map_err(|e| format!("lab PKI: {e}"))?;
        let good_tls = pki.good.server_config().map_err(|e| e.to_string())?;
        let expired_tls = pki.expired.server_config().map_err(|e| e.to_string())?;
        let e = |e: std::io::Error| format!("lab server: {e}");

        let healthy = FaultServer::start(Behavior::Smtp(SmtpOptions {
            banner: vec![
                "mail.demo.test ESMTP ready".into(),
                "lab server for mailflow-exporter".into(),
            ],
            tls: Some(good_tls),
            hostname: "mail.demo.test".into(),
            ..SmtpOptions::default()
        }))
        .await
        .map_err(e)?;
        let expired = FaultServer::start(Behavior::Smtp(SmtpOptions {
            tls: Some(expired_tls),
            hostname: "mail.demo.test".into(),
            ..SmtpOptions::default()
        }))
        .await
        .map_err(e)?;
        let busy = FaultServer::start(Behavior::Banner421).await.map_err(e)?;
        let hangup = FaultServer::start(Behavior::CloseAfterStarttls).await.map_err(e)?;
        let odd = FaultServer::start(Behavior::UnexpectedReply).await.map_err(e)?;
        let blackhole = BlackholeListener::start().map_err(e)?;
        let refused = closed_port().map_err(e)?;

        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut zone = Zone::new();
        zone.set(
            "mail.demo.test",
            Qtype::A,
            Answer::Records(vec![Record::A(Ipv4Addr::LOCALHOST)]),
        );
        zone.set("mail.demo.test", Qtype::Mx, Answer::NoData);
        zone.set_all("gone.demo.test", Answer::NxDomain);
        let dns = FakeDns::start(zone).await.map_err(e)?;

        let spec = |name: &str, host: HostPort, tls: TlsSettings, tls_domain: Option<&str>| ProbeSpec {
            connector: name.to_string(),
            routing: Routing::SmartHosts(vec![host]),
            port: 25,
            recipient_domains: vec![DOMAIN.to_string()],
            tls_settings: tls,
            tls_domain: tls_domain.map(str::to_string),
            helo: "probe.demo.test".into(),
            timeout,
        };
        let by_name = |port: u16| HostPort {
            host: "mail.demo.test".into(),
            port: Some(port),
        };
        let by_ip = |sa: SocketAddr| HostPort {
            host: sa.ip().to_string(),
            port: Some(sa.port()),
        };
        let _ = lo;

        let scenarios = vec![
            Scenario {
                name: "healthy",
                what: "STARTTLS, valid certificate for mail.demo.test",
                expect: None,
                spec: spec(
                    "Healthy",
                    by_name(healthy.addr().port()),
                    TlsSettings::DomainValidation,
                    Some("*.demo.test"),
                ),
            },
            Scenario {
                name: "dns",
                what: "smart host name does not exist (NXDOMAIN)",
                expect: Some(Code::DnsQueryFailed),
                spec: spec(
                    "DNS failure",
                    HostPort {
                        host: "gone.demo.test".into(),
                        port: Some(25),
                    },
                    TlsSettings::None,
                    None,
                ),
            },
            Scenario {
                name: "timeout",
                what: "SYNs dropped (full accept queue)",
                expect: Some(Code::ConnectionTimedOut),
                spec: spec("Connect timeout", by_ip(blackhole.addr()), TlsSettings::None, None),
            },
            Scenario {
                name: "refused",
                what: "nothing listens on the port (RST)",
                expect: Some(Code::ConnectionRefused),
                spec: spec("Refused", by_ip(refused), TlsSettings::None, None),
            },
            Scenario {
                name: "busy",
                what: "421 greeting, then close",
                expect: Some(Code::CannotConnect),
                spec: spec("421 banner", by_ip(busy.addr()), TlsSettings::None, None),
            },
            Scenario {
                name: "hangup",
                what: "connection dropped inside the TLS handshake",
                expect: Some(Code::ConnectionClosedAbruptly),
                spec: spec(
                    "Closed in handshake",
                    by_ip(hangup.addr()),
                    TlsSettings::EncryptionOnly,
                    None,
                ),
            },
            Scenario {
                name: "expired",
                what: "certificate expired 30 days ago",
                expect: Some(Code::CertificateValidationFailed),
                spec: spec(
                    "Expired certificate",
                    by_name(expired.addr().port()),
                    TlsSettings::CertificateValidation,
                    None,
                ),
            },
            Scenario {
                name: "odd",
                what: "EHLO answered with 354 (nonsense reply)",
                expect: Some(Code::Other),
                spec: spec("Odd reply", by_ip(odd.addr()), TlsSettings::None, None),
            },
        ];
        Ok(Lab {
            dns,
            pki,
            scenarios,
            _servers: vec![healthy, expired, busy, hangup, odd],
            _blackhole: blackhole,
        })
    }

    /// Prober options that use the lab DNS and trust the lab CA.
    pub fn prober_options(&self) -> ProberOptions {
        ProberOptions {
            dns_servers: vec![self.dns.addr()],
            extra_ca: vec![("lab CA".into(), self.pki.ca.cert_pem().into_bytes())],
            ..ProberOptions::default()
        }
    }
}
