//! Exchange Online's own view in the agent, end to end: `serve` with a `tenant:` section pointed
//! at the loopback fake of Microsoft's endpoints, scraped over HTTP. Microsoft's queue per
//! connector, the vantage mismatch, the migrated case, connectors and the message expiration
//! synced from the tenant, and the last good data kept through every fault.

use crate::support::config::{at, q};
use crate::support::process::{Exporter, run};
use crate::support::scratch::Scratch;
use crate::support::smtp;
use mailflow_exporter::lab::smtp::closed_port;
use mailflow_exporter::lab::tenant::{
    CLIENT_ID, CLIENT_SECRET, Endpoint, FakeTenant, Fault, REASON_REFUSED, REASON_SUBJECT_MISMATCH, Scenario,
    TENANT_ID, When, connector,
};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

/// Two probed connectors: `Delivers` (a healthy loopback server) and `Refused` (a closed port),
/// each with its own recipient domain, and the tenant section for the fake. Names (the synced
/// connectors' targets) are asked of `dns`, never the system resolver.
fn config(
    scratch: &Scratch,
    fake: &FakeTenant,
    dns: std::net::SocketAddr,
    delivers: std::net::SocketAddr,
    sync: bool,
) -> PathBuf {
    let refused = closed_port().expect("closed port");
    std::fs::write(scratch.path("secret.txt"), format!("{CLIENT_SECRET}\n")).expect("secret");
    std::fs::write(scratch.path("tenant-ca.pem"), fake.ca_pem()).expect("ca");
    let url = fake.url();
    let mut y = String::from("defaults:\n  interval: 1s\n  timeout: 1s\n  helo: probe.lab.test\n");
    y += &format!("dns:\n  servers: [{}]\n", q(&dns.to_string()));
    y += "trust:\n  extra_ca_files: [tenant-ca.pem]\n";
    y += &format!(
        "tenant:\n  tenant_id: {TENANT_ID}\n  client_id: {CLIENT_ID}\n  client_secret_file: secret.txt\n  \
         login_url: {url}\n  graph_url: {url}\n  exchange_url: {url}\n  poll_interval: 5s\n  sync: {sync}\n  sync_interval: 5s\n"
    );
    y += "connectors:\n";
    y += &at("Delivers", delivers);
    y += "    recipient_domains: [delivers.example]\n";
    y += &at("Refused", refused);
    y += &format!("    recipient_domains: [{}]\n", q("refused.example"));
    scratch.write("mailflow.yaml", &y)
}

fn scenario() -> Scenario {
    Scenario::new()
        .pending("delivers.example", 4, HOUR, Some(REASON_REFUSED))
        .pending("refused.example", 7, 5 * HOUR, Some(REASON_REFUSED))
        .pending("nobody.example", 2, HOUR / 2, None)
        .connector(connector(
            "Tenant partner",
            "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
            "Partner",
            &["partner.example"],
            &[],
        ))
        .connector(connector(
            "Refused",
            "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e",
            "OnPremises",
            &["refused.example"],
            &["tenant-says-elsewhere.example"],
        ))
        .accepted_domain("refused.example", "InternalRelay")
        .message_expiration(json!("12:00:00"))
}

#[tokio::test]
async fn microsofts_queue_is_exported_beside_the_probe() {
    let scratch = Scratch::new("exo");
    let fake = FakeTenant::start(scenario()).await.expect("fake tenant");
    let server = smtp::plain().await;
    let dns = crate::support::dns::serve(mailflow_exporter::lab::dns::Zone::new()).await;
    let cfg = config(&scratch, &fake, dns.addr(), server.addr(), true);
    let mut ex = Exporter::serve(&scratch, &cfg, &[]).await;
    ex.wait_probed(&["Delivers", "Refused"], 1.0).await;
    let m = ex
        .wait_for("Microsoft's queue read and the sync applied", |m| {
            m.get(
                "mailflow_exo_pending_messages",
                &[("connector", "Refused"), ("code", "4.4.316")],
            ) == Some(7.0)
                && m.get("mailflow_exo_synced_connectors", &[]) == Some(2.0)
                && m.get("mailflow_connector_vantage_mismatch", &[("connector", "Delivers")]) == Some(1.0)
        })
        .await;
    assert_eq!(
        m.get(
            "mailflow_exo_pending_messages",
            &[("connector", "Delivers"), ("code", "4.4.316")]
        ),
        Some(4.0)
    );
    assert_eq!(
        m.get(
            "mailflow_exo_pending_messages",
            &[("connector", "(unattributed)"), ("code", "unknown")]
        ),
        Some(2.0)
    );
    assert_eq!(m.get("mailflow_exo_poll_successful", &[]), Some(1.0));
    assert!(m.value("mailflow_exo_last_success_timestamp_seconds", &[]) > 0.0);
    let age = m.value("mailflow_exo_oldest_pending_age_seconds", &[("connector", "Refused")]);
    assert!((5.0 * 3600.0 - 60.0..5.0 * 3600.0 + 600.0).contains(&age), "age {age}");
    // The queue clock prefers Microsoft's oldest message over the probe's model (seconds old).
    let clock = m.value(
        "mailflow_connector_queue_oldest_age_seconds",
        &[("connector", "Refused")],
    );
    assert!(clock > 4.0 * 3600.0, "queue clock {clock}");
    // The tenant's message expiration (12 h) replaces the default 24 h.
    assert_eq!(
        m.get("mailflow_connector_queue_expiry_seconds", &[("connector", "Refused")]),
        Some(43_200.0)
    );
    // Both views fail for Refused: no mismatch there.
    assert_eq!(
        m.get("mailflow_connector_vantage_mismatch", &[("connector", "Refused")]),
        Some(0.0)
    );
    // The tenant's connector is probed; the file's "Refused" wins over the tenant's.
    let info = m.all("mailflow_connector_info", &[("connector", "Tenant partner")]);
    assert_eq!(info.first().map(|s| s.label("source")), Some("tenant"), "{info:?}");
    let info = m.all("mailflow_connector_info", &[("connector", "Refused")]);
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].label("source"), "file");
    for api in ["token", "message_trace", "message_trace_details", "admin_api"] {
        assert!(
            m.value("mailflow_exo_requests_total", &[("api", api), ("outcome", "ok")]) >= 1.0,
            "{api}"
        );
    }

    // The status page and its JSON show both views, the mismatch and the migrated fix.
    let r = ex.get("/api/status").await;
    let rows: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    let row = |name: &str| {
        rows.as_array()
            .and_then(|a| a.iter().find(|r| r["connector"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {rows:#}"))
    };
    assert_eq!(row("Delivers")["vantage_mismatch"], true);
    assert_eq!(row("Delivers")["microsoft"]["held"], 4);
    let refused = row("Refused");
    let fix = refused["migrated_fix"].as_str().unwrap_or_default();
    assert!(
        fix.contains("Set-AcceptedDomain") && fix.contains("refused.example"),
        "{refused:#}"
    );
    assert!(
        refused["microsoft"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("4.4.316"),
        "{refused:#}"
    );
    let page = ex.get("/").await.body;
    assert!(page.contains("The two views disagree") && page.contains("Migrated to Exchange Online?"));

    // No address, subject or message id in any metric.
    let text = ex.get("/metrics").await.body;
    for leak in ["@", "Subject", "<"] {
        assert!(
            !text.lines().filter(|l| !l.starts_with('#')).any(|l| l.contains(leak)),
            "{leak} in /metrics"
        );
    }
}

#[tokio::test]
async fn faults_keep_the_last_good_data_and_are_counted() {
    let scratch = Scratch::new("exo-faults");
    let fake = FakeTenant::start(scenario()).await.expect("fake tenant");
    let server = smtp::plain().await;
    let dns = crate::support::dns::serve(mailflow_exporter::lab::dns::Zone::new()).await;
    let cfg = config(&scratch, &fake, dns.addr(), server.addr(), true);
    let mut ex = Exporter::serve(&scratch, &cfg, &[]).await;
    let m = ex
        .wait_for("a first good read", |m| {
            m.get("mailflow_exo_poll_successful", &[]) == Some(1.0)
                && m.get("mailflow_exo_sync_successful", &[]) == Some(1.0)
        })
        .await;
    let success = m.value("mailflow_exo_last_success_timestamp_seconds", &[]);

    // Every kind of failure of the queue read, one after another: the last good data stays.
    for (fault, outcome) in [
        (Fault::ServerError, "error"),
        (Fault::TruncatedJson, "error"),
        (Fault::Throttle { retry_after: Some(1) }, "throttled"),
        (Fault::Forbidden, "forbidden"),
        (Fault::HugeBody { bytes: 40 << 20 }, "error"),
    ] {
        fake.clear_faults();
        fake.fault(Endpoint::MessageTrace, When::Always, fault.clone());
        let before = ex.scrape().await.value(
            "mailflow_exo_requests_total",
            &[("api", "message_trace"), ("outcome", outcome)],
        );
        let m = ex
            .wait_for(&format!("{fault:?} seen"), |m| {
                m.get("mailflow_exo_poll_successful", &[]) == Some(0.0)
                    && m.value(
                        "mailflow_exo_requests_total",
                        &[("api", "message_trace"), ("outcome", outcome)],
                    ) > before
            })
            .await;
        assert_eq!(
            m.get(
                "mailflow_exo_pending_messages",
                &[("connector", "Refused"), ("code", "4.4.316")]
            ),
            Some(7.0),
            "{fault:?}: the last good queue stays exported"
        );
        assert_eq!(
            m.value("mailflow_exo_last_success_timestamp_seconds", &[]),
            success,
            "{fault:?}"
        );
        ex.assert_running();
    }
    // An expired token: refreshed once, and reads succeed again.
    fake.clear_faults();
    fake.expire_tokens();
    ex.wait_for("reads succeed again after the token expired", |m| {
        m.get("mailflow_exo_poll_successful", &[]) == Some(1.0)
            && m.value("mailflow_exo_last_success_timestamp_seconds", &[]) > success
    })
    .await;

    // A failing sync keeps the tenant's connectors.
    fake.fault(Endpoint::AdminApi, When::Always, Fault::Forbidden);
    let m = ex
        .wait_for("the sync fails", |m| {
            m.get("mailflow_exo_sync_successful", &[]) == Some(0.0)
        })
        .await;
    assert_eq!(m.get("mailflow_exo_synced_connectors", &[]), Some(2.0));
    assert_eq!(
        m.all("mailflow_connector_info", &[("connector", "Tenant partner")])
            .len(),
        1
    );
    assert!(
        ex.log().contains("Exchange.ManageAsApp"),
        "the log names the missing permission"
    );
    let log = ex.log();
    assert!(!log.contains(CLIENT_SECRET), "the secret never reaches the log");
}

#[tokio::test]
async fn without_a_tenant_nothing_changes() {
    let scratch = Scratch::new("exo-none");
    let server = smtp::plain().await;
    let cfg = scratch.write(
        "mailflow.yaml",
        &format!(
            "defaults:\n  interval: 1s\n  timeout: 1s\n  helo: probe.lab.test\nconnectors:\n{}",
            at("Delivers", server.addr())
        ),
    );
    let mut ex = Exporter::serve(&scratch, &cfg, &[]).await;
    let m = ex.wait_probed(&["Delivers"], 1.0).await;
    assert!(
        m.text
            .lines()
            .all(|l| !l.contains("mailflow_exo_") && !l.contains("vantage_mismatch"))
    );
    let page = ex.get("/").await.body;
    assert!(!page.contains("Exchange Online&#39;s queue"));
}

#[tokio::test]
async fn check_shows_microsofts_view_with_the_probes() {
    let scratch = Scratch::new("exo-check");
    let fake = FakeTenant::start(scenario()).await.expect("fake tenant");
    let server = smtp::plain().await;
    let dns = crate::support::dns::serve(mailflow_exporter::lab::dns::Zone::new()).await;
    let cfg = config(&scratch, &fake, dns.addr(), server.addr(), true);
    let path = cfg.display().to_string();
    let r = run(
        &["check", "--config", &path, "--connector", "Refused", "--output", "json"],
        Duration::from_secs(60),
    )
    .await;
    r.assert_exit(1);
    let v = r.json();
    assert_eq!(v["code"], "4.4.316", "{v:#}");
    assert_eq!(v["microsoft"]["held"], 7, "{v:#}");
    assert_eq!(v["microsoft"]["code"], "4.4.316", "{v:#}");
    assert!(
        v["microsoft"]["migrated_fix"]
            .as_str()
            .unwrap_or_default()
            .contains("-DomainType Authoritative")
    );

    let r = run(
        &["check", "--config", &path, "--connector", "Delivers"],
        Duration::from_secs(60),
    )
    .await;
    r.assert_exit(0);
    let out = r.stdout();
    assert!(
        out.contains("Exchange Online's view") && out.contains("4 message(s) held"),
        "{out}"
    );
    assert!(out.contains("The views disagree"), "{out}");

    // Microsoft unreachable: the probe's answer stands, the view says why it is missing.
    fake.fault(Endpoint::MessageTrace, When::Always, Fault::ServerError);
    let r = run(
        &[
            "check",
            "--config",
            &path,
            "--connector",
            "Delivers",
            "--output",
            "json",
        ],
        Duration::from_secs(60),
    )
    .await;
    r.assert_exit(0);
    let v = r.json();
    assert!(
        v["microsoft"]["error"].as_str().is_some_and(|e| e.contains("500")),
        "{v:#}"
    );
    let _ = REASON_SUBJECT_MISMATCH;
}
