//! The built-in fault lab: one loopback server per failure code plus a healthy one, and the
//! connector spec that reaches each. `demo` prints it; the tests assert it — one source for both.

use super::dns::{Answer, FakeDns, Qtype, Record, Zone};
use super::pki::LabPki;
use super::smtp::{Behavior, BlackholeListener, FaultServer, SmtpOptions, closed_port};
use crate::config::{DomainPattern, HostName, HostPort, ProbeSpec, Routing, TlsSettings};
use crate::probe::ProberOptions;
use crate::taxonomy::Code;
use std::net::Ipv4Addr;
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

/// Why the lab could not start.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("lab PKI: {0}")]
    Pki(#[from] super::pki::PkiError),
    #[error("lab server: {0}")]
    Server(#[from] std::io::Error),
    #[error("lab names: {0}")]
    Name(#[from] crate::config::NameError),
}

impl Lab {
    pub async fn start(timeout: Duration) -> Result<Lab, LabError> {
        let pki = LabPki::new("mail.demo.test")?;
        let good_tls = pki.good.server_config()?;
        let expired_tls = pki.expired.server_config()?;
        let e = LabError::Server;

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

        let mut zone = Zone::new();
        zone.set(
            "mail.demo.test",
            Qtype::A,
            Answer::Records(vec![Record::A(Ipv4Addr::LOCALHOST)]),
        );
        zone.set("mail.demo.test", Qtype::Mx, Answer::NoData);
        zone.set_all("gone.demo.test", Answer::NxDomain);
        let dns = FakeDns::start(zone).await.map_err(e)?;

        let domain = HostName::parse(DOMAIN)?;
        let helo = HostName::parse("probe.demo.test")?;
        let mail = HostName::parse("mail.demo.test")?;
        let wildcard = DomainPattern::Subdomains(domain.clone());
        let spec = |name: &str, host: HostPort, tls: TlsSettings, tls_domain: Option<DomainPattern>| ProbeSpec {
            connector: name.to_string(),
            routing: Routing::SmartHosts(vec![host]),
            port: 25,
            recipient_domains: vec![DomainPattern::Exact(domain.clone())],
            tls_settings: tls,
            tls_domain,
            helo: helo.clone(),
            timeout,
            deadline: timeout * 4,
        };
        let by_name = |port: u16| HostPort::name(mail.clone(), Some(port));
        let by_ip = HostPort::from;

        let scenarios = vec![
            Scenario {
                name: "healthy",
                what: "STARTTLS, valid certificate for mail.demo.test",
                expect: None,
                spec: spec(
                    "Healthy",
                    by_name(healthy.addr().port()),
                    TlsSettings::DomainValidation,
                    Some(wildcard.clone()),
                ),
            },
            Scenario {
                name: "dns",
                what: "smart host name does not exist (NXDOMAIN)",
                expect: Some(Code::DnsQueryFailed),
                spec: spec(
                    "DNS failure",
                    HostPort::name(HostName::parse("gone.demo.test")?, Some(25)),
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
