//! `mailflow-exporter demo`: the built-in fault lab. By default it runs the real agent (metrics
//! and status page) over loopback servers that each fail one way; `--once` prints one table of
//! diagnoses and exits. Nothing but loopback is touched.

use super::args;
use super::serve::{LogFormat, ServeArgs};
use crate::config::{Routing, TlsSettings};
use crate::lab::scenarios::Lab;
use crate::lab::tenant::{FakeTenant, Scenario as TenantScenario};
use crate::probe::Prober;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args, Clone)]
pub struct DemoArgs {
    /// Print one table of diagnoses and exit instead of serving the agent.
    #[arg(long)]
    pub once: bool,
    /// With --once: print every report as JSON (one object per line) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Per-step deadline for the demo probes (the connect-timeout case waits this long).
    #[arg(long, value_parser = args::step_timeout, default_value = "2s")]
    pub timeout: Duration,
    /// Probe interval of the demo connectors.
    #[arg(long, value_parser = args::interval, default_value = "10s")]
    pub interval: Duration,
    /// Where the demo agent listens.
    #[arg(long = "web.listen-address", default_value = "127.0.0.1:10325")]
    pub listen: String,
    /// Stop the served demo after this long (default: run until Ctrl-C).
    #[arg(long = "exit-after", value_parser = args::interval)]
    pub exit_after: Option<Duration>,
    /// Directory for the demo's config and state (default: a fresh temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub async fn main(args: &DemoArgs) -> ExitCode {
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

pub async fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let lab = Lab::start(args.timeout).await?;
    if args.once {
        return once(args, &lab).await;
    }
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("mailflow-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    // A fake Microsoft 365 tenant on loopback, so the page shows Exchange Online's own view too.
    let tenant = FakeTenant::start(demo_tenant()).await?;
    let config = write_config(&lab, &tenant, &dir, args)?;
    let serve = ServeArgs {
        config_file: config.clone(),
        listen: args.listen.clone(),
        log_format: LogFormat::Text,
        log_level: "info".into(),
        storage_path: dir.join("data"),
        enable_adhoc_probes: false,
        // The demo listens on loopback by default; reloading its generated config is harmless.
        enable_lifecycle: true,
        probe_max_age: Duration::from_secs(5),
        web_config_file: None,
        telemetry_path: "/metrics".into(),
        config_check: false,
        shard: None,
        on_demand_only: false,
        config_watch_interval: Duration::from_secs(10),
    };
    let url = format!("http://{}/", args.listen.replace("0.0.0.0", "127.0.0.1"));
    eprintln!(
        "mailflow-exporter demo: {} connectors over built-in loopback fault servers, and a fake tenant (Exchange Online's view) at {}\n  status page  {url}\n  metrics      {url}metrics\n  config       {}\nEvery code shows up within ~{}s. Ctrl-C to stop.",
        lab.scenarios.len(),
        tenant.url(),
        config.display(),
        args.interval.as_secs() + args.timeout.as_secs() + 1
    );
    let note = Some(format!("demo: loopback fault servers, config {}", config.display()));
    let fut = crate::cli::serve::run(&serve, note, Some(Duration::from_secs(1)));
    match args.exit_after {
        Some(d) => {
            tokio::select! {
                r = fut => r?,
                _ = tokio::time::sleep(d) => {}
            }
        }
        None => fut.await?,
    }
    Ok(())
}

/// The demo connector's own recipient domain, so Microsoft's queue can be told apart per
/// connector (`healthy.demo.test`, …).
fn demo_domain(scenario: &str) -> String {
    format!("{scenario}.{}", crate::lab::scenarios::DOMAIN)
}

/// What the fake tenant holds: mail for the healthy connector (the probe delivers, Microsoft is
/// refused: the firewall case), for the refused one whose domain is still InternalRelay (the
/// migrated case), and a queue no connector matches.
fn demo_tenant() -> TenantScenario {
    use crate::lab::tenant::REASON_REFUSED;
    TenantScenario::new()
        .pending(
            &demo_domain("healthy"),
            4,
            Duration::from_secs(50 * 60),
            Some(REASON_REFUSED),
        )
        .pending(
            &demo_domain("refused"),
            12,
            Duration::from_secs(5 * 3600),
            Some(REASON_REFUSED),
        )
        .pending("elsewhere.example", 2, Duration::from_secs(20 * 60), None)
        .with_status(&demo_domain("healthy"), 3, Duration::from_secs(2 * 3600), "Delivered")
        .accepted_domain(&demo_domain("refused"), "InternalRelay")
        .accepted_domain(&demo_domain("healthy"), "Authoritative")
        .message_expiration(serde_json::json!("1.00:00:00"))
}

/// The lab as an ordinary config file, so the demo runs exactly the code path users run.
fn write_config(lab: &Lab, tenant: &FakeTenant, dir: &Path, args: &DemoArgs) -> anyhow::Result<PathBuf> {
    let ca = dir.join("lab-ca.pem");
    std::fs::write(&ca, lab.pki.ca.cert_pem())?;
    let tenant_ca = dir.join("lab-tenant-ca.pem");
    std::fs::write(&tenant_ca, tenant.ca_pem())?;
    let secret = dir.join("tenant-secret.txt");
    std::fs::write(&secret, crate::lab::tenant::CLIENT_SECRET)?;
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# Generated by `mailflow-exporter demo`: loopback fault servers, one per code."
    );
    let _ = writeln!(
        y,
        "defaults: {{ interval: {}s, timeout: {}ms, helo: probe.demo.test, message_expiration: 24h }}",
        args.interval.as_secs(),
        args.timeout.as_millis()
    );
    let _ = writeln!(y, "dns: {{ servers: [\"{}\"] }}", lab.dns.addr());
    let _ = writeln!(
        y,
        "trust: {{ extra_ca_files: [\"{}\", \"{}\"] }}",
        ca.display(),
        tenant_ca.display()
    );
    let _ = writeln!(y, "tenant:");
    let _ = writeln!(y, "  tenant_id: {}", crate::lab::tenant::TENANT_ID);
    let _ = writeln!(y, "  client_id: {}", crate::lab::tenant::CLIENT_ID);
    let _ = writeln!(y, "  client_secret_file: \"{}\"", secret.display());
    for key in ["login_url", "graph_url", "exchange_url"] {
        let _ = writeln!(y, "  {key}: {}", tenant.url());
    }
    let _ = writeln!(y, "  poll_interval: {}s", args.interval.as_secs().max(5));
    let _ = writeln!(y, "  sync: true");
    let _ = writeln!(y, "  sync_interval: 60s");
    let _ = writeln!(y, "connectors:");
    for s in &lab.scenarios {
        let Routing::SmartHosts(hosts) = &s.spec.routing else {
            continue;
        };
        let Some(h) = hosts.first() else { continue };
        let _ = writeln!(y, "  - name: \"{}\"", s.spec.connector);
        let _ = writeln!(y, "    comment: \"{}\"", s.what);
        let _ = writeln!(y, "    use_mx_record: false");
        let _ = writeln!(y, "    smart_hosts: [\"{}\"]", h.host);
        let _ = writeln!(y, "    port: {}", h.port.unwrap_or(25));
        let _ = writeln!(y, "    recipient_domains: [\"{}\"]", demo_domain(s.name));
        let _ = writeln!(y, "    tls_settings: {}", s.spec.tls_settings);
        if let (TlsSettings::DomainValidation, Some(d)) = (s.spec.tls_settings, &s.spec.tls_domain) {
            let _ = writeln!(y, "    tls_domain: \"{d}\"");
        }
    }
    let path = dir.join("demo.yaml");
    std::fs::write(&path, y)?;
    Ok(path)
}

async fn once(args: &DemoArgs, lab: &Lab) -> anyhow::Result<()> {
    let prober = Prober::new(lab.prober_options())?;
    let mut rows = Vec::new();
    let mut mismatches = 0;
    for s in &lab.scenarios {
        let r = prober.probe(&s.spec).await;
        if args.json {
            println!("{}", serde_json::to_string(&r)?);
        }
        if r.code != s.expect {
            mismatches += 1;
        }
        rows.push((s, r));
    }
    if !args.json {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "mailflow-exporter demo: built-in loopback servers, each failing one way (DNS {})\n",
            lab.dns.addr()
        );
        let _ = writeln!(
            o,
            "{:<10} {:<9} {:<21} {:<14} WHAT THE SERVER DOES / WHAT EXCHANGE ONLINE WOULD SAY",
            "SCENARIO", "CODE", "REASON", "PHASE"
        );
        for (s, r) in &rows {
            let code = r.code.map(|c| c.as_str()).unwrap_or("ok");
            let mark = if r.code == s.expect { "" } else { "  <-- unexpected" };
            let _ = writeln!(
                o,
                "{:<10} {:<9} {:<21} {:<14} {}{}",
                s.name,
                code,
                r.reason.map(|x| x.as_str()).unwrap_or("-"),
                r.phase.map(|p| p.as_str()).unwrap_or("-"),
                s.what,
                mark
            );
            let _ = writeln!(o, "{:<57}{}", "", r.message);
        }
        let _ = writeln!(
            o,
            "\nRun `mailflow-exporter demo` (without --once) to see the agent, its metrics and status page."
        );
        print!("{o}");
    }
    if mismatches > 0 {
        anyhow::bail!("{mismatches} scenario(s) were not diagnosed as expected");
    }
    Ok(())
}
