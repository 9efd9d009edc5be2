//! `mailflow-exporter serve` as Prometheus and an admin see it: the real binary runs as a child
//! process against loopback fault servers started in this process, and is scraped over HTTP.
//!
//! Every wait has a deadline and polls with short sleeps; every child is killed when its guard
//! is dropped. Probing uses `interval: 1s, timeout: 1s`, so states change within seconds.

use crate::support::certs::{not_after_of, now_unix};
use crate::support::dns::{LAB_HOST, lab_dns};
use crate::support::http::enc;
use crate::support::metrics::Metrics;
use crate::support::net::free_port;
use crate::support::process::{Exporter, POLL, WAIT_DEADLINE, run, run_with_deadline};
use crate::support::scratch::Scratch;
use crate::support::smtp;
use mailflow_exporter::agent::HISTOGRAM_PHASES;
use mailflow_exporter::config::Role;
use mailflow_exporter::lab::dns::FakeDns;
use mailflow_exporter::lab::pki::LabPki;
use mailflow_exporter::lab::smtp::{Behavior, BlackholeListener, FaultServer, SmtpOptions, closed_port};
use mailflow_exporter::taxonomy::{Code, Reason};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Every code of the state set, `ok` first.
const STATUS_CODES: [&str; 8] = [
    "ok", "4.4.312", "4.4.315", "4.4.316", "4.4.317", "4.4.318", "4.7.320", "other",
];

// ------------------------------------------------------------------------------------------
// Configuration files
// ------------------------------------------------------------------------------------------

/// A YAML double-quoted string.
fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One connector of the config file.
#[derive(Clone)]
struct Conn {
    name: String,
    host: String,
    port: u16,
    tls: &'static str,
    enabled: bool,
}

impl Conn {
    fn disabled(mut self) -> Conn {
        self.enabled = false;
        self
    }
}

/// A connector whose single smart host is `host` on `port`.
fn conn(name: &str, host: &str, port: u16, tls: &'static str) -> Conn {
    Conn {
        name: name.to_string(),
        host: host.to_string(),
        port,
        tls,
        enabled: true,
    }
}

/// A connector whose smart host is the loopback address `addr`.
fn conn_at(name: &str, addr: SocketAddr) -> Conn {
    conn(name, &addr.ip().to_string(), addr.port(), "none")
}

/// The config file's text, in the README's format.
#[derive(Clone, Default)]
struct Cfg {
    dns: Option<SocketAddr>,
    /// `metrics:` with every optional series on.
    all_metrics: bool,
    ca: Option<PathBuf>,
    expiration: Option<&'static str>,
    connectors: Vec<Conn>,
}

impl Cfg {
    fn new(connectors: Vec<Conn>) -> Cfg {
        Cfg {
            connectors,
            ..Cfg::default()
        }
    }

    fn yaml(&self) -> String {
        let mut y = String::from("defaults:\n  interval: 1s\n  timeout: 1s\n  helo: probe.lab.test\n");
        if let Some(e) = self.expiration {
            y += &format!("  message_expiration: {e}\n");
        }
        if let Some(d) = self.dns {
            y += &format!("dns:\n  servers: [{}]\n", q(&d.to_string()));
        }
        if let Some(ca) = &self.ca {
            y += &format!("trust:\n  extra_ca_files: [{}]\n", q(&ca.display().to_string()));
        }
        if self.all_metrics {
            y += "metrics:\n  phase_histograms: true\n  certificate_not_before: true\n";
        }
        y += "connectors:\n";
        for c in &self.connectors {
            y += &format!(
                "  - name: {}\n    use_mx_record: false\n    smart_hosts: [{}]\n    port: {}\n    tls_settings: {}\n",
                q(&c.name),
                q(&c.host),
                c.port,
                c.tls
            );
            if !c.enabled {
                y += "    enabled: false\n";
            }
        }
        y
    }

    /// The text with an unknown field `smart_host` in the last connector, and its 1-based line.
    fn broken_yaml(&self) -> (String, usize) {
        let mut y = self.yaml();
        y += "    smart_host: [typo.lab.test]\n";
        let line = y.lines().count();
        (y, line)
    }
}

// ------------------------------------------------------------------------------------------
// The state set
// ------------------------------------------------------------------------------------------

/// Asserts all eight `mailflow_connector_status` series of `connector`, only `current` at 1.
#[track_caller]
fn assert_state_set(m: &Metrics, connector: &str, current: &str) {
    let series = m.all("mailflow_connector_status", &[("connector", connector)]);
    assert_eq!(series.len(), 8, "{connector}: 8 status series expected\n{}", m.text);
    for code in STATUS_CODES {
        let want = if code == current { 1.0 } else { 0.0 };
        assert_eq!(
            m.status(connector, code),
            Some(want),
            "{connector}: status{{code={code:?}}}\n{}",
            m.text
        );
    }
}

// ------------------------------------------------------------------------------------------
// 1. Counters rise with the right code and reason; a healthy connector's gauges
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_rise_with_code_and_reason_and_healthy_gauges() {
    let refused = closed_port().expect("closed port");
    let server = smtp::plain().await;
    let scratch = Scratch::new("counters");
    let cfg = Cfg::new(vec![conn_at("Refused", refused), conn_at("Healthy", server.addr())]);
    let config = scratch.write("mailflow.yaml", &cfg.yaml());
    let mut ex = Exporter::serve(&scratch, &config, &[]).await;

    let failures = [
        ("connector", "Refused"),
        ("host", "127.0.0.1"),
        ("code", "4.4.316"),
        ("reason", "refused"),
    ];
    let a = ex
        .wait_for("a refused failure and a healthy probe", |m| {
            m.get("mailflow_probe_failures_total", &failures).is_some() && m.probes("Healthy") >= 1.0
        })
        .await;
    let (fail_a, probes_a) = (a.value("mailflow_probe_failures_total", &failures), a.probes("Refused"));
    assert!(fail_a >= 1.0 && probes_a >= fail_a, "{}", a.text);
    // (A healthy probe that failed on an overloaded machine only delays the snapshot.)
    let b = ex
        .wait_for("the refused counters to rise and Healthy ok", |m| {
            m.value("mailflow_probe_failures_total", &failures) > fail_a
                && m.probes("Refused") > probes_a
                && m.status("Healthy", "ok") == Some(1.0)
        })
        .await;
    // Only refusals were counted for this connector: one failure series, as many as probes.
    let series = b.all("mailflow_probe_failures_total", &[("connector", "Refused")]);
    assert_eq!(series.len(), 1, "{}", b.text);
    assert_eq!(
        b.value("mailflow_probe_failures_total", &failures),
        b.value(
            "mailflow_probes_total",
            &[("connector", "Refused"), ("host", "127.0.0.1")]
        ),
        "{}",
        b.text
    );
    assert_eq!(b.value("mailflow_probe_success", &[("connector", "Refused")]), 0.0);
    assert_eq!(b.value("mailflow_connector_up", &[("connector", "Refused")]), 0.0);
    assert_state_set(&b, "Refused", "4.4.316");

    // The healthy one.
    assert_eq!(
        b.value(
            "mailflow_probe_success",
            &[("connector", "Healthy"), ("host", "127.0.0.1")]
        ),
        1.0,
        "{}",
        b.text
    );
    assert_eq!(b.value("mailflow_connector_up", &[("connector", "Healthy")]), 1.0);
    assert_state_set(&b, "Healthy", "ok");
    assert!(
        b.all("mailflow_probe_failures_total", &[("connector", "Healthy")])
            .is_empty(),
        "{}",
        b.text
    );
    assert!(server.connections() >= 1);
}

// ------------------------------------------------------------------------------------------
// 2. Certificate gauges for an expired certificate
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_gauges_and_4_7_320() {
    let pki = LabPki::new(LAB_HOST).expect("lab PKI");
    let server = smtp::starttls(&pki.expired).await;
    let dns = lab_dns().await;
    let scratch = Scratch::new("cert");
    let ca = scratch.write("ca.pem", &pki.ca.cert_pem());
    let cfg = Cfg {
        dns: Some(dns.addr()),
        ca: Some(ca),
        ..Cfg::new(vec![conn(
            "Expired",
            LAB_HOST,
            server.addr().port(),
            "certificate-validation",
        )])
    };
    let config = scratch.write("mailflow.yaml", &cfg.yaml());
    let mut ex = Exporter::serve(&scratch, &config, &[]).await;

    let m = ex.wait_probed(&["Expired"], 1.0).await;
    let leaf = [("connector", "Expired"), ("host", LAB_HOST), ("position", "leaf")];
    let certs = m.all("mailflow_tls_certificate_not_after_timestamp_seconds", &leaf);
    assert_eq!(certs.len(), 1, "one leaf series\n{}", m.text);
    let c = certs[0];
    let now = now_unix();
    assert!(c.value < now, "not_after {} is not in the past\n{}", c.value, m.text);
    assert_eq!(
        c.value,
        not_after_of(&pki.expired.chain[0]) as f64,
        "not_after of the presented leaf\n{}",
        m.text
    );
    assert!(
        (now - c.value - 30.0 * 86_400.0).abs() < 2.0 * 86_400.0,
        "expired ~30 days ago"
    );
    for l in ["subject", "issuer", "serial"] {
        assert!(!c.label(l).is_empty(), "{l} label empty\n{}", m.text);
    }
    assert!(c.label("subject").contains(LAB_HOST), "{c:?}");
    assert!(c.label("issuer").contains("Mailflow Lab Test CA"), "{c:?}");
    // Optional series stay off by default; the last probe's duration is always there.
    for family in [
        "mailflow_tls_certificate_not_before_timestamp_seconds",
        "mailflow_probe_duration_seconds_bucket",
        "mailflow_probe_duration_seconds_count",
    ] {
        assert!(
            m.all(family, &[]).is_empty(),
            "{family} without metrics: opt-in\n{}",
            m.text
        );
    }
    let took = m.value("mailflow_probe_last_duration_seconds", &[("connector", "Expired")]);
    assert!(took > 0.0 && took < 10.0, "last duration {took}");

    assert!(
        m.value(
            "mailflow_probe_failures_total",
            &[
                ("connector", "Expired"),
                ("host", LAB_HOST),
                ("code", "4.7.320"),
                ("reason", "cert_expired"),
            ],
        ) >= 1.0,
        "{}",
        m.text
    );
    assert_state_set(&m, "Expired", "4.7.320");
    assert!(dns.queries() >= 1, "the smart host was resolved through the fake DNS");
}

// ------------------------------------------------------------------------------------------
// 3. The state set flips when the server goes away and comes back
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_set_flips_when_the_server_goes_and_returns() {
    let server = smtp::plain().await;
    let addr = server.addr();
    let scratch = Scratch::new("flip");
    let config = scratch.write("mailflow.yaml", &Cfg::new(vec![conn_at("Flip", addr)]).yaml());
    let mut ex = Exporter::serve(&scratch, &config, &[]).await;

    let m = ex.wait_for("Flip ok", |m| m.status("Flip", "ok") == Some(1.0)).await;
    assert_state_set(&m, "Flip", "ok");
    assert_eq!(m.value("mailflow_connector_up", &[("connector", "Flip")]), 1.0);

    drop(server);
    let m = ex
        .wait_for("Flip refused", |m| m.status("Flip", "4.4.316") == Some(1.0))
        .await;
    assert_state_set(&m, "Flip", "4.4.316");
    assert_eq!(m.value("mailflow_connector_up", &[("connector", "Flip")]), 0.0);
    assert!(
        m.value(
            "mailflow_connector_failing_since_timestamp_seconds",
            &[("connector", "Flip")]
        ) > 0.0
    );

    // A server on the same address again (the old listener may take a moment to close).
    let deadline = Instant::now() + WAIT_DEADLINE;
    let _server = loop {
        match FaultServer::start_on(addr, Behavior::Smtp(SmtpOptions::default())).await {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
            Err(e) => panic!("cannot listen on {addr} again: {e}"),
        }
    };
    let m = ex
        .wait_for("Flip ok again", |m| m.status("Flip", "ok") == Some(1.0))
        .await;
    assert_state_set(&m, "Flip", "ok");
    assert_eq!(m.value("mailflow_connector_up", &[("connector", "Flip")]), 1.0);
    assert_eq!(
        m.value(
            "mailflow_connector_failing_since_timestamp_seconds",
            &[("connector", "Flip")]
        ),
        0.0
    );
    assert_eq!(
        m.value("mailflow_connector_queue_oldest_age_seconds", &[("connector", "Flip")]),
        0.0
    );
}

// ------------------------------------------------------------------------------------------
// 4. The queue clock, across a restart
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_clock_runs_while_failing_and_survives_a_restart() {
    let refused = closed_port().expect("closed port");
    let server = smtp::plain().await;
    let scratch = Scratch::new("queue");
    let cfg = Cfg {
        expiration: Some("12h"),
        ..Cfg::new(vec![conn_at("Stuck", refused), conn_at("Fine", server.addr())])
    };
    let config = scratch.write("mailflow.yaml", &cfg.yaml());
    let started = now_unix();
    let mut ex = Exporter::serve(&scratch, &config, &[]).await;
    const EXPIRY: f64 = 12.0 * 3600.0;
    let since = |m: &Metrics, c: &str| {
        m.value(
            "mailflow_connector_failing_since_timestamp_seconds",
            &[("connector", c)],
        )
    };
    let age = |m: &Metrics, c: &str| m.value("mailflow_connector_queue_oldest_age_seconds", &[("connector", c)]);
    let left = |m: &Metrics, c: &str| m.value("mailflow_connector_queue_time_left_seconds", &[("connector", c)]);
    let expiry = |m: &Metrics, c: &str| m.value("mailflow_connector_queue_expiry_seconds", &[("connector", c)]);

    let a = ex.wait_probed(&["Stuck", "Fine"], 1.0).await;
    let first_probe_seen = now_unix();
    let fs = since(&a, "Stuck");
    // The first failure happened between the start and this scrape (the first probe of each
    // connector fires within one interval of the start).
    assert!(
        fs >= started - 0.5 && fs <= first_probe_seen,
        "failing_since {fs} not within [{started}, {first_probe_seen}]\n{}",
        a.text
    );
    assert!(
        fs <= a.value(
            "mailflow_connector_last_probe_timestamp_seconds",
            &[("connector", "Stuck")]
        )
    );
    assert_eq!(expiry(&a, "Stuck"), EXPIRY, "{}", a.text);
    assert!(
        (left(&a, "Stuck") - (EXPIRY - age(&a, "Stuck"))).abs() < 1e-3,
        "{}",
        a.text
    );
    // Healthy: no clock running.
    assert_eq!(since(&a, "Fine"), 0.0, "{}", a.text);
    assert_eq!(age(&a, "Fine"), 0.0, "{}", a.text);
    assert_eq!(left(&a, "Fine"), EXPIRY, "{}", a.text);
    assert_eq!(expiry(&a, "Fine"), EXPIRY, "{}", a.text);

    // More failures: the streak start stays, the age grows.
    let age_a = age(&a, "Stuck");
    let probes_a = a.probes("Stuck");
    let b = ex
        .wait_for("more failed probes and an older queue", |m| {
            m.probes("Stuck") > probes_a && age(m, "Stuck") > age_a + 1.0
        })
        .await;
    assert_eq!(since(&b, "Stuck"), fs, "failing_since moved\n{}", b.text);
    assert!(left(&b, "Stuck") < left(&a, "Stuck"), "{}", b.text);
    assert!(
        (left(&b, "Stuck") - (EXPIRY - age(&b, "Stuck"))).abs() < 1e-3,
        "{}",
        b.text
    );
    let age_b = age(&b, "Stuck");
    assert!(
        (age_b - (now_unix() - fs)).abs() < 5.0,
        "age {age_b} vs now − failing_since\n{}",
        b.text
    );

    let state = ex.storage.join("queue-clock.json");
    let saved = std::fs::read_to_string(&state).unwrap_or_else(|e| panic!("{}: {e}", state.display()));
    let saved: Value = serde_json::from_str(&saved).expect("queue-clock.json is JSON");
    assert!(saved["connectors"]["Stuck"].is_object(), "{saved:#}");
    assert!(saved["connectors"]["Fine"].is_null(), "{saved:#}");

    // Restart with the same storage.
    let status = ex.terminate().await;
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM\n{}", ex.stderr());
    assert!(state.is_file(), "{} gone after shutdown", state.display());
    let storage_before = ex.storage.clone();
    drop(ex);
    let mut ex = Exporter::serve(&scratch, &config, &[]).await;
    assert_eq!(ex.storage, storage_before);
    let c = ex.wait_probed(&["Stuck"], 1.0).await;
    let fs_after = since(&c, "Stuck");
    assert!(
        (fs_after - fs).abs() < 1e-3,
        "failing_since reset by the restart: {fs} before, {fs_after} after\n{}",
        c.text
    );
    assert!(
        age(&c, "Stuck") > age_b,
        "queue age went back from {age_b} to {}\n{}",
        age(&c, "Stuck"),
        c.text
    );
    assert!(
        (left(&c, "Stuck") - (EXPIRY - age(&c, "Stuck"))).abs() < 1e-3,
        "{}",
        c.text
    );
}

// ------------------------------------------------------------------------------------------
// 5. Reload: add, remove, broken file over HTTP and SIGHUP
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_connectors_and_keeps_running_on_a_broken_file() {
    let refused = closed_port().expect("closed port");
    let server = smtp::plain().await;
    let scratch = Scratch::new("reload");
    let a = conn_at("Alpha", refused);
    let b = conn_at("Bravo", server.addr());
    let c = conn_at("Charlie", server.addr());
    let config = scratch.write("mailflow.yaml", &Cfg::new(vec![a.clone(), b.clone()]).yaml());
    let mut ex = Exporter::serve(&scratch, &config, &["--web.enable-lifecycle"]).await;
    let ok = |m: &Metrics| m.value("mailflow_config_last_reload_successful", &[]);
    let m = ex.wait_probed(&["Alpha", "Bravo"], 1.0).await;
    assert_eq!(ok(&m), 1.0);
    assert!(m.of_connector("Charlie").is_empty());

    // Add a connector.
    std::fs::write(&config, Cfg::new(vec![a.clone(), b.clone(), c.clone()]).yaml()).expect("write config");
    let r = ex.post("/-/reload").await;
    assert_eq!(r.status, 200, "{r:?}\n{}", ex.stderr());
    let m = ex.scrape().await;
    assert_eq!(
        m.value("mailflow_connector_info", &[("connector", "Charlie")]),
        1.0,
        "{}",
        m.text
    );
    let m = ex
        .wait_for("Charlie probed and ok", |m| m.status("Charlie", "ok") == Some(1.0))
        .await;
    assert_eq!(m.value("mailflow_connector_up", &[("connector", "Charlie")]), 1.0);
    assert_state_set(&m, "Charlie", "ok");
    assert_eq!(ok(&m), 1.0);

    // Remove one: all its series vanish at once.
    let good = Cfg::new(vec![a.clone(), c.clone()]);
    std::fs::write(&config, good.yaml()).expect("write config");
    let r = ex.post("/-/reload").await;
    assert_eq!(r.status, 200, "{r:?}");
    let m = ex.scrape().await;
    assert!(
        m.of_connector("Bravo").is_empty(),
        "series of a removed connector:\n{}",
        m.text
    );
    assert!(!m.text.contains("Bravo"), "{}", m.text);
    assert!(!m.of_connector("Alpha").is_empty() && !m.of_connector("Charlie").is_empty());
    // ... and stay away (no probe of the old task lands afterwards).
    let p = m.probes("Alpha");
    let m = ex.wait_for("Alpha probed again", |m| m.probes("Alpha") > p).await;
    assert!(m.of_connector("Bravo").is_empty(), "{}", m.text);

    // A broken file over HTTP: 500 naming file:line and the field; the running config is kept.
    let (broken, line) = good.broken_yaml();
    std::fs::write(&config, &broken).expect("write config");
    let r = ex.post("/-/reload").await;
    assert_eq!(r.status, 500, "{r:?}");
    let at = format!("{}:{line}:", config.display());
    assert!(r.body.contains(&at), "reload error lacks {at:?}: {:?}", r.body);
    assert!(
        r.body.contains("smart_host"),
        "reload error lacks the field: {:?}",
        r.body
    );
    let m = ex.scrape().await;
    assert_eq!(ok(&m), 0.0, "{}", m.text);
    let success_at = m.value("mailflow_config_last_reload_success_timestamp_seconds", &[]);
    let (pa, pc) = (m.probes("Alpha"), m.probes("Charlie"));
    let m = ex
        .wait_for("probing to go on with the running config", |m| {
            m.probes("Alpha") > pa && m.probes("Charlie") > pc && m.status("Charlie", "ok") == Some(1.0)
        })
        .await;
    assert_eq!(ok(&m), 0.0);
    assert_state_set(&m, "Alpha", "4.4.316");
    assert_state_set(&m, "Charlie", "ok");

    // Fixed: back to 1.
    std::fs::write(&config, good.yaml()).expect("write config");
    let r = ex.post("/-/reload").await;
    assert_eq!(r.status, 200, "{r:?}");
    let m = ex.scrape().await;
    assert_eq!(ok(&m), 1.0, "{}", m.text);
    let success_at2 = m.value("mailflow_config_last_reload_success_timestamp_seconds", &[]);
    assert!(success_at2 > success_at, "{success_at2} > {success_at}");

    // The same with SIGHUP.
    std::fs::write(&config, &broken).expect("write config");
    ex.signal("HUP");
    let m = ex.wait_for("a failed reload after SIGHUP", |m| ok(m) == 0.0).await;
    ex.assert_running();
    assert_eq!(
        m.value("mailflow_config_last_reload_success_timestamp_seconds", &[]),
        success_at2
    );
    let pa = m.probes("Alpha");
    let m = ex.wait_for("probing after SIGHUP", |m| m.probes("Alpha") > pa).await;
    assert!(!m.of_connector("Charlie").is_empty(), "{}", m.text);
    let log = ex.stderr();
    assert!(log.contains(&at), "the SIGHUP reload error names {at:?}\n{log}");

    std::fs::write(&config, good.yaml()).expect("write config");
    ex.signal("HUP");
    let m = ex.wait_for("a successful reload after SIGHUP", |m| ok(m) == 1.0).await;
    assert!(m.value("mailflow_config_last_reload_success_timestamp_seconds", &[]) > success_at2);
    ex.assert_running();
}

/// Disabling a failing connector stops probing it; its alerting series (`connector_up 0`, the
/// state set on a failure code) must not stay frozen in every scrape, firing alerts forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_failing_connector_drops_its_alerting_series() {
    let refused = closed_port().expect("closed port");
    let server = smtp::plain().await;
    let scratch = Scratch::new("disable");
    let quiet = conn_at("Quiet", refused);
    let other = conn_at("Other", server.addr());
    let config = scratch.write("mailflow.yaml", &Cfg::new(vec![quiet.clone(), other.clone()]).yaml());
    let mut ex = Exporter::serve(&scratch, &config, &["--web.enable-lifecycle"]).await;
    ex.wait_for("Quiet failing", |m| m.status("Quiet", "4.4.316") == Some(1.0))
        .await;

    std::fs::write(&config, Cfg::new(vec![quiet.disabled(), other]).yaml()).expect("write config");
    let r = ex.post("/-/reload").await;
    assert_eq!(r.status, 200, "{r:?}");
    let p = ex.scrape().await.probes("Other");
    let m = ex.wait_for("Other probed again", |m| m.probes("Other") > p).await;
    assert_eq!(
        m.value(
            "mailflow_connector_info",
            &[("connector", "Quiet"), ("enabled", "false")]
        ),
        1.0,
        "{}",
        m.text
    );
    for family in [
        "mailflow_connector_up",
        "mailflow_connector_status",
        "mailflow_probe_success",
        "mailflow_connector_failing_since_timestamp_seconds",
    ] {
        assert!(
            m.all(family, &[("connector", "Quiet")]).is_empty(),
            "{family} still exported for the disabled connector\n{}",
            m.text
        );
    }
}

// ------------------------------------------------------------------------------------------
// 6. /probe
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_endpoint_by_connector_name() {
    let refused = closed_port().expect("closed port");
    let server = smtp::plain().await;
    let scratch = Scratch::new("probe");
    let cfg = Cfg::new(vec![conn_at("Healthy One", server.addr()), conn_at("Refused", refused)]);
    let config = scratch.write("mailflow.yaml", &cfg.yaml());
    let ex = Exporter::serve(&scratch, &config, &[]).await;

    let r = ex.get(&format!("/probe?connector={}", enc("Healthy One"))).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.content_type().starts_with("text/plain; version=0.0.4"), "{r:?}");
    let m = Metrics::parse(&r.body);
    assert!(!m.samples.is_empty());
    for s in &m.samples {
        assert_eq!(
            s.label("connector"),
            "Healthy One",
            "only the probed connector: {s:?}\n{}",
            m.text
        );
    }
    assert_eq!(m.value("mailflow_connector_up", &[("connector", "Healthy One")]), 1.0);
    assert_state_set(&m, "Healthy One", "ok");
    assert!(
        m.get("mailflow_config_last_reload_successful", &[]).is_none(),
        "{}",
        m.text
    );
    assert!(m.get("mailflow_build_info", &[]).is_none(), "{}", m.text);

    let r = ex
        .get(&format!("/probe?connector={}&format=json", enc("Healthy One")))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.content_type().starts_with("application/json"), "{r:?}");
    let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
    assert_eq!(v["delivered"], Value::Bool(true), "{v:#}");
    assert!(v["code"].is_null(), "{v:#}");
    assert!(v["attempts"].as_array().is_some_and(|a| !a.is_empty()), "{v:#}");

    let r = ex.get("/probe?connector=Refused&format=json").await;
    assert_eq!(r.status, 200, "{r:?}");
    let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
    assert_eq!(v["delivered"], Value::Bool(false), "{v:#}");
    assert_eq!(v["code"], "4.4.316", "{v:#}");
    assert_eq!(v["reason"], "refused", "{v:#}");
    let attempts = v["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{v:#}");
    assert_eq!(attempts[0]["code"], "4.4.316", "{v:#}");

    let r = ex.get("/probe?connector=Nobody").await;
    assert_eq!(r.status, 404, "{r:?}");
    let r = ex.get("/probe?connector=Nobody&format=json").await;
    assert_eq!(r.status, 404, "{r:?}");

    // Ad-hoc targets are off by default.
    let r = ex.get("/probe?target=127.0.0.1:25").await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = ex.get(&format!("/probe?target={}", server.addr())).await;
    assert_eq!(r.status, 403, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adhoc_probes_only_with_the_flag() {
    let server = smtp::plain().await;
    let scratch = Scratch::new("adhoc");
    let config = scratch.write(
        "mailflow.yaml",
        &Cfg::new(vec![conn_at("Healthy", server.addr())]).yaml(),
    );
    let ex = Exporter::serve(&scratch, &config, &["--web.enable-adhoc-probes"]).await;

    let target = server.addr().to_string();
    let r = ex.get(&format!("/probe?target={}", enc(&target))).await;
    assert_eq!(r.status, 200, "{r:?}");
    let m = Metrics::parse(&r.body);
    let name = format!("adhoc:{target}");
    assert_eq!(
        m.value("mailflow_connector_up", &[("connector", &name)]),
        1.0,
        "{}",
        m.text
    );
    for s in &m.samples {
        assert_eq!(s.label("connector"), name, "{s:?}");
    }
    let r = ex.get(&format!("/probe?target={}&format=json", enc(&target))).await;
    assert_eq!(r.status, 200, "{r:?}");
    let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
    assert_eq!(v["delivered"], Value::Bool(true), "{v:#}");

    // Port 25 on loopback: whatever is (not) there, the answer is a diagnosis.
    let r = ex.get("/probe?target=127.0.0.1:25").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        Metrics::parse(&r.body)
            .get("mailflow_connector_up", &[("connector", "adhoc:127.0.0.1:25")])
            .is_some(),
        "{}",
        r.body
    );
    // Ad-hoc probes are not recorded.
    let m = Metrics::parse(&ex.get("/metrics").await.body);
    assert!(!m.text.contains("adhoc:"), "{}", m.text);
}

// ------------------------------------------------------------------------------------------
// 7. Health, readiness, method and path errors, the status page
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_errors_and_status_page() {
    let refused = closed_port().expect("closed port");
    let server = smtp::plain().await;
    let scratch = Scratch::new("page");
    let hostile = "Refused <b>Ops</b> & 'Co' \"x\"";
    let cfg = Cfg::new(vec![conn_at(hostile, refused), conn_at("Healthy", server.addr())]);
    let config = scratch.write("mailflow.yaml", &cfg.yaml());
    let mut ex = Exporter::serve(&scratch, &config, &[]).await;

    for p in ["/-/healthy", "/-/ready"] {
        let r = ex.get(p).await;
        assert_eq!(r.status, 200, "{p}: {r:?}");
    }
    let r = ex.get("/-/reload").await;
    assert_eq!(r.status, 405, "{r:?}");
    let r = ex.post("/-/reload").await;
    assert_eq!(r.status, 403, "reload over HTTP needs --web.enable-lifecycle: {r:?}");
    assert!(r.body.contains("--web.enable-lifecycle"), "{r:?}");
    let r = ex.get("/no/such/page").await;
    assert_eq!(r.status, 404, "{r:?}");
    let r = ex.post("/metrics").await;
    assert_eq!(r.status, 405, "{r:?}");
    assert!(
        r.headers.iter().any(|(k, v)| k == "allow" && v.contains("GET")),
        "405 names the allowed methods: {r:?}"
    );

    ex.wait_probed(&[hostile, "Healthy"], 1.0).await;
    let r = ex.get("/").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.content_type().starts_with("text/html"), "{r:?}");
    let escaped = hostile
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;");
    let alt = escaped.replace("&#39;", "&#x27;");
    assert!(
        r.body.contains(&escaped) || r.body.contains(&alt),
        "escaped name {escaped:?} missing\n{}",
        r.body
    );
    assert!(!r.body.contains("<b>Ops</b>"), "raw name on the page\n{}", r.body);
    assert!(r.body.contains("Healthy"), "{}", r.body);
    assert!(r.body.contains("data-code=\"4.4.316\""), "{}", r.body);
    assert!(r.body.contains("data-code=\"ok\""), "{}", r.body);
}

// ------------------------------------------------------------------------------------------
// 8. A bad config at start
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_missing_config_at_start_exits_2() {
    let scratch = Scratch::new("badstart");
    let (broken, line) = Cfg::new(vec![conn("Bad", "127.0.0.1", 2525, "none")]).broken_yaml();
    let config = scratch.write("broken.yaml", &broken);
    let listen = free_port().to_string();
    let storage = scratch.path("data").display().to_string();
    let args = |cfg: &Path| -> Vec<String> {
        vec![
            "serve".into(),
            "--config.file".into(),
            cfg.display().to_string(),
            "--web.listen-address".into(),
            listen.clone(),
            "--storage.path".into(),
            storage.clone(),
        ]
    };
    let r = run(&args(&config), Duration::from_secs(30)).await;
    r.assert_exit(2);
    let at = format!("{}:{line}:", config.display());
    assert!(r.stderr.contains(&at), "stderr lacks {at:?}\n{}", r.dump());
    assert!(r.stderr.contains("smart_host"), "stderr lacks the field\n{}", r.dump());

    let missing = scratch.path("missing.yaml");
    let r = run(&args(&missing), Duration::from_secs(30)).await;
    r.assert_exit(2);
    assert!(
        r.stderr.contains(&missing.display().to_string()),
        "stderr names the file\n{}",
        r.dump()
    );
}

// ------------------------------------------------------------------------------------------
// 9-10. A scrape of every kind of failure: promtool, OpenMetrics, bounded labels
// ------------------------------------------------------------------------------------------

/// Everything the lab can fail with at once, and the agent scraping it.
struct RichLab {
    ex: Exporter,
    names: Vec<&'static str>,
    _servers: Vec<FaultServer>,
    _blackhole: BlackholeListener,
    _dns: FakeDns,
    _scratch: Scratch,
}

async fn rich_lab() -> RichLab {
    let pki = LabPki::new(LAB_HOST).expect("lab PKI");
    let healthy = smtp::plain().await;
    let expired = smtp::starttls(&pki.expired).await;
    let banner = FaultServer::start(Behavior::Banner421).await.expect("421 server");
    let garbage = FaultServer::start(Behavior::Garbage(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec()))
        .await
        .expect("garbage server");
    let reset = FaultServer::start(Behavior::ResetAfterEhlo)
        .await
        .expect("reset server");
    let blackhole = tokio::task::spawn_blocking(BlackholeListener::start)
        .await
        .expect("join")
        .expect("blackhole");
    let refused = closed_port().expect("closed port");
    let dns = lab_dns().await;
    let scratch = Scratch::new("rich");
    let ca = scratch.write("ca.pem", &pki.ca.cert_pem());
    let conns = vec![
        conn_at("Healthy", healthy.addr()),
        conn_at("Refused", refused),
        conn("Expired", LAB_HOST, expired.addr().port(), "certificate-validation"),
        conn_at("Banner 421", banner.addr()),
        conn_at("Garbage", garbage.addr()),
        conn_at("Reset", reset.addr()),
        conn_at("Blackhole", blackhole.addr()),
        conn("No such name", "nowhere.lab.test", 25, "none"),
    ];
    let names = vec![
        "Healthy",
        "Refused",
        "Expired",
        "Banner 421",
        "Garbage",
        "Reset",
        "Blackhole",
        "No such name",
    ];
    let cfg = Cfg {
        dns: Some(dns.addr()),
        ca: Some(ca),
        all_metrics: true,
        ..Cfg::new(conns)
    };
    let config = scratch.write("mailflow.yaml", &cfg.yaml());
    let mut ex = Exporter::serve(&scratch, &config, &[]).await;
    ex.wait_for("every connector probed", |m| {
        names
            .iter()
            .all(|n| m.get("mailflow_connector_up", &[("connector", n)]).is_some())
    })
    .await;
    RichLab {
        ex,
        names,
        _servers: vec![healthy, expired, banner, garbage, reset],
        _blackhole: blackhole,
        _dns: dns,
        _scratch: scratch,
    }
}

/// Hard deadline for `promtool check metrics` on one scrape.
const PROMTOOL_DEADLINE: Duration = Duration::from_secs(30);

/// promtool from PATH, else the Debian location.
fn promtool() -> PathBuf {
    let from_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    });
    let p = from_path.unwrap_or_else(|| PathBuf::from("/usr/bin/promtool"));
    assert!(
        p.is_file(),
        "promtool not found (looked in PATH and /usr/bin/promtool): install the Debian package \
         `prometheus` (CI installs it) to run this test"
    );
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_scrape_and_openmetrics_is_well_formed() {
    let promtool = promtool();
    let mut lab = rich_lab().await;
    let m = lab.ex.scrape().await;
    // The scrape holds every family worth linting.
    for family in [
        "mailflow_probes_total",
        "mailflow_probe_failures_total",
        "mailflow_probe_duration_seconds_bucket",
        "mailflow_tls_certificate_not_after_timestamp_seconds",
        "mailflow_connector_status",
        "mailflow_config_last_reload_successful",
        "mailflow_probe_last_duration_seconds",
        "mailflow_tls_certificate_not_before_timestamp_seconds",
    ] {
        assert!(!m.all(family, &[]).is_empty(), "no {family} in\n{}", m.text);
    }
    // metrics.certificate_not_before: the validity window of the expired leaf, in order.
    let leaf = [("connector", "Expired"), ("host", LAB_HOST), ("position", "leaf")];
    let nb = m.value("mailflow_tls_certificate_not_before_timestamp_seconds", &leaf);
    let na = m.value("mailflow_tls_certificate_not_after_timestamp_seconds", &leaf);
    assert!(0.0 < nb && nb < na, "not_before {nb}, not_after {na}");
    let text = m.text.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(&promtool);
        cmd.args(["check", "metrics"]);
        run_with_deadline(cmd, text.as_bytes(), PROMTOOL_DEADLINE)
    })
    .await
    .expect("join");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- scrape ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        m.text
    );

    let r = lab
        .ex
        .req("GET", "/metrics", Some("application/openmetrics-text; version=1.0.0"))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.content_type().starts_with("application/openmetrics-text"),
        "{:?}",
        r.content_type()
    );
    assert!(r.body.ends_with("# EOF\n"), "{}", r.body);
    assert_eq!(r.body.matches("# EOF").count(), 1, "{}", r.body);
    assert!(r.body.contains("# TYPE mailflow_probes counter\n"), "{}", r.body);
    let om = Metrics::parse(&r.body);
    for n in &lab.names {
        assert!(
            om.get("mailflow_connector_up", &[("connector", n)]).is_some(),
            "{n} missing from the OpenMetrics scrape"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_are_bounded() {
    let mut lab = rich_lab().await;
    // Each failure shows up under its code.
    let expected = [
        ("Healthy", "ok"),
        ("Refused", "4.4.316"),
        ("Expired", "4.7.320"),
        ("Banner 421", "4.4.317"),
        ("Reset", "4.4.318"),
        ("Blackhole", "4.4.315"),
        ("No such name", "4.4.312"),
    ];
    let m = lab
        .ex
        .wait_for("every connector in its expected state", |m| {
            expected.iter().all(|(n, code)| m.status(n, code) == Some(1.0))
        })
        .await;
    for (name, code) in expected {
        assert_state_set(&m, name, code);
    }

    let codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    let reasons: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    let phases: Vec<&str> = HISTOGRAM_PHASES.iter().map(|p| p.as_str()).chain(["total"]).collect();
    let hosts = ["127.0.0.1", LAB_HOST, "nowhere.lab.test"];
    let forbidden = [
        "Connection refused",
        "connection refused",
        "os error",
        "Service not available",
        "SSH-",
        "timed out",
        "reset by peer",
        "Broken pipe",
        "NXDomain",
        "no record",
        "Error:",
    ];
    let mut checked = 0;
    for s in &m.samples {
        for (k, v) in &s.labels {
            checked += 1;
            assert!(
                !v.contains(['\n', '\r', '\t']),
                "control character in {k}={v:?} of {}",
                s.name
            );
            assert!(v.len() <= 200, "long label {k}={v:?} of {}", s.name);
            for f in forbidden {
                assert!(!v.contains(f), "raw error text {f:?} in {k}={v:?} of {}", s.name);
            }
            let bounded = match k.as_str() {
                "connector" => lab.names.contains(&v.as_str()),
                "host" => hosts.contains(&v.as_str()),
                "code" if s.name == "mailflow_connector_status" => STATUS_CODES.contains(&v.as_str()),
                "code" => codes.contains(&v.as_str()),
                "reason" => reasons.contains(&v.as_str()),
                "phase" => phases.contains(&v.as_str()),
                "position" => ["leaf", "intermediate", "root"].contains(&v.as_str()) || v.starts_with("chain"),
                "le" => v == "+Inf" || v.parse::<f64>().is_ok(),
                "connector_type" => ["on-premises", "partner"].contains(&v.as_str()),
                "routing" => ["smart_host", "mx"].contains(&v.as_str()),
                "tls_settings" => {
                    ["none", "encryption-only", "certificate-validation", "domain-validation"].contains(&v.as_str())
                }
                "enabled"
                | "test_mode"
                | "route_all_messages_via_on_premises"
                | "cloud_services_mail_enabled"
                | "transport_rule_scoped"
                | "all_accepted_domains" => v == "true" || v == "false",
                "role" => Role::ALL.iter().any(|r| r.as_str() == v),
                "connector_source" => {
                    ["default", "hybrid_wizard", "migrated", "admin_ui", "other"].contains(&v.as_str())
                }
                "action" => ["skipped", "clamped"].contains(&v.as_str()),
                "check" => ["dns", "outbound_port_25"].contains(&v.as_str()),
                "source" => ["file", "tenant"].contains(&v.as_str()),
                // Build facts: one value per binary.
                "revision" | "rustc" | "target" => s.name == "mailflow_build_info",
                "subject" | "issuer" | "serial" | "version" | "cipher" | "tls_domain" => true,
                other => panic!("unexpected label {other}={v:?} on {}", s.name),
            };
            assert!(bounded, "label {k}={v:?} of {} outside its vocabulary", s.name);
        }
    }
    assert!(checked > 100, "only {checked} labels in\n{}", m.text);
}
