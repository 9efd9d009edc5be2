//! The locked HTTP face, through the real binary: `--web.config.file` with TLS, client
//! certificates, basic auth and headers on every endpoint; changes picked up without a restart;
//! a bad file refused at start and kept out on reload.

use crate::support::config;
use crate::support::http::{Resp, exchange_with};
use crate::support::process::{Exporter, POLL, WAIT_DEADLINE, run};
use crate::support::scratch::Scratch;
use mailflow_exporter::lab::pki::{CertKey, TestCa};
use mailflow_exporter::lab::smtp::closed_port;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// `user:secret` hashed with bcrypt at the lowest cost, so the test stays quick.
fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).expect("bcrypt")
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

struct Pki {
    ca: TestCa,
    server: CertKey,
    client: CertKey,
    stranger: CertKey,
}

fn pki() -> Pki {
    let ca = TestCa::new("mailflow web test CA").expect("ca");
    let other = TestCa::new("someone else's CA").expect("ca");
    Pki {
        server: ca.leaf_valid(&["localhost", "127.0.0.1"]).expect("server cert"),
        client: ca.client_leaf(&["prometheus.lab.test"]).expect("client cert"),
        stranger: other.client_leaf(&["prometheus.lab.test"]).expect("client cert"),
        ca,
    }
}

/// A TLS client trusting the test CA, with an optional client certificate.
fn client(ca: &TestCa, cert: Option<&CertKey>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der()).expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let cfg = match cert {
        Some(ck) => builder
            .with_client_auth_cert(ck.chain.clone(), ck.key.clone_key())
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// One HTTPS request; Err when the TLS handshake or the exchange fails.
async fn https(
    ex: &Exporter,
    tls: &tokio_rustls::TlsConnector,
    target: &str,
    auth: Option<&str>,
) -> Result<Resp, String> {
    let go = async {
        let tcp = TcpStream::connect(ex.addr).await.map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let s = tls.connect(name, tcp).await.map_err(|e| format!("handshake: {e}"))?;
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        exchange_with(s, "localhost", "GET", target, &headers).await
    };
    tokio::time::timeout(Duration::from_secs(20), go)
        .await
        .map_err(|_| "no response within 20 s".to_string())?
}

fn web_yml(scratch: &Scratch, p: &Pki, mtls: bool, users: &[(&str, &str)]) -> std::path::PathBuf {
    std::fs::write(scratch.path("server.crt"), &p.server.chain_pem).expect("write");
    std::fs::write(scratch.path("server.key"), &p.server.key_pem).expect("write");
    std::fs::write(scratch.path("ca.crt"), p.ca.cert_pem()).expect("write");
    let mut y = String::from("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
    if mtls {
        y += "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n";
    }
    y += "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n";
    if !users.is_empty() {
        y += "basic_auth_users:\n";
        for (u, pw) in users {
            y += &format!("  {u}: {}\n", hash(pw));
        }
    }
    scratch.write("web.yml", &y)
}

fn agent_config(scratch: &Scratch) -> std::path::PathBuf {
    let refused = closed_port().expect("closed port");
    let text = config::file(config::FAST, None, &[config::at("Refused", refused)]);
    scratch.write("mailflow.yaml", &text)
}

#[tokio::test]
async fn tls_basic_auth_and_headers_cover_every_endpoint() {
    let scratch = Scratch::new("webface");
    let p = pki();
    let web = web_yml(&scratch, &p, false, &[("prometheus", "s3cret")]);
    let cfg = agent_config(&scratch);
    let ex = Exporter::serve_locked(&scratch, &cfg, &["--web.config.file", &web.display().to_string()]).await;
    let tls = client(&p.ca, None);
    let good = basic("prometheus", "s3cret");

    for path in [
        "/metrics",
        "/",
        "/api/status",
        "/-/healthy",
        "/-/ready",
        "/probe?connector=Refused",
    ] {
        let r = https(&ex, &tls, path, None)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(r.status, 401, "{path} without credentials: {r:?}");
        assert!(
            r.header("www-authenticate").is_some_and(|v| v.starts_with("Basic")),
            "{path}: {r:?}"
        );
        let r = https(&ex, &tls, path, Some(&basic("prometheus", "wrong")))
            .await
            .expect(path);
        assert_eq!(r.status, 401, "{path} with a wrong password: {r:?}");
        let r = https(&ex, &tls, path, Some(&basic("nobody", "s3cret")))
            .await
            .expect(path);
        assert_eq!(r.status, 401, "{path} for an unknown user: {r:?}");
        let r = https(&ex, &tls, path, Some(&good)).await.expect(path);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.header("x-frame-options"), Some("deny"), "{path}: {r:?}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}: {r:?}");
    }
    let m = https(&ex, &tls, "/metrics", Some(&good)).await.expect("metrics");
    assert!(
        m.body
            .lines()
            .any(|l| l == "mailflow_web_config_last_reload_successful 1"),
        "{}",
        m.body
    );

    // Plain HTTP to the TLS port gets no page.
    let plain = crate::support::http::request(ex.addr, "GET", "/metrics", None).await;
    assert!(
        plain.map(|r| r.status != 200).unwrap_or(true),
        "plain HTTP must not be served"
    );
    // A client that does not trust the server's CA does not get through either.
    let other = TestCa::new("unrelated").expect("ca");
    assert!(
        https(&ex, &client(&other, None), "/metrics", Some(&good))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn client_certificates_are_required_when_configured() {
    let scratch = Scratch::new("webface-mtls");
    let p = pki();
    let web = web_yml(&scratch, &p, true, &[]);
    let cfg = agent_config(&scratch);
    let ex = Exporter::serve_locked(&scratch, &cfg, &["--web.config.file", &web.display().to_string()]).await;

    let r = https(&ex, &client(&p.ca, Some(&p.client)), "/metrics", None).await;
    assert_eq!(r.map(|r| r.status), Ok(200));
    // TLS 1.3 reports a rejected client certificate after the handshake, on the first read.
    for (who, tls) in [
        ("no certificate", client(&p.ca, None)),
        ("another CA's certificate", client(&p.ca, Some(&p.stranger))),
    ] {
        let r = https(&ex, &tls, "/metrics", None).await;
        assert!(r.is_err(), "{who} must be refused, got {r:?}");
    }
}

#[tokio::test]
async fn a_changed_web_config_applies_without_restart_and_a_bad_one_is_kept_out() {
    let scratch = Scratch::new("webface-reload");
    let p = pki();
    let web = web_yml(&scratch, &p, false, &[("prometheus", "first")]);
    let cfg = agent_config(&scratch);
    let mut ex = Exporter::serve_locked(&scratch, &cfg, &["--web.config.file", &web.display().to_string()]).await;
    let tls = client(&p.ca, None);
    let r = https(&ex, &tls, "/metrics", Some(&basic("prometheus", "first"))).await;
    assert_eq!(r.map(|r| r.status), Ok(200));

    // A new password: noticed from the file's change, without a signal.
    web_yml(&scratch, &p, false, &[("prometheus", "second")]);
    let deadline = Instant::now() + WAIT_DEADLINE;
    loop {
        let r = https(&ex, &tls, "/metrics", Some(&basic("prometheus", "second"))).await;
        if r.as_ref().is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the new password never applied: {r:?}");
        tokio::time::sleep(POLL).await;
    }
    let old = https(&ex, &tls, "/metrics", Some(&basic("prometheus", "first"))).await;
    assert_eq!(old.map(|r| r.status), Ok(401), "the old password is gone");

    // A broken file: the one in force stays, and the metric says the reload failed.
    std::fs::write(&web, "basic_auth_users:\n  prometheus: not-a-bcrypt-hash\n").expect("write");
    ex.signal("HUP");
    let deadline = Instant::now() + WAIT_DEADLINE;
    loop {
        let r = https(&ex, &tls, "/metrics", Some(&basic("prometheus", "second")))
            .await
            .expect("still served with the old config");
        assert_eq!(r.status, 200);
        if r.body
            .lines()
            .any(|l| l == "mailflow_web_config_last_reload_successful 0")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the failed reload is not visible:\n{}",
            r.body
                .lines()
                .filter(|l| l.contains("reload"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(POLL).await;
    }
    assert!(ex.log().contains("web.yml"), "the error names the file\n{}", ex.log());
    ex.assert_running();
}

#[tokio::test]
async fn a_bad_web_config_stops_the_start_with_file_line_and_field() {
    let scratch = Scratch::new("webface-bad");
    let cfg = agent_config(&scratch);
    let web = scratch.write(
        "web.yml",
        "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
    );
    let storage = scratch.path("data").display().to_string();
    let r = run(
        &[
            "serve",
            "--config.file",
            &cfg.display().to_string(),
            "--storage.path",
            &storage,
            "--web.listen-address",
            "127.0.0.1:0",
            "--web.config.file",
            &web.display().to_string(),
        ],
        Duration::from_secs(20),
    )
    .await;
    r.assert_usage_error(&["web.yml:2:", "tls_server_config.cert_file"]);
}
