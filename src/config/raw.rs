//! The config file as written: serde structs that keep YAML locations ([`Spanned`]), so that
//! validation in `super` can name file, line and field for every error.

use super::connector::{ConnectorType, TlsSettings};
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;
use std::time::Duration;

/// A duration written as `60s`, `10s`, `24h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim())
            .map(Dur)
            .map_err(|e| serde::de::Error::custom(format!("bad duration {s:?}: {e} (write e.g. 10s, 5m, 24h)")))
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub(super) interval: Option<Spanned<Dur>>,
    pub(super) timeout: Option<Spanned<Dur>>,
    pub(super) probe_deadline: Option<Spanned<Dur>>,
    pub(super) helo: Option<Spanned<String>>,
    pub(super) message_expiration: Option<Spanned<Dur>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    #[serde(default)]
    pub(super) servers: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrust {
    #[serde(default)]
    pub(super) extra_ca_files: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnector {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) enabled: Option<bool>,
    #[serde(default)]
    pub(super) connector_type: Option<ConnectorType>,
    #[serde(default)]
    pub(super) use_mx_record: Option<Spanned<bool>>,
    #[serde(default)]
    pub(super) smart_hosts: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(super) recipient_domains: Option<Spanned<Vec<String>>>,
    /// Concrete domains to probe when recipient_domains holds wildcards.
    #[serde(default)]
    pub(super) sample_domains: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(super) tls_settings: Option<Spanned<TlsSettings>>,
    #[serde(default)]
    pub(super) tls_domain: Option<Spanned<String>>,
    /// Lab only: Exchange Online always uses 25.
    #[serde(default)]
    pub(super) port: Option<Spanned<u16>>,
    #[serde(default)]
    pub(super) interval: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) timeout: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) probe_deadline: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) helo: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) test_mode: Option<bool>,
    #[serde(default)]
    pub(super) route_all_messages_via_on_premises: Option<bool>,
    #[serde(default)]
    pub(super) cloud_services_mail_enabled: Option<bool>,
    #[serde(default)]
    pub(super) transport_rule_scoped: Option<bool>,
    #[serde(default)]
    pub(super) all_accepted_domains: Option<bool>,
    #[serde(default)]
    pub(super) connector_source: Option<String>,
    #[serde(default)]
    pub(super) comment: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    #[serde(default)]
    pub(super) phase_histograms: Option<bool>,
    #[serde(default)]
    pub(super) certificate_not_before: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    pub(super) tenant_id: Spanned<String>,
    pub(super) client_id: Spanned<String>,
    #[serde(default)]
    pub(super) client_secret_file: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) client_secret_env: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) certificate_file: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) private_key_file: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) federated_token_file: Option<Spanned<String>>,
    /// Present only to refuse it with a clear message: secrets do not belong in the file.
    #[serde(default)]
    pub(super) client_secret: Option<Spanned<serde::de::IgnoredAny>>,
    #[serde(default)]
    pub(super) login_url: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) graph_url: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) exchange_url: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) poll_interval: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) sync: Option<bool>,
    #[serde(default)]
    pub(super) sync_interval: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) details_per_5min: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) defaults: RawDefaults,
    #[serde(default)]
    pub(super) dns: RawDns,
    #[serde(default)]
    pub(super) trust: RawTrust,
    #[serde(default)]
    pub(super) max_concurrent_probes: Option<Spanned<usize>>,
    #[serde(default)]
    pub(super) tenant: Option<Spanned<RawTenant>>,
    #[serde(default)]
    pub(super) metrics: RawMetrics,
    #[serde(default = "no_connectors")]
    pub(super) connectors: Spanned<Vec<Spanned<RawConnector>>>,
}

/// `connectors:` may be left out when they come from the tenant (`tenant.sync`).
fn no_connectors() -> Spanned<Vec<Spanned<RawConnector>>> {
    Spanned::new(
        Vec::new(),
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}
