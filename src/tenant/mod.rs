//! Exchange Online's own view of the connectors, read from the tenant: Microsoft's queue
//! (Graph message trace: messages still pending, and the defer reason of the oldest) and, on
//! request, the connectors, message expiration and accepted domains (the Exchange admin API).
//!
//! [`api`] is the HTTPS client (rustls only) with token handling and request accounting,
//! [`trace`] the message-trace poll, [`led`] the parser of Microsoft's reason lines, [`sync`]
//! the admin API. The agent drives a [`Tenant`] on an interval and keeps the last good
//! [`QueueView`]; tests and `demo` point it at the loopback fakes in `lab::tenant`.

pub mod api;
pub mod auth;
pub mod led;
pub mod sync;
pub mod trace;

use crate::config::{DomainPattern, TenantConfig};
use crate::taxonomy::Code;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

pub use api::{Api, ApiError, Outcome};

/// The connector messages are attributed to when no connector's recipient domains match.
pub const UNATTRIBUTED: &str = "(unattributed)";

/// What a queue poll needs to know of a connector: its name and the recipient domains that
/// route mail to it (wildcards included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRoute {
    pub connector: String,
    pub recipient_domains: Vec<DomainPattern>,
}

/// The code a pending message is held with, as far as Microsoft told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueueCode {
    /// From the message's last defer reason (`other` for codes outside the taxonomy).
    Code(Code),
    /// No defer reason fetched for this message or its connector yet.
    Unknown,
}

impl QueueCode {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueCode::Code(c) => c.as_str(),
            QueueCode::Unknown => "unknown",
        }
    }
}

/// Microsoft's last defer reason for a message, parsed from its `LED=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeferReason {
    /// The enhanced status code as printed (`4.4.316`), when the line has one.
    pub status: Option<String>,
    /// [`Code`] for the status (`Other` for codes outside the taxonomy, `None` without a status).
    pub code: Option<Code>,
    /// The whole reason line, escaped and truncated for display.
    pub text: String,
    /// `LastAttemptedServerName`, when present.
    pub server: Option<String>,
    /// `LastAttemptedIP` (with its port), when present.
    pub ip: Option<String>,
    /// When the defer event happened.
    pub at: Option<SystemTime>,
}

/// Microsoft's queue for one connector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectorQueue {
    /// Pending messages by code: a message's own defer reason, else the newest reason fetched
    /// for this connector, else [`QueueCode::Unknown`] (see [`trace::poll`]).
    pub pending: BTreeMap<QueueCode, u64>,
    /// When the oldest pending message was received by Exchange Online.
    pub oldest_received: Option<SystemTime>,
    /// The newest defer reason fetched for this connector's messages.
    pub last_reason: Option<DeferReason>,
}

impl ConnectorQueue {
    pub fn total(&self) -> u64 {
        self.pending.values().sum()
    }
}

/// One poll of Microsoft's queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueView {
    pub fetched_at: SystemTime,
    /// By connector name; [`UNATTRIBUTED`] for messages no connector's domains match.
    pub connectors: BTreeMap<String, ConnectorQueue>,
    /// Message traces read in this poll (all statuses), and how many were pending.
    pub traces_read: u64,
    pub pending: u64,
    /// Detail requests made in this poll.
    pub details_fetched: u32,
}

/// An accepted domain of the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedDomain {
    pub domain: String,
    /// `Authoritative`, `InternalRelay` or `ExternalRelay` (as Exchange spells it).
    pub domain_type: String,
}

impl AcceptedDomain {
    pub fn is_internal_relay(&self) -> bool {
        self.domain_type.eq_ignore_ascii_case("InternalRelay")
    }
}

/// One read of the tenant's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncView {
    pub fetched_at: SystemTime,
    /// `Get-OutboundConnector` as the admin API returned it (all, test-mode and rule-scoped
    /// included): an array of connector objects, ready for the importer.
    pub connectors: serde_json::Value,
    /// `Get-TransportConfig`'s `MessageExpiration`, when it could be read.
    pub message_expiration: Option<Duration>,
    pub accepted_domains: Vec<AcceptedDomain>,
}

/// Why the tenant client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("tenant: {0}")]
    Setup(String),
}

/// The tenant client: one per agent, shared by the queue poll and the sync.
pub struct Tenant {
    api: Api,
    cfg: TenantConfig,
    budget: trace::DetailBudget,
    details: trace::DetailCache,
}

impl Tenant {
    /// `extra_ca` (the config's `trust.extra_ca_files`) is trusted for the tenant endpoints too,
    /// so a lab can run fakes with its own CA.
    pub fn new(cfg: &TenantConfig, extra_ca: &[(String, Vec<u8>)]) -> Result<Tenant, TenantError> {
        Ok(Tenant {
            api: Api::new(cfg, extra_ca)?,
            cfg: cfg.clone(),
            budget: trace::DetailBudget::new(cfg.details_per_5min),
            details: trace::DetailCache::default(),
        })
    }

    pub fn config(&self) -> &TenantConfig {
        &self.cfg
    }

    /// Reads the pending messages received within `window` before `now`, attributes them to
    /// connectors by recipient domain, and fetches the defer reasons of the oldest few within
    /// the details budget.
    pub async fn poll_queue(
        &self,
        routes: &[QueueRoute],
        window: Duration,
        now: SystemTime,
    ) -> Result<QueueView, ApiError> {
        trace::poll(&self.api, &self.budget, &self.details, routes, window, now).await
    }

    /// Reads connectors, the message expiration and the accepted domains.
    pub async fn sync(&self, now: SystemTime) -> Result<SyncView, ApiError> {
        sync::read(&self.api, now).await
    }

    /// Requests made so far, by API and outcome (for `mailflow_exo_requests_total`).
    pub fn requests(&self) -> Vec<((api::ApiName, Outcome), u64)> {
        self.api.requests()
    }
}
