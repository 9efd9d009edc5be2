#![forbid(unsafe_code)]
//! Command line entry point; the work happens in the library.

use clap::{Args, Parser, Subcommand};
use mailflow_exporter::check::{self, CheckArgs, Output};
use mailflow_exporter::import::{self, ImportOptions};
use mailflow_exporter::serve::{self, ServeArgs};
use mailflow_exporter::{demo, report};
use std::io::IsTerminal;
use std::path::PathBuf;
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
    Serve(ServeArgs),
    /// Diagnose one connector target now, as Exchange Online would (exit 0 delivered, 1 not, 2 usage).
    Check(CheckArgs),
    /// Run the agent over built-in loopback servers that each fail one way (--once: print a table).
    Demo(demo::DemoArgs),
    /// Write a config from `Get-OutboundConnector | ConvertTo-Json` output.
    ImportConnectors(ImportArgs),
}

#[derive(Args)]
struct ImportArgs {
    /// The JSON export (see README for the PowerShell command).
    file: PathBuf,
    /// Write the YAML here instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Leave disabled connectors out (default: kept with `enabled: false`).
    #[arg(long)]
    skip_disabled: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Serve(args) = &cli.command {
        if let Err(e) = serve::init_logging(args.log_format, &args.log_level) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    } else {
        init_default_logging();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Serve(args) => rt.block_on(async {
            match serve::run(&args, None, None).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }),
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
        Command::ImportConnectors(args) => import_cmd(&args),
    }
}

fn import_cmd(args: &ImportArgs) -> ExitCode {
    let fail = |m: String| {
        eprintln!("error: {m}");
        ExitCode::from(2)
    };
    let bytes = match std::fs::read(&args.file) {
        Ok(b) => b,
        Err(e) => return fail(format!("{}: {e}", args.file.display())),
    };
    let json = match import::decode_export(&bytes) {
        Ok(j) => j,
        Err(e) => return fail(format!("{}: {e}", args.file.display())),
    };
    let opts = ImportOptions {
        source_name: args.file.display().to_string(),
        include_disabled: !args.skip_disabled,
    };
    let imported = match import::import_connectors(&json, &opts) {
        Ok(i) => i,
        Err(e) => return fail(format!("{}: {e}", args.file.display())),
    };
    for w in &imported.warnings {
        eprintln!("warning: {w}");
    }
    match &args.output {
        Some(p) => {
            if let Err(e) = std::fs::write(p, &imported.yaml) {
                return fail(format!("{}: {e}", p.display()));
            }
            eprintln!("wrote {} connector(s) to {}", imported.connectors, p.display());
        }
        None => print!("{}", imported.yaml),
    }
    ExitCode::SUCCESS
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
