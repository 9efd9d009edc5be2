//! The validated connector: what Exchange Online's `Get-OutboundConnector` says, reduced to what a
//! probe needs ([`ProbeSpec`]) plus what the agent needs to schedule and label it.

use super::names::{DomainPattern, HostName, HostPort};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::time::Duration;

/// Exchange Online `TlsSettings`. `None` is the connector's null: opportunistic TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsSettings {
    #[default]
    None,
    EncryptionOnly,
    CertificateValidation,
    DomainValidation,
}

impl TlsSettings {
    pub const ALL: [TlsSettings; 4] = [
        TlsSettings::None,
        TlsSettings::EncryptionOnly,
        TlsSettings::CertificateValidation,
        TlsSettings::DomainValidation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TlsSettings::None => "none",
            TlsSettings::EncryptionOnly => "encryption-only",
            TlsSettings::CertificateValidation => "certificate-validation",
            TlsSettings::DomainValidation => "domain-validation",
        }
    }

    /// Accepts our kebab-case names and Exchange's spellings (`EncryptionOnly`, `$null`); the
    /// integers Windows PowerShell 5.1 prints are the importer's business.
    pub fn parse(s: &str) -> Option<TlsSettings> {
        match normalize_enum(s).as_str() {
            "" | "none" | "null" | "$null" | "opportunistic" => Some(TlsSettings::None),
            "encryptiononly" => Some(TlsSettings::EncryptionOnly),
            "certificatevalidation" => Some(TlsSettings::CertificateValidation),
            "domainvalidation" => Some(TlsSettings::DomainValidation),
            _ => None,
        }
    }

    /// STARTTLS is mandatory for every setting but the null one.
    pub fn requires_tls(self) -> bool {
        self != TlsSettings::None
    }

    /// Whether the certificate chain and dates must be valid.
    pub fn validates_certificate(self) -> bool {
        matches!(self, TlsSettings::CertificateValidation | TlsSettings::DomainValidation)
    }
}

impl fmt::Display for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TlsSettings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        let s = s.unwrap_or_default();
        TlsSettings::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown tls_settings {s:?}; expected none, encryption-only, certificate-validation or domain-validation"
            ))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectorType {
    #[default]
    OnPremises,
    Partner,
}

impl ConnectorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorType::OnPremises => "on-premises",
            ConnectorType::Partner => "partner",
        }
    }

    /// Accepts `on-premises`/`OnPremises`/`on_premises` and `partner` in any case.
    pub fn parse(s: &str) -> Option<ConnectorType> {
        match normalize_enum(s).as_str() {
            "onpremises" => Some(ConnectorType::OnPremises),
            "partner" => Some(ConnectorType::Partner),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for ConnectorType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ConnectorType::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown connector_type {s:?}; expected on-premises or partner"))
        })
    }
}

/// Lower-cases and drops `-`, `_` and spaces, so Exchange's and our spellings compare equal.
pub fn normalize_enum(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '-' | '_' | ' '))
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Where Exchange Online sends the connector's mail.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "targets")]
pub enum Routing {
    /// Smart hosts (FQDN or IP literal), tried in the order given.
    SmartHosts(Vec<HostPort>),
    /// MX of each domain.
    Mx(Vec<HostName>),
}

impl Routing {
    /// Whether probing asks DNS anything (MX, or a smart host given by name).
    pub fn needs_dns(&self) -> bool {
        match self {
            Routing::Mx(_) => true,
            Routing::SmartHosts(hosts) => hosts.iter().any(|h| matches!(h.host, crate::config::Host::Name(_))),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Routing::SmartHosts(_) => "smart_host",
            Routing::Mx(_) => "mx",
        }
    }
}

impl fmt::Display for Routing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |items: Vec<String>| items.join(", ");
        match self {
            Routing::SmartHosts(h) => write!(f, "smart hosts: {}", join(h.iter().map(|h| h.to_string()).collect())),
            Routing::Mx(d) => write!(f, "MX of: {}", join(d.iter().map(|d| d.to_string()).collect())),
        }
    }
}

/// What to probe, already validated: everything Exchange Online's delivery depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeSpec {
    /// The connector's name (shown in reports).
    pub connector: String,
    pub routing: Routing,
    /// Used when a smart host has no explicit port (25 outside labs).
    pub port: u16,
    /// The connector's own recipient domains (may hold wildcards).
    pub recipient_domains: Vec<DomainPattern>,
    pub tls_settings: TlsSettings,
    pub tls_domain: Option<DomainPattern>,
    pub helo: HostName,
    /// Deadline of each step (connect, each reply, the handshake, each DNS lookup).
    pub timeout: Duration,
    /// Deadline of the whole probe, all hosts and steps together, so a slow-but-answering
    /// target cannot hold a concurrency slot for many intervals.
    pub deadline: Duration,
}

/// Where a connector's definition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConnectorSource {
    /// The config file.
    #[default]
    File,
    /// The tenant, read through the admin API (`tenant.sync`).
    Tenant,
}

impl ConnectorSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorSource::File => "file",
            ConnectorSource::Tenant => "tenant",
        }
    }
}

/// What a connector carries in Exchange Online, as `Get-OutboundConnector` says (scoping and
/// hybrid flags): it decides how loudly a failure should page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Carries {
    /// `RouteAllMessagesViaOnPremises`: centralized mail transport, all external mail goes here.
    pub route_all_via_on_premises: bool,
    /// `CloudServicesMailEnabled`: the hybrid path; on-premises servers often accept Microsoft
    /// 365 only by certificate, so an outside probe may be refused where Microsoft is not.
    pub cloud_services_mail: bool,
    /// `IsTransportRuleScoped`: used only for mail a transport rule sends to it.
    pub transport_rule_scoped: bool,
    /// `AllAcceptedDomains`.
    pub all_accepted_domains: bool,
    /// `ConnectorSource`.
    pub connector_source: ConnectorOrigin,
}

/// `ConnectorSource`, reduced to a bounded set (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConnectorOrigin {
    #[default]
    Default,
    HybridWizard,
    Migrated,
    AdminUi,
    Other,
}

impl ConnectorOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorOrigin::Default => "default",
            ConnectorOrigin::HybridWizard => "hybrid_wizard",
            ConnectorOrigin::Migrated => "migrated",
            ConnectorOrigin::AdminUi => "admin_ui",
            ConnectorOrigin::Other => "other",
        }
    }

    pub fn parse(s: &str) -> ConnectorOrigin {
        match normalize_enum(s).as_str() {
            "" | "default" => ConnectorOrigin::Default,
            "hybridwizard" => ConnectorOrigin::HybridWizard,
            "migrated" => ConnectorOrigin::Migrated,
            "adminui" => ConnectorOrigin::AdminUi,
            _ => ConnectorOrigin::Other,
        }
    }
}

/// How much a connector matters, for alert severity (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Test mode: Exchange Online does not send production mail through it.
    Test,
    /// Transport-rule scoped: only mail a rule redirects.
    RuleScoped,
    /// Centralized mail transport: all external mail.
    Centralized,
    /// The hybrid path to on-premises Exchange.
    Hybrid,
    Standard,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Test,
        Role::RuleScoped,
        Role::Centralized,
        Role::Hybrid,
        Role::Standard,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Test => "test",
            Role::RuleScoped => "rule_scoped",
            Role::Centralized => "centralized",
            Role::Hybrid => "hybrid",
            Role::Standard => "standard",
        }
    }
}

/// A validated connector: the probe plus scheduling and labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Connector {
    pub source: ConnectorSource,
    pub carries: Carries,
    pub enabled: bool,
    pub connector_type: ConnectorType,
    pub interval: Duration,
    pub test_mode: bool,
    /// Free text for admins (the importer writes the connector's comment here).
    pub comment: Option<String>,
    pub probe: ProbeSpec,
}

impl Connector {
    pub fn name(&self) -> &str {
        &self.probe.connector
    }

    /// Test mode and rule scoping first (they carry little), then centralized transport (it
    /// carries everything), then the hybrid path.
    pub fn role(&self) -> Role {
        if self.test_mode {
            Role::Test
        } else if self.carries.transport_rule_scoped {
            Role::RuleScoped
        } else if self.carries.route_all_via_on_premises {
            Role::Centralized
        } else if self.carries.cloud_services_mail {
            Role::Hybrid
        } else {
            Role::Standard
        }
    }
}
