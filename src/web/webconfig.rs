//! `--web.config.file`: the web configuration file of the Prometheus exporter-toolkit (TLS,
//! client certificates, response headers, basic auth), so an operator can reuse the file they
//! already have for node_exporter and friends.
//!
//! Read once per [`WebConfig::load`]; unlike exporter-toolkit, which rereads the file on every
//! request, certificates change only when the caller loads the file again (e.g. on reload).
//! Deliberate differences, each stricter where the Go behaviour would hide a mistake:
//! - `tls_server_config` with settings but no certificate is an error, not plain HTTP;
//! - `client_allowed_sans` needs a client_auth_type that verifies the certificate (a SAN in an
//!   unverified certificate proves nothing);
//! - `rate_limit` is not supported (unknown key);
//! - `http_server_config.http2` is accepted and ignored: the server speaks HTTP/1.1 only and
//!   says so in ALPN.
//!
//! Like exporter-toolkit, the PEM may also be given inline (`cert`, `key`, `client_ca`).

use crate::config::ConfigError;
use base64::Engine as _;
use hyper::header::{HeaderName, HeaderValue};
use rustls::crypto::{SupportedKxGroup, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_saphyr::{Location, Spanned};
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The web config and every file it names are small; a bound keeps a wrong path (a log, a
/// device) from being slurped.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// `Basic` + base64 of a user name and a password of at most 72 bytes fits easily.
pub const MAX_AUTHORIZATION_BYTES: usize = 1024;
/// bcrypt looks at 72 bytes only; longer passwords are refused (as Go's bcrypt does) rather
/// than silently truncated.
pub const MAX_PASSWORD_BYTES: usize = 72;
/// bcrypt verifications running at once: each one is CPU-bound for tens of milliseconds.
pub const MAX_CONCURRENT_BCRYPT: usize = 2;
/// Successful checks remembered, so a scraper does not pay bcrypt on every scrape.
pub const AUTH_CACHE_ENTRIES: usize = 256;
/// How long a success is trusted without bcrypt: spans many scrapes, yet a digest does not
/// stay usable (or resident) indefinitely.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(600);
/// The `WWW-Authenticate` value to send with a 401.
pub const CHALLENGE: &str = "Basic realm=\"mailflow-exporter\", charset=\"UTF-8\"";

/// The loaded web configuration: what to apply to the listener and to every request.
pub struct WebConfig {
    source: PathBuf,
    tls: Option<Arc<rustls::ServerConfig>>,
    allowed_sans: Vec<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    auth: Option<BasicAuth>,
}

// Hand-written: the bcrypt hashes and the cache stay out of logs.
impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("source", &self.source)
            .field("tls", &self.tls.is_some())
            .field("allowed_sans", &self.allowed_sans)
            .field("headers", &self.headers)
            .field("basic_auth_users", &self.auth.as_ref().map_or(0, |a| a.users.len()))
            .finish()
    }
}

/// Why a request is not authorized. Every variant but [`AuthError::Internal`] warrants a 401
/// with `WWW-Authenticate: `[`CHALLENGE`]; the variants exist for logs, not for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no Authorization header")]
    Missing,
    #[error("Authorization scheme is not Basic")]
    NotBasic,
    #[error("malformed Basic credentials")]
    Malformed,
    #[error("wrong user name or password")]
    Denied,
    #[error("password check failed: {0}")]
    Internal(String),
}

impl WebConfig {
    /// Blocking: reads the file and every file it names.
    pub fn load(path: &Path) -> Result<WebConfig, ConfigError> {
        let file = path.display().to_string();
        let bytes = read_bounded(path).map_err(|message| ConfigError {
            file: file.clone(),
            line: 0,
            column: 0,
            field: "-".into(),
            message,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| ConfigError {
            file: file.clone(),
            line: 0,
            column: 0,
            field: "-".into(),
            message: "not UTF-8 text".into(),
        })?;
        WebConfig::parse(path, &text)
    }

    /// Parses and validates `text`; `path` names the file in errors and anchors relative paths.
    /// Still blocking: the certificate files are read here.
    pub fn parse(path: &Path, text: &str) -> Result<WebConfig, ConfigError> {
        let file = path.display().to_string();
        let ctx = Ctx {
            file: &file,
            base: path.parent().unwrap_or(Path::new(".")),
        };
        let raw: RawWebConfig = serde_saphyr::from_str(text).map_err(|e| parse_error(&file, text, &e))?;
        let (tls, allowed_sans) = match &raw.tls_server_config {
            Some(t) => build_tls(&ctx, t)?,
            None => (None, Vec::new()),
        };
        let headers = match raw.http_server_config.as_ref().and_then(|h| h.headers.as_ref()) {
            Some(h) => build_headers(&ctx, &h.value)?,
            None => Vec::new(),
        };
        let auth = match &raw.basic_auth_users {
            Some(u) if !u.value.0.is_empty() => Some(BasicAuth::new(&ctx, &u.value)?),
            _ => None,
        };
        Ok(WebConfig {
            source: path.to_path_buf(),
            tls,
            allowed_sans,
            headers,
            auth,
        })
    }

    /// The file this was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The rustls server config to accept TLS with, if TLS is configured.
    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.clone()
    }

    /// Whether requests must carry basic auth credentials.
    pub fn has_basic_auth(&self) -> bool {
        self.auth.is_some()
    }

    /// Whether the client certificate of this finished handshake passes `client_allowed_sans`
    /// (true when the list is empty or no TLS). Exact string match on DNS, e-mail, IP and URI
    /// SANs, as exporter-toolkit does.
    pub fn client_allowed(&self, conn: &rustls::ServerConnection) -> bool {
        if self.allowed_sans.is_empty() {
            return true;
        }
        let Some(leaf) = conn.peer_certificates().and_then(|c| c.first()) else {
            return false;
        };
        san_values(leaf).is_some_and(|sans| sans.iter().any(|s| self.allowed_sans.contains(s)))
    }

    /// Ok when basic auth is not configured or the Authorization header carries a valid user
    /// and password. bcrypt runs on a blocking thread, [`MAX_CONCURRENT_BCRYPT`] at once;
    /// successes are cached (user + salted SHA-256 of the password, never the password) for
    /// [`AUTH_CACHE_TTL`]; failures are not, so a guesser always pays bcrypt.
    pub async fn authorize(&self, authorization: Option<&HeaderValue>) -> Result<(), AuthError> {
        match &self.auth {
            None => Ok(()),
            Some(auth) => auth.check(authorization.ok_or(AuthError::Missing)?).await,
        }
    }

    /// The configured response headers, to add to every response.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }
}

// ---------------------------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<Spanned<RawTls>>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: Option<Spanned<Pairs>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    cert_file: Option<Spanned<String>>,
    #[serde(default)]
    key_file: Option<Spanned<String>>,
    /// Inline PEM, the alternative exporter-toolkit offers to cert_file.
    #[serde(default)]
    cert: Option<Spanned<String>>,
    #[serde(default)]
    key: Option<Spanned<String>>,
    #[serde(default)]
    client_ca: Option<Spanned<String>>,
    #[serde(default)]
    client_auth_type: Option<Spanned<String>>,
    #[serde(default)]
    client_ca_file: Option<Spanned<String>>,
    #[serde(default)]
    client_allowed_sans: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    min_version: Option<Spanned<String>>,
    #[serde(default)]
    max_version: Option<Spanned<String>>,
    #[serde(default)]
    cipher_suites: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    curve_preferences: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// Accepted for compatibility and ignored: we serve HTTP/1.1 only.
    #[serde(default)]
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: Option<Spanned<Pairs>>,
}

/// A string-to-string mapping in file order, each key and value with its location (user names
/// and header names are data, not struct fields).
#[derive(Debug, Default)]
struct Pairs(Vec<(Spanned<String>, Spanned<String>)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of strings to strings")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Pairs, E> {
                Ok(Pairs::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(k) = map.next_key::<Spanned<String>>()? {
                    let v = map.next_value::<Spanned<String>>()?;
                    pairs.push((k, v));
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(PairsVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors with locations.

struct Ctx<'a> {
    file: &'a str,
    /// Relative paths in the file are relative to the file's directory.
    base: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, loc: &Location, field: impl Into<String>, message: impl ToString) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: loc.line(),
            column: loc.column(),
            field: field.into(),
            message: message.to_string(),
        }
    }
}

/// A YAML/serde error in our `file:line:col: field: message` shape, with the key path found
/// from the location (serde names only the innermost key, if any).
fn parse_error(file: &str, text: &str, e: &serde_saphyr::Error) -> ConfigError {
    let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
    let full = e.without_snippet().to_string();
    let mut message = full.lines().next().unwrap_or("").trim().to_string();
    if let Some(i) = message.rfind(" at line ") {
        message.truncate(i);
    }
    ConfigError {
        file: file.to_string(),
        line,
        column,
        field: field_at(text, line, column, named_key(&message)).unwrap_or_else(|| "-".into()),
        message,
    }
}

/// The key a serde message names, for errors located at a key rather than a value.
fn named_key(msg: &str) -> Option<String> {
    for marker in ["unknown field `", "duplicate field `"] {
        if let Some(rest) = msg.split(marker).nth(1) {
            return rest.split('`').next().map(str::to_string);
        }
    }
    msg.split("duplicate mapping key: ")
        .nth(1)
        .map(|k| k.split(',').next().unwrap_or(k).trim().to_string())
}

/// The dotted key path at `line:column` (1-based) of block YAML, e.g.
/// `tls_server_config.min_version`, good enough to point at the field.
fn field_at(text: &str, line: u64, column: u64, key: Option<String>) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let idx = usize::try_from(line).ok()?.checked_sub(1)?;
    let here = *lines.get(idx)?;
    let upto: String = here.chars().take(usize::try_from(column).ok()?).collect();
    let on_line = keys_in(&upto);
    let mut path = Vec::new();
    // Flow mapping on one line: `parent: {key: value}`.
    if upto.contains('{')
        && let Some(first) = on_line.first()
    {
        path.push(first.clone());
    }
    match key.or_else(|| on_line.last().cloned()) {
        Some(k) if path.last() != Some(&k) => path.push(k),
        Some(_) => {}
        None => return None,
    }
    let mut indent = indent_of(here);
    let mut i = idx;
    while i > 0 && indent > 0 {
        i -= 1;
        let l = lines[i];
        if l.trim().is_empty() || l.trim_start().starts_with('#') || indent_of(l) >= indent {
            continue;
        }
        if let Some(k) = keys_in(l).first() {
            path.insert(0, k.clone());
        }
        indent = indent_of(l);
    }
    Some(path.join("."))
}

fn indent_of(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

/// The `key:` names in a line, in order (header names have dashes).
fn keys_in(l: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut word = String::new();
    for c in l.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            word.push(c);
        } else {
            if c == ':' && !word.is_empty() {
                keys.push(word.clone());
            }
            word.clear();
        }
    }
    keys
}

/// Reads a regular file of at most [`MAX_FILE_BYTES`]; the error is a message for a
/// [`ConfigError`].
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("no such file: {}", path.display()),
        _ => format!("cannot read {}: {e}", path.display()),
    })?;
    // A FIFO or a device would block the read or never end.
    if !meta.is_file() {
        return Err(format!("not a regular file: {}", path.display()));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("{} is larger than {MAX_FILE_BYTES} bytes", path.display()));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// TLS.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    None,
    Request,
    RequireAny,
    VerifyIfGiven,
    RequireAndVerify,
}

impl ClientAuth {
    fn parse(s: &str) -> Option<ClientAuth> {
        Some(match s {
            "" | "NoClientCert" => ClientAuth::None,
            "RequestClientCert" => ClientAuth::Request,
            // `RequireClientCert` is the old name exporter-toolkit still accepts.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAny,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
            _ => return None,
        })
    }

    fn verifies(self) -> bool {
        matches!(self, ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify)
    }
}

/// PEM material from `<name>_file` or inline `<name>`, with where it was named (for errors).
struct Pem<'a> {
    bytes: Vec<u8>,
    loc: &'a Location,
    field: String,
    origin: String,
}

fn pem_source<'a>(
    ctx: &Ctx,
    file: Option<&'a Spanned<String>>,
    inline: Option<&'a Spanned<String>>,
    file_key: &str,
    inline_key: &str,
) -> Result<Option<Pem<'a>>, ConfigError> {
    match (file, inline) {
        (Some(_), Some(i)) => Err(ctx.err(
            &i.referenced,
            format!("tls_server_config.{inline_key}"),
            format!("set {file_key} or {inline_key}, not both"),
        )),
        (Some(f), None) => {
            let field = format!("tls_server_config.{file_key}");
            if f.value.trim().is_empty() {
                return Err(ctx.err(&f.referenced, field, "empty path"));
            }
            let p = Path::new(&f.value);
            let p = if p.is_absolute() {
                p.to_path_buf()
            } else {
                ctx.base.join(p)
            };
            let bytes = read_bounded(&p).map_err(|m| ctx.err(&f.referenced, field.clone(), m))?;
            Ok(Some(Pem {
                bytes,
                loc: &f.referenced,
                field,
                origin: p.display().to_string(),
            }))
        }
        (None, Some(i)) => Ok(Some(Pem {
            bytes: i.value.as_bytes().to_vec(),
            loc: &i.referenced,
            field: format!("tls_server_config.{inline_key}"),
            origin: format!("inline {inline_key}"),
        })),
        (None, None) => Ok(None),
    }
}

fn pem_certs(ctx: &Ctx, pem: &Pem) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(&pem.bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ctx.err(pem.loc, pem.field.clone(), format!("bad PEM in {}: {e}", pem.origin)))?;
    if certs.is_empty() {
        return Err(ctx.err(pem.loc, pem.field.clone(), format!("no CERTIFICATE in {}", pem.origin)));
    }
    Ok(certs)
}

/// Maps Go's `min_version`/`max_version` names to what rustls offers.
fn tls_version(
    ctx: &Ctx,
    v: Option<&Spanned<String>>,
    key: &str,
    default: &'static rustls::SupportedProtocolVersion,
) -> Result<&'static rustls::SupportedProtocolVersion, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    let field = format!("tls_server_config.{key}");
    match v.value.as_str() {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(ctx.err(
            &v.referenced,
            field,
            format!("{}: rustls supports TLS12 and TLS13 only", v.value),
        )),
        other => Err(ctx.err(
            &v.referenced,
            field,
            format!("unknown TLS version {other:?} (TLS12 or TLS13)"),
        )),
    }
}

/// Go's TLS 1.2 suite names that rustls implements.
fn tls12_suite(name: &str) -> Option<SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as cs;
    Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        _ => return None,
    })
}

/// TLS 1.3 suites: always on in Go whatever `cipher_suites` says, and so here.
const TLS13_SUITE_NAMES: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Suites Go knows (CBC, RSA key exchange, RC4, 3DES) that rustls deliberately lacks.
const GO_ONLY_SUITE_NAMES: [&str; 16] = [
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

fn kx_group(ctx: &Ctx, c: &Spanned<String>, field: String) -> Result<&'static dyn SupportedKxGroup, ConfigError> {
    use rustls::crypto::ring::kx_group as kx;
    match c.value.as_str() {
        "X25519" => Ok(kx::X25519),
        "CurveP256" => Ok(kx::SECP256R1),
        "CurveP384" => Ok(kx::SECP384R1),
        "CurveP521" => Err(ctx.err(
            &c.referenced,
            field,
            "CurveP521 is not implemented by rustls with ring (X25519, CurveP256, CurveP384)",
        )),
        other => Err(ctx.err(
            &c.referenced,
            field,
            format!("unknown curve {other:?} (X25519, CurveP256, CurveP384)"),
        )),
    }
}

fn build_tls(ctx: &Ctx, st: &Spanned<RawTls>) -> Result<(Option<Arc<rustls::ServerConfig>>, Vec<String>), ConfigError> {
    let t = &st.value;
    let f = |k: &str| format!("tls_server_config.{k}");

    let cert = pem_source(ctx, t.cert_file.as_ref(), t.cert.as_ref(), "cert_file", "cert")?;
    let key = pem_source(ctx, t.key_file.as_ref(), t.key.as_ref(), "key_file", "key")?;
    let (cert, key) = match (cert, key) {
        (Some(c), Some(k)) => (c, k),
        (None, None) if is_empty(t) => return Ok((None, Vec::new())),
        (Some(c), None) => return Err(ctx.err(c.loc, f("key_file"), "cert without key_file (or key)")),
        (None, Some(k)) => return Err(ctx.err(k.loc, f("cert_file"), "key without cert_file (or cert)")),
        (None, None) => {
            return Err(ctx.err(
                &st.referenced,
                f("cert_file"),
                "TLS settings without a certificate: set cert_file and key_file",
            ));
        }
    };
    let chain = pem_certs(ctx, &cert)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key.bytes).map_err(|e| {
        ctx.err(
            key.loc,
            key.field.clone(),
            format!("no usable private key (PKCS#8, RSA or EC PEM) in {}: {e}", key.origin),
        )
    })?;

    let auth = match &t.client_auth_type {
        None => ClientAuth::None,
        Some(a) => ClientAuth::parse(&a.value).ok_or_else(|| {
            ctx.err(
                &a.referenced,
                f("client_auth_type"),
                format!(
                    "unknown {:?} (NoClientCert, RequestClientCert, RequireAnyClientCert, \
                     VerifyClientCertIfGiven, RequireAndVerifyClientCert)",
                    a.value
                ),
            )
        })?,
    };
    let auth_loc = t.client_auth_type.as_ref().map_or(&st.referenced, |a| &a.referenced);

    let ca = pem_source(
        ctx,
        t.client_ca_file.as_ref(),
        t.client_ca.as_ref(),
        "client_ca_file",
        "client_ca",
    )?;
    let roots = match &ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in pem_certs(ctx, ca)? {
                roots.add(c).map_err(|e| {
                    ctx.err(
                        ca.loc,
                        ca.field.clone(),
                        format!("unusable CA certificate in {}: {e}", ca.origin),
                    )
                })?;
            }
            if auth == ClientAuth::None {
                return Err(ctx.err(
                    ca.loc,
                    ca.field.clone(),
                    "a client CA without a client_auth_type that asks for certificates \
                     (e.g. RequireAndVerifyClientCert)",
                ));
            }
            Some(Arc::new(roots))
        }
        None if auth.verifies() => {
            return Err(ctx.err(
                auth_loc,
                f("client_auth_type"),
                "this client_auth_type verifies client certificates: set client_ca_file",
            ));
        }
        None => None,
    };

    let mut allowed_sans = Vec::new();
    for s in t.client_allowed_sans.iter().flatten() {
        if !auth.verifies() {
            return Err(ctx.err(
                &s.referenced,
                f("client_allowed_sans"),
                "needs client_auth_type RequireAndVerifyClientCert or VerifyClientCertIfGiven: \
                 an unverified certificate can claim any SAN",
            ));
        }
        allowed_sans.push(s.value.clone());
    }

    let min = tls_version(ctx, t.min_version.as_ref(), "min_version", &rustls::version::TLS12)?;
    let max = tls_version(ctx, t.max_version.as_ref(), "max_version", &rustls::version::TLS13)?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match (min.version, max.version) {
        (rustls::ProtocolVersion::TLSv1_3, rustls::ProtocolVersion::TLSv1_2) => {
            let loc = t.min_version.as_ref().map_or(&st.referenced, |m| &m.referenced);
            return Err(ctx.err(loc, f("min_version"), "min_version is above max_version"));
        }
        (a, b) if a == b => vec![min],
        _ => vec![&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let tls12_on = versions.contains(&&rustls::version::TLS12);

    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(list) = &t.cipher_suites
        && !list.value.is_empty()
    {
        let mut tls12 = Vec::new();
        for (i, s) in list.value.iter().enumerate() {
            let field = format!("tls_server_config.cipher_suites[{i}]");
            if let Some(suite) = tls12_suite(&s.value) {
                if !tls12.contains(&suite) {
                    tls12.push(suite);
                }
            } else if GO_ONLY_SUITE_NAMES.contains(&s.value.as_str()) {
                return Err(ctx.err(
                    &s.referenced,
                    field,
                    format!(
                        "{} is not implemented by rustls (TLS 1.2 with ECDHE and AES-GCM or \
                         ChaCha20-Poly1305 only)",
                        s.value
                    ),
                ));
            } else if !TLS13_SUITE_NAMES.contains(&s.value.as_str()) {
                return Err(ctx.err(
                    &s.referenced,
                    field,
                    format!(
                        "unknown cipher suite {:?} (Go's names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)",
                        s.value
                    ),
                ));
            }
        }
        if tls12_on {
            // The key decides which TLS 1.2 suites can be used at all.
            let signing = provider
                .key_provider
                .load_private_key(key_der.clone_key())
                .map_err(|e| ctx.err(key.loc, key.field.clone(), format!("unusable private key: {e}")))?;
            let alg = signing.algorithm();
            if !tls12.iter().any(|s| s.usable_for_signature_algorithm(alg)) {
                return Err(ctx.err(
                    &list.referenced,
                    f("cipher_suites"),
                    format!("no TLS 1.2 suite listed here works with the {alg:?} key (or set min_version: TLS13)"),
                ));
            }
        }
        let mut suites: Vec<SupportedCipherSuite> = provider
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| s.tls13().is_some())
            .collect();
        suites.extend(tls12);
        provider.cipher_suites = suites;
    }
    if let Some(list) = &t.curve_preferences
        && !list.value.is_empty()
    {
        let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        for (i, c) in list.value.iter().enumerate() {
            let g = kx_group(ctx, c, format!("tls_server_config.curve_preferences[{i}]"))?;
            if !groups.iter().any(|x| x.name() == g.name()) {
                groups.push(g);
            }
        }
        provider.kx_groups = groups;
    }
    let provider = Arc::new(provider);

    let verifier: Arc<dyn ClientCertVerifier> = match (auth, roots) {
        (ClientAuth::None, _) => WebPkiClientVerifier::no_client_auth(),
        (ClientAuth::Request | ClientAuth::RequireAny, roots) => Arc::new(AnyClientCert {
            mandatory: auth == ClientAuth::RequireAny,
            hints: roots.map(|r| r.subjects()).unwrap_or_default(),
            algorithms: provider.signature_verification_algorithms,
        }),
        (ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify, Some(roots)) => {
            let b = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            let b = if auth == ClientAuth::VerifyIfGiven {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build()
                .map_err(|e| ctx.err(auth_loc, f("client_auth_type"), format!("client verifier: {e}")))?
        }
        (ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify, None) => {
            return Err(ctx.err(auth_loc, f("client_auth_type"), "needs client_ca_file"));
        }
    };

    let versions_loc = t
        .min_version
        .as_ref()
        .or(t.max_version.as_ref())
        .map_or(&st.referenced, |v| &v.referenced);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| ctx.err(versions_loc, f("min_version"), format!("TLS versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => ctx.err(
                key.loc,
                key.field.clone(),
                format!(
                    "the key in {} does not match the certificate in {}",
                    key.origin, cert.origin
                ),
            ),
            e => ctx.err(
                cert.loc,
                cert.field.clone(),
                format!("certificate or key rejected: {e}"),
            ),
        })?;
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    // HTTP/1.1 only, whatever `http2` says; a client that offers only h2 is refused cleanly.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Some(Arc::new(config)), allowed_sans))
}

/// No TLS setting at all (e.g. `tls_server_config: {}`): plain HTTP.
fn is_empty(t: &RawTls) -> bool {
    t.client_ca.is_none()
        && t.client_auth_type.is_none()
        && t.client_ca_file.is_none()
        && t.client_allowed_sans.as_ref().is_none_or(Vec::is_empty)
        && t.min_version.is_none()
        && t.max_version.is_none()
        && t.cipher_suites.is_none()
        && t.curve_preferences.is_none()
        && t.prefer_server_cipher_suites.is_none()
}

/// `RequestClientCert` / `RequireAnyClientCert`: any well-formed certificate, no chain check
/// (Go's semantics), but the handshake signature must still prove possession of its key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        ParsedCertificate::try_from(end_entity).map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The SAN values of a certificate as Go's crypto/x509 prints them: DNS names, e-mail
/// addresses, IP addresses and URIs. None if the certificate does not parse.
fn san_values(der: &CertificateDer<'_>) -> Option<Vec<String>> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    for name in &ext.value.general_names {
        match name {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => out.push((*s).to_string()),
            GeneralName::IPAddress(b) => {
                let ip = match b.len() {
                    4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(*b).ok().map(|a| {
                        let v6 = std::net::Ipv6Addr::from(a);
                        // Go prints an IPv4-mapped address in dotted form.
                        v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
                    }),
                    _ => None,
                };
                out.extend(ip.map(|ip| ip.to_string()));
            }
            _ => {}
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Response headers.

/// The headers exporter-toolkit lets a config set, with the only values it accepts (empty:
/// any value). Kept to its list so files stay portable between exporters.
const ALLOWED_HEADERS: [(&str, &[&str]); 5] = [
    ("Content-Security-Policy", &[]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-XSS-Protection", &[]),
    ("Strict-Transport-Security", &[]),
];

fn build_headers(ctx: &Ctx, pairs: &Pairs) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    let mut out: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for (k, v) in &pairs.0 {
        let field = format!("http_server_config.headers.{}", k.value);
        let Some((name, values)) = ALLOWED_HEADERS.iter().find(|(n, _)| n.eq_ignore_ascii_case(&k.value)) else {
            let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
            return Err(ctx.err(
                &k.referenced,
                field,
                format!("header {:?} can not be configured (only {})", k.value, names.join(", ")),
            ));
        };
        // Blank means unset, as in exporter-toolkit.
        if v.value.is_empty() {
            continue;
        }
        if !values.is_empty() && !values.contains(&v.value.as_str()) {
            return Err(ctx.err(
                &v.referenced,
                field,
                format!("{:?} is not allowed (one of {})", v.value, values.join(", ")),
            ));
        }
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| ctx.err(&k.referenced, field.clone(), e))?;
        let value = HeaderValue::from_str(&v.value)
            .map_err(|_| ctx.err(&v.referenced, field.clone(), "not a valid header value"))?;
        if out.iter().any(|(n, _)| *n == name) {
            return Err(ctx.err(&k.referenced, field, "header set twice"));
        }
        out.push((name, value));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Basic auth.

struct BasicAuth {
    users: HashMap<String, Arc<str>>,
    /// Verified for unknown users so they cost the same bcrypt work as a wrong password: a
    /// configured hash of the cost most users share.
    dummy: Arc<str>,
    slots: Arc<Semaphore>,
    cache: Mutex<AuthCache>,
    /// Per-load random salt for the cache's password digests, so a memory dump does not hold
    /// plain SHA-256 of passwords.
    salt: [u8; 32],
    /// bcrypt runs so far (tests check that the cache spares them).
    verifications: AtomicU64,
}

impl BasicAuth {
    fn new(ctx: &Ctx, pairs: &Pairs) -> Result<BasicAuth, ConfigError> {
        let mut users: HashMap<String, Arc<str>> = HashMap::new();
        let mut costs: HashMap<u32, (usize, Arc<str>)> = HashMap::new();
        for (u, h) in &pairs.0 {
            let field = format!("basic_auth_users.{}", u.value);
            if u.value.contains(':') {
                return Err(ctx.err(
                    &u.referenced,
                    field,
                    "a user name with ':' can not log in with basic auth",
                ));
            }
            let cost = bcrypt_cost(&h.value).map_err(|m| ctx.err(&h.referenced, field.clone(), m))?;
            let hash: Arc<str> = Arc::from(h.value.as_str());
            if users.insert(u.value.clone(), hash.clone()).is_some() {
                return Err(ctx.err(&u.referenced, field, "user listed twice"));
            }
            costs.entry(cost).or_insert((0, hash)).0 += 1;
        }
        let dummy = costs
            .into_iter()
            .max_by_key(|(cost, (n, _))| (*n, *cost))
            .map(|(_, (_, h))| h)
            .ok_or_else(|| ConfigError {
                file: ctx.file.to_string(),
                line: 0,
                column: 0,
                field: "basic_auth_users".into(),
                message: "no users".into(),
            })?;
        let mut salt = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt).map_err(|_| ConfigError {
            file: ctx.file.to_string(),
            line: 0,
            column: 0,
            field: "basic_auth_users".into(),
            message: "no system randomness for the credential cache".into(),
        })?;
        Ok(BasicAuth {
            users,
            dummy,
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_BCRYPT)),
            cache: Mutex::new(AuthCache::new(AUTH_CACHE_ENTRIES, AUTH_CACHE_TTL)),
            salt,
            verifications: AtomicU64::new(0),
        })
    }

    async fn check(&self, header: &HeaderValue) -> Result<(), AuthError> {
        let (user, password) = parse_basic(header)?;
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AuthError::Denied);
        }
        let key = CacheKey {
            user: user.clone(),
            digest: self.digest(&password),
        };
        if self.lock_cache().hit(&key, Instant::now()) {
            return Ok(());
        }
        let (hash, known) = match self.users.get(&user) {
            Some(h) => (h.clone(), true),
            None => (self.dummy.clone(), false),
        };
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        // The permit moves into the task: a client that goes away does not free a slot while
        // its bcrypt still runs.
        let matched = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            bcrypt::verify(&password, &hash)
        })
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))?
        .map_err(|e| AuthError::Internal(e.to_string()))?;
        if matched && known {
            self.lock_cache().insert(key, Instant::now());
            Ok(())
        } else {
            Err(AuthError::Denied)
        }
    }

    fn digest(&self, password: &[u8]) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.salt);
        ctx.update(password);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, AuthCache> {
        // The cache holds no invariant a panic could break: keep using it.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The costs bcrypt defines (the crate keeps its bounds private).
const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=31;

/// Checks that `hash` is a bcrypt hash we can verify against; returns its cost.
fn bcrypt_cost(hash: &str) -> Result<u32, String> {
    if !["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        return Err("not a bcrypt hash ($2a$, $2b$ or $2y$; e.g. from `htpasswd -nBC 10 \"\"`)".into());
    }
    let parts: bcrypt::HashParts = hash.parse().map_err(|e| format!("malformed bcrypt hash: {e}"))?;
    let cost = parts.get_cost();
    if !BCRYPT_COSTS.contains(&cost) {
        return Err(format!(
            "bcrypt cost {cost} is outside {}..={}",
            BCRYPT_COSTS.start(),
            BCRYPT_COSTS.end()
        ));
    }
    Ok(cost)
}

/// `Basic <base64(user:password)>`, strictly: one scheme, one token, padded standard base64,
/// a UTF-8 user name (it must match a YAML key) and a password of any bytes.
fn parse_basic(header: &HeaderValue) -> Result<(String, Vec<u8>), AuthError> {
    if header.len() > MAX_AUTHORIZATION_BYTES {
        return Err(AuthError::Malformed);
    }
    let s = header.to_str().map_err(|_| AuthError::Malformed)?;
    let Some((scheme, token)) = s.split_once(' ') else {
        return Err(if s.eq_ignore_ascii_case("basic") {
            AuthError::Malformed
        } else {
            AuthError::NotBasic
        });
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::NotBasic);
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(AuthError::Malformed);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| AuthError::Malformed)?;
    let colon = decoded.iter().position(|&b| b == b':').ok_or(AuthError::Malformed)?;
    let user = std::str::from_utf8(&decoded[..colon]).map_err(|_| AuthError::Malformed)?;
    Ok((user.to_string(), decoded[colon + 1..].to_vec()))
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    user: String,
    digest: [u8; 32],
}

/// Successful checks, each trusted for `ttl` from when bcrypt said yes; at most `capacity`,
/// the oldest dropped first.
#[derive(Debug)]
struct AuthCache {
    entries: HashMap<CacheKey, Instant>,
    capacity: usize,
    ttl: Duration,
}

impl AuthCache {
    fn new(capacity: usize, ttl: Duration) -> AuthCache {
        AuthCache {
            entries: HashMap::new(),
            capacity,
            ttl,
        }
    }

    fn hit(&mut self, key: &CacheKey, now: Instant) -> bool {
        match self.entries.get(key) {
            Some(at) if now.saturating_duration_since(*at) < self.ttl => true,
            Some(_) => {
                self.entries.remove(key);
                false
            }
            None => false,
        }
    }

    fn insert(&mut self, key: CacheKey, now: Instant) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            let ttl = self.ttl;
            self.entries.retain(|_, at| now.saturating_duration_since(*at) < ttl);
            if self.entries.len() >= self.capacity
                && let Some(oldest) = self.entries.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, now);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName as RcDn, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ProtocolVersion, SupportedProtocolVersion};
    use std::fs;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    // ----- PKI ---------------------------------------------------------------------------------

    struct Ca {
        issuer: Issuer<'static, KeyPair>,
        der: CertificateDer<'static>,
        pem: String,
    }

    struct Leaf {
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        cert_pem: String,
        key_pem: String,
    }

    fn new_ca(cn: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name = RcDn::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("self-signed CA");
        Ca {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf_params(names: &[&str], eku: ExtendedKeyUsagePurpose) -> CertificateParams {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("names");
        params.distinguished_name = RcDn::new();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![eku];
        params
    }

    fn leaf(ca: &Ca, names: &[&str], eku: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let cert = leaf_params(names, eku).signed_by(&key, &ca.issuer).expect("signed");
        to_leaf(cert, &key)
    }

    fn self_signed_client(name: &str) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let cert = leaf_params(&[name], ExtendedKeyUsagePurpose::ClientAuth)
            .self_signed(&key)
            .expect("self-signed");
        to_leaf(cert, &key)
    }

    fn to_leaf(cert: rcgen::Certificate, key: &KeyPair) -> Leaf {
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A directory with the files the configs below name: `server.crt`/`server.key` (for
    /// `localhost`, by `ca.crt`), `other.key` (matches nothing), `client-ca.crt`, `empty.pem`.
    struct Fixture {
        dir: tempfile::TempDir,
        ca: Ca,
        client_ca: Ca,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().expect("temp dir");
            let ca = new_ca("Web Test CA");
            let client_ca = new_ca("Web Test Client CA");
            let server = leaf(&ca, &["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
            let other = KeyPair::generate().expect("key");
            let put = |name: &str, text: &str| fs::write(dir.path().join(name), text).expect("write");
            put("ca.crt", &ca.pem);
            put("server.crt", &server.cert_pem);
            put("server.key", &server.key_pem);
            put("other.key", &other.serialize_pem());
            put("client-ca.crt", &client_ca.pem);
            put("empty.pem", "# no PEM here\n");
            Fixture { dir, ca, client_ca }
        }

        fn path(&self) -> PathBuf {
            self.dir.path().join("web.yml")
        }

        fn load(&self, yaml: &str) -> Result<WebConfig, ConfigError> {
            fs::write(self.path(), yaml).expect("write web.yml");
            WebConfig::load(&self.path())
        }

        fn good(&self, yaml: &str) -> WebConfig {
            self.load(yaml).unwrap_or_else(|e| panic!("{yaml}\n=> {e}"))
        }

        fn client(&self, name: &str) -> Leaf {
            leaf(&self.client_ca, &[name], ExtendedKeyUsagePurpose::ClientAuth)
        }
    }

    const TLS: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    const MTLS: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
                        client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.crt\n";

    // ----- handshakes --------------------------------------------------------------------------

    fn client_config(
        trust: &CertificateDer<'static>,
        versions: &[&'static SupportedProtocolVersion],
        cert: Option<&Leaf>,
    ) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        roots.add(trust.clone()).expect("root");
        let b = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots);
        match cert {
            Some(l) => b
                .with_client_auth_cert(l.chain.clone(), l.key.clone_key())
                .expect("client cert"),
            None => b.with_no_client_auth(),
        }
    }

    const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

    /// What the server saw of a finished handshake.
    #[derive(Debug)]
    struct Accepted {
        allowed: bool,
        version: Option<ProtocolVersion>,
        suite: Option<rustls::CipherSuite>,
        group: Option<rustls::NamedGroup>,
        alpn: Option<Vec<u8>>,
    }

    /// One real handshake over loopback; the server's verdict (TLS 1.3 clients finish before the
    /// server has judged their certificate, so the client side alone proves nothing).
    async fn handshake(web: &WebConfig, client: ClientConfig) -> Result<Accepted, String> {
        let server = web.tls().expect("TLS configured");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = TlsAcceptor::from(server);
        let connector = TlsConnector::from(Arc::new(client));
        let serve = async {
            let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
            let conn = tls.get_ref().1;
            Ok::<_, String>(Accepted {
                allowed: web.client_allowed(conn),
                version: conn.protocol_version(),
                suite: conn.negotiated_cipher_suite().map(|s| s.suite()),
                group: conn.negotiated_key_exchange_group().map(|g| g.name()),
                alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            })
        };
        let connect = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
            connector.connect(name, tcp).await.map(drop).map_err(|e| e.to_string())
        };
        let both = async { tokio::join!(serve, connect) };
        let (server, _client) = tokio::time::timeout(Duration::from_secs(10), both)
            .await
            .expect("no hang");
        server
    }

    #[tokio::test]
    async fn server_certificate_is_accepted_by_a_client_trusting_the_ca() {
        let fx = Fixture::new();
        let web = fx.good(TLS);
        let mut client = client_config(&fx.ca.der, BOTH, None);
        client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let ok = handshake(&web, client).await.expect("handshake");
        assert!(ok.allowed);
        assert_eq!(ok.version, Some(ProtocolVersion::TLSv1_3));
        assert_eq!(ok.alpn.as_deref(), Some(&b"http/1.1"[..]), "HTTP/1.1 only");
        // A client that trusts another CA refuses the server.
        let stranger = new_ca("Stranger CA");
        assert!(handshake(&web, client_config(&stranger.der, BOTH, None)).await.is_err());
    }

    #[tokio::test]
    async fn require_and_verify_client_cert() {
        let fx = Fixture::new();
        let web = fx.good(MTLS);
        let no_cert = handshake(&web, client_config(&fx.ca.der, BOTH, None)).await;
        assert!(no_cert.is_err(), "{no_cert:?}");
        let other_ca = new_ca("Other Client CA");
        let foreign = leaf(&other_ca, &["client.example"], ExtendedKeyUsagePurpose::ClientAuth);
        let r = handshake(&web, client_config(&fx.ca.der, BOTH, Some(&foreign))).await;
        assert!(r.is_err(), "{r:?}");
        let good = fx.client("client.example");
        for versions in [BOTH, &[&rustls::version::TLS12][..]] {
            let ok = handshake(&web, client_config(&fx.ca.der, versions, Some(&good)))
                .await
                .expect("right client cert");
            assert!(ok.allowed);
        }
    }

    #[tokio::test]
    async fn client_allowed_sans_accept_and_reject() {
        let fx = Fixture::new();
        let web = fx.good(&format!("{MTLS}  client_allowed_sans: [client.example, 192.0.2.7]\n"));
        for (names, want) in [
            (&["client.example"][..], true),
            (&["other.example", "192.0.2.7"][..], true),
            (&["other.example"][..], false),
        ] {
            let cert = leaf(&fx.client_ca, names, ExtendedKeyUsagePurpose::ClientAuth);
            let got = handshake(&web, client_config(&fx.ca.der, BOTH, Some(&cert)))
                .await
                .expect("verified handshake");
            assert_eq!(got.allowed, want, "{names:?}");
        }
        // VerifyClientCertIfGiven lets a client without a certificate finish the handshake,
        // but it then carries no allowed SAN.
        let if_given = MTLS.replace("RequireAndVerifyClientCert", "VerifyClientCertIfGiven");
        let web = fx.good(&format!("{if_given}  client_allowed_sans: [client.example]\n"));
        let got = handshake(&web, client_config(&fx.ca.der, BOTH, None))
            .await
            .expect("no cert is fine");
        assert!(!got.allowed);
    }

    #[tokio::test]
    async fn min_version_tls13_rejects_a_tls12_only_client() {
        let fx = Fixture::new();
        let web = fx.good(&format!("{TLS}  min_version: TLS13\n"));
        let tls12 = client_config(&fx.ca.der, &[&rustls::version::TLS12], None);
        assert!(handshake(&web, tls12).await.is_err());
        let ok = handshake(&web, client_config(&fx.ca.der, BOTH, None))
            .await
            .expect("TLS 1.3");
        assert_eq!(ok.version, Some(ProtocolVersion::TLSv1_3));
    }

    #[tokio::test]
    async fn versions_suites_and_curves_are_applied() {
        let fx = Fixture::new();
        let web = fx.good(&format!(
            "{TLS}  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]\n  \
             curve_preferences: [CurveP384]\n"
        ));
        let ok = handshake(&web, client_config(&fx.ca.der, BOTH, None))
            .await
            .expect("handshake");
        assert_eq!(ok.version, Some(ProtocolVersion::TLSv1_2));
        assert_eq!(
            ok.suite,
            Some(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
        );
        assert_eq!(ok.group, Some(rustls::NamedGroup::secp384r1));
        // TLS 1.3 suites stay on whatever cipher_suites lists.
        let web = fx.good(&format!(
            "{TLS}  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n"
        ));
        let ok = handshake(&web, client_config(&fx.ca.der, BOTH, None))
            .await
            .expect("handshake");
        assert_eq!(ok.version, Some(ProtocolVersion::TLSv1_3));
        assert!(web.tls().expect("tls").ignore_client_order);
        let web = fx.good(&format!("{TLS}  prefer_server_cipher_suites: false\n"));
        assert!(!web.tls().expect("tls").ignore_client_order);
    }

    #[tokio::test]
    async fn unverified_client_auth_types() {
        let fx = Fixture::new();
        let anyone = self_signed_client("anyone.example");
        let web = fx.good(&format!("{TLS}  client_auth_type: RequireAnyClientCert\n"));
        assert!(handshake(&web, client_config(&fx.ca.der, BOTH, None)).await.is_err());
        let ok = handshake(&web, client_config(&fx.ca.der, BOTH, Some(&anyone)))
            .await
            .expect("any cert");
        assert!(ok.allowed);
        let web = fx.good(&format!("{TLS}  client_auth_type: RequestClientCert\n"));
        handshake(&web, client_config(&fx.ca.der, BOTH, None))
            .await
            .expect("no cert");
        handshake(&web, client_config(&fx.ca.der, BOTH, Some(&anyone)))
            .await
            .expect("any cert");
        let web = fx.good(&MTLS.replace("RequireAndVerifyClientCert", "VerifyClientCertIfGiven"));
        handshake(&web, client_config(&fx.ca.der, BOTH, None))
            .await
            .expect("no cert");
        assert!(
            handshake(&web, client_config(&fx.ca.der, BOTH, Some(&anyone)))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn inline_pem_works_like_files() {
        let fx = Fixture::new();
        let server = leaf(&fx.ca, &["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
        let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
        let yaml = format!(
            "tls_server_config:\n  cert: |\n{}  key: |\n{}",
            indent(&server.cert_pem),
            indent(&server.key_pem)
        );
        let web = fx.good(&yaml);
        handshake(&web, client_config(&fx.ca.der, BOTH, None))
            .await
            .expect("inline cert");
    }

    // ----- plain settings ----------------------------------------------------------------------

    #[test]
    fn empty_and_minimal_files() {
        let fx = Fixture::new();
        for yaml in [
            "",
            "# nothing\n",
            "tls_server_config: {}\nhttp_server_config:\nbasic_auth_users:\n",
        ] {
            let web = fx.good(yaml);
            assert!(web.tls().is_none());
            assert!(web.headers().is_empty());
            assert!(!web.has_basic_auth());
        }
        let web = fx.good("http_server_config:\n  http2: false\n");
        assert!(web.tls().is_none());
    }

    #[test]
    fn headers_in_file_order() {
        let fx = Fixture::new();
        let web = fx.good(
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-XSS-Protection: 1\n    \
             Content-Security-Policy: \"default-src 'self'\"\n    Strict-Transport-Security: \"\"\n    \
             x-content-type-options: nosniff\n",
        );
        let got: Vec<(String, String)> = web
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_string()))
            .collect();
        let want = [
            ("x-frame-options", "deny"),
            ("x-xss-protection", "1"),
            ("content-security-policy", "default-src 'self'"),
            ("x-content-type-options", "nosniff"),
        ];
        assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
    }

    // ----- errors ------------------------------------------------------------------------------

    #[test]
    fn config_errors_name_field_and_line() {
        let fx = Fixture::new();
        let ecdsa_only = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256";
        let hash = bcrypt::hash("pw", 4).expect("hash");
        let cases: Vec<(String, &str, u64, &str)> = vec![
            ("bogus: 1\n".into(), "bogus", 1, "unknown field"),
            ("rate_limit:\n  burst: 1\n".into(), "rate_limit", 1, "unknown field"),
            (
                format!("{TLS}  bogus: x\n"),
                "tls_server_config.bogus",
                4,
                "unknown field",
            ),
            (
                TLS.replace("server.key", "missing.key"),
                "tls_server_config.key_file",
                3,
                "no such file",
            ),
            (
                TLS.replace("server.key", "other.key"),
                "tls_server_config.key_file",
                3,
                "does not match",
            ),
            (
                TLS.replace("server.crt", "empty.pem"),
                "tls_server_config.cert_file",
                2,
                "no CERTIFICATE",
            ),
            (
                TLS.replace("key_file: server.key", "key_file: server.crt"),
                "tls_server_config.key_file",
                3,
                "no usable private key",
            ),
            (
                TLS.replace("server.crt", "."),
                "tls_server_config.cert_file",
                2,
                "not a regular file",
            ),
            (
                TLS.replace("server.crt", "''"),
                "tls_server_config.cert_file",
                2,
                "empty path",
            ),
            (
                MTLS.replace("client-ca.crt", "empty.pem"),
                "tls_server_config.client_ca_file",
                5,
                "no CERTIFICATE",
            ),
            (
                format!("{TLS}  client_auth_type: RequireAndVerifyClientCert\n"),
                "tls_server_config.client_auth_type",
                4,
                "client_ca_file",
            ),
            (
                format!("{TLS}  client_auth_type: VerifyClientCertIfGiven\n"),
                "tls_server_config.client_auth_type",
                4,
                "client_ca_file",
            ),
            (
                format!("{TLS}  client_ca_file: client-ca.crt\n"),
                "tls_server_config.client_ca_file",
                4,
                "client_auth_type",
            ),
            (
                format!("{TLS}  client_auth_type: Sometimes\n"),
                "tls_server_config.client_auth_type",
                4,
                "unknown",
            ),
            (
                format!("{TLS}  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: [a]\n"),
                "tls_server_config.client_allowed_sans",
                5,
                "unverified",
            ),
            (
                format!("{TLS}  min_version: TLS10\n"),
                "tls_server_config.min_version",
                4,
                "rustls supports TLS12 and TLS13 only",
            ),
            (
                format!("{TLS}  max_version: TLS11\n"),
                "tls_server_config.max_version",
                4,
                "rustls supports TLS12 and TLS13 only",
            ),
            (
                format!("{TLS}  min_version: SSL3\n"),
                "tls_server_config.min_version",
                4,
                "unknown TLS version",
            ),
            (
                format!("{TLS}  min_version: TLS13\n  max_version: TLS12\n"),
                "tls_server_config.min_version",
                4,
                "above max_version",
            ),
            (
                format!("{TLS}  cipher_suites: [TLS_AES_128_GCM_SHA256, TLS_MADE_UP]\n"),
                "tls_server_config.cipher_suites[1]",
                4,
                "unknown cipher suite",
            ),
            (
                format!("{TLS}  cipher_suites:\n    - TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA\n"),
                "tls_server_config.cipher_suites[0]",
                5,
                "not implemented by rustls",
            ),
            (
                format!("{TLS}  cipher_suites: [{ecdsa_only}]\n"),
                "tls_server_config.cipher_suites",
                4,
                "works with",
            ),
            (
                format!("{TLS}  curve_preferences: [X25519, CurveP521]\n"),
                "tls_server_config.curve_preferences[1]",
                4,
                "not implemented",
            ),
            (
                format!("{TLS}  curve_preferences: [Curve25519]\n"),
                "tls_server_config.curve_preferences[0]",
                4,
                "unknown curve",
            ),
            (
                "tls_server_config:\n  cert_file: server.crt\n".into(),
                "tls_server_config.key_file",
                2,
                "without key_file",
            ),
            (
                "tls_server_config:\n  min_version: TLS13\n".into(),
                "tls_server_config.cert_file",
                2,
                "without a certificate",
            ),
            (
                format!("{TLS}  cert: inline\n"),
                "tls_server_config.cert",
                4,
                "not both",
            ),
            (
                format!("{TLS}  prefer_server_cipher_suites: sometimes\n"),
                "tls_server_config.prefer_server_cipher_suites",
                4,
                "boolean",
            ),
            (
                "http_server_config:\n  http2: maybe\n".into(),
                "http_server_config.http2",
                2,
                "boolean",
            ),
            (
                "http_server_config:\n  headers:\n    X-Powered-By: me\n".into(),
                "http_server_config.headers.X-Powered-By",
                3,
                "can not be configured",
            ),
            (
                "http_server_config:\n  headers:\n    X-Frame-Options: allow\n".into(),
                "http_server_config.headers.X-Frame-Options",
                3,
                "not allowed",
            ),
            (
                "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    x-frame-options: deny\n".into(),
                "http_server_config.headers.x-frame-options",
                4,
                "twice",
            ),
            (
                "basic_auth_users:\n  alice: hunter2\n".into(),
                "basic_auth_users.alice",
                2,
                "not a bcrypt hash",
            ),
            (
                "basic_auth_users:\n  alice: $1$abc$def\n".into(),
                "basic_auth_users.alice",
                2,
                "not a bcrypt hash",
            ),
            (
                format!("basic_auth_users:\n  bob: {}\n", hash.replacen("$2b$", "$2x$", 1)),
                "basic_auth_users.bob",
                2,
                "not a bcrypt hash",
            ),
            (
                "basic_auth_users:\n  carol: $2y$10$tooshort\n".into(),
                "basic_auth_users.carol",
                2,
                "malformed bcrypt hash",
            ),
            (
                format!("basic_auth_users:\n  dave: {}\n", hash.replacen("$04$", "$32$", 1)),
                "basic_auth_users.dave",
                2,
                "cost 32",
            ),
            (
                format!("basic_auth_users:\n  a:b: {hash}\n"),
                "basic_auth_users.a:b",
                2,
                "':'",
            ),
            (
                format!("basic_auth_users:\n  alice: {hash}\n  alice: {hash}\n"),
                "basic_auth_users.alice",
                3,
                "duplicate",
            ),
            (
                "basic_auth_users:\n  alice:\n".into(),
                "basic_auth_users.alice",
                2,
                "null",
            ),
        ];
        for (yaml, field, line, message) in &cases {
            let e = match fx.load(yaml) {
                Ok(w) => panic!("accepted:\n{yaml}\n=> {w:?}"),
                Err(e) => e,
            };
            let shown = e.to_string();
            assert_eq!(e.field, *field, "{yaml}\n=> {shown}");
            assert_eq!(e.line, *line, "{yaml}\n=> {shown}");
            assert!(e.message.contains(message), "{yaml}\n=> {shown}");
            assert!(
                shown.starts_with(&format!("{}:{line}:", fx.path().display())),
                "{shown}"
            );
        }
    }

    #[test]
    fn unreadable_web_config_file() {
        let fx = Fixture::new();
        let e = WebConfig::load(&fx.dir.path().join("nope.yml")).expect_err("missing file");
        assert_eq!((e.line, e.field.as_str()), (0, "-"));
        assert!(e.message.contains("no such file"), "{e}");
        let e = WebConfig::load(fx.dir.path()).expect_err("a directory");
        assert!(e.message.contains("not a regular file"), "{e}");
    }

    // ----- basic auth --------------------------------------------------------------------------

    fn basic(user_pass: &str) -> HeaderValue {
        let token = base64::engine::general_purpose::STANDARD.encode(user_pass);
        HeaderValue::from_str(&format!("Basic {token}")).expect("header")
    }

    fn runs(web: &WebConfig) -> u64 {
        web.auth.as_ref().map_or(0, |a| a.verifications.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn basic_auth_checks_and_caches() {
        let fx = Fixture::new();
        let alice = bcrypt::hash("s3cret", 4).expect("hash");
        let bob = bcrypt::hash("b0b", 4).expect("hash");
        let web = fx.good(&format!("basic_auth_users:\n  alice: {alice}\n  bob: {bob}\n"));
        assert!(web.has_basic_auth());

        assert_eq!(web.authorize(Some(&basic("alice:s3cret"))).await, Ok(()));
        assert_eq!(runs(&web), 1);
        // The second success comes from the cache: no bcrypt run.
        assert_eq!(web.authorize(Some(&basic("alice:s3cret"))).await, Ok(()));
        assert_eq!(runs(&web), 1);

        // Failures always pay bcrypt, known user or not.
        for _ in 0..2 {
            assert_eq!(web.authorize(Some(&basic("alice:wrong"))).await, Err(AuthError::Denied));
        }
        assert_eq!(runs(&web), 3);
        assert_eq!(
            web.authorize(Some(&basic("mallory:s3cret"))).await,
            Err(AuthError::Denied)
        );
        assert_eq!(runs(&web), 4);
        // Another user's password does not open an unknown name (the dummy is a real hash).
        assert_eq!(web.authorize(Some(&basic("mallory:b0b"))).await, Err(AuthError::Denied));
        assert_eq!(web.authorize(Some(&basic("bob:s3cret"))).await, Err(AuthError::Denied));
        assert_eq!(web.authorize(Some(&basic("bob:b0b"))).await, Ok(()));
        assert_eq!(web.auth.as_ref().map(|a| a.lock_cache().len()), Some(2));

        // Malformed or foreign credentials never reach bcrypt.
        let before = runs(&web);
        let header = |s: &str| HeaderValue::from_str(s).expect("header");
        let long = format!("Basic {}", "A".repeat(MAX_AUTHORIZATION_BYTES));
        let too_long_password = basic(&format!("alice:{}", "x".repeat(MAX_PASSWORD_BYTES + 1)));
        for (h, want) in [
            (None, AuthError::Missing),
            (Some(header("Bearer abc.def")), AuthError::NotBasic),
            (Some(header("Digest username=alice")), AuthError::NotBasic),
            (Some(header("Basic")), AuthError::Malformed),
            (Some(header("Basic ")), AuthError::Malformed),
            (Some(header("Basic !!!")), AuthError::Malformed),
            (Some(header("Basic YWxpY2U6czNjcmU")), AuthError::Malformed), // no padding
            (Some(basic("alice")), AuthError::Malformed),                  // no colon
            (Some(header("Basic YWxp Y2U=")), AuthError::Malformed),
            (Some(header(&long)), AuthError::Malformed),
            (Some(too_long_password), AuthError::Denied),
        ] {
            assert_eq!(web.authorize(h.as_ref()).await, Err(want), "{h:?}");
        }
        assert_eq!(runs(&web), before);
        // The scheme is case-insensitive (RFC 7235).
        assert_eq!(
            web.authorize(Some(&header(&format!(
                "basic {}",
                base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
            ))))
            .await,
            Ok(())
        );
        // All bcrypt slots are free again.
        assert_eq!(
            web.auth.as_ref().map(|a| a.slots.available_permits()),
            Some(MAX_CONCURRENT_BCRYPT)
        );
    }

    #[tokio::test]
    async fn no_users_means_no_auth() {
        let fx = Fixture::new();
        let web = fx.good(TLS);
        assert_eq!(web.authorize(None).await, Ok(()));
        assert_eq!(web.authorize(Some(&HeaderValue::from_static("Bearer x"))).await, Ok(()));
    }

    #[tokio::test]
    async fn concurrent_checks_share_two_slots() {
        let fx = Fixture::new();
        let hash = bcrypt::hash("pw", 4).expect("hash");
        let web = Arc::new(fx.good(&format!("basic_auth_users:\n  u: {hash}\n")));
        let mut tasks = Vec::new();
        for i in 0..8 {
            let web = web.clone();
            tasks.push(tokio::spawn(async move {
                let pw = if i % 2 == 0 { "u:pw" } else { "u:nope" };
                web.authorize(Some(&basic(pw))).await.is_ok()
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.expect("task"));
        }
        assert_eq!(ok, 4);
        assert_eq!(
            web.auth.as_ref().map(|a| a.slots.available_permits()),
            Some(MAX_CONCURRENT_BCRYPT)
        );
    }

    #[test]
    fn cache_expires_and_stays_bounded() {
        let key = |u: &str| CacheKey {
            user: u.to_string(),
            digest: [7; 32],
        };
        let t0 = Instant::now();
        let mut c = AuthCache::new(3, Duration::from_secs(600));
        c.insert(key("a"), t0);
        assert!(c.hit(&key("a"), t0 + Duration::from_secs(599)));
        assert!(!c.hit(&key("a"), t0 + Duration::from_secs(600)));
        assert_eq!(c.len(), 0, "an expired entry is dropped when found");
        for (i, u) in ["a", "b", "c", "d"].iter().enumerate() {
            c.insert(key(u), t0 + Duration::from_secs(i as u64));
        }
        assert_eq!(c.len(), 3);
        let now = t0 + Duration::from_secs(10);
        assert!(!c.hit(&key("a"), now), "the oldest entry made room");
        assert!(c.hit(&key("b"), now) && c.hit(&key("d"), now));
        // Another digest for the same user is another key.
        assert!(!c.hit(
            &CacheKey {
                user: "b".into(),
                digest: [8; 32]
            },
            now
        ));
    }

    #[test]
    fn dummy_hash_has_the_common_cost() {
        let fx = Fixture::new();
        let h4 = bcrypt::hash("x", 4).expect("hash");
        let h5a = bcrypt::hash("y", 5).expect("hash");
        let h5b = bcrypt::hash("z", 5).expect("hash");
        let web = fx.good(&format!("basic_auth_users:\n  a: {h4}\n  b: {h5a}\n  c: {h5b}\n"));
        let dummy = web.auth.as_ref().map(|a| a.dummy.to_string()).unwrap_or_default();
        assert!(dummy.starts_with("$2b$05$"), "{dummy}");
    }
}
