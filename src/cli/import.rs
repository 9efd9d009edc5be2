//! `mailflow-exporter import-connectors`: a config file from a tenant export.

use crate::import::{self, ImportOptions};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args, Clone)]
pub struct ImportArgs {
    /// The JSON export (see README for the PowerShell command).
    pub file: PathBuf,
    /// Write the YAML here instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Leave disabled connectors out (default: kept with `enabled: false`).
    #[arg(long)]
    pub skip_disabled: bool,
}

pub fn run(args: &ImportArgs) -> ExitCode {
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
