//! Exchange Online's own view, kept beside the probe's: the last good read of Microsoft's queue,
//! the last tenant sync, and how the two views compare. A failed read keeps the last good data
//! (with its age); reads back off on errors and honour `Retry-After`.

use crate::config::{Config, Connector, ConnectorSource, Defaults, DomainPattern};
use crate::taxonomy::Code;
use crate::tenant::{AcceptedDomain, ApiError, ConnectorQueue, QueueView};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What the agent knows from the tenant right now.
#[derive(Debug, Clone, Default)]
pub struct ExoState {
    /// The last good queue read.
    pub view: Option<Arc<QueueView>>,
    /// Whether the last queue read succeeded (None before the first).
    pub last_poll_ok: Option<bool>,
    /// A bounded description of the last queue error (for the status page and log).
    pub last_poll_error: Option<String>,
    pub sync: Option<Arc<Synced>>,
    pub last_sync_ok: Option<bool>,
    pub last_sync_error: Option<String>,
    /// How often a queue read is due; data older than two of these is stale.
    pub poll_interval: Duration,
}

/// The last good tenant sync.
#[derive(Debug, Clone, PartialEq)]
pub struct Synced {
    pub at: SystemTime,
    /// Connectors read from the tenant, as the importer made them (file connectors of the same
    /// name take precedence when merged).
    pub connectors: Vec<Connector>,
    pub message_expiration: Option<Duration>,
    pub accepted_domains: Vec<AcceptedDomain>,
}

impl ExoState {
    /// The queue view, when it is recent enough to be trusted over the probe's model.
    pub fn fresh_view(&self, now: SystemTime) -> Option<&QueueView> {
        let v = self.view.as_deref()?;
        let age = now.duration_since(v.fetched_at).unwrap_or(Duration::ZERO);
        (age <= self.poll_interval * 2 + Duration::from_secs(60)).then_some(v)
    }

    /// Microsoft's queue for one connector (fresh data only).
    pub fn queue(&self, connector: &str, now: SystemTime) -> Option<&ConnectorQueue> {
        self.fresh_view(now)?.connectors.get(connector)
    }

    /// For the queue clock: `Some` when fresh tenant data exists and messages can be attributed
    /// to the connector (it names recipient domains), with the oldest pending message's receipt
    /// time (`None` inside: nothing held).
    pub fn oldest(&self, connector: &Connector, now: SystemTime) -> Option<Option<SystemTime>> {
        if !attributable(connector) {
            return None;
        }
        let v = self.fresh_view(now)?;
        Some(v.connectors.get(connector.name()).and_then(|q| q.oldest_received))
    }

    /// The accepted domain (from the last sync) for a domain the connector names.
    pub fn accepted(&self, domain: &str) -> Option<&AcceptedDomain> {
        self.sync
            .as_ref()?
            .accepted_domains
            .iter()
            .find(|d| d.domain.eq_ignore_ascii_case(domain))
    }
}

/// Whether Microsoft's messages can be matched to the connector: only by recipient domain, so a
/// connector that names none has no view of its own.
pub fn attributable(connector: &Connector) -> bool {
    !connector.probe.recipient_domains.is_empty()
}

/// Microsoft holds mail for the connector while our probe delivers: something admits this agent
/// but not Microsoft 365's addresses, or Microsoft takes a route the agent does not.
pub fn vantage_mismatch(queue: Option<&ConnectorQueue>, probe_delivers: Option<bool>) -> bool {
    queue.is_some_and(|q| q.total() > 0) && probe_delivers == Some(true)
}

/// The migrated-tenant case: the probe is refused (4.4.316) on an on-premises connector whose
/// recipient domain is still InternalRelay. Returns that domain.
pub fn migrated_domain<'a>(exo: &'a ExoState, connector: &Connector, probe_code: Option<Code>) -> Option<&'a str> {
    if probe_code != Some(Code::ConnectionRefused)
        || connector.connector_type != crate::config::ConnectorType::OnPremises
    {
        return None;
    }
    connector
        .probe
        .recipient_domains
        .iter()
        .filter_map(DomainPattern::concrete)
        .filter_map(|d| exo.accepted(d.as_str()))
        .find(|a| a.is_internal_relay())
        .map(|a| a.domain.as_str())
}

/// The commands that fix the migrated case, for the status page and `check`.
pub fn migrated_fix(connector: &str, domain: &str) -> String {
    format!(
        "The connector routes to an on-premises server that refuses, and {domain} is still InternalRelay: if the \
         mailboxes have moved to Exchange Online, disable the connector and make the domain authoritative \
         (Exchange Online PowerShell): Set-OutboundConnector -Identity \"{connector}\" -Enabled $false; \
         Set-AcceptedDomain -Identity \"{domain}\" -DomainType Authoritative (takes 30-60 minutes to apply)."
    )
}

/// Turns a sync's connector export into connectors with the file's defaults (interval, timeout,
/// deadline, HELO), through the importer, so a tenant connector is read exactly as an imported one.
pub fn connectors_from_sync(json: &serde_json::Value, defaults: &Defaults) -> Result<Vec<Connector>, String> {
    let opts = crate::import::ImportOptions {
        source_name: "the tenant (admin API)".into(),
        include_disabled: true,
    };
    let imported = crate::import::import_connectors(&json.to_string(), &opts).map_err(|e| e.to_string())?;
    let cfg = Config::parse(Path::new("tenant-sync.yaml"), &imported.yaml).map_err(|e| e.to_string())?;
    Ok(cfg
        .connectors
        .into_iter()
        .map(|mut c| {
            c.interval = defaults.interval;
            c.probe.timeout = defaults.timeout.min(c.interval);
            c.probe.deadline = defaults
                .probe_deadline
                .unwrap_or_else(|| crate::config::default_deadline(c.interval, c.probe.timeout))
                .min(c.interval);
            c.probe.helo = defaults.helo.clone();
            c.source = ConnectorSource::Tenant;
            c
        })
        .collect())
}

/// The file's connectors plus the tenant's (a file connector wins over a tenant one of the same
/// name), and the tenant's message expiration when it has one.
pub fn merge(file: &Config, synced: Option<&Synced>) -> Config {
    let mut cfg = file.clone();
    let Some(s) = synced else { return cfg };
    for c in &s.connectors {
        if cfg.connector(c.name()).is_none() {
            cfg.connectors.push(c.clone());
        }
    }
    if let Some(e) = s.message_expiration
        && (crate::config::MIN_EXPIRATION..=crate::config::MAX_EXPIRATION).contains(&e)
    {
        cfg.defaults.message_expiration = e;
    }
    cfg
}

/// How long to wait after a failed read: `Retry-After` when throttled, else doubling from the
/// interval's tenth up to the interval.
pub fn backoff(err: &ApiError, failures: u32, interval: Duration) -> Duration {
    match err {
        ApiError::Throttled { retry_after } => (*retry_after).max(Duration::from_secs(1)),
        _ => {
            let base = (interval / 10).max(Duration::from_secs(1));
            base.saturating_mul(1 << failures.min(10)).min(interval)
        }
    }
}

/// A short, escaped description of an error for the page (never secrets: API errors carry none).
pub fn describe(err: &ApiError) -> String {
    crate::probe::escape(&err.to_string(), 300)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::QueueCode;
    use std::collections::BTreeMap;

    #[test]
    fn mismatch_needs_mail_held_and_a_delivering_probe() {
        let mut q = ConnectorQueue::default();
        assert!(!vantage_mismatch(Some(&q), Some(true)), "nothing held");
        q.pending = BTreeMap::from([(QueueCode::Code(Code::ConnectionRefused), 3)]);
        assert!(vantage_mismatch(Some(&q), Some(true)));
        assert!(!vantage_mismatch(Some(&q), Some(false)), "both views agree it fails");
        assert!(!vantage_mismatch(Some(&q), None), "not probed yet");
        assert!(!vantage_mismatch(None, Some(true)), "no tenant data");
    }

    #[test]
    fn backoff_honours_retry_after_and_doubles_otherwise() {
        let i = Duration::from_secs(300);
        let t = ApiError::Throttled {
            retry_after: Duration::from_secs(42),
        };
        assert_eq!(backoff(&t, 5, i), Duration::from_secs(42));
        let e = ApiError::Transport("x".into());
        assert_eq!(backoff(&e, 0, i), Duration::from_secs(30));
        assert_eq!(backoff(&e, 1, i), Duration::from_secs(60));
        assert_eq!(backoff(&e, 30, i), i, "capped at the interval");
    }
}
