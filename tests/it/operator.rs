//! What an operator's stack drives: `healthcheck` (container health checks), `serve
//! --config.check` (validate before rollout), `--web.telemetry-path`, and the standard
//! `process_*` metrics and build info.

use crate::support::config;
use crate::support::process::{Exporter, run};
use crate::support::scratch::Scratch;
use crate::support::smtp;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn healthcheck_answers_for_a_running_agent_and_fails_without_one() {
    let scratch = Scratch::new("healthcheck");
    let server = smtp::plain().await;
    let cfg = scratch.write(
        "mailflow.yaml",
        &config::file(config::FAST, None, &[config::at("A", server.addr())]),
    );
    let mut ex = Exporter::serve(&scratch, &cfg, &[]).await;
    let addr = ex.addr.to_string();
    let r = run(&["healthcheck", "--web.listen-address", &addr], DEADLINE).await;
    r.assert_exit(0);
    assert!(r.stdout().contains("healthy"), "{}", r.dump());
    // `:PORT` (all interfaces, as serve takes it) means this machine.
    let r = run(
        &["healthcheck", "--web.listen-address", &format!(":{}", ex.addr.port())],
        DEADLINE,
    )
    .await;
    r.assert_exit(0);
    ex.terminate().await;
    let r = run(
        &["healthcheck", "--web.listen-address", &addr, "--timeout", "1s"],
        DEADLINE,
    )
    .await;
    r.assert_exit(1);
}

#[tokio::test]
async fn config_check_validates_without_probing() {
    let scratch = Scratch::new("config-check");
    let server = smtp::plain().await;
    let good = scratch.write(
        "good.yaml",
        &config::file(config::FAST, None, &[config::at("A", server.addr())]),
    );
    let storage = scratch.path("data").display().to_string();
    let r = run(
        &[
            "serve",
            "--config.file",
            &good.display().to_string(),
            "--config.check",
            "--storage.path",
            &storage,
        ],
        DEADLINE,
    )
    .await;
    r.assert_exit(0);
    assert!(r.stdout().contains("ok, 1 connector(s), 1 enabled"), "{}", r.dump());
    assert_eq!(server.connections(), 0, "nothing is probed");
    let bad = scratch.write(
        "bad.yaml",
        "connectors:\n  - name: a\n    recipient_domains: [a.test]\n    interval: 2s\n    timeout: 3s\n",
    );
    let r = run(
        &["serve", "--config.file", &bad.display().to_string(), "--config.check"],
        DEADLINE,
    )
    .await;
    r.assert_usage_error(&["bad.yaml:5:", "connectors[0].timeout"]);
}

#[tokio::test]
async fn telemetry_path_process_metrics_and_build_info() {
    let scratch = Scratch::new("telemetry");
    let server = smtp::plain().await;
    let cfg = scratch.write(
        "mailflow.yaml",
        &config::file(config::FAST, None, &[config::at("A", server.addr())]),
    );
    let ex = Exporter::serve(&scratch, &cfg, &["--web.telemetry-path", "/custom/metrics"]).await;
    let r = ex.get("/custom/metrics").await;
    assert_eq!(r.status, 200, "{r:?}");
    for name in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(r.body.lines().any(|l| l.starts_with(name)), "{name} missing");
    }
    let info = r
        .body
        .lines()
        .find(|l| l.starts_with("mailflow_build_info{"))
        .unwrap_or_default()
        .to_string();
    for label in ["version=\"", "revision=\"", "rustc=\"", "target=\""] {
        assert!(info.contains(label), "{label} in {info}");
    }
    assert_eq!(ex.get("/metrics").await.status, 404, "the default path is gone");
    let bad = run(
        &["serve", "--config.file", "x", "--web.telemetry-path", "/probe"],
        DEADLINE,
    )
    .await;
    bad.assert_exit(2);
}

/// The config file is watched: a change applies without a signal, a ConfigMap-style symlink
/// swap counts as a change, and a broken file is reported once and leaves the running config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_apply_without_a_restart() {
    let scratch = Scratch::new("watch");
    let server = smtp::plain().await;
    let file = |names: &[&str]| {
        let conns: Vec<String> = names.iter().map(|n| config::at(n, server.addr())).collect();
        config::file(config::FAST, None, &conns)
    };
    // As Kubernetes mounts a ConfigMap: mailflow.yaml -> ..data/mailflow.yaml, ..data -> a
    // timestamped directory that an update replaces.
    let v1 = scratch.path("v1");
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::write(v1.join("mailflow.yaml"), file(&["A"])).unwrap();
    std::os::unix::fs::symlink("v1", scratch.path("..data")).unwrap();
    let cfg = scratch.path("mailflow.yaml");
    std::os::unix::fs::symlink("..data/mailflow.yaml", &cfg).unwrap();
    let mut ex = Exporter::serve(&scratch, &cfg, &["--config.watch-interval", "200ms"]).await;
    ex.wait_probed(&["A"], 1.0).await;

    // 1. Rewritten in place (an editor, a config management run).
    std::fs::write(v1.join("mailflow.yaml"), file(&["A", "B"])).unwrap();
    ex.wait_probed(&["A", "B"], 1.0).await;

    // 2. The ConfigMap update: a new directory, then an atomic swap of ..data.
    let v2 = scratch.path("v2");
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::write(v2.join("mailflow.yaml"), file(&["A", "B", "C"])).unwrap();
    std::os::unix::fs::symlink("v2", scratch.path("..data_tmp")).unwrap();
    std::fs::rename(scratch.path("..data_tmp"), scratch.path("..data")).unwrap();
    let m = ex.wait_probed(&["A", "B", "C"], 1.0).await;
    assert_eq!(m.value("mailflow_config_last_reload_successful", &[]), 1.0);

    // 3. A broken file: reported, not applied, not retried until it changes again.
    std::fs::write(v2.join("mailflow.yaml"), "connectors:\n  - name: [\n").unwrap();
    let m = ex
        .wait_for("the failed reload", |m| {
            m.get("mailflow_config_last_reload_successful", &[]) == Some(0.0)
        })
        .await;
    assert!(m.get("mailflow_connector_up", &[("connector", "C")]).is_some());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let failures = ex.log().matches("config reload failed").count();
    assert_eq!(failures, 1, "one report per change of the file\n{}", ex.log());
    ex.wait_probed(&["C"], m.probes("C") + 1.0).await;
    ex.assert_running();
    ex.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_can_be_turned_off_and_is_bounded() {
    let scratch = Scratch::new("watch-off");
    let server = smtp::plain().await;
    let cfg = scratch.write(
        "mailflow.yaml",
        &config::file(config::FAST, None, &[config::at("A", server.addr())]),
    );
    let mut ex = Exporter::serve(&scratch, &cfg, &["--config.watch-interval", "0s"]).await;
    ex.wait_probed(&["A"], 1.0).await;
    std::fs::write(
        &cfg,
        config::file(
            config::FAST,
            None,
            &[config::at("A", server.addr()), config::at("B", server.addr())],
        ),
    )
    .unwrap();
    let m = ex.wait_probed(&["A"], 4.0).await;
    assert!(
        m.get("mailflow_connector_up", &[("connector", "B")]).is_none(),
        "not watched: B waits for SIGHUP"
    );
    ex.signal("HUP");
    ex.wait_probed(&["B"], 1.0).await;
    ex.terminate().await;
    let r = run(
        &["serve", "--config.file", "x", "--config.watch-interval", "1ms"],
        DEADLINE,
    )
    .await;
    r.assert_usage_error(&["--config.watch-interval", "100ms and 1h"]);
}

/// The agent's own faults, apart from the partners': its resolver and its outbound connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_check_tells_the_agents_faults_from_the_partners() {
    use crate::support::dns::{LAB_HOST, lab_dns};
    let scratch = Scratch::new("self-check");
    let server = smtp::plain().await;
    let dns = lab_dns().await;
    let port = server.addr().port();
    // Nothing listens on these loopback addresses: every connect is refused at once.
    let closed: Vec<String> = (2..=4)
        .map(|i| config::smart_host(&format!("Closed {i}"), &format!("127.0.0.{i}"), port, "none"))
        .collect();
    let cfg = scratch.write("mailflow.yaml", &config::file(config::FAST, Some(dns.addr()), &closed));
    let mut ex = Exporter::serve(&scratch, &cfg, &["--config.watch-interval", "200ms"]).await;
    let check =
        |m: &crate::support::metrics::Metrics, c: &str| m.get("mailflow_self_check_successful", &[("check", c)]);
    let m = ex
        .wait_for("port 25 judged blocked", |m| check(m, "outbound_port_25") == Some(0.0))
        .await;
    assert_eq!(check(&m, "dns"), None, "IP smart hosts only: no resolver to check");

    // One partner that answers: the agent can connect out, the others are the partners' fault;
    // a smart host by name brings the resolver check.
    let mut conns = closed.clone();
    conns.push(config::smart_host("By name", LAB_HOST, port, "none"));
    std::fs::write(&cfg, config::file(config::FAST, Some(dns.addr()), &conns)).unwrap();
    let m = ex
        .wait_for("port 25 fine and the resolver answering", |m| {
            check(m, "outbound_port_25") == Some(1.0) && check(m, "dns") == Some(1.0)
        })
        .await;
    assert_eq!(m.value("mailflow_connector_up", &[("connector", "By name")]), 1.0);

    // The resolver goes away (a loopback port where nothing answers).
    let silent = crate::support::net::free_port();
    let udp_silent = std::net::UdpSocket::bind(silent).ok(); // bound, never read: no answer, no ICMP
    std::fs::write(&cfg, config::file(config::FAST, Some(silent), &conns)).unwrap();
    ex.wait_for_within(Duration::from_secs(60), "the resolver judged unreachable", |m| {
        check(m, "dns") == Some(0.0)
    })
    .await;
    drop(udp_silent);
    ex.terminate().await;
}
