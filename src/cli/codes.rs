//! `mailflow-exporter codes`: the taxonomy as data, so dashboards, alerts, runbooks and scripts
//! check themselves against the one source instead of re-typing it.

use crate::taxonomy;
use clap::{Args, ValueEnum};
use std::fmt::Write as _;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CodesOutput {
    Text,
    Json,
}

#[derive(Debug, Args, Clone)]
pub struct CodesArgs {
    #[arg(long, value_enum, default_value = "text")]
    pub output: CodesOutput,
}

pub fn run(args: &CodesArgs) -> ExitCode {
    match args.output {
        CodesOutput::Json => println!("{}", taxonomy::catalog_json()),
        CodesOutput::Text => print!("{}", text()),
    }
    ExitCode::SUCCESS
}

fn text() -> String {
    let mut o = String::new();
    for c in taxonomy::Code::ALL {
        let _ = writeln!(o, "{} {}", c.as_str(), c.title());
        for r in taxonomy::Reason::ALL.iter().filter(|r| r.code() == c) {
            let _ = writeln!(o, "  {:<21} {}", r.as_str(), r.describe());
        }
        let _ = writeln!(o, "  fix: {}\n", c.fix());
    }
    o
}
