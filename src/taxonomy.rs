//! The failure taxonomy: the codes Exchange Online reports for a connector, and the bounded
//! reasons our probe can observe. Every text an admin reads about a code lives here, so the CLI,
//! the status page and the runbooks cannot disagree.

use serde::Serialize;
use std::fmt;

/// An Exchange Online delivery code (or `Other`). Also a metrics label, so the set is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    /// 4.4.312
    DnsQueryFailed,
    /// 4.4.315
    ConnectionTimedOut,
    /// 4.4.316
    ConnectionRefused,
    /// 4.4.317
    CannotConnect,
    /// 4.4.318
    ConnectionClosedAbruptly,
    /// 4.7.320
    CertificateValidationFailed,
    /// any other code
    Other,
}

impl Code {
    pub const ALL: [Code; 7] = [
        Code::DnsQueryFailed,
        Code::ConnectionTimedOut,
        Code::ConnectionRefused,
        Code::CannotConnect,
        Code::ConnectionClosedAbruptly,
        Code::CertificateValidationFailed,
        Code::Other,
    ];

    /// The enhanced status code as Exchange Online prints it (`other` for anything else).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::DnsQueryFailed => "4.4.312",
            Code::ConnectionTimedOut => "4.4.315",
            Code::ConnectionRefused => "4.4.316",
            Code::CannotConnect => "4.4.317",
            Code::ConnectionClosedAbruptly => "4.4.318",
            Code::CertificateValidationFailed => "4.7.320",
            Code::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Short title, as in Exchange Online's queue view.
    pub fn title(self) -> &'static str {
        match self {
            Code::DnsQueryFailed => "DNS query failed",
            Code::ConnectionTimedOut => "Connection timed out",
            Code::ConnectionRefused => "Connection refused",
            Code::CannotConnect => "Cannot connect to remote server",
            Code::ConnectionClosedAbruptly => "Connection was closed abruptly",
            Code::CertificateValidationFailed => "Certificate validation failed",
            Code::Other => "Other delivery failure",
        }
    }

    /// What usually leads to this code, in our words.
    pub fn causes(self) -> &'static [&'static str] {
        match self {
            Code::DnsQueryFailed => &[
                "the destination name does not exist (typo in the connector, or the domain lapsed)",
                "the authoritative DNS servers fail or do not answer",
                "the name exists but has no A/AAAA record, or publishes a null MX",
                "an MX record was changed recently and resolvers still hold the old answer",
            ],
            Code::ConnectionTimedOut => &[
                "the mail server is switched off or hung",
                "a firewall silently drops traffic to port 25",
                "the connector points at an old IP address (new provider, moved server)",
            ],
            Code::ConnectionRefused => &[
                "nothing listens on port 25 at that address",
                "a firewall rejects the connection, often because Microsoft 365 addresses are not allowed",
                "the on-premises server was retired after a migration but the connector still routes to it",
            ],
            Code::CannotConnect => &[
                "the server answers but refuses service (421/4xx/5xx greeting or EHLO reply)",
                "the connector requires TLS and the server does not offer or refuses STARTTLS",
                "the TLS handshake fails (old protocol versions only, no shared cipher, alert)",
                "something that is not an SMTP server answers on port 25",
            ],
            Code::ConnectionClosedAbruptly => &[
                "a firewall or appliance with SMTP inspection cuts the session",
                "the server crashes, hangs or runs out of resources mid-dialogue",
                "an unstable network path drops the connection",
            ],
            Code::CertificateValidationFailed => &[
                "the server certificate expired or is not valid yet",
                "the certificate is self-signed or issued by a CA Exchange Online does not trust",
                "the certificate names do not match the connector's TLS domain",
                "a certificate in the chain is signed with SHA-1",
            ],
            Code::Other => &["a failure outside the documented connector codes"],
        }
    }

    /// How to fix it, in our words.
    pub fn fix(self) -> &'static str {
        match self {
            Code::DnsQueryFailed => {
                "Check the name in the connector, then the zone with your DNS host (dig MX/A against \
                 its authoritative servers). For a partner domain, ask the partner to fix their DNS."
            }
            Code::ConnectionTimedOut => {
                "Make sure the server is running and port 25 is reachable from the internet; check \
                 recent network changes (new ISP, new public IP) against the connector's smart hosts."
            }
            Code::ConnectionRefused => {
                "Allow Microsoft 365's IP ranges to port 25 on the firewall and check that the SMTP \
                 service listens. If you have migrated off on-premises, disable or delete the connector \
                 and change the accepted domain from Internal Relay to Authoritative (takes 30-60 min)."
            }
            Code::CannotConnect => {
                "Check that the server accepts mail from Microsoft 365 and, when the connector \
                 requires TLS, that STARTTLS is offered and TLS 1.2 or newer works with a valid certificate."
            }
            Code::ConnectionClosedAbruptly => {
                "Find what cuts the session: disable SMTP inspection on firewalls, check the server's \
                 health and logs at the phase shown, and involve the network team for path problems."
            }
            Code::CertificateValidationFailed => {
                "Install a valid certificate from a public CA that covers the connector's TLS domain \
                 (full chain, SHA-256), or correct the connector's TLS settings / TLS domain."
            }
            Code::Other => "Read the server's reply and the destination details in the error text.",
        }
    }

    /// The per-code alert in `alerts/` (`Mailflow` + the title in CamelCase).
    pub fn alert_name(self) -> &'static str {
        match self {
            Code::DnsQueryFailed => "MailflowDnsQueryFailed",
            Code::ConnectionTimedOut => "MailflowConnectionTimedOut",
            Code::ConnectionRefused => "MailflowConnectionRefused",
            Code::CannotConnect => "MailflowCannotConnect",
            Code::ConnectionClosedAbruptly => "MailflowConnectionClosedAbruptly",
            Code::CertificateValidationFailed => "MailflowCertificateValidationFailed",
            Code::Other => "MailflowOtherDeliveryFailure",
        }
    }

    /// The runbook's path in this repository.
    pub fn runbook(self) -> String {
        format!("docs/runbooks/{}.md", self.as_str())
    }

    /// The Exchange-style line prefix, e.g. `450 4.4.316`.
    pub fn smtp_prefix(self) -> &'static str {
        match self {
            Code::Other => "450 4.4.0",
            Code::DnsQueryFailed => "450 4.4.312",
            Code::ConnectionTimedOut => "450 4.4.315",
            Code::ConnectionRefused => "450 4.4.316",
            Code::CannotConnect => "450 4.4.317",
            Code::ConnectionClosedAbruptly => "450 4.4.318",
            Code::CertificateValidationFailed => "450 4.7.320",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What the probe saw, as a bounded label. Each reason belongs to exactly one code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    // 4.4.312
    Nxdomain,
    Servfail,
    DnsTimeout,
    DnsRefused,
    NoAddress,
    NullMx,
    InvalidName,
    DnsUnreachable,
    // 4.4.315
    ConnectTimeout,
    // 4.4.316
    Refused,
    Unreachable,
    // 4.4.317
    BannerRejected,
    EhloRejected,
    ProtocolError,
    StarttlsNotOffered,
    StarttlsRejected,
    TlsHandshakeFailed,
    // 4.4.318
    Closed,
    Reset,
    ReadTimeout,
    // 4.7.320
    CertExpired,
    CertNotYetValid,
    CertUntrusted,
    CertNameMismatch,
    CertSha1,
    // other
    UnexpectedReply,
    LocalError,
}

impl Reason {
    pub const ALL: [Reason; 27] = [
        Reason::Nxdomain,
        Reason::Servfail,
        Reason::DnsTimeout,
        Reason::DnsRefused,
        Reason::NoAddress,
        Reason::NullMx,
        Reason::InvalidName,
        Reason::DnsUnreachable,
        Reason::ConnectTimeout,
        Reason::Refused,
        Reason::Unreachable,
        Reason::BannerRejected,
        Reason::EhloRejected,
        Reason::ProtocolError,
        Reason::StarttlsNotOffered,
        Reason::StarttlsRejected,
        Reason::TlsHandshakeFailed,
        Reason::Closed,
        Reason::Reset,
        Reason::ReadTimeout,
        Reason::CertExpired,
        Reason::CertNotYetValid,
        Reason::CertUntrusted,
        Reason::CertNameMismatch,
        Reason::CertSha1,
        Reason::UnexpectedReply,
        Reason::LocalError,
    ];

    /// The one place where an observation becomes a code.
    pub fn code(self) -> Code {
        use Reason::*;
        match self {
            Nxdomain | Servfail | DnsTimeout | DnsRefused | NoAddress | NullMx | InvalidName | DnsUnreachable => {
                Code::DnsQueryFailed
            }
            ConnectTimeout => Code::ConnectionTimedOut,
            Refused | Unreachable => Code::ConnectionRefused,
            BannerRejected | EhloRejected | ProtocolError | StarttlsNotOffered | StarttlsRejected
            | TlsHandshakeFailed => Code::CannotConnect,
            Closed | Reset | ReadTimeout => Code::ConnectionClosedAbruptly,
            CertExpired | CertNotYetValid | CertUntrusted | CertNameMismatch | CertSha1 => {
                Code::CertificateValidationFailed
            }
            UnexpectedReply | LocalError => Code::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        use Reason::*;
        match self {
            Nxdomain => "nxdomain",
            Servfail => "servfail",
            DnsTimeout => "dns_timeout",
            DnsRefused => "dns_refused",
            NoAddress => "no_address",
            NullMx => "null_mx",
            InvalidName => "invalid_name",
            DnsUnreachable => "dns_unreachable",
            ConnectTimeout => "connect_timeout",
            Refused => "refused",
            Unreachable => "unreachable",
            BannerRejected => "banner_rejected",
            EhloRejected => "ehlo_rejected",
            ProtocolError => "protocol_error",
            StarttlsNotOffered => "starttls_not_offered",
            StarttlsRejected => "starttls_rejected",
            TlsHandshakeFailed => "tls_handshake_failed",
            Closed => "closed",
            Reset => "reset",
            ReadTimeout => "read_timeout",
            CertExpired => "cert_expired",
            CertNotYetValid => "cert_not_yet_valid",
            CertUntrusted => "cert_untrusted",
            CertNameMismatch => "cert_name_mismatch",
            CertSha1 => "cert_sha1",
            UnexpectedReply => "unexpected_reply",
            LocalError => "local_error",
        }
    }

    /// One line an admin understands.
    pub fn describe(self) -> &'static str {
        use Reason::*;
        match self {
            Nxdomain => "the name does not exist (NXDOMAIN)",
            Servfail => "the DNS server failed to answer (SERVFAIL)",
            DnsTimeout => "no DNS answer within the timeout",
            DnsRefused => "the DNS server refused the query (REFUSED)",
            NoAddress => "the name has no A or AAAA record",
            NullMx => "the domain publishes a null MX: it accepts no mail",
            InvalidName => "the DNS answer names something that is not a valid host name",
            DnsUnreachable => "no DNS server could be reached",
            ConnectTimeout => "TCP connect to port 25 got no answer",
            Refused => "TCP connect was refused (RST)",
            Unreachable => "the host or network is unreachable",
            BannerRejected => "the server greeted with a rejection",
            EhloRejected => "the server rejected EHLO and HELO",
            ProtocolError => "the server did not speak valid SMTP",
            StarttlsNotOffered => "TLS is required but the server does not offer STARTTLS",
            StarttlsRejected => "the server refused STARTTLS",
            TlsHandshakeFailed => "the TLS handshake failed",
            Closed => "the server closed the connection",
            Reset => "the connection was reset",
            ReadTimeout => "the server stopped answering",
            CertExpired => "the certificate has expired",
            CertNotYetValid => "the certificate is not valid yet",
            CertUntrusted => "the certificate is not issued by a trusted CA",
            CertNameMismatch => "the certificate does not match the TLS domain",
            CertSha1 => "the certificate chain uses a SHA-1 signature",
            UnexpectedReply => "the server sent a reply code that makes no sense at this step",
            LocalError => "the probe could not run (local error)",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The taxonomy as data (`mailflow-exporter codes --output json`, `docs/codes.json`).
#[derive(Debug, Serialize)]
pub struct Catalog {
    pub codes: Vec<CodeEntry>,
}

#[derive(Debug, Serialize)]
pub struct CodeEntry {
    pub code: Code,
    pub smtp_prefix: &'static str,
    pub title: &'static str,
    pub alert: &'static str,
    pub runbook: String,
    pub causes: &'static [&'static str],
    pub fix: &'static str,
    pub reasons: Vec<ReasonEntry>,
}

#[derive(Debug, Serialize)]
pub struct ReasonEntry {
    pub reason: Reason,
    pub description: &'static str,
}

pub fn catalog() -> Catalog {
    Catalog {
        codes: Code::ALL
            .into_iter()
            .map(|code| CodeEntry {
                code,
                smtp_prefix: code.smtp_prefix(),
                title: code.title(),
                alert: code.alert_name(),
                runbook: code.runbook(),
                causes: code.causes(),
                fix: code.fix(),
                reasons: Reason::ALL
                    .into_iter()
                    .filter(|r| r.code() == code)
                    .map(|reason| ReasonEntry {
                        reason,
                        description: reason.describe(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// [`catalog`] as pretty JSON, exactly as `docs/codes.json` holds it (without the final newline).
pub fn catalog_json() -> String {
    serde_json::to_string_pretty(&catalog()).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_reason_and_texts() {
        for code in Code::ALL {
            assert!(Reason::ALL.iter().any(|r| r.code() == code), "{code} has no reason");
            assert!(!code.title().is_empty() && !code.fix().is_empty());
            assert!(!code.causes().is_empty());
            assert_eq!(Code::parse(code.as_str()), Some(code));
            assert!(code.smtp_prefix().starts_with("450 4."));
        }
    }

    #[test]
    fn catalog_lists_every_code_and_reason_once() {
        let c = catalog();
        assert_eq!(c.codes.len(), Code::ALL.len());
        let reasons: usize = c.codes.iter().map(|e| e.reasons.len()).sum();
        assert_eq!(reasons, Reason::ALL.len());
        let json = catalog_json();
        assert!(json.contains("\"4.4.316\"") && json.contains("\"refused\""));
    }

    #[test]
    fn reason_strings_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()));
            assert!(
                r.as_str()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
            );
            assert_eq!(serde_json::to_value(r).ok(), Some(serde_json::Value::from(r.as_str())));
        }
    }
}
