//! The SMTP dialogue: banners, EHLO/HELO, STARTTLS negotiation, hostile and broken servers.

use crate::support::probe::*;
use mailflow_exporter::config::TlsSettings;
use mailflow_exporter::lab::pki::TestCa;
use mailflow_exporter::lab::smtp::{Behavior, FaultServer, SmtpOptions};
use mailflow_exporter::probe::{Phase, ProbeReport};
use mailflow_exporter::taxonomy::{Code, Reason};
use std::time::Duration;

async fn probe_behavior(b: Behavior, tls: TlsSettings, timeout: Duration) -> (ProbeReport, FaultServer) {
    let srv = FaultServer::start(b).await.unwrap();
    let mut s = spec(vec![at(srv.addr())], tls);
    s.timeout = timeout;
    (probe(opts(None, None), &s).await, srv)
}

fn tls_options(capabilities: &[&str], banner: &[&str]) -> SmtpOptions {
    let ca = TestCa::new("SMTP test CA").unwrap();
    let leaf = ca.leaf_valid(&["127.0.0.1"]).unwrap();
    SmtpOptions {
        banner: banner.iter().map(|s| s.to_string()).collect(),
        capabilities: capabilities.iter().map(|s| s.to_string()).collect(),
        tls: Some(leaf.server_config().unwrap()),
        hostname: "lab.test".into(),
    }
}

#[tokio::test]
async fn multiline_banner_starttls_last_and_full_dialogue() {
    let o = tls_options(
        &["PIPELINING", "SIZE 1000", "8BITMIME", "STARTTLS"],
        &["lab.test ESMTP", "second", "third"],
    );
    let (r, srv) = probe_behavior(Behavior::Smtp(o), TlsSettings::EncryptionOnly, Duration::from_secs(2)).await;
    assert_delivered(&r);
    let a = &r.attempts[0];
    assert!(a.tls.is_some());
    assert!(!a.plaintext);
    for p in [
        Phase::Connect,
        Phase::Banner,
        Phase::Ehlo,
        Phase::Starttls,
        Phase::TlsHandshake,
        Phase::EhloTls,
    ] {
        assert!(a.durations.contains_key(&p), "missing duration for {p}");
    }
    assert!(a.extensions.contains(&"STARTTLS".to_string()));
    // The server saw: EHLO, STARTTLS, EHLO again inside TLS, QUIT.
    let t = srv.transcripts().join("");
    assert_eq!(t.matches("EHLO probe.test").count(), 2, "{t}");
    assert!(t.contains("STARTTLS") && t.contains("QUIT"), "{t}");
    assert!(
        a.transcript.lines().any(|l| l.starts_with("S: 220-lab.test")),
        "{:?}",
        a.transcript
    );
}

#[tokio::test]
async fn starttls_first_in_capabilities() {
    let o = tls_options(&["STARTTLS", "8BITMIME", "PIPELINING"], &["lab.test"]);
    let (r, _srv) = probe_behavior(Behavior::Smtp(o), TlsSettings::EncryptionOnly, Duration::from_secs(2)).await;
    assert_delivered(&r);
}

#[tokio::test]
async fn banner_421_then_close() {
    let (r, _s) = probe_behavior(Behavior::Banner421, TlsSettings::None, Duration::from_secs(2)).await;
    assert_fails(&r, Code::CannotConnect, Reason::BannerRejected, Phase::Banner);
    assert!(r.message.contains("[Message=421 4.3.2"), "{}", r.message);
    assert_eq!(r.attempts[0].server_reply.as_deref().map(|s| &s[..3]), Some("421"));
}

#[tokio::test]
async fn banner_554() {
    let b = Behavior::Garbage(b"554 5.7.1 mail.test no SMTP service here\r\n".to_vec());
    let (r, _s) = probe_behavior(b, TlsSettings::None, Duration::from_secs(2)).await;
    assert_fails(&r, Code::CannotConnect, Reason::BannerRejected, Phase::Banner);
}

#[tokio::test]
async fn non_smtp_service_on_port_25() {
    let b = Behavior::Garbage(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n".to_vec());
    let (r, _s) = probe_behavior(b, TlsSettings::None, Duration::from_secs(2)).await;
    assert_fails(&r, Code::CannotConnect, Reason::ProtocolError, Phase::Banner);
    let b = Behavior::Garbage(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec());
    let (r, _s) = probe_behavior(b, TlsSettings::None, Duration::from_secs(2)).await;
    assert_fails(&r, Code::CannotConnect, Reason::ProtocolError, Phase::Banner);
}

#[tokio::test]
async fn huge_line_fails_fast_as_protocol_error() {
    let b = Behavior::HugeLine { len: 1_000_000 };
    let (r, _s) = probe_behavior(b, TlsSettings::None, Duration::from_secs(5)).await;
    // Not a read timeout: the cap triggers as soon as the line exceeds it.
    assert_fails(&r, Code::CannotConnect, Reason::ProtocolError, Phase::Banner);
    assert!(r.attempts[0].durations[&Phase::Banner] < 5.0);
}

#[tokio::test]
async fn tarpit_fails_on_the_step_deadline() {
    let b = Behavior::Tarpit {
        byte_interval: Duration::from_millis(50),
    };
    let (r, _s) = probe_behavior(b, TlsSettings::None, Duration::from_millis(800)).await;
    assert_fails(&r, Code::ConnectionClosedAbruptly, Reason::ReadTimeout, Phase::Banner);
    // The trickle keeps the socket busy, yet the deadline is per step, not per read.
    let banner = r.attempts[0].durations[&Phase::Banner];
    assert!(banner < 3.0, "tarpit held the probe for {banner}s");
}

#[tokio::test]
async fn silent_server_read_timeout() {
    let (r, _s) = probe_behavior(Behavior::Silent, TlsSettings::None, Duration::from_millis(500)).await;
    assert_fails(&r, Code::ConnectionClosedAbruptly, Reason::ReadTimeout, Phase::Banner);
}

#[tokio::test]
async fn close_after_banner_is_closed_in_ehlo() {
    let (r, _s) = probe_behavior(Behavior::CloseAfterBanner, TlsSettings::None, Duration::from_secs(2)).await;
    assert_fails(&r, Code::ConnectionClosedAbruptly, Reason::Closed, Phase::Ehlo);
}

#[tokio::test]
async fn reset_after_ehlo() {
    let (r, _s) = probe_behavior(Behavior::ResetAfterEhlo, TlsSettings::None, Duration::from_secs(2)).await;
    assert_fails(&r, Code::ConnectionClosedAbruptly, Reason::Reset, Phase::Ehlo);
}

#[tokio::test]
async fn helo_fallback_when_ehlo_unknown() {
    let (r, srv) = probe_behavior(
        Behavior::EhloRejected { helo_ok: true },
        TlsSettings::None,
        Duration::from_secs(2),
    )
    .await;
    assert_delivered(&r);
    assert!(r.attempts[0].plaintext);
    assert!(srv.transcripts().join("").contains("HELO probe.test"));
    // With TLS required, a HELO-only server cannot offer STARTTLS.
    let (r, _s) = probe_behavior(
        Behavior::EhloRejected { helo_ok: true },
        TlsSettings::EncryptionOnly,
        Duration::from_secs(2),
    )
    .await;
    assert_fails(&r, Code::CannotConnect, Reason::StarttlsNotOffered, Phase::Ehlo);
}

#[tokio::test]
async fn ehlo_and_helo_rejected() {
    let (r, srv) = probe_behavior(
        Behavior::EhloRejected { helo_ok: false },
        TlsSettings::None,
        Duration::from_secs(2),
    )
    .await;
    assert_fails(&r, Code::CannotConnect, Reason::EhloRejected, Phase::Ehlo);
    assert!(r.message.contains("550"), "{}", r.message);
    // Refused, but the session still ends politely.
    assert!(
        srv.transcripts().join("").ends_with("QUIT\n"),
        "{:?}",
        srv.transcripts()
    );
}

#[tokio::test]
async fn tls_required_but_not_offered() {
    let b = Behavior::Smtp(SmtpOptions::default()); // no TLS configured → no STARTTLS advertised
    let (r, _s) = probe_behavior(b, TlsSettings::CertificateValidation, Duration::from_secs(2)).await;
    assert_fails(&r, Code::CannotConnect, Reason::StarttlsNotOffered, Phase::Ehlo);
}

#[tokio::test]
async fn opportunistic_without_starttls_delivers_in_plaintext_with_warning() {
    let b = Behavior::Smtp(SmtpOptions::default());
    let (r, srv) = probe_behavior(b, TlsSettings::None, Duration::from_secs(2)).await;
    assert_delivered(&r);
    assert!(r.attempts[0].plaintext);
    assert!(
        r.warnings.iter().any(|w| w.contains("without encryption")),
        "{:?}",
        r.warnings
    );
    assert!(srv.transcripts().join("").contains("QUIT"));
}

#[tokio::test]
async fn starttls_rejected() {
    let (r, srv) = probe_behavior(
        Behavior::StarttlsRejected,
        TlsSettings::EncryptionOnly,
        Duration::from_secs(2),
    )
    .await;
    assert_fails(&r, Code::CannotConnect, Reason::StarttlsRejected, Phase::Starttls);
    assert!(r.message.contains("454"), "{}", r.message);
    assert!(
        srv.transcripts().join("").ends_with("STARTTLS\nQUIT\n"),
        "{:?}",
        srv.transcripts()
    );
}

#[tokio::test]
async fn unexpected_reply_is_other() {
    let (r, _s) = probe_behavior(Behavior::UnexpectedReply, TlsSettings::None, Duration::from_secs(2)).await;
    assert_fails(&r, Code::Other, Reason::UnexpectedReply, Phase::Ehlo);
    assert!(r.message.starts_with("450 4.4.0 "), "{}", r.message);
}

#[tokio::test]
async fn server_text_is_escaped_in_report() {
    let b = Behavior::Garbage(b"421 4.3.2 \x1b[31mred\x07 bell\r\n".to_vec());
    let (r, _s) = probe_behavior(b, TlsSettings::None, Duration::from_secs(2)).await;
    assert_fails(&r, Code::CannotConnect, Reason::BannerRejected, Phase::Banner);
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains('\u{1b}') && !json.contains('\u{7}'), "{json}");
    assert!(r.message.contains("\\x1b[31mred\\x07"), "{}", r.message);
}
