//! Lab SMTP servers (`mailflow_exporter::lab::smtp`) in the shapes most tests want.

use super::dns::LAB_HOST;
use mailflow_exporter::lab::pki::CertKey;
use mailflow_exporter::lab::smtp::{Behavior, FaultServer, SmtpOptions};
use std::sync::Arc;

/// Plain ESMTP without STARTTLS: delivers under `tls_settings: none`, flagged as plaintext.
pub async fn plain() -> FaultServer {
    FaultServer::start(Behavior::Smtp(SmtpOptions::default()))
        .await
        .expect("lab SMTP server starts")
}

/// ESMTP offering STARTTLS with `config`, greeting as [`LAB_HOST`] like the server a lab
/// certificate is issued for.
pub fn starttls_options(config: Arc<rustls::ServerConfig>) -> SmtpOptions {
    SmtpOptions {
        tls: Some(config),
        hostname: LAB_HOST.into(),
        ..SmtpOptions::default()
    }
}

/// A well-behaved STARTTLS server presenting `ck`.
pub async fn starttls(ck: &CertKey) -> FaultServer {
    starttls_with(ck.server_config().expect("server config")).await
}

/// A well-behaved STARTTLS server with a hand-made TLS config (versions, SNI recording).
pub async fn starttls_with(config: Arc<rustls::ServerConfig>) -> FaultServer {
    FaultServer::start(Behavior::Smtp(starttls_options(config)))
        .await
        .expect("lab SMTP server starts")
}
