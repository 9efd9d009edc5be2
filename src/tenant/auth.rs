//! Tokens from Microsoft Entra ID (OAuth 2.0 client credentials): a client secret, a JWT client
//! assertion signed with the app's certificate, or a federated token file; cached until shortly
//! before they expire.
//!
//! This module builds the token request and keeps the cache; [`super::api::Api`] sends it, so
//! token requests are counted like every other request. Credentials are read from their files
//! or variable at every token request (the platform may rotate them) and never appear in logs,
//! `Debug` output or error messages.
//!
//! The JWT is signed with `ring` directly rather than with the `jsonwebtoken` crate: its current
//! releases (10–12) sign RSA only through `aws-lc-rs` or RustCrypto's `rsa`, a second crypto
//! stack next to the ring provider rustls already uses (and `rsa` carries an unfixed timing
//! advisory). An RS256 JWT is two base64url JSON parts and one PKCS#1 v1.5 signature, which
//! ring does in a few lines.

use crate::config::{Credential, TenantConfig};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Token scope strings: fixed by Microsoft whatever base URLs the config names (a lab pointing
/// `graph_url` at loopback still asks for a Graph token).
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
pub const EXCHANGE_SCOPE: &str = "https://outlook.office365.com/.default";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// A token is renewed this long before Entra ID says it expires (clock skew, long polls).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Lifetime of our client assertion (Microsoft accepts up to a few hours; short is safer).
const ASSERTION_LIFETIME: u64 = 600;
/// Credential files are small; a bigger one is a wrong path, not a secret.
const MAX_CREDENTIAL_FILE: u64 = 1024 * 1024;

/// Which resource a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Microsoft Graph (message trace).
    Graph,
    /// Exchange Online (the admin API).
    Exchange,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Graph => GRAPH_SCOPE,
            Scope::Exchange => EXCHANGE_SCOPE,
        }
    }
}

/// A string that must not be printed: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
}

/// The app's identity and the token cache, one entry per scope.
pub struct TokenSource {
    token_url: String,
    client_id: String,
    credential: Credential,
    cache: Mutex<HashMap<Scope, Cached>>,
    rng: SystemRandom,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("credential", &self.credential.kind())
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    pub fn new(cfg: &TenantConfig) -> TokenSource {
        TokenSource {
            token_url: token_url(&cfg.login_url, &cfg.tenant_id),
            client_id: cfg.client_id.clone(),
            credential: cfg.credential.clone(),
            cache: Mutex::new(HashMap::new()),
            rng: SystemRandom::new(),
        }
    }

    /// `{login_url}/{tenant}/oauth2/v2.0/token`, also the `aud` of a client assertion.
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// A cached token that is not yet due for renewal.
    pub fn cached(&self, scope: Scope, now: Instant) -> Option<Secret> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(&scope)
            .filter(|c| now < c.refresh_at)
            .map(|c| c.token.clone())
    }

    /// Keeps `token` until [`REFRESH_MARGIN`] before `expires_in` runs out.
    pub fn store(&self, scope: Scope, token: Secret, expires_in: Duration, now: Instant) {
        let refresh_at = now + expires_in.saturating_sub(REFRESH_MARGIN);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(scope, Cached { token, refresh_at });
    }

    /// Drops `token` from the cache (after a 401), unless a newer one replaced it meanwhile.
    pub fn invalidate(&self, scope: Scope, token: &Secret) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.get(&scope).is_some_and(|c| &c.token == token) {
            cache.remove(&scope);
        }
    }

    /// The form of a token request for `scope`, credential read fresh. The returned pairs hold
    /// secrets: the caller sends them and drops them.
    pub fn form(&self, scope: Scope, now: SystemTime) -> Result<Vec<(&'static str, Secret)>, String> {
        let mut form = vec![
            ("grant_type", Secret::new("client_credentials".into())),
            ("client_id", Secret::new(self.client_id.clone())),
            ("scope", Secret::new(scope.as_str().into())),
        ];
        match &self.credential {
            Credential::SecretFile(path) => {
                let raw = read_small(path)?;
                let secret = raw.trim_end_matches(['\r', '\n']).to_string();
                if secret.is_empty() {
                    return Err(format!("client secret file {} is empty", path.display()));
                }
                form.push(("client_secret", Secret::new(secret)));
            }
            Credential::SecretEnv(var) => match std::env::var(var) {
                Ok(s) if !s.trim().is_empty() => form.push((
                    "client_secret",
                    Secret::new(s.trim_end_matches(['\r', '\n']).to_string()),
                )),
                Ok(_) => return Err(format!("environment variable {var} is empty")),
                Err(_) => return Err(format!("environment variable {var} is not set (or not UTF-8)")),
            },
            Credential::Certificate { cert_file, key_file } => {
                let cert = read_small(cert_file)?;
                let key = read_small(key_file)?;
                let jwt = client_assertion(
                    cert.as_bytes(),
                    key.as_bytes(),
                    &self.client_id,
                    &self.token_url,
                    now,
                    &self.rng,
                )
                .map_err(|e| format!("certificate {} / key {}: {e}", cert_file.display(), key_file.display()))?;
                form.push(("client_assertion_type", Secret::new(JWT_BEARER.into())));
                form.push(("client_assertion", jwt));
            }
            Credential::FederatedTokenFile(path) => {
                let token = read_small(path)?.trim().to_string();
                if token.is_empty() {
                    return Err(format!("federated token file {} is empty", path.display()));
                }
                form.push(("client_assertion_type", Secret::new(JWT_BEARER.into())));
                form.push(("client_assertion", Secret::new(token)));
            }
        }
        Ok(form)
    }
}

/// The token endpoint of a tenant.
pub fn token_url(login_url: &str, tenant_id: &str) -> String {
    format!("{}/{}/oauth2/v2.0/token", login_url.trim_end_matches('/'), tenant_id)
}

/// Reads a credential file; errors name the path and the kind of failure, never the content.
fn read_small(path: &std::path::Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?;
    if !meta.is_file() || meta.len() > MAX_CREDENTIAL_FILE {
        return Err(format!("{} is not a small regular file", path.display()));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?;
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8", path.display()))
}

/// The first certificate of a PEM file, DER-encoded.
pub fn first_cert(pem: &[u8]) -> Result<CertificateDer<'static>, String> {
    match CertificateDer::pem_slice_iter(pem).next() {
        Some(Ok(c)) => Ok(c),
        Some(Err(_)) => Err("the certificate file is not valid PEM".into()),
        None => Err("the certificate file holds no CERTIFICATE block".into()),
    }
}

/// `x5t#S256`: base64url SHA-256 of the certificate DER (how Entra ID finds the app's key).
pub fn x5t_s256(cert_der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, cert_der))
}

/// A UUID v4 string from `rng` (a JWT `jti` must be unique; no crate needed for 16 bytes).
pub fn uuid_v4(rng: &dyn SecureRandom) -> Result<String, String> {
    let mut b = [0u8; 16];
    rng.fill(&mut b).map_err(|_| "no randomness available".to_string())?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// A signed RS256 client assertion for `client_id` at `aud` (the token URL), valid 10 minutes.
pub fn client_assertion(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_id: &str,
    aud: &str,
    now: SystemTime,
    rng: &SystemRandom,
) -> Result<Secret, String> {
    let cert = first_cert(cert_pem)?;
    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(PrivateKeyDer::Pkcs8(k)) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
        Ok(PrivateKeyDer::Pkcs1(k)) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
        Ok(_) => return Err("the key must be an RSA key (PKCS#8 or PKCS#1 PEM)".into()),
        Err(_) => return Err("the key file holds no readable PEM private key".into()),
    }
    .map_err(|_| "the key is not a usable RSA key (2048 bits or more)".to_string())?;
    let iat = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t#S256": x5t_s256(&cert)});
    let claims = serde_json::json!({
        "aud": aud,
        "iss": client_id,
        "sub": client_id,
        "jti": uuid_v4(rng)?,
        "nbf": iat,
        "iat": iat,
        "exp": iat + ASSERTION_LIFETIME,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, rng, signing_input.as_bytes(), &mut sig)
        .map_err(|_| "signing the client assertion failed".to_string())?;
    Ok(Secret::new(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/tenant")
                .join(name),
        )
        .unwrap()
    }

    fn cfg(credential: Credential) -> TenantConfig {
        TenantConfig {
            tenant_id: "11111111-2222-3333-4444-555555555555".into(),
            client_id: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee".into(),
            credential,
            login_url: "https://127.0.0.1:1".into(),
            graph_url: "https://127.0.0.1:1".into(),
            exchange_url: "https://127.0.0.1:1".into(),
            poll_interval: Duration::from_secs(60),
            sync: false,
            sync_interval: Duration::from_secs(900),
            details_per_5min: 60,
        }
    }

    #[test]
    fn assertion_is_signed_rs256_with_x5t_s256() {
        let rng = SystemRandom::new();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for key in ["app-key.pem", "app-key-pkcs1.pem"] {
            let jwt = client_assertion(
                &fixture("app-cert.pem"),
                &fixture(key),
                "cid",
                "https://aud/x",
                now,
                &rng,
            )
            .unwrap();
            let parts: Vec<&str> = jwt.expose().split('.').collect();
            assert_eq!(parts.len(), 3);
            let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
            let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
            let cert = first_cert(&fixture("app-cert.pem")).unwrap();
            assert_eq!(header["alg"], "RS256");
            assert_eq!(header["x5t#S256"], x5t_s256(&cert));
            assert_eq!(claims["aud"], "https://aud/x");
            assert_eq!(claims["iss"], "cid");
            assert_eq!(claims["sub"], "cid");
            assert_eq!(claims["nbf"], 1_800_000_000u64);
            assert_eq!(claims["exp"], 1_800_000_600u64);
            assert_eq!(claims["jti"].as_str().unwrap().len(), 36);
            // Verify with the certificate's public key.
            let (_, x509) = x509_parser::parse_x509_certificate(&cert).unwrap();
            let pk = ring::signature::UnparsedPublicKey::new(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                x509.public_key().subject_public_key.data.to_vec(),
            );
            let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
            pk.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
                .unwrap();
        }
    }

    #[test]
    fn uuid_shape() {
        let u = uuid_v4(&SystemRandom::new()).unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn secret_file_trimmed_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        std::fs::write(&p, "s3cr3t-value\r\n").unwrap();
        let src = TokenSource::new(&cfg(Credential::SecretFile(p.clone())));
        let form = src.form(Scope::Exchange, SystemTime::now()).unwrap();
        let secret = form.iter().find(|(k, _)| *k == "client_secret").unwrap();
        assert_eq!(secret.1.expose(), "s3cr3t-value");
        assert!(!format!("{form:?}").contains("s3cr3t"));
        assert!(!format!("{src:?}").contains("s3cr3t"));
        assert_eq!(
            form.iter().find(|(k, _)| *k == "scope").unwrap().1.expose(),
            EXCHANGE_SCOPE
        );
        std::fs::write(&p, "\n").unwrap();
        assert!(src.form(Scope::Graph, SystemTime::now()).is_err());
        let missing = TokenSource::new(&cfg(Credential::SecretEnv("MAILFLOW_TEST_UNSET_VAR_9".into())));
        assert!(
            missing
                .form(Scope::Graph, SystemTime::now())
                .unwrap_err()
                .contains("not set")
        );
    }

    #[test]
    fn cache_refreshes_five_minutes_early_and_invalidates() {
        let src = TokenSource::new(&cfg(Credential::SecretEnv("X".into())));
        let t0 = Instant::now();
        src.store(Scope::Graph, Secret::new("a".into()), Duration::from_secs(3600), t0);
        assert!(src.cached(Scope::Graph, t0 + Duration::from_secs(3299)).is_some());
        assert!(src.cached(Scope::Graph, t0 + Duration::from_secs(3300)).is_none());
        assert!(src.cached(Scope::Exchange, t0).is_none());
        src.invalidate(Scope::Graph, &Secret::new("other".into()));
        assert!(src.cached(Scope::Graph, t0).is_some());
        src.invalidate(Scope::Graph, &Secret::new("a".into()));
        assert!(src.cached(Scope::Graph, t0).is_none());
    }
}
