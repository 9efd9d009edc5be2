//! Hostile inputs, one regression test each: damaged state files, absurd config numbers, a FIFO
//! as config, clients that hoard connections, DNS that goes silent or keeps renaming its MX,
//! servers that drip, flood, stall, garble or hang up. Each test asserts the bounded outcome
//! (the process answers, finishes, or reports the documented code), never how fast.
//!
//! Everything runs on loopback: the real binary as a child process, the in-process fake DNS and
//! the lab's fault SMTP servers.

use crate::support::certs::now_unix;
use crate::support::config::{self, FAST};
use crate::support::dns::serve as serve_dns;
use crate::support::http::{self, HTTP_DEADLINE};
use crate::support::metrics::Metrics;
use crate::support::net::{connect_from, free_port};
use crate::support::probe;
use crate::support::process::{Exporter, Run, run, run_with_deadline};
use crate::support::scratch::Scratch;
use crate::support::smtp;
use mailflow_exporter::config::TlsSettings;
use mailflow_exporter::lab::dns::{Answer, Qtype, Record, Zone};
use mailflow_exporter::lab::smtp::{Behavior, FaultServer, HangUpAt, closed_port};
use mailflow_exporter::probe::Phase;
use mailflow_exporter::taxonomy::{Code, Reason};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Hard deadline of one `check` run (its own steps are 1 s, its whole-probe deadline ≤ 3 s).
const CHECK_DEADLINE: Duration = Duration::from_secs(20);
/// Hard deadline of a `serve` that must refuse to start.
const REFUSE_DEADLINE: Duration = Duration::from_secs(30);

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// `mailflow_config_last_reload_successful`.
fn reload_ok(m: &Metrics) -> f64 {
    m.value("mailflow_config_last_reload_successful", &[])
}

/// `check … --output json` and the same in text; both must finish within the deadline.
async fn check_both(args: &[&str]) -> (Run, Value, Run) {
    let mut json_args: Vec<&str> = vec!["check"];
    json_args.extend_from_slice(args);
    let mut text_args = json_args.clone();
    json_args.extend_from_slice(&["--output", "json"]);
    text_args.extend_from_slice(&["--output", "text"]);
    let (json, text) = tokio::join!(run(&json_args, CHECK_DEADLINE), run(&text_args, CHECK_DEADLINE));
    json.assert_exit(1);
    text.assert_exit(1);
    let v = json.json();
    (json, v, text)
}

/// No raw control byte (ESC, BEL, NUL, CR, …) anywhere in stdout: only newlines.
#[track_caller]
fn assert_no_control_bytes(r: &Run) {
    let out = r.stdout();
    let bad: Vec<char> = out.chars().filter(|c| c.is_control() && *c != '\n').collect();
    assert!(bad.is_empty(), "raw control characters {bad:?} in stdout\n{}", r.dump());
    assert!(
        !out.contains('\u{fffd}'),
        "replacement character in stdout\n{}",
        r.dump()
    );
}

#[track_caller]
fn assert_code(v: &Value, code: &str, reason: &str, phase: &str) {
    assert_eq!(v["delivered"], Value::Bool(false), "{v:#}");
    assert_eq!(v["code"], code, "{v:#}");
    assert_eq!(v["reason"], reason, "{v:#}");
    assert_eq!(v["phase"], phase, "{v:#}");
}

// ------------------------------------------------------------------------------------------
// 1. A queue-clock file with absurd values
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_clock_file_with_absurd_values_is_read_entry_by_entry() {
    let refused = closed_port().expect("closed port");
    let scratch = Scratch::new("hostile-clock");
    let config = scratch.write(
        "mailflow.yaml",
        &config::file(
            FAST,
            None,
            &[config::at("Stuck", refused), config::at("Later", refused)],
        ),
    );
    // An hour ago, with a fraction, so a float that was rounded or rebuilt shows.
    let good_since = (now_unix() - 3600.0).floor() + 0.25;
    let future = now_unix() + 30.0 * 86_400.0;
    let bad = ["huge", "huger", "negative", "text"];
    std::fs::create_dir_all(scratch.path("data")).expect("data dir");
    scratch.write(
        "data/queue-clock.json",
        &format!(
            r#"{{"version": 1, "connectors": {{
  "huge": {{"failing_since": 1.9e19, "last_code": "4.4.316"}},
  "huger": {{"failing_since": 1e308}},
  "negative": {{"failing_since": -5}},
  "text": {{"failing_since": "text"}},
  "Later": {{"failing_since": {future}, "last_code": "4.4.316"}},
  "Stuck": {{"failing_since": {good_since}, "last_code": "4.4.316"}}
}}}}"#
        ),
    );
    let started = now_unix();
    let mut ex = Exporter::serve(&scratch, &config, &[]).await;
    let m = ex.wait_probed(&["Stuck", "Later"], 1.0).await;
    let damaged = |action: &str| m.value("mailflow_queue_clock_damaged_entries", &[("action", action)]);
    assert!(damaged("skipped") >= bad.len() as f64, "{}", m.text);
    assert_eq!(damaged("clamped"), 1.0, "{}", m.text);
    assert_eq!(m.value("mailflow_queue_clock_load_successful", &[]), 1.0, "{}", m.text);
    let since = |c: &str| {
        m.value(
            "mailflow_connector_failing_since_timestamp_seconds",
            &[("connector", c)],
        )
    };
    assert!(
        (since("Stuck") - good_since).abs() < 1e-3,
        "the good entry's streak start {good_since} did not survive\n{}",
        m.text
    );
    // The future start was set to the load time: not in the future, not before the start.
    let later = since("Later");
    assert!(
        later >= started - 1.0 && later <= now_unix(),
        "clamped start {later} outside [{started}, now]\n{}",
        m.text
    );
    for name in bad {
        assert!(
            m.of_connector(name).is_empty(),
            "an unknown entry became a series\n{}",
            m.text
        );
    }
    for s in &m.samples {
        assert!(s.value.is_finite() || s.label("le") == "+Inf", "{s:?}\n{}", m.text);
    }
    ex.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_clock_file_that_is_not_json_does_not_stop_the_start() {
    let refused = closed_port().expect("closed port");
    let scratch = Scratch::new("hostile-clock-broken");
    let config = scratch.write(
        "mailflow.yaml",
        &config::file(FAST, None, &[config::at("Stuck", refused)]),
    );
    std::fs::create_dir_all(scratch.path("data")).expect("data dir");
    std::fs::write(
        scratch.path("data/queue-clock.json"),
        b"\x00\xff{\"connectors\": [not json",
    )
    .expect("write");
    let mut ex = Exporter::serve(&scratch, &config, &[]).await;
    let m = ex.wait_probed(&["Stuck"], 1.0).await;
    assert_eq!(m.value("mailflow_queue_clock_load_successful", &[]), 0.0, "{}", m.text);
    assert!(
        m.value(
            "mailflow_connector_failing_since_timestamp_seconds",
            &[("connector", "Stuck")]
        ) > 0.0,
        "a fresh streak starts\n{}",
        m.text
    );
    ex.assert_running();
}

// ------------------------------------------------------------------------------------------
// 2. One client holds hundreds of connections
// ------------------------------------------------------------------------------------------

/// One hoarded connection, reopened whenever the server closes it, until `stop`.
async fn hoard(target: SocketAddr, src: IpAddr, half_request: bool, stop: CancellationToken, opened: Arc<AtomicUsize>) {
    while !stop.is_cancelled() {
        let Ok(Ok(mut c)) = tokio::time::timeout(
            Duration::from_secs(2),
            connect_from(src, target, Duration::from_secs(2)),
        )
        .await
        else {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
            }
        };
        opened.fetch_add(1, Ordering::Relaxed);
        if half_request {
            let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await;
        }
        // Hold it until the server lets go (EOF, reset) or the attack ends.
        let mut buf = [0u8; 4096];
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                r = c.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                },
            }
        }
        // Reopen, but never in a tight loop.
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_client_hoarding_connections_does_not_starve_scrapes() {
    let server = smtp::plain().await;
    let refused = closed_port().expect("closed port");
    let scratch = Scratch::new("hostile-hoard");
    let config = scratch.write(
        "mailflow.yaml",
        &config::file(
            FAST,
            None,
            &[config::at("Healthy", server.addr()), config::at("Refused", refused)],
        ),
    );
    let mut ex = Exporter::serve(&scratch, &config, &[]).await;
    ex.wait_probed(&["Healthy", "Refused"], 1.0).await;

    // 127.0.0.2: 300 idle connections and 300 half-sent requests, reopened when closed, for as
    // long as the scrapes take. The attack stops when they are done; its hard bound (longer
    // than the scrapes' own deadlines together) only keeps a hung test from attacking forever.
    const SCRAPES: u32 = 20;
    const SCRAPE_DEADLINE: Duration = Duration::from_secs(10);
    const SCRAPE_PAUSE: Duration = Duration::from_millis(500);
    let bound = (SCRAPE_DEADLINE + SCRAPE_PAUSE) * SCRAPES + Duration::from_secs(20);
    let stop = CancellationToken::new();
    let opened = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..600 {
        tasks.spawn(hoard(ex.addr, loopback(2), i % 2 == 1, stop.clone(), opened.clone()));
    }
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(bound).await;
            stop.cancel();
        })
    };
    // Let the hoarder get going (sequencing only: what follows holds whenever it runs).
    let deadline = Instant::now() + Duration::from_secs(10);
    while opened.load(Ordering::Relaxed) < 600 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Prometheus, from 127.0.0.1: every scrape answers, each within its own deadline.
    let mut answered = 0;
    for i in 0..SCRAPES {
        let r = tokio::time::timeout(SCRAPE_DEADLINE, http::request(ex.addr, "GET", "/metrics", None))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "scrape {i}: no answer within {SCRAPE_DEADLINE:?} while 127.0.0.2 hoards\n{}",
                    ex.stderr()
                )
            })
            .unwrap_or_else(|e| panic!("scrape {i}: {e}\n{}", ex.stderr()));
        assert_eq!(r.status, 200, "scrape {i}: {r:?}");
        let m = Metrics::parse(&r.body);
        assert!(m.probes("Healthy") >= 1.0, "scrape {i}\n{}", m.text);
        answered += 1;
        tokio::time::sleep(SCRAPE_PAUSE).await;
    }
    let attack_was_on = !stop.is_cancelled();
    stop.cancel();
    timer.abort();
    let joined = tokio::time::timeout(Duration::from_secs(20), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    assert!(joined.is_ok(), "hoarding tasks did not stop");
    assert_eq!(answered, SCRAPES);
    assert!(
        attack_was_on,
        "the attack's safety bound ended it before the scrapes were done"
    );
    // The hoarder really held (and lost, and reopened) connections all along.
    assert!(
        opened.load(Ordering::Relaxed) >= 600,
        "only {} connections opened",
        opened.load(Ordering::Relaxed)
    );
    ex.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_by_the_server() {
    let server = smtp::plain().await;
    let scratch = Scratch::new("hostile-silent-client");
    let config = scratch.write(
        "mailflow.yaml",
        &config::file(FAST, None, &[config::at("Healthy", server.addr())]),
    );
    let mut ex = Exporter::serve(&scratch, &config, &[]).await;
    let mut c = connect_from(loopback(3), ex.addr, Duration::from_secs(5))
        .await
        .expect("connect");
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(15), c.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("a silent connection still open after 15 s\n{}", ex.stderr()));
    assert!(matches!(r, Ok(0) | Err(_)), "expected EOF or reset, got {r:?}");
    ex.assert_running();
    ex.scrape().await;
}

// ------------------------------------------------------------------------------------------
// 3. Absurd numbers in the config
// ------------------------------------------------------------------------------------------

/// Config files with one absurd number each: (text, field, 1-based line of the field).
fn absurd_configs(port: u16) -> Vec<(String, &'static str, usize)> {
    let conn = |extra: &str| format!("{}{extra}", config::smart_host("Healthy", "127.0.0.1", port, "none"));
    let line_of = |text: &str, needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("{needle:?} not in\n{text}"))
    };
    let mut out = Vec::new();
    let t = format!(
        "max_concurrent_probes: 4611686018427387904\n{}",
        config::file(FAST, None, &[conn("")])
    );
    let l = line_of(&t, "max_concurrent_probes");
    out.push((t, "max_concurrent_probes", l));
    let t = config::file(&["interval: 18446744073709551616ms", "timeout: 1s"], None, &[conn("")]);
    let l = line_of(&t, "18446744073709551616ms");
    out.push((t, "defaults.interval", l));
    let t = config::file(FAST, None, &[conn("    interval: 2s\n    timeout: 3s\n")]);
    let l = line_of(&t, "timeout: 3s");
    out.push((t, "connectors[0].timeout", l));
    let t = config::file(FAST, None, &[conn("    interval: 2s\n    probe_deadline: 3s\n")]);
    let l = line_of(&t, "probe_deadline: 3s");
    out.push((t, "connectors[0].probe_deadline", l));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_numbers_stop_the_start_with_file_line_and_field() {
    let scratch = Scratch::new("hostile-absurd-start");
    for (i, (text, field, line)) in absurd_configs(2525).into_iter().enumerate() {
        let path = scratch.write(&format!("absurd-{i}.yaml"), &text);
        let listen = free_port().to_string();
        let storage = s(&scratch.path(&format!("data-{i}")));
        let r = run(
            &[
                "serve",
                "--config.file",
                &s(&path),
                "--web.listen-address",
                &listen,
                "--storage.path",
                &storage,
            ],
            REFUSE_DEADLINE,
        )
        .await;
        r.assert_exit(2);
        let at = format!("{}:{line}:", path.display());
        assert!(r.stderr.contains(&at), "stderr lacks {at:?}\n{text}\n{}", r.dump());
        assert!(r.stderr.contains(field), "stderr lacks {field:?}\n{text}\n{}", r.dump());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_numbers_are_rejected_on_sighup_and_the_handler_survives() {
    let server = smtp::plain().await;
    let scratch = Scratch::new("hostile-absurd-reload");
    let good = config::file(FAST, None, &[config::at("Healthy", server.addr())]);
    let config = scratch.write("mailflow.yaml", &good);
    let mut ex = Exporter::serve(&scratch, &config, &[]).await;
    ex.wait_probed(&["Healthy"], 1.0).await;
    for (text, field, line) in absurd_configs(server.addr().port()) {
        std::fs::write(&config, &text).expect("write config");
        ex.signal("HUP");
        let m = ex
            .wait_for(&format!("the reload of a bad {field} to fail"), |m| reload_ok(m) == 0.0)
            .await;
        let at = format!("{}:{line}:", config.display());
        let log = ex.log();
        assert!(
            log.lines().any(|l| l.contains(&at) && l.contains(field)),
            "no log line names {at:?} and {field:?}\n{}",
            ex.stderr()
        );
        // Probing goes on with the running config.
        let p = m.probes("Healthy");
        ex.wait_for("Healthy probed after the failed reload", |m| m.probes("Healthy") > p)
            .await;
        std::fs::write(&config, &good).expect("write config");
        ex.signal("HUP");
        ex.wait_for("the reload of the good file to succeed", |m| reload_ok(m) == 1.0)
            .await;
        ex.assert_running();
    }
}

// ------------------------------------------------------------------------------------------
// 4. The config path becomes a FIFO
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_at_the_config_path_fails_the_reload_not_the_agent() {
    let server = smtp::plain().await;
    let scratch = Scratch::new("hostile-fifo");
    let good = config::file(FAST, None, &[config::at("Healthy", server.addr())]);
    let config = scratch.write("mailflow.yaml", &good);
    let mut ex = Exporter::serve(&scratch, &config, &[]).await;
    ex.wait_probed(&["Healthy"], 1.0).await;

    std::fs::remove_file(&config).expect("remove config");
    let mut mkfifo = Command::new("mkfifo");
    mkfifo.arg(&config);
    let out = run_with_deadline(mkfifo, &[], Duration::from_secs(10));
    assert!(out.status.success(), "mkfifo: {}", String::from_utf8_lossy(&out.stderr));
    ex.signal("HUP");
    // /metrics answers all along; the reload fails and says which file.
    let m = ex.wait_for("the FIFO reload to fail", |m| reload_ok(m) == 0.0).await;
    let shown = config.display().to_string();
    let log = ex.log();
    assert!(
        log.lines()
            .any(|l| l.contains(&shown) && l.contains("reload") && l.contains("not a regular file")),
        "no reload error naming {shown}\n{}",
        ex.stderr()
    );
    let p = m.probes("Healthy");
    ex.wait_for("probing after the FIFO reload", |m| m.probes("Healthy") > p)
        .await;
    for _ in 0..5 {
        let r = ex.get("/metrics").await;
        assert_eq!(r.status, 200, "{r:?}");
    }

    std::fs::remove_file(&config).expect("remove FIFO");
    std::fs::write(&config, &good).expect("write config");
    ex.signal("HUP");
    ex.wait_for("the reload of the regular file to succeed", |m| reload_ok(m) == 1.0)
        .await;
    ex.assert_running();
}

// ------------------------------------------------------------------------------------------
// 5. One deadline per probe
// ------------------------------------------------------------------------------------------

/// Tarpit servers on the same port of 127.0.0.1-4 (the port is retried until all four bind).
async fn tarpits_on_four_addresses() -> Vec<FaultServer> {
    let tarpit = || Behavior::Tarpit {
        byte_interval: Duration::from_millis(50),
    };
    for _ in 0..20 {
        let first = FaultServer::start(tarpit()).await.expect("tarpit");
        let port = first.addr().port();
        let mut all = vec![first];
        for last in 2..=4 {
            match FaultServer::start_on(SocketAddr::new(loopback(last), port), tarpit()).await {
                Ok(s) => all.push(s),
                Err(_) => break,
            }
        }
        if all.len() == 4 {
            return all;
        }
    }
    panic!("no port free on 127.0.0.1-4 after 20 tries");
}

#[tokio::test]
async fn one_deadline_for_four_slow_addresses() {
    let servers = tarpits_on_four_addresses().await;
    let port = servers[0].addr().port();
    let name = "tarpit.lab.test";
    let dns = serve_dns(crate::support::dns::host_zone(
        name,
        &(1..=4).map(|l| Ipv4Addr::new(127, 0, 0, l)).collect::<Vec<_>>(),
    ))
    .await;
    let host = format!("{name}:{port}");
    let dns_addr = dns.addr().to_string();
    let (json, v, text) = check_both(&[
        "--smart-host",
        &host,
        "--dns-server",
        &dns_addr,
        "--timeout",
        "1s",
        "--deadline",
        "2s",
    ])
    .await;
    assert_code(&v, "4.4.318", "read_timeout", "banner");
    assert_eq!(v["deadline_reached"], Value::Bool(true), "{v:#}");
    let not_reached = v["not_reached"].as_array().expect("not_reached");
    assert!(!not_reached.is_empty(), "{v:#}");
    let attempts = v["attempts"].as_array().expect("attempts");
    assert!(attempts.len() < 4, "every address tried within a 2 s deadline?\n{v:#}");
    assert_eq!(attempts.len() + not_reached.len(), 4, "{v:#}");
    for r in [&json, &text] {
        assert_no_control_bytes(r);
    }
}

#[tokio::test]
async fn one_deadline_for_twenty_names_whose_dns_never_answers() {
    let names: Vec<String> = (0..20).map(|i| format!("silent{i}.lab.test")).collect();
    let mut zone = Zone::new();
    for n in &names {
        zone.set_all(n, Answer::Silent);
    }
    let dns = serve_dns(zone).await;
    let dns_addr = dns.addr().to_string();
    let mut args: Vec<&str> = Vec::new();
    for n in &names {
        args.extend_from_slice(&["--smart-host", n]);
    }
    args.extend_from_slice(&["--dns-server", &dns_addr, "--timeout", "1s", "--deadline", "3s"]);
    let (json, v, text) = check_both(&args).await;
    assert_code(&v, "4.4.312", "dns_timeout", "dns");
    assert_eq!(v["deadline_reached"], Value::Bool(true), "{v:#}");
    assert!(dns.queries() >= 1, "the fake DNS was asked");
    for r in [&json, &text] {
        assert_no_control_bytes(r);
    }
}

// ------------------------------------------------------------------------------------------
// 6. An MX answer that keeps changing names
// ------------------------------------------------------------------------------------------

/// The MX of `domain` names `mx{n}`; every name used so far still has an address, so each
/// probe reaches a server whichever answer it got.
fn churn_zone(domain: &str, n: usize) -> Zone {
    let mut zone = Zone::new();
    zone.set(
        domain,
        Qtype::Mx,
        Answer::Records(vec![Record::Mx(10, format!("mx{n}.churn.lab.test"))]),
    );
    for i in 0..=n {
        crate::support::dns::a_loopback(&mut zone, &format!("mx{i}.churn.lab.test"));
    }
    zone
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_names_that_keep_changing_keep_the_host_label_bounded() {
    let server = smtp::plain().await;
    let domain = "churn.lab.test";
    let dns = Arc::new(serve_dns(churn_zone(domain, 0)).await);
    let scratch = Scratch::new("hostile-churn");
    let config = scratch.write(
        "mailflow.yaml",
        &format!(
            // The histograms are on: their series must stay bounded too.
            "{}metrics:\n  phase_histograms: true\n",
            config::file(
                FAST,
                Some(dns.addr()),
                &[config::mx("Churn", &[domain], server.addr().port(), "none")],
            )
        ),
    );
    let stop = CancellationToken::new();
    let churn = {
        let (dns, stop) = (dns.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            // Bounded: ends with the test, or after 120 renames.
            while n < 120 && !stop.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(300)).await;
                n += 1;
                dns.replace_zone(churn_zone(domain, n));
            }
        })
    };
    let mut ex = Exporter::serve(&scratch, &config, &[]).await;
    let probes = |m: &Metrics| {
        m.get(
            "mailflow_probe_duration_seconds_count",
            &[("connector", "Churn"), ("phase", "total")],
        )
        .unwrap_or(0.0)
    };
    let hosts = |m: &Metrics| -> BTreeSet<String> {
        m.all("mailflow_probes_total", &[("connector", "Churn")])
            .iter()
            .map(|s| s.label("host").to_string())
            .collect()
    };
    let seen = std::sync::Mutex::new(BTreeSet::new());
    let m = ex
        .wait_for_within(Duration::from_secs(40), "8 probes of Churn", |m| {
            // Checked on every scrape on the way, not only the last.
            let h = hosts(m);
            assert!(h.len() <= 3, "{} host labels: {h:?}\n{}", h.len(), m.text);
            seen.lock().unwrap().extend(h);
            probes(m) >= 8.0
        })
        .await;
    stop.cancel();
    let _ = churn.await;
    let h = hosts(&m);
    assert!((1..=3).contains(&h.len()), "{h:?}\n{}", m.text);
    // The names did change under the agent, and old ones were let go (else this shows nothing).
    let seen = seen.into_inner().unwrap();
    assert!(seen.len() > 3, "the host label only ever took {seen:?}");
    assert!(
        server.connections() >= 8,
        "only {} probes reached the server",
        server.connections()
    );
    ex.assert_running();
}

// ------------------------------------------------------------------------------------------
// 7. /probe?connector= amplification
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn probe_endpoint_bursts_do_not_multiply_connections() {
    let target = smtp::plain().await;
    let behind_disabled = smtp::plain().await;
    let refused = closed_port().expect("closed port");
    let scratch = Scratch::new("hostile-amplify");
    let disabled = config::at("Off", behind_disabled.addr()) + "    enabled: false\n";
    // A long interval: the scheduled probes (first one spread over the hour) stay out of the
    // way; "Failing" probes every second so the state file gets written.
    let text = format!(
        "defaults:\n  interval: 1h\n  timeout: 1s\n  helo: probe.lab.test\nconnectors:\n{}{}{}    interval: 1s\n",
        config::at("Burst", target.addr()),
        disabled,
        config::at("Failing", refused),
    );
    let config = scratch.write("mailflow.yaml", &text);
    let mut ex = Exporter::serve(&scratch, &config, &[]).await;
    ex.wait_probed(&["Failing"], 1.0).await;

    let before = target.connections();
    // 200 at once, from ten client addresses (each under the per-client connection limit).
    let addr = ex.addr;
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..200u8 {
        burst.spawn(async move {
            http::request_from(loopback(10 + i % 10), addr, "GET", "/probe?connector=Burst", None).await
        });
    }
    let mut statuses = Vec::new();
    let joined = tokio::time::timeout(HTTP_DEADLINE * 2, async {
        while let Some(r) = burst.join_next().await {
            statuses.push(r.expect("request task"));
        }
    })
    .await;
    assert!(joined.is_ok(), "the burst did not finish\n{}", ex.stderr());
    assert_eq!(statuses.len(), 200);
    for r in &statuses {
        let r = r.as_ref().unwrap_or_else(|e| panic!("{e}\n{}", ex.stderr()));
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            Metrics::parse(&r.body).value("mailflow_connector_up", &[("connector", "Burst")]),
            1.0
        );
    }
    let grew = target.connections() - before;
    assert!(grew <= 3, "200 requests opened {grew} SMTP connections");

    // A disabled connector: 409, never probed, nothing recorded.
    for _ in 0..5 {
        let r = ex.get("/probe?connector=Off").await;
        assert_eq!(r.status, 409, "{r:?}");
        let r = ex.get("/probe?connector=Off&format=json").await;
        assert_eq!(r.status, 409, "{r:?}");
    }
    assert_eq!(behind_disabled.connections(), 0, "the disabled connector was probed");
    let p = ex.scrape().await.probes("Failing");
    let m = ex.wait_for("Failing probed again", |m| m.probes("Failing") > p).await;
    for family in [
        "mailflow_probes_total",
        "mailflow_connector_up",
        "mailflow_connector_status",
        "mailflow_connector_last_probe_timestamp_seconds",
        "mailflow_probe_failures_total",
    ] {
        assert!(
            m.all(family, &[("connector", "Off")]).is_empty(),
            "{family} recorded for the disabled connector\n{}",
            m.text
        );
    }
    let state = scratch.path("data/queue-clock.json");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).expect("queue-clock.json written"))
        .expect("queue-clock.json is JSON");
    assert!(saved["connectors"]["Failing"].is_object(), "{saved:#}");
    assert!(saved["connectors"]["Off"].is_null(), "{saved:#}");
    assert_eq!(behind_disabled.connections(), 0);
    ex.assert_running();
}

// ------------------------------------------------------------------------------------------
// 8. STARTTLS leftovers are judged the same whatever the timing
// ------------------------------------------------------------------------------------------

async fn probe_early(bytes: &[u8], split: bool) -> mailflow_exporter::probe::ProbeReport {
    let server = FaultServer::start(Behavior::StarttlsEarly {
        bytes: bytes.to_vec(),
        split,
    })
    .await
    .expect("lab SMTP server starts");
    let mut spec = probe::spec(vec![probe::at(server.addr())], TlsSettings::EncryptionOnly);
    spec.timeout = Duration::from_secs(2);
    // IP literal: the (unused) DNS server is never asked.
    probe::probe(probe::opts(Some("127.0.0.1:9".parse().unwrap()), None), &spec).await
}

#[tokio::test]
async fn starttls_leftovers_are_judged_the_same_whatever_the_timing() {
    const ALERT: &[u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];
    for split in [false, true] {
        let r = probe_early(ALERT, split).await;
        probe::assert_fails(&r, Code::CannotConnect, Reason::TlsHandshakeFailed, Phase::TlsHandshake);
    }
    for split in [false, true] {
        let r = probe_early(b"250 injected\r\n", split).await;
        probe::assert_fails(&r, Code::CannotConnect, Reason::ProtocolError, Phase::Starttls);
        let a = &r.attempts[0];
        assert!(a.tls.is_none() && a.certificates.is_empty(), "split {split}: {a:?}");
    }
}

// ------------------------------------------------------------------------------------------
// 9. An MX exchange that is not a host name
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_invalid_mx_exchange_name_is_invalid_name() {
    let server = smtp::plain().await;
    for bad in ["-bad-.lab.test", "bad host.lab.test", "mx\u{1b}[31m.lab.test"] {
        let mut zone = Zone::new();
        zone.set(
            "invalid.lab.test",
            Qtype::Mx,
            Answer::Records(vec![Record::Mx(10, bad.into())]),
        );
        // Were the name used anyway, it would lead somewhere.
        crate::support::dns::a_loopback(&mut zone, bad);
        let dns = serve_dns(zone).await;
        let port = server.addr().port().to_string();
        let dns_addr = dns.addr().to_string();
        let (json, v, text) = check_both(&[
            "--domain",
            "invalid.lab.test",
            "--port",
            &port,
            "--dns-server",
            &dns_addr,
            "--timeout",
            "1s",
        ])
        .await;
        assert_code(&v, "4.4.312", "invalid_name", "dns");
        for r in [&json, &text] {
            assert_no_control_bytes(r);
        }
    }
    assert_eq!(server.connections(), 0, "an invalid exchange name was connected to");
}

// ------------------------------------------------------------------------------------------
// 10. A backslash sequence is not an escape sequence
// ------------------------------------------------------------------------------------------

/// The banner line of the JSON transcript of `check` against a server sending `banner`.
async fn banner_in_transcript(banner: &[u8]) -> (String, Run) {
    let server = FaultServer::start(Behavior::Garbage(banner.to_vec()))
        .await
        .expect("server");
    let target = server.addr().to_string();
    let (json, v, text) = check_both(&["--smart-host", &target, "--timeout", "1s"]).await;
    assert_code(&v, "4.4.318", "read_timeout", "ehlo");
    for r in [&json, &text] {
        assert_no_control_bytes(r);
    }
    let line = v["attempts"][0]["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .filter_map(Value::as_str)
        .find(|l| l.contains("220 mail"))
        .unwrap_or_else(|| panic!("no banner in the transcript\n{v:#}"))
        .to_string();
    (line, text)
}

#[tokio::test]
async fn a_literal_backslash_sequence_is_shown_apart_from_a_real_escape() {
    let (literal, literal_text) = banner_in_transcript(b"220 mail \\x1b[31m\r\n").await;
    let (real, real_text) = banner_in_transcript(b"220 mail \x1b[31m\r\n").await;
    assert_ne!(literal, real, "a literal \\x1b and a real ESC look alike");
    // The real ESC is spelled \x1b; the literal backslash is doubled.
    assert!(real.contains(r"mail \x1b[31m"), "{real:?}");
    assert!(literal.contains(r"mail \\x1b[31m"), "{literal:?}");
    assert!(!real.contains(r"\\x1b"), "{real:?}");
    assert!(literal_text.stdout().contains(r"\\x1b[31m"), "{}", literal_text.dump());
    assert!(!real_text.stdout().contains(r"\\x1b[31m"), "{}", real_text.dump());
}

// ------------------------------------------------------------------------------------------
// 11. JSON logs carry each key once
// ------------------------------------------------------------------------------------------

/// Deserializes any JSON value and fails on a key repeated within one object (serde_json's
/// `Value` would silently keep the last one).
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeysVisitor)
    }
}

struct NoDuplicateKeysVisitor;

impl<'de> Visitor<'de> for NoDuplicateKeysVisitor {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<NoDuplicateKeys, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoDuplicateKeys, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoDuplicateKeys, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoDuplicateKeys, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoDuplicateKeys, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_unit<E>(self) -> Result<NoDuplicateKeys, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicateKeys, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(NoDuplicateKeys)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoDuplicateKeys, A::Error> {
        let mut seen = HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            if !seen.insert(k.clone()) {
                return Err(de::Error::custom(format!("key {k:?} twice")));
            }
            map.next_value::<NoDuplicateKeys>()?;
        }
        Ok(NoDuplicateKeys)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_each_key_once() {
    let refused = closed_port().expect("closed port");
    let scratch = Scratch::new("hostile-jsonlog");
    let config = scratch.write(
        "mailflow.yaml",
        &config::file(FAST, None, &[config::at("Refused", refused)]),
    );
    let mut ex = Exporter::serve(&scratch, &config, &["--log.format", "json"]).await;
    ex.wait_probed(&["Refused"], 2.0).await;
    // A failed reload logs an error with its own fields too.
    std::fs::write(&config, "connectors: [oops\n").expect("write config");
    ex.signal("HUP");
    ex.wait_for("the reload to fail", |m| reload_ok(m) == 0.0).await;
    let log = ex.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.iter().any(|l| l.contains("probe failed")),
        "no failed probe logged\n{log}"
    );
    assert!(
        lines.iter().any(|l| l.contains("reload")),
        "no reload error logged\n{log}"
    );
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{log}"));
        assert!(v.is_object(), "{l}");
        if let Err(e) = serde_json::from_str::<NoDuplicateKeys>(l) {
            panic!("{e}: {l}\n--- whole log ---\n{log}");
        }
    }
}

// ------------------------------------------------------------------------------------------
// 12. Two agents on one storage path
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_on_the_same_storage_path_is_refused() {
    let server = smtp::plain().await;
    let scratch = Scratch::new("hostile-two-agents");
    let config = scratch.write(
        "mailflow.yaml",
        &config::file(FAST, None, &[config::at("Healthy", server.addr())]),
    );
    let mut first = Exporter::serve(&scratch, &config, &[]).await;
    first.wait_probed(&["Healthy"], 1.0).await;
    let listen = free_port().to_string();
    let storage = s(&first.storage);
    let r = run(
        &[
            "serve",
            "--config.file",
            &s(&config),
            "--web.listen-address",
            &listen,
            "--storage.path",
            &storage,
        ],
        REFUSE_DEADLINE,
    )
    .await;
    r.assert_exit(2);
    assert!(r.stderr.contains("in use"), "{}", r.dump());
    assert!(r.stderr.contains(&storage), "{}", r.dump());
    // The first one is untouched.
    first.assert_running();
    let p = first.scrape().await.probes("Healthy");
    first
        .wait_for("the first agent still probing", |m| m.probes("Healthy") > p)
        .await;
}

// ------------------------------------------------------------------------------------------
// 13. Servers that drip, flood, stall, garble or hang up
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_that_drip_flood_stall_garble_or_hang_up() {
    let hang_up = |at, reset| Behavior::HangUp { at, reset };
    let cases: Vec<(&str, Behavior, &str, [&str; 3])> = vec![
        (
            "10 MB banner without newline",
            Behavior::HugeLine { len: 10 * 1024 * 1024 },
            "none",
            ["4.4.317", "protocol_error", "banner"],
        ),
        (
            "never-ending multiline banner",
            Behavior::Tarpit {
                byte_interval: Duration::from_millis(1),
            },
            "none",
            ["4.4.318", "read_timeout", "banner"],
        ),
        (
            "silence",
            Behavior::Silent,
            "none",
            ["4.4.318", "read_timeout", "banner"],
        ),
        (
            "SSH",
            Behavior::Garbage(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n".to_vec()),
            "none",
            ["4.4.317", "protocol_error", "banner"],
        ),
        (
            "HTTP",
            Behavior::Garbage(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_vec()),
            "none",
            ["4.4.317", "protocol_error", "banner"],
        ),
        (
            "binary garble",
            Behavior::Garbage(b"\x00\x01\x02\xff\xfe\x1b[2J\x07\x7f garble\r\n".to_vec()),
            "none",
            ["4.4.317", "protocol_error", "banner"],
        ),
        (
            "FIN at connect",
            Behavior::CloseAtConnect,
            "none",
            ["4.4.318", "closed", "banner"],
        ),
        (
            "FIN at EHLO",
            Behavior::CloseAfterBanner,
            "none",
            ["4.4.318", "closed", "ehlo"],
        ),
        (
            "RST at EHLO",
            Behavior::ResetAfterEhlo,
            "none",
            ["4.4.318", "reset", "ehlo"],
        ),
        (
            "FIN at STARTTLS",
            hang_up(HangUpAt::Starttls, false),
            "encryption-only",
            ["4.4.318", "closed", "starttls"],
        ),
        (
            "RST at STARTTLS",
            hang_up(HangUpAt::Starttls, true),
            "encryption-only",
            ["4.4.318", "reset", "starttls"],
        ),
        (
            "FIN in the handshake",
            hang_up(HangUpAt::TlsHandshake, false),
            "encryption-only",
            ["4.4.318", "closed", "tls_handshake"],
        ),
        (
            "RST in the handshake",
            hang_up(HangUpAt::TlsHandshake, true),
            "encryption-only",
            ["4.4.318", "reset", "tls_handshake"],
        ),
        (
            "fatal alert in the handshake",
            Behavior::TlsAlert(40),
            "encryption-only",
            ["4.4.317", "tls_handshake_failed", "tls_handshake"],
        ),
        (
            "FIN at EHLO inside TLS",
            hang_up(HangUpAt::EhloTls, false),
            "encryption-only",
            ["4.4.318", "closed", "ehlo_tls"],
        ),
        (
            "RST at EHLO inside TLS",
            hang_up(HangUpAt::EhloTls, true),
            "encryption-only",
            ["4.4.318", "reset", "ehlo_tls"],
        ),
    ];
    let mut runs = Vec::new();
    for (what, behavior, tls, want) in cases {
        let server = FaultServer::start(behavior).await.expect("server");
        runs.push(async move {
            let target = server.addr().to_string();
            let (json, v, text) =
                check_both(&["--smart-host", &target, "--timeout", "1s", "--tls-settings", tls]).await;
            drop(server);
            (what, want, json, v, text)
        });
    }
    let mut wrong = Vec::new();
    for (what, want, json, v, text) in futures_util::future::join_all(runs).await {
        for r in [&json, &text] {
            assert_no_control_bytes(r);
        }
        let got = [&v["code"], &v["reason"], &v["phase"]].map(|x| x.as_str().unwrap_or("-").to_string());
        if got != want {
            wrong.push(format!("{what}: want {want:?}, got {got:?}\n{v:#}"));
        }
        let out = text.stdout();
        assert!(
            out.contains("NOT DELIVERED") && out.contains(want[0]),
            "{what}\n{}",
            text.dump()
        );
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A reset right after the handshake is 4.4.318 `reset`, also when it lands before the prober
/// has looked at its new socket (likely on a busy machine, so the check runs many times at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reset_right_after_connect_is_4_4_318_reset_however_early_it_lands() {
    let server = FaultServer::start(Behavior::ResetAtConnect).await.expect("server");
    let target = server.addr().to_string();
    let runs: Vec<_> = (0..24)
        .map(|_| {
            let target = target.clone();
            async move { check_both(&["--smart-host", &target, "--timeout", "1s"]).await }
        })
        .collect();
    let mut wrong = Vec::new();
    for (json, v, text) in futures_util::future::join_all(runs).await {
        for r in [&json, &text] {
            assert_no_control_bytes(r);
        }
        let got = [&v["code"], &v["reason"]].map(|x| x.as_str().unwrap_or("-").to_string());
        if got != ["4.4.318", "reset"] {
            wrong.push(format!("{got:?}: {}", v["message"]));
        }
    }
    assert!(wrong.is_empty(), "{} of 24 runs:\n{}", wrong.len(), wrong.join("\n"));
}
