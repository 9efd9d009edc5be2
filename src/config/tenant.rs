//! The optional `tenant:` section: how the agent reads Exchange Online's own view (Graph
//! message trace, the Exchange admin API). Secrets never live in the YAML: only paths to files
//! or names of environment variables, so the config can be shared and committed.

use std::path::PathBuf;
use std::time::Duration;

/// How the app proves who it is to Microsoft Entra ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Credential {
    /// A client secret read from this file (trailing newline ignored).
    SecretFile(PathBuf),
    /// A client secret read from this environment variable.
    SecretEnv(String),
    /// A certificate (PEM) and its private key (PEM, PKCS#8 or PKCS#1 RSA): a signed JWT client
    /// assertion, which Microsoft recommends over secrets.
    Certificate { cert_file: PathBuf, key_file: PathBuf },
    /// A federated token file (Kubernetes workload identity, Azure managed identity federation):
    /// re-read before every token request, since the platform rotates it.
    FederatedTokenFile(PathBuf),
}

impl Credential {
    /// A bounded label for metrics and logs (never the secret).
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::SecretFile(_) | Credential::SecretEnv(_) => "client_secret",
            Credential::Certificate { .. } => "certificate",
            Credential::FederatedTokenFile(_) => "federated_token",
        }
    }
}

/// A validated `tenant:` section.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantConfig {
    /// Directory ID (GUID) or a verified domain (`contoso.onmicrosoft.com`).
    pub tenant_id: String,
    /// Application (client) ID, a GUID.
    pub client_id: String,
    pub credential: Credential,
    /// Base URLs, without a trailing slash; overridable so tests can point at loopback fakes.
    pub login_url: String,
    pub graph_url: String,
    pub exchange_url: String,
    /// How often Microsoft's queue is read (message trace).
    pub poll_interval: Duration,
    /// Whether connectors, the message expiration and accepted domains are read from the tenant.
    pub sync: bool,
    /// How often the tenant's configuration is read when `sync` is on.
    pub sync_interval: Duration,
    /// Detail requests per 5 minutes (Microsoft allows 100 per tenant; the rest is left to admins).
    pub details_per_5min: u32,
}

pub const DEFAULT_LOGIN_URL: &str = "https://login.microsoftonline.com";
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com";
pub const DEFAULT_EXCHANGE_URL: &str = "https://outlook.office365.com";
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(300);
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(5);
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(3600);
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(900);
pub const DEFAULT_DETAILS_PER_5MIN: u32 = 60;
/// Microsoft's limit for the details call.
pub const MAX_DETAILS_PER_5MIN: u32 = 100;

/// A GUID as Entra ID prints them (8-4-4-4-12 hex digits).
pub fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// An `https://host[:port][/path]` base URL, returned without a trailing slash. Plain HTTP is
/// refused: tokens and message data must not cross a network in the clear.
pub fn base_url(s: &str) -> Result<String, String> {
    let u = url::Url::parse(s.trim()).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if u.scheme() != "https" {
        return Err(format!("{s:?}: only https:// is accepted"));
    }
    if u.host().is_none() || !u.username().is_empty() || u.password().is_some() {
        return Err(format!("{s:?}: needs a host and no user info"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!("{s:?}: no query or fragment"));
    }
    Ok(u.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_and_urls() {
        assert!(is_guid("11111111-2222-3333-4444-555555555555"));
        assert!(!is_guid("11111111-2222-3333-4444-55555555555"));
        assert!(!is_guid("contoso.onmicrosoft.com"));
        assert_eq!(base_url("https://127.0.0.1:8443/"), Ok("https://127.0.0.1:8443".into()));
        assert_eq!(
            base_url("https://graph.microsoft.com"),
            Ok("https://graph.microsoft.com".into())
        );
        assert!(base_url("http://graph.microsoft.com").is_err());
        assert!(base_url("https://user:pw@graph.microsoft.com").is_err());
        assert!(base_url("graph.microsoft.com").is_err());
    }
}
