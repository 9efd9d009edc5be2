//! The commands, one file each; `main.rs` only calls [`main`]. Every command owns its `Args`;
//! value parsers shared by several live in [`args`]. Exit codes: 0 success (or delivered),
//! 1 not delivered (`check`), 2 usage or configuration error.

pub mod args;
pub mod check;
pub mod codes;
pub mod demo;
pub mod fake_tenant;
pub mod healthcheck;
pub mod import;
pub mod report;
pub mod serve;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mailflow-exporter",
    version,
    about = "Diagnose and monitor Exchange Online outbound connectors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the exporter: probe every connector on its interval, serve /metrics and a status page.
    Serve(serve::ServeArgs),
    /// Diagnose one connector target now, as Exchange Online would (exit 0 delivered, 1 not, 2 usage).
    Check(check::CheckArgs),
    /// Run the agent over built-in loopback servers that each fail one way (--once: print a table).
    Demo(demo::DemoArgs),
    /// Write a config from `Get-OutboundConnector | ConvertTo-Json` output.
    ImportConnectors(import::ImportArgs),
    /// List every code and reason with its title, causes and fix (the taxonomy as data).
    Codes(codes::CodesArgs),
    /// Ask a running agent on this machine whether it is healthy (for container health checks).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Serve the loopback fake of Microsoft's endpoints (for the end-to-end lab).
    #[command(hide = true)]
    FakeTenant(fake_tenant::FakeTenantArgs),
}

/// Parses the command line, runs the command, and maps its outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Serve(args) = &cli.command {
        if let Err(e) = serve::init_logging(args.log_format, &args.log_level) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    } else {
        init_default_logging();
    }
    match cli.command {
        Command::Codes(args) => codes::run(&args),
        Command::ImportConnectors(args) => import::run(&args),
        Command::Serve(args) => with_runtime(|| async move { serve::main(&args).await }),
        Command::Check(args) => with_runtime(|| async move { check::main(&args).await }),
        Command::Demo(args) => with_runtime(|| async move { demo::main(&args).await }),
        Command::Healthcheck(args) => with_runtime(|| async move { healthcheck::main(&args).await }),
        Command::FakeTenant(args) => with_runtime(|| async move { fake_tenant::main(&args).await }),
    }
}

fn with_runtime<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(f()),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::from(2)
        }
    }
}

fn init_default_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("MAILFLOW_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
