//! The `mailflow-exporter` binary as other tools drive it: `check` flags, exit codes (0 delivered,
//! 1 not delivered, 2 usage/config), the JSON contract, the text rendering and `demo`.
//!
//! Every test runs the real binary as a child process (with a hard deadline) against loopback
//! servers started in this process from `mailflow_exporter::lab`.

use crate::support::dns::{LAB_HOST, a_loopback, lab_dns, serve};
use crate::support::process::{Run, run};
use crate::support::scratch::Scratch;
use crate::support::smtp;
use mailflow_exporter::lab::dns::{Answer, FakeDns, Qtype, Record, Zone};
use mailflow_exporter::lab::pki::LabPki;
use mailflow_exporter::lab::smtp::{Behavior, FaultServer, closed_port};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Hard deadline for one `check` run (every step has a 1-2 s timeout, so this is generous).
const CHECK_DEADLINE: Duration = Duration::from_secs(30);
/// Hard deadline for `demo` (eight scenarios, one of which waits for a connect timeout).
const DEMO_DEADLINE: Duration = Duration::from_secs(90);

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A JSON field that must be a string.
#[track_caller]
fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in\n{v:#}"))
}

/// Every string anywhere in a JSON value.
fn all_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| all_strings(x, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            all_strings(x, out);
        }),
        _ => {}
    }
}

// ------------------------------------------------------------------------------------------
// 1. JSON contract for a refused connection
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn refused_port_gives_4_4_316_json() {
    let addr = closed_port().expect("closed port");
    let target = addr.to_string();
    let r = run(
        &["check", "--smart-host", &target, "--timeout", "2s", "--output", "json"],
        CHECK_DEADLINE,
    )
    .await;
    r.assert_exit(1);
    let v = r.json();
    assert_eq!(v["delivered"], Value::Bool(false), "{v:#}");
    assert_eq!(v["code"], "4.4.316", "{v:#}");
    assert_eq!(v["reason"], "refused", "{v:#}");
    assert_eq!(v["phase"], "connect", "{v:#}");
    assert_eq!(v["routing"], "smart_host", "{v:#}");
    let msg = str_of(&v, "message");
    assert!(msg.starts_with("450 4.4.316 Connection refused"), "{msg}");
    assert!(msg.contains("[LastAttemptedServerName=127.0.0.1]"), "{msg}");
    assert!(
        msg.contains(&format!("[LastAttemptedIP=127.0.0.1:{}]", addr.port())),
        "{msg}"
    );
    let attempts = v["attempts"].as_array().expect("attempts array");
    assert_eq!(attempts.len(), 1, "{v:#}");
    let a = &attempts[0];
    assert_eq!(a["delivered"], Value::Bool(false));
    assert_eq!(a["code"], "4.4.316");
    assert_eq!(a["ip"], "127.0.0.1");
    assert_eq!(a["port"], addr.port());
    assert!(a["durations"]["connect"].is_f64(), "durations.connect in\n{a:#}");
    assert!(v["duration_seconds"].is_f64(), "{v:#}");
    assert!(v["warnings"].is_array(), "{v:#}");
}

// ------------------------------------------------------------------------------------------
// 2. Healthy STARTTLS with domain validation, by name through the fake DNS
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn healthy_starttls_domain_validation_delivers() {
    let pki = LabPki::new(LAB_HOST).expect("pki");
    let server = smtp::starttls(&pki.good).await;
    let dns = lab_dns().await;
    let scratch = Scratch::new("cli");
    let ca = scratch.write("ca.pem", &pki.ca.cert_pem());
    let host = format!("mail.lab.test:{}", server.addr().port());
    let dns_addr = dns.addr().to_string();
    let r = run(
        &[
            "check",
            "--smart-host",
            &host,
            "--dns-server",
            &dns_addr,
            "--ca-file",
            &s(&ca),
            "--tls-settings",
            "domain-validation",
            "--tls-domain",
            "mail.lab.test",
            "--timeout",
            "2s",
            "--helo",
            "probe.lab.test",
            "--output",
            "json",
        ],
        CHECK_DEADLINE,
    )
    .await;
    r.assert_exit(0);
    let v = r.json();
    assert_eq!(v["delivered"], Value::Bool(true), "{v:#}");
    assert!(v["code"].is_null(), "{v:#}");
    assert!(v["reason"].is_null(), "{v:#}");
    assert!(v["phase"].is_null(), "{v:#}");
    assert_eq!(v["tls_settings"], "domain-validation", "{v:#}");
    let a = &v["attempts"][0];
    assert_eq!(a["delivered"], Value::Bool(true), "{v:#}");
    assert_eq!(a["host"], "mail.lab.test", "{v:#}");
    assert_eq!(a["ip"], "127.0.0.1", "{v:#}");
    assert_eq!(a["plaintext"], Value::Bool(false), "{v:#}");
    let version = a["tls"]["version"].as_str().expect("attempts[0].tls.version");
    assert!(version.starts_with("TLSv1."), "{version}");
    assert!(a["tls"]["cipher"].is_string(), "{v:#}");
    let leaf = &a["certificates"][0];
    assert!(
        leaf["not_after"].as_str().is_some_and(|s| !s.is_empty()),
        "certificates[0].not_after\n{v:#}"
    );
    assert_eq!(leaf["position"], "leaf", "{v:#}");
    assert!(
        leaf["subject_alt_names"].as_array().is_some_and(|sans| sans
            .iter()
            .any(|n| n.as_str().is_some_and(|n| n.contains("mail.lab.test")))),
        "{v:#}"
    );
    assert_eq!(a["certificate_problems"], Value::Array(vec![]), "{v:#}");
    for phase in [
        "dns",
        "connect",
        "banner",
        "ehlo",
        "starttls",
        "tls_handshake",
        "ehlo_tls",
    ] {
        assert!(a["durations"][phase].is_f64(), "durations.{phase}\n{v:#}");
    }
    let warnings: Vec<&str> = v["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("extra CA") && w.contains("public CAs")),
        "private CA warning missing: {warnings:?}"
    );
    // The server saw the whole dialogue, EHLO name from --helo included.
    let tr = server.transcripts();
    assert_eq!(tr.len(), 1, "{tr:?}");
    assert!(tr[0].starts_with("EHLO probe.lab.test\nSTARTTLS\n"), "{tr:?}");
}

// ------------------------------------------------------------------------------------------
// 3. --domain routes by MX
// ------------------------------------------------------------------------------------------

async fn check_domain(dns: &FakeDns, port: u16, domain: &str) -> Run {
    let dns_addr = dns.addr().to_string();
    let port = port.to_string();
    run(
        &[
            "check",
            "--domain",
            domain,
            "--port",
            &port,
            "--dns-server",
            &dns_addr,
            "--timeout",
            "2s",
            "--output",
            "json",
        ],
        CHECK_DEADLINE,
    )
    .await
}

#[tokio::test]
async fn domain_routes_by_mx_and_delivers() {
    // Plain ESMTP (no STARTTLS): tls_settings none delivers, flagged as plaintext.
    let server = smtp::plain().await;
    let mut zone = Zone::new();
    zone.set(
        "example.lab.test",
        Qtype::Mx,
        Answer::Records(vec![Record::Mx(10, "mx1.lab.test".into())]),
    );
    a_loopback(&mut zone, "mx1.lab.test");
    let dns = serve(zone).await;
    let r = check_domain(&dns, server.addr().port(), "example.lab.test").await;
    r.assert_exit(0);
    let v = r.json();
    assert_eq!(v["delivered"], Value::Bool(true), "{v:#}");
    assert!(v["code"].is_null(), "{v:#}");
    assert_eq!(v["routing"], "mx", "{v:#}");
    let attempts = v["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{v:#}");
    let a = &attempts[0];
    assert_eq!(a["target"], "example.lab.test", "{v:#}");
    assert_eq!(a["host"], "mx1.lab.test", "{v:#}");
    assert_eq!(a["mx_preference"], 10, "{v:#}");
    assert_eq!(a["port"], server.addr().port(), "{v:#}");
    assert_eq!(a["plaintext"], Value::Bool(true), "{v:#}");
    assert!(
        v["warnings"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("without encryption")))),
        "plaintext warning missing\n{v:#}"
    );
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn domain_with_null_mx_is_4_4_312_null_mx() {
    let mut zone = Zone::new();
    zone.set(
        "nomail.lab.test",
        Qtype::Mx,
        Answer::Records(vec![Record::Mx(0, ".".into())]),
    );
    a_loopback(&mut zone, "nomail.lab.test");
    let dns = serve(zone).await;
    // A server that must not be contacted: a null MX means "no mail", not "use my A record".
    let server = smtp::plain().await;
    let r = check_domain(&dns, server.addr().port(), "nomail.lab.test").await;
    r.assert_exit(1);
    let v = r.json();
    assert_eq!(v["delivered"], Value::Bool(false), "{v:#}");
    assert_eq!(v["code"], "4.4.312", "{v:#}");
    assert_eq!(v["reason"], "null_mx", "{v:#}");
    assert_eq!(v["phase"], "dns", "{v:#}");
    assert!(
        str_of(&v, "message").starts_with("450 4.4.312 DNS query failed"),
        "{v:#}"
    );
    assert_eq!(server.connections(), 0, "null MX must not fall back to the A record");
}

#[tokio::test]
async fn domain_nxdomain_is_4_4_312_nxdomain() {
    let dns = serve(Zone::new()).await;
    let r = check_domain(&dns, 2525, "gone.lab.test").await;
    r.assert_exit(1);
    let v = r.json();
    assert_eq!(v["code"], "4.4.312", "{v:#}");
    assert_eq!(v["reason"], "nxdomain", "{v:#}");
    assert_eq!(v["phase"], "dns", "{v:#}");
    let msg = str_of(&v, "message");
    assert!(msg.contains("[LastAttemptedServerName=gone.lab.test]"), "{msg}");
    assert!(!msg.contains("LastAttemptedIP"), "no address was tried: {msg}");
    assert!(dns.queries() >= 1, "the fake DNS was asked");
}

// ------------------------------------------------------------------------------------------
// 4. Text output
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn text_output_for_a_failure_is_plain_and_explains() {
    let server = FaultServer::start(Behavior::Banner421).await.expect("server");
    let target = server.addr().to_string();
    let r = run(&["check", "--smart-host", &target, "--timeout", "2s"], CHECK_DEADLINE).await;
    r.assert_exit(1);
    let out = r.stdout();
    assert!(
        !r.stdout.contains(&0x1b),
        "no ANSI escapes when stdout is a pipe\n{}",
        r.dump()
    );
    assert!(out.contains("NOT DELIVERED"), "{out}");
    assert!(out.contains("4.4.317"), "{out}");
    assert!(out.contains("Cannot connect to remote server"), "{out}");
    assert!(out.contains("banner_rejected"), "{out}");
    assert!(out.lines().any(|l| l.trim_start().starts_with("Fix:")), "{out}");
    assert!(out.contains("421 4.3.2"), "the server's reply is shown\n{out}");
    assert!(out.contains(&format!("[LastAttemptedIP={target}]")), "{out}");
    assert!(!out.contains('{'), "text mode is not JSON\n{out}");
}

#[tokio::test]
async fn text_output_when_delivered() {
    let server = smtp::plain().await;
    let target = server.addr().to_string();
    let r = run(
        &["check", "--smart-host", &target, "--timeout", "2s", "--output", "text"],
        CHECK_DEADLINE,
    )
    .await;
    r.assert_exit(0);
    let out = r.stdout();
    assert!(!r.stdout.contains(&0x1b), "{}", r.dump());
    assert!(out.starts_with("DELIVERED"), "{out}");
    assert!(!out.contains("NOT DELIVERED"), "{out}");
    assert!(out.contains("without encryption"), "plaintext warning\n{out}");
}

// ------------------------------------------------------------------------------------------
// 5. Usage errors exit 2
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn usage_errors_exit_2() {
    let scratch = Scratch::new("cli");
    let good = scratch.write(
        "good.yaml",
        "connectors:\n  - name: Only\n    use_mx_record: false\n    smart_hosts: [127.0.0.1]\n",
    );
    let missing = s(&scratch.0.join("missing.yaml"));
    let good = s(&good);
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["check"], vec!["--smart-host"]),
        (vec!["check", "--output", "json"], vec!["--smart-host"]),
        (
            vec!["check", "--smart-host", "127.0.0.1:1", "--tls-domain", "x.test"],
            vec!["--tls-domain", "domain-validation"],
        ),
        (
            vec![
                "check",
                "--smart-host",
                "127.0.0.1:1",
                "--tls-settings",
                "encryption-only",
                "--tls-domain",
                "x.test",
            ],
            vec!["--tls-domain", "domain-validation"],
        ),
        (
            vec!["check", "--smart-host", "127.0.0.1:1", "--timeout", "tenseconds"],
            vec!["tenseconds"],
        ),
        (
            vec!["check", "--smart-host", "127.0.0.1:1", "--timeout", "0s"],
            vec!["--timeout"],
        ),
        (
            vec!["check", "--smart-host", "127.0.0.1:1", "--tls-settings", "strict"],
            vec!["strict"],
        ),
        (
            vec!["check", "--smart-host", "127.0.0.1:1", "--output", "xml"],
            vec!["xml"],
        ),
        (
            vec!["check", "--smart-host", "127.0.0.1:1", "--domain", "a.test"],
            vec!["exclusive"],
        ),
        (vec!["check", "--smart-host", "bad host"], vec!["--smart-host"]),
        (
            vec!["check", "--smart-host", "127.0.0.1:1", "--port", "0"],
            vec!["--port"],
        ),
        (
            vec!["check", "--smart-host", "127.0.0.1:1", "--dns-server", "dns.example"],
            vec!["--dns-server"],
        ),
        (
            vec!["check", "--smart-host", "127.0.0.1:1", "--ca-file", &missing],
            vec!["--ca-file"],
        ),
        (
            vec!["check", "--config", &missing, "--connector", "Only"],
            vec!["missing.yaml", "cannot read"],
        ),
        (
            vec!["check", "--config", &good, "--connector", "Nope"],
            vec!["no connector named \"Nope\""],
        ),
        (vec!["check", "--config", &good], vec!["--connector"]),
        (vec!["check", "--connector", "Only"], vec!["--config"]),
        (vec!["demo", "--timeout", "tenseconds"], vec!["tenseconds"]),
        (vec!["frobnicate"], vec!["frobnicate"]),
    ];
    for (args, needles) in cases {
        let r = run(&args, CHECK_DEADLINE).await;
        r.assert_usage_error(&needles);
    }
}

// ------------------------------------------------------------------------------------------
// 6. --config FILE --connector NAME
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn config_connectors_are_checked() {
    let pki = LabPki::new(LAB_HOST).expect("pki");
    let server = smtp::starttls(&pki.good).await;
    let dns = lab_dns().await;
    let refused = closed_port().expect("closed port");
    let scratch = Scratch::new("cli");
    scratch.write("ca.pem", &pki.ca.cert_pem());
    // The CA path is relative: it resolves against the config file's directory.
    let cfg = scratch.write(
        "mailflow.yaml",
        &format!(
            r#"defaults: {{ timeout: 2s, helo: probe.lab.test }}
dns: {{ servers: ["{dns}"] }}
trust: {{ extra_ca_files: [ca.pem] }}
connectors:
  - name: Lab healthy
    use_mx_record: false
    smart_hosts: [mail.lab.test]
    recipient_domains: [lab.test]
    port: {port}
    tls_settings: DomainValidation
    tls_domain: mail.lab.test
  - name: Lab refused
    use_mx_record: false
    smart_hosts: [127.0.0.1]
    port: {refused}
"#,
            dns = dns.addr(),
            port = server.addr().port(),
            refused = refused.port(),
        ),
    );
    let cfg = s(&cfg);

    let r = run(
        &[
            "check",
            "--config",
            &cfg,
            "--connector",
            "Lab healthy",
            "--output",
            "json",
        ],
        CHECK_DEADLINE,
    )
    .await;
    r.assert_exit(0);
    let v = r.json();
    assert_eq!(v["connector"], "Lab healthy", "{v:#}");
    assert_eq!(v["delivered"], Value::Bool(true), "{v:#}");
    assert_eq!(v["tls_settings"], "domain-validation", "{v:#}");
    assert_eq!(v["attempts"][0]["host"], "mail.lab.test", "{v:#}");
    assert_eq!(v["attempts"][0]["port"], server.addr().port(), "{v:#}");
    assert!(v["attempts"][0]["tls"]["version"].is_string(), "{v:#}");
    assert!(
        v["warnings"]
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w.as_str().is_some_and(|w| w.contains("extra CA")))),
        "{v:#}"
    );
    assert!(
        server.transcripts()[0].starts_with("EHLO probe.lab.test\n"),
        "helo from defaults"
    );

    // Flags refine the connector: a --tls-domain the certificate does not cover fails 4.7.320.
    let r = run(
        &[
            "check",
            "--config",
            &cfg,
            "--connector",
            "Lab healthy",
            "--tls-domain",
            "other.lab.test",
            "--output",
            "json",
        ],
        CHECK_DEADLINE,
    )
    .await;
    r.assert_exit(1);
    let v = r.json();
    assert_eq!(v["code"], "4.7.320", "{v:#}");
    assert_eq!(v["reason"], "cert_name_mismatch", "{v:#}");

    let r = run(
        &[
            "check",
            "--config",
            &cfg,
            "--connector",
            "Lab refused",
            "--output",
            "json",
        ],
        CHECK_DEADLINE,
    )
    .await;
    r.assert_exit(1);
    let v = r.json();
    assert_eq!(v["connector"], "Lab refused", "{v:#}");
    assert_eq!(v["code"], "4.4.316", "{v:#}");
    assert_eq!(v["reason"], "refused", "{v:#}");
    assert!(
        str_of(&v, "message").contains(&format!("[LastAttemptedIP=127.0.0.1:{}]", refused.port())),
        "{v:#}"
    );
}

#[tokio::test]
async fn config_errors_name_file_line_and_field() {
    let scratch = Scratch::new("cli");

    let unknown = scratch.write(
        "unknown.yaml",
        "connectors:\n  - name: A\n    recipient_domains: [a.test]\n    smart_host: [x.test]\n",
    );
    let r = run(&["check", "--config", &s(&unknown), "--connector", "A"], CHECK_DEADLINE).await;
    r.assert_usage_error(&[&format!("{}:4:", unknown.display()), "smart_host"]);

    let tls_domain = scratch.write(
        "tls_domain.yaml",
        "connectors:\n  - name: A\n    use_mx_record: false\n    smart_hosts: [x.test]\n    tls_settings: encryption-only\n    tls_domain: x.test\n",
    );
    let r = run(
        &["check", "--config", &s(&tls_domain), "--connector", "A"],
        CHECK_DEADLINE,
    )
    .await;
    r.assert_usage_error(&[&format!("{}:6:", tls_domain.display()), "connectors[0].tls_domain"]);

    let bad_duration = scratch.write(
        "duration.yaml",
        "defaults:\n  timeout: tenseconds\nconnectors:\n  - name: A\n    recipient_domains: [a.test]\n",
    );
    let r = run(
        &["check", "--config", &s(&bad_duration), "--connector", "A"],
        CHECK_DEADLINE,
    )
    .await;
    r.assert_usage_error(&[&format!("{}:2:", bad_duration.display()), "tenseconds"]);

    let no_smart_host = scratch.write(
        "no_smart_host.yaml",
        "connectors:\n  - name: A\n    use_mx_record: false\n    recipient_domains: [a.test]\n",
    );
    let r = run(
        &["check", "--config", &s(&no_smart_host), "--connector", "A"],
        CHECK_DEADLINE,
    )
    .await;
    r.assert_usage_error(&[&format!("{}:3:", no_smart_host.display()), "connectors[0].smart_hosts"]);
}

// ------------------------------------------------------------------------------------------
// 7. demo
// ------------------------------------------------------------------------------------------

const DEMO_CODES: [&str; 7] = [
    "4.4.312", "4.4.315", "4.4.316", "4.4.317", "4.4.318", "4.7.320", "other",
];

#[tokio::test]
async fn demo_table_lists_every_code() {
    let r = run(&["demo", "--once", "--timeout", "1s"], DEMO_DEADLINE).await;
    r.assert_exit(0);
    let out = r.stdout();
    assert!(!r.stdout.contains(&0x1b), "{}", r.dump());
    let words: Vec<&str> = out.split_whitespace().collect();
    for code in DEMO_CODES.iter().chain(&["ok"]) {
        assert!(words.contains(code), "demo output lacks {code}\n{out}");
    }
    assert!(!out.contains("<-- unexpected"), "a scenario was misdiagnosed\n{out}");
}

#[tokio::test]
async fn demo_json_is_one_object_per_line() {
    let r = run(&["demo", "--once", "--json", "--timeout", "1s"], DEMO_DEADLINE).await;
    r.assert_exit(0);
    let out = r.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 8, "{}", r.dump());
    let mut codes = Vec::new();
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("line is not JSON ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        assert!(
            v["connector"].as_str().is_some_and(|c| !c.is_empty()),
            "no connector field: {line}"
        );
        assert!(v["attempts"].is_array(), "{line}");
        codes.push(v["code"].as_str().unwrap_or("ok").to_string());
    }
    codes.sort();
    let mut expected: Vec<String> = DEMO_CODES.iter().chain(&["ok"]).map(|c| c.to_string()).collect();
    expected.sort();
    assert_eq!(codes, expected, "each scenario diagnosed as its code\n{}", r.dump());
}

// ------------------------------------------------------------------------------------------
// 8. Hostile server text is escaped
// ------------------------------------------------------------------------------------------

/// Runs `check` against `server` in text and JSON and asserts no raw control byte reaches stdout.
async fn check_both_outputs(server: &FaultServer) -> (Run, Value, Run) {
    let target = server.addr().to_string();
    let json = run(
        &["check", "--smart-host", &target, "--timeout", "1s", "--output", "json"],
        CHECK_DEADLINE,
    )
    .await;
    json.assert_exit(1);
    let text = run(&["check", "--smart-host", &target, "--timeout", "1s"], CHECK_DEADLINE).await;
    text.assert_exit(1);
    for r in [&json, &text] {
        let out = r.stdout();
        for bad in ['\x1b', '\x07', '\u{fffd}'] {
            assert!(!out.contains(bad), "raw {bad:?} in stdout\n{}", r.dump());
        }
        assert!(!out.contains("\x1b[2J"), "{}", r.dump());
    }
    let v = json.json();
    // Not only serde's \u001b: the strings themselves must hold no control characters.
    let mut strings = Vec::new();
    all_strings(&v, &mut strings);
    for st in &strings {
        assert!(
            !st.chars().any(|c| c.is_control()),
            "control character in JSON string {st:?}\n{}",
            json.dump()
        );
    }
    (json, v, text)
}

#[tokio::test]
async fn hostile_rejecting_banner_is_escaped() {
    let server = FaultServer::start(Behavior::Garbage(b"554 go\x1b[2J\x07 away \xff\xfe\r\n".to_vec()))
        .await
        .expect("server");
    let (_json, v, text) = check_both_outputs(&server).await;
    assert_eq!(v["code"], "4.4.317", "{v:#}");
    assert_eq!(v["reason"], "banner_rejected", "{v:#}");
    let msg = str_of(&v, "message");
    // The server's words are shown, with the control bytes spelled out.
    assert!(
        msg.contains("554 go") && msg.contains("x1b[2J") && msg.contains("x07 away"),
        "{msg}"
    );
    assert!(text.stdout().contains("x1b[2J"), "{}", text.dump());
}

#[tokio::test]
async fn hostile_accepting_banner_is_escaped() {
    // A 220 banner carrying terminal controls, then silence: EHLO times out (4.4.318).
    let server = FaultServer::start(Behavior::Garbage(b"220 hi\x1b[2J\x07 there\r\n".to_vec()))
        .await
        .expect("server");
    let (_json, v, text) = check_both_outputs(&server).await;
    assert_eq!(v["code"], "4.4.318", "{v:#}");
    assert_eq!(v["reason"], "read_timeout", "{v:#}");
    assert_eq!(v["phase"], "ehlo", "{v:#}");
    let transcript: Vec<&str> = v["attempts"][0]["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        transcript.iter().any(|l| l.contains("220 hi") && l.contains("x1b[2J")),
        "banner in the transcript, escaped: {transcript:?}"
    );
    assert!(text.stdout().contains("220 hi"), "{}", text.dump());
}

#[tokio::test]
async fn hostile_non_smtp_banner_is_escaped() {
    // Not SMTP at all: the probe must say so without echoing raw bytes.
    let server = FaultServer::start(Behavior::Garbage(
        b"\x1b]0;pwned\x07HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
    ))
    .await
    .expect("server");
    let (_json, v, _text) = check_both_outputs(&server).await;
    assert_eq!(v["code"], "4.4.317", "{v:#}");
    assert_eq!(v["reason"], "protocol_error", "{v:#}");
    assert_eq!(v["phase"], "banner", "{v:#}");
}

/// The shipped example config and the Kubernetes one load as they are.
#[test]
fn shipped_example_configs_load() {
    use mailflow_exporter::config::Config;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let ex = Config::load(&root.join("deploy/mailflow.example.yaml")).expect("example config");
    assert_eq!(ex.connectors.len(), 3);
    assert!(!ex.connectors[2].enabled);
    let k8s = std::fs::read_to_string(root.join("deploy/kubernetes/configmap.yaml")).expect("configmap.yaml");
    let block = k8s
        .split("config.yaml: |\n")
        .nth(1)
        .expect("a config.yaml key")
        .split("\n---")
        .next()
        .unwrap_or_default();
    let text: String = block
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let cfg = Config::parse(std::path::Path::new("configmap"), &text).expect("configmap config");
    assert_eq!(cfg.connectors[0].name(), "Outbound to Contoso");
}
