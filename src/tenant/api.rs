//! HTTPS to Microsoft's endpoints: one client (rustls, public roots plus the config's extra CA
//! files), bearer tokens from [`super::auth`], bounded responses, and every request counted by
//! API and outcome.
//!
//! Each request opens its own connection (`TcpStream` → `tokio_rustls` → hyper's HTTP/1
//! `client::conn`). Polls are minutes apart and make a handful of requests, so a pool would save
//! little and would add idle sockets, half-closed connections and reuse bugs to reason about; a
//! fresh connection also gives every request one plain deadline covering connect, handshake,
//! response and body.

use super::TenantError;
use super::auth::{Scope, Secret, TokenSource};
use crate::config::TenantConfig;
use crate::probe::escape;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use url::{Host, Url};

/// Which API a request went to (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiName {
    Token,
    MessageTrace,
    MessageTraceDetails,
    AdminApi,
}

impl ApiName {
    pub const ALL: [ApiName; 4] = [
        ApiName::Token,
        ApiName::MessageTrace,
        ApiName::MessageTraceDetails,
        ApiName::AdminApi,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiName::Token => "token",
            ApiName::MessageTrace => "message_trace",
            ApiName::MessageTraceDetails => "message_trace_details",
            ApiName::AdminApi => "admin_api",
        }
    }

    /// The token scope this API needs (`None` for the token endpoint itself).
    pub fn scope(self) -> Option<Scope> {
        match self {
            ApiName::Token => None,
            ApiName::MessageTrace | ApiName::MessageTraceDetails => Some(Scope::Graph),
            ApiName::AdminApi => Some(Scope::Exchange),
        }
    }

    /// What a 403 most likely means for this API, for the error message.
    fn permission_hint(self) -> &'static str {
        match self {
            ApiName::Token => "the app registration may be disabled or blocked",
            ApiName::MessageTrace | ApiName::MessageTraceDetails => {
                "the app needs the application permission ExchangeMessageTrace.Read.All (admin consent granted) on Microsoft Graph"
            }
            ApiName::AdminApi => {
                "the app needs the application permission Exchange.ManageAsApp on Office 365 Exchange Online and an Exchange role (e.g. View-Only Configuration)"
            }
        }
    }
}

/// How a request ended (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    Throttled,
    Unauthorized,
    Forbidden,
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Throttled,
        Outcome::Unauthorized,
        Outcome::Forbidden,
        Outcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Throttled => "throttled",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Forbidden => "forbidden",
            Outcome::Error => "error",
        }
    }
}

/// Why a call to Microsoft failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("throttled (429); retry after {}", humantime::format_duration(*retry_after))]
    Throttled { retry_after: Duration },
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("forbidden (missing permission or role?): {0}")]
    Forbidden(String),
    #[error("HTTP {status}: {detail}")]
    Status { status: u16, detail: String },
    #[error("cannot reach {0}")]
    Transport(String),
    #[error("unexpected response: {0}")]
    BadResponse(String),
    #[error("token: {0}")]
    Token(String),
}

impl ApiError {
    /// The outcome label this error counts as.
    pub fn outcome(&self) -> Outcome {
        match self {
            ApiError::Throttled { .. } => Outcome::Throttled,
            ApiError::Unauthorized(_) => Outcome::Unauthorized,
            ApiError::Forbidden(_) => Outcome::Forbidden,
            _ => Outcome::Error,
        }
    }
}

/// `Retry-After` when a 429 has none (Graph's documented default behaviour is "wait a bit").
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// A longer `Retry-After` is capped: the agent keeps polling on its own interval anyway.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Per-request limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One deadline for connect, TLS handshake, response head and body.
    pub timeout: Duration,
    /// Bodies larger than this are an error (a page of 5000 traces is a few MiB).
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout: Duration::from_secs(30),
            max_body: 32 * 1024 * 1024,
        }
    }
}

/// One page of an OData collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Value>,
    /// `@odata.nextLink`, already checked to point at the same origin.
    pub next: Option<String>,
}

/// A response as read off the wire.
struct RawResponse {
    status: StatusCode,
    retry_after: Option<String>,
    body: Bytes,
}

/// The tenant's HTTPS client: base URLs, tokens, counters.
pub struct Api {
    tls: tokio_rustls::TlsConnector,
    limits: Limits,
    tenant_id: String,
    graph_url: Url,
    exchange_url: Url,
    login_url: Url,
    auth: TokenSource,
    token_lock: tokio::sync::Mutex<()>,
    counts: Mutex<BTreeMap<(ApiName, Outcome), u64>>,
}

impl Api {
    pub fn new(cfg: &TenantConfig, extra_ca: &[(String, Vec<u8>)]) -> Result<Api, TenantError> {
        Api::with_limits(cfg, extra_ca, Limits::default())
    }

    pub fn with_limits(cfg: &TenantConfig, extra_ca: &[(String, Vec<u8>)], limits: Limits) -> Result<Api, TenantError> {
        let parse = |what: &str, s: &str| {
            Url::parse(s).map_err(|e| TenantError::Setup(format!("{what} {s:?} is not a URL: {e}")))
        };
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for (name, pem) in extra_ca {
            let mut n = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| TenantError::Setup(format!("extra CA file {name}: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| TenantError::Setup(format!("extra CA file {name}: {e}")))?;
                n += 1;
            }
            if n == 0 {
                return Err(TenantError::Setup(format!(
                    "extra CA file {name}: no certificate in it"
                )));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TenantError::Setup(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Api {
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            limits,
            tenant_id: cfg.tenant_id.clone(),
            graph_url: parse("graph_url", &cfg.graph_url)?,
            exchange_url: parse("exchange_url", &cfg.exchange_url)?,
            login_url: parse("login_url", &cfg.login_url)?,
            auth: TokenSource::new(cfg),
            token_lock: tokio::sync::Mutex::new(()),
            counts: Mutex::new(BTreeMap::new()),
        })
    }

    /// Requests made so far, by API and outcome.
    pub fn requests(&self) -> Vec<((ApiName, Outcome), u64)> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.iter().map(|(k, v)| (*k, *v)).collect()
    }

    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// The Graph base URL without a trailing slash.
    pub fn graph_base(&self) -> &str {
        self.graph_url.as_str().trim_end_matches('/')
    }

    /// The Exchange base URL without a trailing slash.
    pub fn exchange_base(&self) -> &str {
        self.exchange_url.as_str().trim_end_matches('/')
    }

    /// Whether `url` has the scheme, host and port of the base URL of `api`: the only place a
    /// `@odata.nextLink` may take our bearer token.
    pub fn same_origin(&self, api: ApiName, url: &str) -> bool {
        let base = match api {
            ApiName::Token => &self.login_url,
            ApiName::MessageTrace | ApiName::MessageTraceDetails => &self.graph_url,
            ApiName::AdminApi => &self.exchange_url,
        };
        Url::parse(url).is_ok_and(|u| {
            u.scheme() == base.scheme()
                && u.host() == base.host()
                && u.port_or_known_default() == base.port_or_known_default()
        })
    }

    fn count(&self, api: ApiName, outcome: Outcome) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry((api, outcome)).or_insert(0) += 1;
    }

    /// `GET url` with a bearer token for `api`; the JSON body.
    pub async fn get_json(&self, api: ApiName, url: &str) -> Result<Value, ApiError> {
        self.call(api, Method::GET, url, &[], None).await
    }

    /// `POST url` with a JSON body and extra headers; the JSON body of the answer.
    pub async fn post_json(
        &self,
        api: ApiName,
        url: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Result<Value, ApiError> {
        let bytes = Bytes::from(body.to_string());
        self.call(api, Method::POST, url, headers, Some(("application/json", bytes)))
            .await
    }

    /// One page of an OData collection: its `value` items and the next link, which is checked
    /// to stay on this API's origin. `post` repeats the same POST on the next link (the admin
    /// API pages that way); `None` is a GET.
    pub async fn page(
        &self,
        api: ApiName,
        url: &str,
        post: Option<(&[(&str, &str)], &Value)>,
    ) -> Result<Page, ApiError> {
        let mut v = match post {
            Some((headers, body)) => self.post_json(api, url, headers, body).await?,
            None => self.get_json(api, url).await?,
        };
        let items = match v.get_mut("value").map(Value::take) {
            Some(Value::Array(items)) => items,
            Some(Value::Null) | None => {
                return Err(ApiError::BadResponse(format!(
                    "{}: no \"value\" array in the answer",
                    api.as_str()
                )));
            }
            Some(one) => vec![one],
        };
        let next = match v.get("@odata.nextLink") {
            Some(Value::String(s)) if !s.is_empty() => {
                if !self.same_origin(api, s) {
                    let shown = Url::parse(s)
                        .map(|u| origin(&u))
                        .unwrap_or_else(|_| "an invalid URL".into());
                    return Err(ApiError::BadResponse(format!(
                        "{}: @odata.nextLink points to {shown}, not the configured base URL; not followed",
                        api.as_str()
                    )));
                }
                Some(s.clone())
            }
            _ => None,
        };
        Ok(Page { items, next })
    }

    /// An authenticated call: token from the cache or Entra ID; a 401 drops the token, fetches
    /// a new one and retries once (tokens can be revoked or expire early).
    async fn call(
        &self,
        api: ApiName,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, Bytes)>,
    ) -> Result<Value, ApiError> {
        let url = Url::parse(url).map_err(|_| ApiError::BadResponse("not a valid URL".into()))?;
        if !self.same_origin(api, url.as_str()) {
            return Err(ApiError::BadResponse(format!(
                "refusing to send a token to {} (not the configured {} base URL)",
                origin(&url),
                api.as_str()
            )));
        }
        let Some(scope) = api.scope() else {
            return Err(ApiError::BadResponse("the token endpoint takes no bearer token".into()));
        };
        let mut retried = false;
        loop {
            let token = self.token(scope).await?;
            let mut all: Vec<(&str, String)> = headers.iter().map(|(k, v)| (*k, (*v).to_string())).collect();
            all.push(("authorization", format!("Bearer {}", token.expose())));
            let result = self.request(&method, &url, &all, body.clone()).await;
            let result = result.and_then(|raw| classify(api, raw));
            self.count(api, result.as_ref().map_or_else(|e| e.outcome(), |_| Outcome::Ok));
            match result {
                Err(ApiError::Unauthorized(_)) if !retried => {
                    tracing::info!(
                        api = api.as_str(),
                        "token rejected (401); fetching a new one and retrying once"
                    );
                    self.auth.invalidate(scope, &token);
                    retried = true;
                }
                other => return other,
            }
        }
    }

    /// A token for `scope`, from the cache or a new client-credentials request.
    pub async fn token(&self, scope: Scope) -> Result<Secret, ApiError> {
        if let Some(t) = self.auth.cached(scope, Instant::now()) {
            return Ok(t);
        }
        // One token request at a time: concurrent callers wait and then find the cache filled.
        let _guard = self.token_lock.lock().await;
        if let Some(t) = self.auth.cached(scope, Instant::now()) {
            return Ok(t);
        }
        let body = {
            // Built in a block of its own: the serializer is not `Send` and must not live
            // across an await.
            let form = self.auth.form(scope, SystemTime::now()).map_err(ApiError::Token)?;
            let mut ser = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &form {
                ser.append_pair(k, v.expose());
            }
            Bytes::from(ser.finish())
        };
        let url = Url::parse(self.auth.token_url())
            .map_err(|_| ApiError::Token("the token URL is not valid (check tenant_id and login_url)".into()))?;
        let result = self
            .request(
                &Method::POST,
                &url,
                &[],
                Some(("application/x-www-form-urlencoded", body)),
            )
            .await
            .and_then(parse_token);
        self.count(
            ApiName::Token,
            result.as_ref().map_or_else(|e| e.outcome(), |_| Outcome::Ok),
        );
        let (token, expires_in) = result?;
        self.auth.store(scope, token.clone(), expires_in, Instant::now());
        tracing::debug!(
            scope = scope.as_str(),
            expires_in = expires_in.as_secs(),
            "new access token"
        );
        Ok(token)
    }

    /// One HTTPS exchange under one deadline, body bounded.
    async fn request(
        &self,
        method: &Method,
        url: &Url,
        headers: &[(&str, String)],
        body: Option<(&str, Bytes)>,
    ) -> Result<RawResponse, ApiError> {
        let target = origin(url);
        match tokio::time::timeout(self.limits.timeout, self.request_inner(method, url, headers, body)).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::Transport(format!(
                "{target}: no complete answer within {}",
                humantime::format_duration(self.limits.timeout)
            ))),
        }
    }

    async fn request_inner(
        &self,
        method: &Method,
        url: &Url,
        headers: &[(&str, String)],
        body: Option<(&str, Bytes)>,
    ) -> Result<RawResponse, ApiError> {
        let target = origin(url);
        let transport = |what: &str, e: &dyn std::fmt::Display| ApiError::Transport(format!("{target}: {what}: {e}"));
        if url.scheme() != "https" {
            return Err(ApiError::Transport(format!("{target}: only https is used")));
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let (addrs, server_name): (Vec<SocketAddr>, ServerName<'static>) = match url.host() {
            Some(Host::Domain(d)) => {
                let addrs = tokio::net::lookup_host((d, port))
                    .await
                    .map_err(|e| transport("name lookup", &e))?
                    .collect();
                let name = ServerName::try_from(d.to_string()).map_err(|e| transport("server name", &e))?;
                (addrs, name)
            }
            Some(Host::Ipv4(ip)) => (
                vec![SocketAddr::from((ip, port))],
                ServerName::from(std::net::IpAddr::V4(ip)),
            ),
            Some(Host::Ipv6(ip)) => (
                vec![SocketAddr::from((ip, port))],
                ServerName::from(std::net::IpAddr::V6(ip)),
            ),
            None => return Err(ApiError::Transport("URL without a host".into())),
        };
        let mut last_err: Option<std::io::Error> = None;
        let mut stream = None;
        // A black-holed address must not eat the whole deadline before the next one is tried.
        let per_attempt = self.limits.timeout / 3;
        for addr in addrs {
            match tokio::time::timeout(per_attempt, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    stream = Some(s);
                    break;
                }
                Ok(Err(e)) => last_err = Some(e),
                Err(_) => last_err = Some(std::io::Error::from(std::io::ErrorKind::TimedOut)),
            }
        }
        let Some(stream) = stream else {
            return Err(match last_err {
                Some(e) => transport("connect", &e),
                None => ApiError::Transport(format!("{target}: the name has no address")),
            });
        };
        let _ = stream.set_nodelay(true);
        let tls = self
            .tls
            .connect(server_name, stream)
            .await
            .map_err(|e| transport("TLS handshake", &e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| transport("HTTP", &e))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        // The driver ends with the connection; abort it too if we leave early (deadline).
        let _abort = AbortOnDrop(driver);

        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, host)
            .header(
                header::USER_AGENT,
                concat!("mailflow-exporter/", env!("CARGO_PKG_VERSION")),
            )
            .header(header::ACCEPT, "application/json");
        for (k, v) in headers {
            let v = HeaderValue::from_str(v).map_err(|_| ApiError::BadResponse("invalid header value".into()))?;
            req = req.header(*k, v);
        }
        let payload = match body {
            Some((ct, bytes)) => {
                req = req.header(header::CONTENT_TYPE, ct);
                bytes
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|_| ApiError::BadResponse("cannot build the request".into()))?;
        let resp = sender.send_request(req).await.map_err(|e| transport("HTTP", &e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let declared = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.limits.max_body as u64) {
            return Err(ApiError::BadResponse(format!(
                "response body larger than {} bytes (HTTP {})",
                self.limits.max_body,
                status.as_u16()
            )));
        }
        let body = Limited::new(resp.into_body(), self.limits.max_body)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ApiError::BadResponse(format!(
                        "response body larger than {} bytes (HTTP {})",
                        self.limits.max_body,
                        status.as_u16()
                    ))
                } else {
                    ApiError::Transport(format!("{target}: reading the body: {e}"))
                }
            })?
            .to_bytes();
        Ok(RawResponse {
            status,
            retry_after,
            body,
        })
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `scheme://host:port` of a URL: what errors may name (paths and queries can hold addresses).
fn origin(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or("?"),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// `Retry-After` in seconds (an HTTP date or garbage means the default), capped.
pub fn retry_after(value: Option<&str>) -> Duration {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_RETRY_AFTER)
        .min(MAX_RETRY_AFTER)
}

/// The `error.code` of a Graph/Exchange error body (bounded, escaped); never its message,
/// which can quote addresses.
fn error_code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = v
        .pointer("/error/code")
        .and_then(Value::as_str)
        .or_else(|| v.get("error").and_then(Value::as_str));
    match code {
        Some(c) => escape(c, 80),
        None => "no error code in the body".into(),
    }
}

/// Status → result, for an API call.
fn classify(api: ApiName, raw: RawResponse) -> Result<Value, ApiError> {
    let status = raw.status.as_u16();
    match status {
        200..=299 => serde_json::from_slice(&raw.body).map_err(|e| {
            ApiError::BadResponse(format!(
                "{} answered HTTP {status} with invalid JSON ({})",
                api.as_str(),
                escape(&e.to_string(), 120)
            ))
        }),
        401 => Err(ApiError::Unauthorized(format!(
            "{} rejected the token ({})",
            api.as_str(),
            error_code(&raw.body)
        ))),
        403 => Err(ApiError::Forbidden(format!(
            "{}: {} ({})",
            api.as_str(),
            api.permission_hint(),
            error_code(&raw.body)
        ))),
        429 => Err(ApiError::Throttled {
            retry_after: retry_after(raw.retry_after.as_deref()),
        }),
        _ => Err(ApiError::Status {
            status,
            detail: format!("{} ({})", api.as_str(), error_code(&raw.body)),
        }),
    }
}

/// A token response → the token and its lifetime. Errors carry Entra ID's `error` and the
/// `AADSTS` number only (the description can be long and is not ours to echo).
fn parse_token(raw: RawResponse) -> Result<(Secret, Duration), ApiError> {
    let status = raw.status.as_u16();
    let v: Value = serde_json::from_slice(&raw.body).unwrap_or(Value::Null);
    if !(200..=299).contains(&status) {
        let error = v.get("error").and_then(Value::as_str).unwrap_or("no error code");
        let aadsts = v
            .get("error_description")
            .and_then(Value::as_str)
            .and_then(|d| d.split(|c: char| c == ':' || c.is_whitespace()).next())
            .filter(|s| s.starts_with("AADSTS"))
            .unwrap_or("");
        let msg = format!("HTTP {status}: {} {}", escape(error, 60), escape(aadsts, 20));
        let msg = msg.trim_end().to_string();
        return Err(match status {
            429 => ApiError::Throttled {
                retry_after: retry_after(raw.retry_after.as_deref()),
            },
            401 => ApiError::Unauthorized(format!("token request refused, {msg}")),
            403 => ApiError::Forbidden(format!("token request refused, {msg}")),
            _ => ApiError::Token(msg),
        });
    }
    let token = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Token("the token response has no access_token".into()))?;
    // `expires_in` is a number in v2.0 responses; some proxies send it as a string.
    let expires_in = match v.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .unwrap_or(3599);
    Ok((Secret::new(token.to_string()), Duration::from_secs(expires_in)))
}

/// Percent-encodes everything but RFC 3986 unreserved characters (and `extra`).
pub fn pct(s: &str, extra: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || extra.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn raw(status: u16, retry: Option<&str>, body: &str) -> RawResponse {
        RawResponse {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: retry.map(str::to_string),
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn retry_after_default_and_cap() {
        assert_eq!(retry_after(Some("17")), Duration::from_secs(17));
        assert_eq!(retry_after(None), DEFAULT_RETRY_AFTER);
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), DEFAULT_RETRY_AFTER);
        assert_eq!(retry_after(Some("999999")), MAX_RETRY_AFTER);
    }

    #[test]
    fn statuses_map_to_errors() {
        assert!(classify(ApiName::MessageTrace, raw(200, None, r#"{"value":[]}"#)).is_ok());
        assert!(matches!(
            classify(ApiName::MessageTrace, raw(200, None, r#"{"value":["#)),
            Err(ApiError::BadResponse(_))
        ));
        let e = classify(
            ApiName::MessageTrace,
            raw(403, None, r#"{"error":{"code":"Forbidden"}}"#),
        )
        .unwrap_err();
        assert!(e.to_string().contains("ExchangeMessageTrace.Read.All"), "{e}");
        let e = classify(ApiName::AdminApi, raw(403, None, "")).unwrap_err();
        assert!(e.to_string().contains("Exchange.ManageAsApp"), "{e}");
        assert_eq!(
            classify(ApiName::AdminApi, raw(429, Some("5"), "")),
            Err(ApiError::Throttled {
                retry_after: Duration::from_secs(5)
            })
        );
        let e = classify(
            ApiName::MessageTrace,
            raw(500, None, r#"{"error":{"code":"x","message":"a@b.example"}}"#),
        )
        .unwrap_err();
        assert!(matches!(e, ApiError::Status { status: 500, .. }));
        assert!(!e.to_string().contains("a@b.example"));
    }

    #[test]
    fn token_errors_are_short_and_secret_free() {
        let e = parse_token(raw(
            401,
            None,
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent..."}"#,
        ))
        .unwrap_err();
        assert_eq!(
            e,
            ApiError::Unauthorized("token request refused, HTTP 401: invalid_client AADSTS7000215".into())
        );
        let (t, exp) = parse_token(raw(200, None, r#"{"access_token":"abc","expires_in":"120"}"#)).unwrap();
        assert_eq!(t.expose(), "abc");
        assert_eq!(exp, Duration::from_secs(120));
        assert!(parse_token(raw(200, None, r#"{"token_type":"Bearer"}"#)).is_err());
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(pct("a b'c@d/é", b"@"), "a%20b%27c@d%2F%C3%A9");
    }
}
