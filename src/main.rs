#![forbid(unsafe_code)]
//! Command line entry point; the work happens in the library.

use clap::{Parser, Subcommand};
use mailflow_exporter::check::{self, CheckArgs, Output};
use mailflow_exporter::{demo, report};
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
    /// Diagnose one connector target now, as Exchange Online would (exit 0 delivered, 1 not, 2 usage).
    Check(CheckArgs),
    /// Start built-in loopback servers that each fail one way and diagnose every one.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Check(args) => rt.block_on(async {
            match check::run(&args).await {
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
                Ok(r) => {
                    match args.output {
                        Output::Json => println!("{}", report::json(&r)),
                        Output::Text => print!("{}", report::text(&r, std::io::stdout().is_terminal())),
                    }
                    if r.delivered {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
            }
        }),
        Command::Demo(args) => rt.block_on(async {
            match demo::run(&args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }),
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("MAILFLOW_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
