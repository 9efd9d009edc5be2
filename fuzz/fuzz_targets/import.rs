//! The connector importer on arbitrary export bytes (as `import-connectors FILE` reads them).
//!
//! Checked on every input:
//! * no panic, in decoding (UTF-8, UTF-8 with BOM, UTF-16 LE/BE with BOM) or in importing;
//! * the importer's promise: when it writes a file, that file loads with `Config::parse`, holds
//!   as many connectors as the importer says, and the import is deterministic (all but the
//!   header's `# imported:` date);
//! * with `include_disabled: false` (`--skip-disabled`), the same promise, and never more
//!   connectors than with the default.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailflow_exporter::config::Config;
use mailflow_exporter::import::{ImportOptions, decode_export, import_connectors};
use std::path::Path;

fn loads(yaml: &str, promised: usize, what: &str) {
    match Config::parse(Path::new("imported.yaml"), yaml) {
        Ok(cfg) => assert_eq!(
            cfg.connectors.len(),
            promised,
            "{what}: the importer counted {promised} connectors, the file holds {}:\n{yaml}",
            cfg.connectors.len()
        ),
        Err(e) => panic!("{what}: the importer wrote a file that does not load: {e}\n{yaml}"),
    }
}

/// The file without its `# imported: <time>` header line, the one part that changes by design.
fn without_date(yaml: &str) -> String {
    yaml.lines()
        .filter(|l| !l.starts_with("# imported: "))
        .collect::<Vec<_>>()
        .join("\n")
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = decode_export(data) else {
        return;
    };
    let all = import_connectors(&text, &ImportOptions::default());
    if let Ok(imported) = &all {
        loads(&imported.yaml, imported.connectors, "default options");
        let twice = import_connectors(&text, &ImportOptions::default()).expect("same input, same result");
        assert_eq!(
            (without_date(&twice.yaml), twice.connectors, &twice.warnings),
            (without_date(&imported.yaml), imported.connectors, &imported.warnings),
            "the import is not deterministic"
        );
    }
    let opts = ImportOptions {
        include_disabled: false,
        ..ImportOptions::default()
    };
    match (import_connectors(&text, &opts), &all) {
        (Ok(enabled), Ok(all)) => {
            loads(&enabled.yaml, enabled.connectors, "include_disabled: false");
            assert!(enabled.connectors <= all.connectors);
        }
        (Err(_), Err(_)) => {}
        // Skipping disabled connectors happens after each one is read, so both fail or neither.
        (a, b) => panic!(
            "default and include_disabled: false disagree: {:?} vs {:?}",
            a.map(|i| i.connectors),
            b.as_ref().map(|i| i.connectors)
        ),
    }
});
