//! A loopback fake of the three Microsoft endpoints the tenant client talks to, on one HTTPS
//! server: the Entra ID token endpoint, Graph message trace (list and details by recipient) and
//! the Exchange admin API (`InvokeCommand`). `demo` uses it as "a fake tenant"; the integration
//! tests use it to check what the client sends and how it copes with faults.
//!
//! Shapes follow Microsoft's documentation (Graph v1.0 `exchangeMessageTrace`,
//! `exchangeMessageTraceDetail`, OAuth 2.0 client credentials) and the reason lines in
//! `shared/reference`. Data is anonymised: `*.example` names, 192.0.2.0/24, 198.51.100.0/24
//! and 203.0.113.0/24 addresses, which appear in the data only and are never connected to.
//!
//! It is a verifier too: client secrets are compared, JWT client assertions checked (RS256
//! signature against the registered certificate, `x5t#S256`, `aud`, `iss`/`sub`, `nbf`/`exp`),
//! tokens are scoped and expire, and every request is recorded with the scope of the token it
//! carried. Faults ([`Fault`]) can be switched on per endpoint, for the next N requests, the
//! Nth one, or always.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::pki::{CertKey, PkiError, TestCa};
use crate::config::{Credential, TenantConfig};

/// The fake's tenant (directory) id, unless the builder sets another.
pub const TENANT_ID: &str = "0b5e1d2c-3f4a-4b6c-8d7e-9f0a1b2c3d4e";
/// The fake app's client id, unless the builder sets another.
pub const CLIENT_ID: &str = "6c1f2e3d-4a5b-4c6d-9e8f-0a1b2c3d4e5f";
/// The client secret the fake accepts by default (a lab value, not a real secret).
pub const CLIENT_SECRET: &str = "lab~not-a-real-secret.0123456789";
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
pub const EXCHANGE_SCOPE: &str = "https://outlook.office365.com/.default";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Request bodies the fake reads at most.
const MAX_REQUEST_BODY: usize = 1024 * 1024;
/// Requests recorded at most (the oldest are dropped first).
const MAX_RECORDED: usize = 10_000;

/// Which of the fake's endpoints a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Token,
    MessageTrace,
    Details,
    AdminApi,
    /// Anything else (answered 404).
    Other,
}

/// A misbehaviour the fake can be told to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After: n` (or without the header).
    Throttle { retry_after: Option<u64> },
    /// 401, as for an expired or revoked token.
    Unauthorized,
    /// 403, as when the app lacks the permission or role.
    Forbidden,
    /// 500 with an error body.
    ServerError,
    /// 200 with JSON cut off in the middle (a correct Content-Length for the cut body).
    TruncatedJson,
    /// 200 with a streamed (chunked) body of this many bytes that never closes its JSON.
    HugeBody { bytes: usize },
    /// 200 with an empty `value` and a next link to the same page (Graph does send those).
    EmptyPage,
    /// 200 with the real page, but `@odata.nextLink` pointing at this origin instead.
    ForeignNextLink(String),
}

/// When a [`Fault`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// The next n requests to the endpoint.
    Next(u32),
    /// The endpoint's nth request (1-based, counted since start).
    Nth(u64),
    /// Every request until [`FakeTenant::clear_faults`].
    Always,
}

/// A request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub endpoint: Endpoint,
    pub method: String,
    /// Path, percent-decoded.
    pub path: String,
    /// Raw query string.
    pub query: Option<String>,
    /// Token requests: the scope asked for; API requests: the scope of the bearer token (None
    /// when it carried no valid token).
    pub scope: Option<String>,
    /// Token requests: `client_secret`, `certificate` or `federated`.
    pub credential: Option<String>,
    /// Admin API: the cmdlet and its parameters.
    pub cmdlet: Option<String>,
    pub parameters: Option<Value>,
    pub status: u16,
}

/// A message × recipient in the fake's trace data.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeMessage {
    /// Message trace id (shared by the recipients of one message).
    pub id: String,
    pub recipient: String,
    pub sender: String,
    pub subject: String,
    pub received: SystemTime,
    /// `pending`, `delivered`, `failed`, ... as Graph spells them (case as given).
    pub status: String,
    /// Defer reason lines, oldest first; each becomes a `Defer` event.
    pub defers: Vec<String>,
}

/// What the fake tenant holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scenario {
    pub messages: Vec<FakeMessage>,
    /// `Get-OutboundConnector` objects; `TestMode` and `IsTransportRuleScoped` decide which
    /// read returns them.
    pub connectors: Vec<Value>,
    /// (`DomainName`, `DomainType`).
    pub accepted_domains: Vec<(String, String)>,
    /// `Get-TransportConfig`'s `MessageExpiration` as the API prints it (`1.00:00:00`).
    pub message_expiration: Option<Value>,
}

impl Scenario {
    pub fn new() -> Scenario {
        Scenario::default()
    }

    /// `count` pending messages to `user{n}@{domain}`, received `age` ago (spread one minute
    /// apart, the first the oldest), each deferred with `reason` when given.
    pub fn pending(mut self, domain: &str, count: usize, age: Duration, reason: Option<&str>) -> Scenario {
        self.add(domain, count, age, "pending", reason);
        self
    }

    /// `count` messages to `domain` with another status (`delivered`, `failed`, ...).
    pub fn with_status(mut self, domain: &str, count: usize, age: Duration, status: &str) -> Scenario {
        self.add(domain, count, age, status, None);
        self
    }

    fn add(&mut self, domain: &str, count: usize, age: Duration, status: &str, reason: Option<&str>) {
        let now = SystemTime::now();
        for i in 0..count {
            let n = self.messages.len();
            let received = now.checked_sub(age).unwrap_or(UNIX_EPOCH) + Duration::from_secs(60 * i as u64);
            self.messages.push(FakeMessage {
                id: fake_guid(n as u64 + 1),
                recipient: format!("user{}@{domain}", i + 1),
                sender: format!("sender{}@contoso.example", n % 7 + 1),
                subject: format!("Lab message {}", n + 1),
                received,
                status: status.into(),
                defers: reason.map(|r| vec![r.to_string()]).unwrap_or_default(),
            });
        }
    }

    pub fn connector(mut self, c: Value) -> Scenario {
        self.connectors.push(c);
        self
    }

    pub fn accepted_domain(mut self, name: &str, domain_type: &str) -> Scenario {
        self.accepted_domains.push((name.into(), domain_type.into()));
        self
    }

    pub fn message_expiration(mut self, v: Value) -> Scenario {
        self.message_expiration = Some(v);
        self
    }

    /// The demo's tenant: the headline 4.4.316 case (an on-premises connector still pointing at
    /// a retired server while its domain is InternalRelay), a partner connector failing
    /// DomainValidation as 4.4.317 SubjectMismatch, a queue nobody's connector matches, a
    /// test-mode and a rule-scoped connector.
    pub fn demo() -> Scenario {
        Scenario::new()
            .pending(
                "contoso.example",
                12,
                Duration::from_secs(5 * 3600),
                Some(REASON_REFUSED),
            )
            .pending("eu.contoso.example", 3, Duration::from_secs(2 * 3600), None)
            .pending(
                "fabrikam.example",
                5,
                Duration::from_secs(3 * 3600),
                Some(REASON_SUBJECT_MISMATCH),
            )
            .pending(
                "tailspin.example",
                2,
                Duration::from_secs(1800),
                Some(REASON_STARTTLS_REQUIRED),
            )
            .pending(
                "northwind.example",
                2,
                Duration::from_secs(40 * 60),
                Some(REASON_TLS_FAILED),
            )
            .with_status("contoso.example", 4, Duration::from_secs(7 * 3600), "delivered")
            .with_status("fabrikam.example", 2, Duration::from_secs(6 * 3600), "Delivered")
            .connector(connector(
                "Contoso on-premises",
                "0f1e2d3c-4b5a-4968-8776-655443322110",
                "OnPremises",
                &["contoso.example", "*.contoso.example"],
                &["hybrid.contoso.example"],
            ))
            .connector(connector(
                "Fabrikam partner (TLS)",
                "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
                "Partner",
                &["fabrikam.example"],
                &[],
            ))
            .connector({
                let mut c = connector(
                    "Tailspin (test mode)",
                    "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e",
                    "Partner",
                    &["tailspin.example"],
                    &["smtp.tailspin.example"],
                );
                c["TestMode"] = json!(true);
                c
            })
            .connector({
                let mut c = connector(
                    "Relay via appliance (rule-scoped)",
                    "3c4d5e6f-7a8b-4c9d-8e1f-2a3b4c5d6e7f",
                    "OnPremises",
                    &["*"],
                    &["198.51.100.25"],
                );
                c["IsTransportRuleScoped"] = json!(true);
                c
            })
            .accepted_domain("contoso.example", "InternalRelay")
            .accepted_domain("sales.contoso.example", "Authoritative")
            .message_expiration(json!("1.00:00:00"))
    }
}

/// The reason lines of the reference, anonymised (used by the demo and the tests).
pub const REASON_REFUSED: &str = "Reason: [{LED=450 4.4.316 Connection refused [Message=Socket error code 10061] [LastAttemptedServerName=hybrid.contoso.example] [LastAttemptedIP=203.0.113.5:25] [BN8NAM12FT045.eop-nam12.prod.protection.outlook.com 2026-12-01T08:15:02.311Z 08DE1A2B3C4D5E6F]};{MSG=};{FQDN=hybrid.contoso.example};{IP=203.0.113.5};{LRT=12/1/2026 8:15:02 AM}]";
pub const REASON_SUBJECT_MISMATCH: &str = "Reason: [{LED=450 4.4.317 Cannot connect to remote server [Message=SubjectMismatch Expected Subject: *.fabrikam.example. Presented Subject: CN=ExchangeServer01. Thumbprint: D0AC5A1E9F0B3C7D2E4F6A8B0C1D2E3F4A5B6C7D] [LastAttemptedServerName=mail.fabrikam.example] [LastAttemptedIP=192.0.2.10:25] [SmtpSecurity=-1;-1] [SN4PR0601CA0012.namprd06.prod.outlook.com 2026-12-01T09:02:44.120Z 08DE2B3C4D5E6F70]};{MSG=};{FQDN=mail.fabrikam.example};{IP=192.0.2.10};{LRT=12/1/2026 9:02:44 AM}]";
pub const REASON_STARTTLS_REQUIRED: &str = "Reason: [{LED=450 4.4.317 Cannot establish session with remote server [Message=451 5.7.3 STARTTLS is required to send mail] [LastAttemptedServerName=smtp.tailspin.example] [LastAttemptedIP=198.51.100.40:25]};{MSG=};{FQDN=};{IP=};{LRT=}]";
pub const REASON_TLS_FAILED: &str = "Reason: [{LED=450 4.4.317 Cannot connect to remote server [Message=451 4.4.0 TLS negotiation failed with error SocketError] [LastAttemptedServerName=mx.northwind.example] [LastAttemptedIP=203.0.113.77:25] [SmtpSecurity=-2;-2] [DM6PR11CA0004.namprd11.prod.outlook.com 2026-12-01T09:40:11.002Z 08DE3C4D5E6F7081]};{MSG=4. OutboundProxyTargetIP: 203.0.113.77. OutboundProxyTargetHostName: mx.northwind.example};{FQDN=};{IP=};{LRT=}]";
pub const REASON_ILLEGAL_MESSAGE: &str = "Reason: [{LED=450 4.4.317 Cannot connect to remote server [Message=451 4.4.0 Security status IllegalMessage] [LastAttemptedServerName=mx.woodgrove.example] [LastAttemptedIP=192.0.2.200:25]};{MSG=};{FQDN=};{IP=};{LRT=}]";

/// A `Get-OutboundConnector` object as the admin API returns one (fields the importer reads).
pub fn connector(name: &str, guid: &str, kind: &str, domains: &[&str], smart_hosts: &[&str]) -> Value {
    json!({
        "Identity": name,
        "Name": name,
        "Guid": guid,
        "Enabled": true,
        "ConnectorType": kind,
        "ConnectorSource": "Default",
        "UseMXRecord": smart_hosts.is_empty(),
        "SmartHosts": smart_hosts,
        "RecipientDomains": domains,
        "TlsSettings": if kind == "Partner" { json!("DomainValidation") } else { json!("CertificateValidation") },
        "TlsDomain": if kind == "Partner" { json!(format!("*.{}", domains.first().unwrap_or(&"example"))) } else { Value::Null },
        "IsTransportRuleScoped": false,
        "RouteAllMessagesViaOnPremises": false,
        "AllAcceptedDomains": false,
        "TestMode": false,
        "SenderRewritingEnabled": false,
        "WhenChanged": "2026-11-20T14:03:11+00:00",
    })
}

fn fake_guid(n: u64) -> String {
    format!("7e3b2b2e-1b5e-4b17-80cc-{n:012x}")
}

/// Builds a [`FakeTenant`].
pub struct FakeTenantBuilder {
    scenario: Scenario,
    tenant_id: String,
    client_id: String,
    secret: Option<String>,
    app_cert: Option<CertificateDer<'static>>,
    federated: Option<String>,
    token_lifetime: u64,
    page_size: usize,
    admin_page_size: usize,
    honour_status_filter: bool,
    server: Option<(CertKey, String)>,
}

impl Default for FakeTenantBuilder {
    fn default() -> Self {
        FakeTenantBuilder {
            scenario: Scenario::default(),
            tenant_id: TENANT_ID.into(),
            client_id: CLIENT_ID.into(),
            secret: Some(CLIENT_SECRET.into()),
            app_cert: None,
            federated: None,
            token_lifetime: 3599,
            page_size: 1000,
            admin_page_size: 1000,
            honour_status_filter: true,
            server: None,
        }
    }
}

impl FakeTenantBuilder {
    pub fn new() -> FakeTenantBuilder {
        FakeTenantBuilder::default()
    }

    pub fn scenario(mut self, s: Scenario) -> Self {
        self.scenario = s;
        self
    }

    pub fn tenant_id(mut self, id: &str) -> Self {
        self.tenant_id = id.into();
        self
    }

    pub fn client_id(mut self, id: &str) -> Self {
        self.client_id = id.into();
        self
    }

    /// The accepted client secret (`None`: secrets are refused).
    pub fn client_secret(mut self, s: Option<&str>) -> Self {
        self.secret = s.map(str::to_string);
        self
    }

    /// The app's registered certificate: JWT assertions must be signed by its key.
    pub fn app_certificate(mut self, der: CertificateDer<'static>) -> Self {
        self.app_cert = Some(der);
        self
    }

    /// The federated assertion accepted as is (a workload identity token).
    pub fn federated_token(mut self, t: &str) -> Self {
        self.federated = Some(t.into());
        self
    }

    /// `expires_in` of issued tokens, in seconds.
    pub fn token_lifetime(mut self, secs: u64) -> Self {
        self.token_lifetime = secs;
        self
    }

    /// Most message traces per page, whatever `$top` asks (to force paging).
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = n.max(1);
        self
    }

    /// Most admin API objects per page.
    pub fn admin_page_size(mut self, n: usize) -> Self {
        self.admin_page_size = n.max(1);
        self
    }

    /// `false`: ignore `status eq '...'` in `$filter` and return every status.
    pub fn honour_status_filter(mut self, yes: bool) -> Self {
        self.honour_status_filter = yes;
        self
    }

    /// Serve with this certificate, whose CA (PEM) clients must trust. Without it, the fake
    /// mints a CA and a certificate for `127.0.0.1` and `localhost` itself.
    pub fn server_cert(mut self, cert: CertKey, ca_pem: String) -> Self {
        self.server = Some((cert, ca_pem));
        self
    }

    /// Listens on `127.0.0.1` (a free port) and serves until the [`FakeTenant`] is dropped.
    pub async fn start(self) -> Result<FakeTenant, FakeError> {
        let (cert, ca_pem) = match self.server {
            Some(s) => s,
            None => {
                let ca = TestCa::new("Mailflow Lab Tenant CA")?;
                (ca.leaf_valid(&["localhost", "127.0.0.1"])?, ca.cert_pem())
            }
        };
        let tls = tokio_rustls::TlsAcceptor::from(cert.server_config()?);
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            base_url: format!("https://{addr}"),
            scenario: self.scenario,
            tenant_id: self.tenant_id,
            client_id: self.client_id,
            secret: self.secret,
            app_cert: self.app_cert,
            federated: self.federated,
            token_lifetime: self.token_lifetime,
            page_size: self.page_size,
            admin_page_size: self.admin_page_size,
            honour_status_filter: self.honour_status_filter,
            tokens: HashMap::new(),
            jtis: HashSet::new(),
            issued: 0,
            counts: HashMap::new(),
            faults: Vec::new(),
            recorded: Vec::new(),
        }));
        let task = tokio::spawn(accept_loop(listener, tls, Arc::clone(&state)));
        Ok(FakeTenant {
            addr,
            ca_pem,
            state,
            task,
        })
    }
}

/// Why the fake could not start.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

struct TokenInfo {
    scope: String,
    expires: SystemTime,
}

struct State {
    base_url: String,
    scenario: Scenario,
    tenant_id: String,
    client_id: String,
    secret: Option<String>,
    app_cert: Option<CertificateDer<'static>>,
    federated: Option<String>,
    token_lifetime: u64,
    page_size: usize,
    admin_page_size: usize,
    honour_status_filter: bool,
    tokens: HashMap<String, TokenInfo>,
    jtis: HashSet<String>,
    issued: u64,
    counts: HashMap<Endpoint, u64>,
    faults: Vec<(Endpoint, When, Fault)>,
    recorded: Vec<Recorded>,
}

/// The running fake. The server stops when this is dropped.
pub struct FakeTenant {
    addr: SocketAddr,
    ca_pem: String,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for FakeTenant {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeTenant {
    /// Starts a fake with the default app (client secret [`CLIENT_SECRET`]) and `scenario`.
    pub async fn start(scenario: Scenario) -> Result<FakeTenant, FakeError> {
        FakeTenantBuilder::new().scenario(scenario).start().await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT`: the login, Graph and Exchange base URL at once.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA (PEM) that signed the fake's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA in the form `Tenant::new` takes as `extra_ca`.
    pub fn extra_ca(&self) -> Vec<(String, Vec<u8>)> {
        vec![("lab-tenant-ca.pem".into(), self.ca_pem.clone().into_bytes())]
    }

    /// A tenant config pointing every base URL at the fake.
    pub fn config(&self, credential: Credential) -> TenantConfig {
        let st = lock(&self.state);
        TenantConfig {
            tenant_id: st.tenant_id.clone(),
            client_id: st.client_id.clone(),
            credential,
            login_url: self.url(),
            graph_url: self.url(),
            exchange_url: self.url(),
            poll_interval: Duration::from_secs(60),
            sync: true,
            sync_interval: Duration::from_secs(900),
            details_per_5min: 60,
        }
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).recorded.clone()
    }

    /// Requests to `endpoint` so far.
    pub fn count(&self, endpoint: Endpoint) -> u64 {
        lock(&self.state).counts.get(&endpoint).copied().unwrap_or(0)
    }

    pub fn clear_requests(&self) {
        lock(&self.state).recorded.clear();
    }

    /// Adds a fault rule (the first matching rule applies to a request).
    pub fn fault(&self, endpoint: Endpoint, when: When, fault: Fault) {
        lock(&self.state).faults.push((endpoint, when, fault));
    }

    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    /// Invalidates every token issued so far (the next API request gets 401).
    pub fn expire_tokens(&self) {
        lock(&self.state).tokens.clear();
    }

    pub fn set_scenario(&self, s: Scenario) {
        lock(&self.state).scenario = s;
    }

    /// Marks the pending messages to `domain` delivered (the connector recovered).
    pub fn deliver(&self, domain: &str) {
        let mut st = lock(&self.state);
        let suffix = format!("@{}", domain.to_ascii_lowercase());
        for m in &mut st.scenario.messages {
            if m.recipient.to_ascii_lowercase().ends_with(&suffix) && m.status.eq_ignore_ascii_case("pending") {
                m.status = "delivered".into();
            }
        }
    }

    pub fn set_page_size(&self, n: usize) {
        lock(&self.state).page_size = n.max(1);
    }

    pub fn set_honour_status_filter(&self, yes: bool) {
        lock(&self.state).honour_status_filter = yes;
    }
}

async fn accept_loop(listener: TcpListener, tls: tokio_rustls::TlsAcceptor, state: Arc<Mutex<State>>) {
    // Dropping the JoinSet (when this task is aborted) aborts every connection task.
    let mut conns = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        while conns.try_join_next().is_some() {}
        let tls = tls.clone();
        let state = Arc::clone(&state);
        conns.spawn(async move {
            let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), tls.accept(stream)).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(handle(state, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn json_response(status: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn graph_error(status: u16, code: &str, message: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message, "innerError": {
        "date": "2026-12-01T10:00:00", "request-id": "00000000-0000-4000-8000-000000000000"}}}),
    )
}

fn token_error(status: u16, error: &str, aadsts: &str, text: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"error": error, "error_description": format!("{aadsts}: {text} Trace ID: 00000000-0000-4000-8000-000000000001"),
                "error_codes": [aadsts.trim_start_matches("AADSTS").parse::<u64>().unwrap_or(0)]}),
    )
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(hex) = b.get(i + 1..i + 3)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let raw_path = req.uri().path().to_string();
    let path = pct_decode(&raw_path);
    let query = req.uri().query().map(str::to_string);
    let bearer = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let body = match Limited::new(req.into_body(), MAX_REQUEST_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return graph_error(413, "RequestTooLarge", "request body too large"),
    };
    let mut st = lock(&state);
    let endpoint = route(&st, &method, &path);
    let n = {
        let c = st.counts.entry(endpoint).or_insert(0);
        *c += 1;
        *c
    };
    let mut rec = Recorded {
        endpoint,
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        scope: None,
        credential: None,
        cmdlet: None,
        parameters: None,
        status: 0,
    };
    let resp = serve(
        &mut st,
        endpoint,
        n,
        &path,
        query.as_deref(),
        bearer.as_deref(),
        &body,
        &mut rec,
    );
    rec.status = resp.status().as_u16();
    if st.recorded.len() >= MAX_RECORDED {
        st.recorded.remove(0);
    }
    st.recorded.push(rec);
    resp
}

fn route(st: &State, method: &Method, path: &str) -> Endpoint {
    let token_path = format!("/{}/oauth2/v2.0/token", st.tenant_id);
    let trace = "/v1.0/admin/exchange/tracing/messageTraces";
    if method == Method::POST && path.eq_ignore_ascii_case(&token_path) {
        Endpoint::Token
    } else if method == Method::GET && path == trace {
        Endpoint::MessageTrace
    } else if method == Method::GET && path.starts_with(trace) && path.contains("/getDetailsByRecipient(") {
        Endpoint::Details
    } else if method == Method::POST && path.starts_with("/adminapi/beta/") && path.ends_with("/InvokeCommand") {
        Endpoint::AdminApi
    } else {
        Endpoint::Other
    }
}

/// The fault that applies to the `n`th request of `endpoint`, consuming `Next` counts.
fn take_fault(st: &mut State, endpoint: Endpoint, n: u64) -> Option<Fault> {
    for (ep, when, fault) in st.faults.iter_mut() {
        if *ep != endpoint {
            continue;
        }
        match when {
            When::Always => return Some(fault.clone()),
            When::Nth(k) if *k == n => return Some(fault.clone()),
            When::Next(k) if *k > 0 => {
                *k -= 1;
                return Some(fault.clone());
            }
            _ => {}
        }
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn serve(
    st: &mut State,
    endpoint: Endpoint,
    n: u64,
    path: &str,
    query: Option<&str>,
    bearer: Option<&str>,
    body: &[u8],
    rec: &mut Recorded,
) -> Response<Body> {
    if endpoint == Endpoint::Other {
        return graph_error(404, "NotFound", "Resource not found");
    }
    if endpoint == Endpoint::Token {
        if let Some(f) = take_fault(st, endpoint, n) {
            return fault_response(st, &f, None);
        }
        return token(st, body, rec);
    }
    // Bearer token: valid, unexpired, for the right resource.
    let want = if endpoint == Endpoint::AdminApi {
        EXCHANGE_SCOPE
    } else {
        GRAPH_SCOPE
    };
    let now = SystemTime::now();
    let info = bearer.and_then(|b| st.tokens.get(b));
    rec.scope = info.map(|i| i.scope.clone());
    match info {
        None => {
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
            );
        }
        Some(i) if i.expires <= now => {
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            );
        }
        Some(i) if i.scope != want => {
            return graph_error(401, "InvalidAuthenticationToken", "Invalid audience.");
        }
        Some(_) => {}
    }
    let fault = take_fault(st, endpoint, n);
    match endpoint {
        Endpoint::MessageTrace => list_traces(st, query, fault.as_ref()),
        Endpoint::Details => match fault {
            Some(f) => fault_response(st, &f, None),
            None => details(st, path),
        },
        Endpoint::AdminApi => admin(st, path, query, body, fault.as_ref(), rec),
        _ => graph_error(404, "NotFound", "Resource not found"),
    }
}

/// A fault's response; `page` is the real page for [`Fault::ForeignNextLink`].
fn fault_response(st: &State, f: &Fault, page: Option<Value>) -> Response<Body> {
    match f {
        Fault::Throttle { retry_after } => {
            let mut r = graph_error(429, "TooManyRequests", "Too many requests.");
            if let Some(s) = retry_after
                && let Ok(v) = hyper::header::HeaderValue::from_str(&s.to_string())
            {
                r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
            }
            r
        }
        Fault::Unauthorized => graph_error(401, "InvalidAuthenticationToken", "Access token validation failure."),
        Fault::Forbidden => graph_error(
            403,
            "Forbidden",
            "Missing role permissions on the request. API requires one of 'ExchangeMessageTrace.Read.All'.",
        ),
        Fault::ServerError => graph_error(500, "InternalServerError", "An internal server error occurred."),
        Fault::TruncatedJson => {
            let full = json!({"value": [{"id": fake_guid(999), "recipientAddress": "cut@contoso.example", "status": "Pending"}]})
                .to_string();
            let cut = full[..full.len() / 2].to_string();
            let mut r = Response::new(Full::new(Bytes::from(cut)).boxed());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
        Fault::HugeBody { bytes } => {
            const CHUNK: usize = 1024 * 1024;
            let head = Bytes::from_static(b"{\"value\":[");
            let filler = Bytes::from(vec![b' '; CHUNK]);
            let chunks = bytes.div_ceil(CHUNK);
            let stream = futures_util::stream::iter(
                std::iter::once(head)
                    .chain(std::iter::repeat_n(filler, chunks))
                    .map(|b| Ok::<_, Infallible>(Frame::data(b))),
            );
            Response::new(StreamBody::new(stream).boxed())
        }
        Fault::EmptyPage => json_response(
            200,
            &json!({"value": [], "@odata.nextLink": page.as_ref().and_then(|p| p.get("@self")).cloned()}),
        ),
        Fault::ForeignNextLink(origin) => {
            let mut p = page.unwrap_or_else(|| json!({"value": []}));
            if let Some(obj) = p.as_object_mut() {
                obj.remove("@self");
                obj.insert(
                    "@odata.nextLink".into(),
                    json!(format!(
                        "{origin}/v1.0/admin/exchange/tracing/messageTraces?$skiptoken=stolen"
                    )),
                );
            }
            let _ = st;
            json_response(200, &p)
        }
    }
}

fn form_get<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn token(st: &mut State, body: &[u8], rec: &mut Recorded) -> Response<Body> {
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let scope = form_get(&form, "scope").unwrap_or("").to_string();
    rec.scope = Some(scope.clone());
    if form_get(&form, "grant_type") != Some("client_credentials") {
        return token_error(
            400,
            "unsupported_grant_type",
            "AADSTS70003",
            "The app requested an unsupported grant type.",
        );
    }
    if form_get(&form, "client_id") != Some(st.client_id.as_str()) {
        return token_error(
            400,
            "unauthorized_client",
            "AADSTS700016",
            "Application was not found in the directory.",
        );
    }
    if scope != GRAPH_SCOPE && scope != EXCHANGE_SCOPE {
        return token_error(
            400,
            "invalid_scope",
            "AADSTS70011",
            "The provided value for the input parameter 'scope' is not valid.",
        );
    }
    let verdict = if let Some(secret) = form_get(&form, "client_secret") {
        rec.credential = Some("client_secret".into());
        match &st.secret {
            Some(s) if s == secret => Ok(()),
            _ => Err(("AADSTS7000215", "Invalid client secret provided.")),
        }
    } else if form_get(&form, "client_assertion_type") == Some(JWT_BEARER) {
        let assertion = form_get(&form, "client_assertion").unwrap_or("");
        if st.federated.as_deref().is_some_and(|f| f == assertion) {
            rec.credential = Some("federated".into());
            Ok(())
        } else {
            rec.credential = Some("certificate".into());
            verify_assertion(st, assertion)
        }
    } else {
        Err((
            "AADSTS7000218",
            "The request body must contain the parameter 'client_assertion' or 'client_secret'.",
        ))
    };
    if let Err((code, text)) = verdict {
        return token_error(401, "invalid_client", code, text);
    }
    st.issued += 1;
    let mut rnd = [0u8; 16];
    let _ = SystemRandom::new().fill(&mut rnd);
    let token = format!(
        "lab-token-{}-{}",
        st.issued,
        rnd.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    st.tokens.insert(
        token.clone(),
        TokenInfo {
            scope,
            expires: SystemTime::now() + Duration::from_secs(st.token_lifetime),
        },
    );
    json_response(
        200,
        &json!({"token_type": "Bearer", "expires_in": st.token_lifetime, "ext_expires_in": st.token_lifetime, "access_token": token}),
    )
}

/// Checks a JWT client assertion the way Entra ID does, against the registered certificate.
fn verify_assertion(st: &mut State, jwt: &str) -> Result<(), (&'static str, &'static str)> {
    const BAD: (&str, &str) = ("AADSTS50027", "JWT token is invalid or malformed.");
    let Some(cert) = &st.app_cert else {
        return Err((
            "AADSTS700027",
            "Client assertion contains an invalid signature: no certificate registered.",
        ));
    };
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, c, s] = parts.as_slice() else {
        return Err(BAD);
    };
    let decode = |p: &str| -> Option<Value> { serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok() };
    let (Some(header), Some(claims), Ok(sig)) = (decode(h), decode(c), URL_SAFE_NO_PAD.decode(s)) else {
        return Err(BAD);
    };
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(("AADSTS5002730", "Invalid JWT header: unsupported algorithm."));
    }
    let thumb = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, cert));
    if header.get("x5t#S256").and_then(Value::as_str) != Some(thumb.as_str()) {
        return Err((
            "AADSTS700027",
            "The certificate with identifier used to sign the client assertion is not registered on application.",
        ));
    }
    let Ok((_, x509)) = x509_parser::parse_x509_certificate(cert) else {
        return Err(BAD);
    };
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        x509.public_key().subject_public_key.data.as_ref(),
    );
    if key.verify(format!("{h}.{c}").as_bytes(), &sig).is_err() {
        return Err(("AADSTS700027", "Client assertion contains an invalid signature."));
    }
    let aud = format!("{}/{}/oauth2/v2.0/token", st.base_url, st.tenant_id);
    if claims.get("aud").and_then(Value::as_str) != Some(aud.as_str()) {
        return Err((
            "AADSTS700212",
            "No matching federated identity record found for presented assertion audience.",
        ));
    }
    let cid = Some(st.client_id.as_str());
    if claims.get("iss").and_then(Value::as_str) != cid || claims.get("sub").and_then(Value::as_str) != cid {
        return Err((
            "AADSTS700021",
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    let nbf = claims.get("nbf").and_then(Value::as_u64).unwrap_or(u64::MAX);
    if exp <= now || nbf > now + 300 {
        return Err(("AADSTS700024", "Client assertion is not within its valid time range."));
    }
    let jti = claims.get("jti").and_then(Value::as_str).unwrap_or("");
    if jti.is_empty() || !st.jtis.insert(jti.to_string()) {
        return Err(("AADSTS700025", "Client assertion jti is missing or was already used."));
    }
    Ok(())
}

fn iso(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let dt = time::OffsetDateTime::from_unix_timestamp(secs as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    dt.format(&time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .unwrap_or_default()
}

fn parse_iso(s: &str) -> Option<SystemTime> {
    let dt = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(dt.unix_timestamp()).ok()?))
}

/// `$filter` as the list call understands it: `receivedDateTime ge/le <time>` and
/// `status eq '<value>'`, joined by `and`.
struct Filter {
    ge: Option<SystemTime>,
    le: Option<SystemTime>,
    status: Option<String>,
}

fn parse_filter(f: &str) -> Result<Filter, String> {
    let toks: Vec<&str> = f.split_whitespace().collect();
    let mut out = Filter {
        ge: None,
        le: None,
        status: None,
    };
    let mut i = 0;
    while i < toks.len() {
        if toks[i].eq_ignore_ascii_case("and") {
            i += 1;
            continue;
        }
        let [field, op, value] = toks
            .get(i..i + 3)
            .and_then(|s| <[&str; 3]>::try_from(s).ok())
            .ok_or("incomplete clause")?;
        match (field, op) {
            ("receivedDateTime", "ge") => out.ge = Some(parse_iso(value).ok_or("bad receivedDateTime")?),
            ("receivedDateTime", "le") => out.le = Some(parse_iso(value).ok_or("bad receivedDateTime")?),
            ("status", "eq") => {
                let v = value
                    .strip_prefix('\'')
                    .and_then(|v| v.strip_suffix('\''))
                    .ok_or("status needs a quoted value")?;
                out.status = Some(v.to_string());
            }
            _ => return Err(format!("unsupported filter clause {field} {op}")),
        }
        i += 3;
    }
    Ok(out)
}

fn trace_json(m: &FakeMessage) -> Value {
    json!({
        "id": m.id,
        "senderAddress": m.sender,
        "recipientAddress": m.recipient,
        "messageId": format!("<{}@contoso.example>", m.id),
        "receivedDateTime": iso(m.received),
        "subject": m.subject,
        "size": 24_817,
        "fromIP": "198.51.100.10",
        "toIP": "",
        "status": m.status,
    })
}

fn list_traces(st: &State, query: Option<&str>, fault: Option<&Fault>) -> Response<Body> {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let top = match get("$top").map(str::parse::<usize>) {
        None => 1000,
        Some(Ok(n)) if (1..=5000).contains(&n) => n,
        _ => return graph_error(400, "BadRequest", "$top must be between 1 and 5000."),
    };
    let filter = match get("$filter").map(parse_filter).transpose() {
        Ok(f) => f,
        Err(e) => return graph_error(400, "BadRequest", &format!("Invalid filter clause: {e}")),
    };
    let now = SystemTime::now();
    let (ge, le, status) = match filter {
        Some(f) => (f.ge, f.le, f.status),
        None => (None, None, None),
    };
    let le = le.unwrap_or(now);
    let ge = ge.unwrap_or(le - Duration::from_secs(48 * 3600));
    if le
        .duration_since(ge)
        .is_ok_and(|d| d > Duration::from_secs(10 * 86_400))
    {
        return graph_error(400, "BadRequest", "The time range must not exceed 10 days.");
    }
    let skip = get("$skiptoken").and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
    let mut rows: Vec<&FakeMessage> = st
        .scenario
        .messages
        .iter()
        .filter(|m| m.received >= ge && m.received <= le)
        .filter(|m| match (&status, st.honour_status_filter) {
            (Some(s), true) => m.status.eq_ignore_ascii_case(s),
            _ => true,
        })
        .collect();
    rows.sort_by(|a, b| b.received.cmp(&a.received).then_with(|| a.id.cmp(&b.id)));
    let size = top.min(st.page_size);
    let page: Vec<Value> = rows.iter().skip(skip).take(size).map(|m| trace_json(m)).collect();
    // Graph's next link repeats the request's query (as sent) and adds `$skiptoken`.
    let base_query: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("$skiptoken=") && !p.starts_with("%24skiptoken="))
        .collect();
    let link = |skip: usize| {
        let mut q = base_query.join("&");
        if !q.is_empty() {
            q.push('&');
        }
        format!(
            "{}/v1.0/admin/exchange/tracing/messageTraces?{q}$skiptoken={skip}",
            st.base_url
        )
    };
    let mut v = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#admin/exchange/tracing/messageTraces",
        "value": page,
    });
    if skip + size < rows.len() {
        v["@odata.nextLink"] = json!(link(skip + size));
    }
    match fault {
        None => json_response(200, &v),
        Some(Fault::EmptyPage) => {
            v["@self"] = json!(link(skip));
            fault_response(st, &Fault::EmptyPage, Some(v))
        }
        Some(f) => fault_response(st, f, Some(v)),
    }
}

fn details(st: &State, path: &str) -> Response<Body> {
    let rest = path.trim_start_matches("/v1.0/admin/exchange/tracing/messageTraces/");
    let parsed = rest
        .split_once("/getDetailsByRecipient(recipientAddress='")
        .and_then(|(id, tail)| {
            let addr = tail.strip_suffix("')")?;
            Some((id.to_string(), addr.replace("''", "'")))
        });
    let Some((id, addr)) = parsed else {
        return graph_error(400, "BadRequest", "Invalid function call.");
    };
    let Some(m) = st
        .scenario
        .messages
        .iter()
        .find(|m| m.id == id && m.recipient.eq_ignore_ascii_case(&addr))
    else {
        return graph_error(404, "NotFound", "The message trace was not found.");
    };
    let ev = |secs: u64, event: &str, description: &str, data: &str| {
        json!({
            "id": m.id,
            "messageId": format!("<{}@contoso.example>", m.id),
            "dateTime": iso(m.received + Duration::from_secs(secs)),
            "event": event,
            "action": "",
            "description": description,
            "data": data,
        })
    };
    let mut events = vec![
        ev(
            0,
            "Receive",
            "Message received by: BN8PR12MB3456.namprd12.prod.outlook.com",
            "<root><MEP Name=\"ConnectorId\" String=\"Default BN8PR12MB3456\" /></root>",
        ),
        ev(
            2,
            "Submit",
            "The message was submitted.",
            "<root><MEP Name=\"Directionality\" String=\"Originating\" /></root>",
        ),
    ];
    for (i, reason) in m.defers.iter().enumerate() {
        let data = format!(
            "<root><MEP Name=\"DeferReason\" String=\"{}\" /></root>",
            reason.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;")
        );
        events.push(ev(60 + 900 * i as u64, "Defer", reason, &data));
    }
    json_response(
        200,
        &json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(microsoft.graph.exchangeMessageTraceDetail)", "value": events}),
    )
}

fn admin(
    st: &State,
    path: &str,
    query: Option<&str>,
    body: &[u8],
    fault: Option<&Fault>,
    rec: &mut Recorded,
) -> Response<Body> {
    let tenant = path
        .trim_start_matches("/adminapi/beta/")
        .trim_end_matches("/InvokeCommand");
    if !tenant.eq_ignore_ascii_case(&st.tenant_id) {
        return graph_error(404, "NotFound", "Tenant not found.");
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return graph_error(400, "BadRequest", "The request body is not JSON.");
    };
    let cmdlet = v
        .pointer("/CmdletInput/CmdletName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let params = v.pointer("/CmdletInput/Parameters").cloned().unwrap_or(json!({}));
    rec.cmdlet = Some(cmdlet.to_string());
    rec.parameters = Some(params.clone());
    let flag = |k: &str| params.get(k).and_then(Value::as_bool).unwrap_or(false);
    let is = |c: &Value, k: &str| c.get(k).and_then(Value::as_bool).unwrap_or(false);
    let items: Vec<Value> = match cmdlet {
        "Get-OutboundConnector" => st
            .scenario
            .connectors
            .iter()
            .filter(|c| {
                if flag("IsTransportRuleScoped") {
                    is(c, "IsTransportRuleScoped")
                } else if flag("IncludeTestModeConnectors") {
                    !is(c, "IsTransportRuleScoped")
                } else {
                    !is(c, "IsTransportRuleScoped") && !is(c, "TestMode")
                }
            })
            .cloned()
            .collect(),
        "Get-TransportConfig" => vec![json!({
            "Identity": "Transport Settings",
            "MessageExpiration": st.scenario.message_expiration.clone().unwrap_or(Value::Null),
            "MaxRecipientEnvelopeLimit": "Unlimited",
        })],
        "Get-AcceptedDomain" => st
            .scenario
            .accepted_domains
            .iter()
            .map(|(n, t)| json!({"Identity": n, "Name": n, "DomainName": n, "DomainType": t, "Default": false}))
            .collect(),
        _ => {
            return graph_error(
                400,
                "BadRequest",
                &format!("The term '{cmdlet}' is not recognized as a cmdlet this fake knows."),
            );
        }
    };
    let skip = query
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "$skiptoken")
                .and_then(|(_, v)| v.parse::<usize>().ok())
        })
        .unwrap_or(0);
    let page: Vec<Value> = items.iter().skip(skip).take(st.admin_page_size).cloned().collect();
    let mut out = json!({
        "@odata.context": format!("{}/adminapi/beta/{}/$metadata#Collection(Exchange.GenericHashTable)", st.base_url, st.tenant_id),
        "adminapi.warnings": [],
        "value": page,
    });
    if skip + st.admin_page_size < items.len() {
        out["@odata.nextLink"] = json!(format!(
            "{}/adminapi/beta/{}/InvokeCommand?$skiptoken={}",
            st.base_url,
            st.tenant_id,
            skip + st.admin_page_size
        ));
    }
    match fault {
        None => json_response(200, &out),
        Some(f) => fault_response(st, f, Some(out)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let f = parse_filter("receivedDateTime ge 2026-12-01T00:00:00Z and receivedDateTime le 2026-12-02T00:00:00Z and status eq 'pending'").unwrap();
        assert_eq!(f.status.as_deref(), Some("pending"));
        assert!(f.ge.is_some() && f.le.is_some());
        assert!(parse_filter("subject eq 'x'").is_err());
        assert!(parse_filter("receivedDateTime ge").is_err());
        assert_eq!(pct_decode("a%20b%27%27c%zz"), "a b''c%zz");
    }

    #[test]
    fn demo_scenario_is_anonymised() {
        let s = Scenario::demo();
        assert!(s.messages.iter().all(|m| m.recipient.ends_with(".example")));
        assert_eq!(s.connectors.len(), 4);
    }
}
