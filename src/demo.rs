//! `mailflow-exporter demo`: the built-in fault lab, diagnosed. Shows every code in seconds
//! without touching anything but loopback.

use crate::check::parse_duration;
use crate::lab::scenarios::Lab;
use crate::probe::Prober;
use std::fmt::Write as _;
use std::time::Duration;

#[derive(Debug, clap::Args, Clone)]
pub struct DemoArgs {
    /// Per-step deadline for the demo probes (the connect-timeout case waits this long).
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub timeout: Duration,
    /// Print every report as JSON (one object per line) instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let lab = Lab::start(args.timeout).await.map_err(anyhow::Error::msg)?;
    let prober = Prober::new(lab.prober_options()).map_err(anyhow::Error::msg)?;
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
    if args.json {
        if mismatches > 0 {
            anyhow::bail!("{mismatches} scenario(s) were not diagnosed as expected");
        }
        return Ok(());
    }
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
        "\nFix texts: mailflow-exporter check --help, or run a scenario yourself, e.g.:"
    );
    let _ = writeln!(
        o,
        "  mailflow-exporter check --smart-host 127.0.0.1:<port> --tls-settings encryption-only"
    );
    print!("{o}");
    if mismatches > 0 {
        anyhow::bail!("{mismatches} scenario(s) were not diagnosed as expected");
    }
    Ok(())
}
