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
