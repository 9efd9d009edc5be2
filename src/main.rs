#![forbid(unsafe_code)]
//! Command line entry point: everything happens in the library's `cli` layer.

fn main() -> std::process::ExitCode {
    mailflow_exporter::cli::main()
}
