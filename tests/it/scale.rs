//! Scale-out: agents sharded with `--shard INDEX/COUNT` split the connectors so that each is
//! probed by exactly one of them, the same way Prometheus' `hashmod` would split `/probe`
//! targets; a `/probe` for another shard's connector says which shard has it.

use crate::support::config;
use crate::support::process::{Exporter, run};
use crate::support::scratch::Scratch;
use crate::support::smtp;
use md5::{Digest, Md5};
use std::collections::BTreeSet;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

/// Prometheus' hashmod, written out here from its definition (not the agent's code).
fn prometheus_hashmod(value: &str, modulus: u64) -> u64 {
    let d = Md5::digest(value.as_bytes());
    let tail: [u8; 8] = d[8..16].try_into().unwrap();
    u64::from_be_bytes(tail) % modulus
}

fn probed(m: &crate::support::metrics::Metrics) -> BTreeSet<String> {
    m.all("mailflow_connector_up", &[])
        .iter()
        .map(|s| s.label("connector").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_probe_every_connector_exactly_once() {
    let server = smtp::plain().await;
    let names: Vec<String> = (0..12).map(|i| format!("Partner {i}")).collect();
    let conns: Vec<String> = names.iter().map(|n| config::at(n, server.addr())).collect();
    let mut agents = Vec::new();
    let mut seen = Vec::new();
    for index in 0..2 {
        let scratch = Scratch::new(&format!("shard-{index}"));
        let cfg = scratch.write("mailflow.yaml", &config::file(config::FAST, None, &conns));
        let shard = format!("{index}/2");
        let mut ex = Exporter::serve(&scratch, &cfg, &["--shard", &shard]).await;
        let want: BTreeSet<String> = names
            .iter()
            .filter(|n| prometheus_hashmod(n, 2) == index)
            .cloned()
            .collect();
        assert!(
            !want.is_empty() && want.len() < names.len(),
            "a split of 12 names: {want:?}"
        );
        let wanted: Vec<&str> = want.iter().map(String::as_str).collect();
        let m = ex.wait_probed(&wanted, 2.0).await;
        assert_eq!(
            probed(&m),
            want,
            "shard {shard} probes its hashmod share and nothing else"
        );
        // The status page says what this agent covers.
        let page = ex.get("/").await;
        assert!(
            page.body.contains(&format!(
                "shard {shard}: this agent probes {} of 12 connectors",
                want.len()
            )),
            "{}",
            page.body
        );
        seen.push(want);
        agents.push((ex, scratch));
    }
    let all: BTreeSet<String> = names.iter().cloned().collect();
    assert!(seen[0].is_disjoint(&seen[1]));
    assert_eq!(&seen[0] | &seen[1], all, "together the shards cover every connector");

    // /probe: this shard's connector is probed; another's is a 404 naming its shard.
    let (ex0, _) = &agents[0];
    let mine = seen[0].iter().next().unwrap();
    let theirs = seen[1].iter().next().unwrap();
    let r = ex0
        .get(&format!("/probe?connector={}", crate::support::http::enc(mine)))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = ex0
        .get(&format!("/probe?connector={}", crate::support::http::enc(theirs)))
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    assert!(
        r.body.contains("is probed by shard 1/2; this agent is shard 0/2"),
        "{}",
        r.body
    );
    let r = ex0.get("/probe?connector=Nobody").await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("unknown connector"), "{}", r.body);

    for (mut ex, _) in agents {
        ex.terminate().await;
    }
}

#[tokio::test]
async fn bad_shards_are_refused_at_start() {
    let scratch = Scratch::new("shard-bad");
    let server = smtp::plain().await;
    let cfg = scratch.write(
        "mailflow.yaml",
        &config::file(config::FAST, None, &[config::at("A", server.addr())]),
    );
    let cfg = cfg.display().to_string();
    for (shard, needle) in [
        ("2/2", "INDEX 2 is not below COUNT 2"),
        ("0/0", "COUNT must be 1 to 1024"),
        ("half", "expected INDEX/COUNT"),
    ] {
        let r = run(&["serve", "--config.file", &cfg, "--shard", shard], DEADLINE).await;
        r.assert_usage_error(&["--shard", needle]);
    }
    // The environment variable is read too (a StatefulSet can set it).
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mailflow-exporter"));
    cmd.args(["serve", "--config.file", &cfg]).env("MAILFLOW_SHARD", "5/2");
    let out = crate::support::process::run_with_deadline(cmd, b"", DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("INDEX 5 is not below COUNT 2"), "{stderr}");
    assert_eq!(server.connections(), 0);
}

/// Prometheus schedules: nothing is probed until `/probe?connector=` asks, and `/metrics` shows
/// what those probes found (the queue clock included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_only_probes_when_asked() {
    let scratch = Scratch::new("on-demand");
    let server = smtp::plain().await;
    let refused = mailflow_exporter::lab::smtp::closed_port().unwrap();
    let cfg = scratch.write(
        "mailflow.yaml",
        &config::file(
            config::FAST,
            None,
            &[config::at("A", server.addr()), config::at("Down", refused)],
        ),
    );
    let mut ex = Exporter::serve(&scratch, &cfg, &["--probe.on-demand-only"]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(server.connections(), 0, "three intervals, no scheduled probe");
    let m = ex.scrape().await;
    assert_eq!(m.probes("A"), 0.0);
    let r = ex.get("/probe?connector=A").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body.contains("mailflow_connector_up{connector=\"A\"} 1"),
        "{}",
        r.body
    );
    assert_eq!(server.connections(), 1);
    let r = ex.get("/probe?connector=Down").await;
    assert!(r.body.contains("code=\"4.4.316\""), "{}", r.body);
    let m = ex.scrape().await;
    assert_eq!(m.probes("A"), 1.0);
    assert_eq!(m.status("Down", "4.4.316"), Some(1.0));
    assert!(
        m.value(
            "mailflow_connector_failing_since_timestamp_seconds",
            &[("connector", "Down")]
        ) > 0.0
    );
    ex.terminate().await;
}
