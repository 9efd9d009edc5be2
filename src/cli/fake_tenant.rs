//! `mailflow-exporter fake-tenant` (hidden): the loopback fake of Microsoft's endpoints as a
//! process of its own, so the end-to-end lab can give the agent a tenant without an account.
//! Loopback only; it writes its URL, CA and the client secret it accepts into `--dir`.

use crate::lab::tenant::{self, FakeTenant, Scenario};
use clap::Args;
use serde::Deserialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args, Clone)]
pub struct FakeTenantArgs {
    /// Where to write `url`, `ca.pem` and `secret.txt`.
    #[arg(long)]
    pub dir: PathBuf,
    /// A JSON scenario (see tests/lab/tenant.json), or `demo`.
    #[arg(long, default_value = "demo")]
    pub scenario: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    pending: Vec<Pending>,
    #[serde(default)]
    accepted_domains: Vec<Accepted>,
    #[serde(default)]
    message_expiration: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pending {
    domain: String,
    count: usize,
    age_minutes: u64,
    /// `refused`, `subject_mismatch`, `starttls_required`, `tls_failed`, a literal reason line,
    /// or absent (no defer event yet).
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Accepted {
    domain: String,
    #[serde(rename = "type")]
    domain_type: String,
}

fn reason_line(r: &str) -> &str {
    match r {
        "refused" => tenant::REASON_REFUSED,
        "subject_mismatch" => tenant::REASON_SUBJECT_MISMATCH,
        "starttls_required" => tenant::REASON_STARTTLS_REQUIRED,
        "tls_failed" => tenant::REASON_TLS_FAILED,
        other => other,
    }
}

fn load(spec: &str) -> Result<Scenario, String> {
    if spec == "demo" {
        return Ok(Scenario::demo());
    }
    let text = std::fs::read_to_string(spec).map_err(|e| format!("{spec}: {e}"))?;
    let f: ScenarioFile = serde_json::from_str(&text).map_err(|e| format!("{spec}: {e}"))?;
    let mut s = Scenario::new();
    for p in &f.pending {
        let age = Duration::from_secs(p.age_minutes.saturating_mul(60));
        s = s.pending(
            &p.domain,
            p.count.min(10_000),
            age,
            p.reason.as_deref().map(reason_line),
        );
    }
    for a in &f.accepted_domains {
        s = s.accepted_domain(&a.domain, &a.domain_type);
    }
    if let Some(e) = f.message_expiration {
        s = s.message_expiration(serde_json::Value::String(e));
    }
    Ok(s)
}

pub async fn main(args: &FakeTenantArgs) -> ExitCode {
    let fail = |m: String| {
        eprintln!("error: {m}");
        ExitCode::from(2)
    };
    let scenario = match load(&args.scenario) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let fake = match FakeTenant::start(scenario).await {
        Ok(f) => f,
        Err(e) => return fail(format!("cannot start the fake tenant: {e}")),
    };
    let write = |name: &str, text: &str| std::fs::write(args.dir.join(name), text);
    if let Err(e) = std::fs::create_dir_all(&args.dir)
        .and_then(|_| write("url", &fake.url()))
        .and_then(|_| write("ca.pem", fake.ca_pem()))
        .and_then(|_| write("secret.txt", tenant::CLIENT_SECRET))
    {
        return fail(format!("{}: {e}", args.dir.display()));
    }
    println!("{}", fake.url());
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return fail("cannot install signal handlers".into());
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    drop(fake);
    ExitCode::SUCCESS
}
