//! The taxonomy in `src/taxonomy.rs` is the one source of the codes, reasons and their texts; these
//! tests hold the copies in the repository to it: `docs/codes.json` (read by the dashboard, alert
//! and lab checks), the "Codes and reasons" table in README.md, the runbooks in `docs/runbooks/`,
//! and what the binary prints with `codes --output json`.
//!
//! They read the real files of this checkout and run the real binary (with a hard deadline).

use mailflow_exporter::taxonomy::{Code, Reason, catalog_json};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mailflow-exporter");

/// The command that writes `docs/codes.json`; named in every failure message about it.
const REGENERATE: &str = "cargo run -q -- codes --output json > docs/codes.json";

/// Hard deadline for `codes --output json` (it only prints a constant).
const CODES_DEADLINE: Duration = Duration::from_secs(30);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The first line where the stored text differs from the expected one, for a readable message.
fn first_difference(stored: &str, expected: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (stored.lines().collect(), expected.lines().collect());
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i), b.get(i));
        if x != y {
            return format!("first difference at line {}: {x:?} where {y:?} is expected", i + 1);
        }
    }
    "the texts differ only in line endings or the final newline".into()
}

/// The reasons that belong to `code`, in `Reason::ALL` order.
fn reasons_of(code: Code) -> Vec<&'static str> {
    Reason::ALL
        .into_iter()
        .filter(|r| r.code() == code)
        .map(Reason::as_str)
        .collect()
}

#[test]
fn docs_codes_json_is_the_catalog() {
    let want = catalog_json() + "\n";
    let got = read("docs/codes.json");
    assert!(
        got == want,
        "docs/codes.json is not the taxonomy of src/taxonomy.rs ({}); regenerate it with `{REGENERATE}`",
        first_difference(&got, &want)
    );
}

/// The rows of the markdown table under `### Codes and reasons`: (code, reasons in backticks).
fn readme_codes_table(readme: &str) -> Vec<(String, Vec<String>)> {
    const HEADING: &str = "### Codes and reasons";
    let mut lines = readme.lines().skip_while(|l| l.trim_end() != HEADING);
    assert!(lines.next().is_some(), "README.md has no heading `{HEADING}`");
    let table: Vec<&str> = lines
        .take_while(|l| !l.starts_with('#'))
        .skip_while(|l| !l.trim_start().starts_with('|'))
        .take_while(|l| l.trim_start().starts_with('|'))
        .collect();
    assert!(
        table.len() > 2,
        "README.md: no table (header, separator, rows) under `{HEADING}`: {table:?}"
    );
    let cells = |line: &str| -> Vec<String> {
        let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
        inner.split('|').map(|c| c.trim().to_string()).collect()
    };
    let header = cells(table[0]);
    assert_eq!(
        header.first().map(String::as_str),
        Some("code"),
        "README.md: the table under `{HEADING}` must start with a `code` column: {header:?}"
    );
    assert!(
        cells(table[1])
            .iter()
            .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':'))),
        "README.md: the second line of the table under `{HEADING}` is not a separator: {:?}",
        table[1]
    );
    table[2..]
        .iter()
        .map(|line| {
            let row = cells(line);
            assert!(
                row.len() >= 2,
                "README.md: table row without a reasons column: {line:?}"
            );
            let code = row[0].trim_matches('`').trim().to_string();
            // Reasons are the backticked words; anything else in the cell is prose.
            let reasons = row[1]
                .split('`')
                .skip(1)
                .step_by(2)
                .map(|r| r.trim().to_string())
                .collect();
            (code, reasons)
        })
        .collect()
}

#[test]
fn readme_table_lists_every_code_with_exactly_its_reasons() {
    let rows = readme_codes_table(&read("README.md"));
    let mut table: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (code, reasons) in rows {
        if let Some(before) = table.insert(code.clone(), reasons) {
            panic!("README.md: code {code} is listed twice (first with {before:?})");
        }
    }
    let want: BTreeSet<&str> = Code::ALL.into_iter().map(Code::as_str).collect();
    let got: BTreeSet<&str> = table.keys().map(String::as_str).collect();
    assert_eq!(
        got,
        want,
        "README.md `### Codes and reasons`: the codes differ from Code::ALL (missing: {:?}, extra: {:?})",
        want.difference(&got).collect::<Vec<_>>(),
        got.difference(&want).collect::<Vec<_>>()
    );
    for code in Code::ALL {
        let mut want = reasons_of(code);
        let mut got: Vec<&str> = table[code.as_str()].iter().map(String::as_str).collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(
            got, want,
            "README.md `### Codes and reasons`: the reasons listed for {code} are not exactly its reasons in src/taxonomy.rs"
        );
    }
}

/// `4.4.312`-like: three dot-separated groups of digits.
fn looks_like_a_code(stem: &str) -> bool {
    let parts: Vec<&str> = stem.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Does `text` contain `word` not glued to a letter, digit, `.` or `_` on either side?
fn mentions(text: &str, word: &str) -> bool {
    let glued = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '.' || c == '_');
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after_at = at + word.len();
        let after = text[after_at..].chars().next();
        // A sentence-ending dot after the code is fine ("... reports 4.4.316."), a longer code is not.
        let after_ok = match after {
            Some('.') => !text[after_at + 1..].chars().next().is_some_and(|c| c.is_ascii_digit()),
            other => !glued(other),
        };
        !glued(before) && after_ok
    })
}

#[test]
fn one_runbook_per_code_and_nothing_else() {
    let dir = repo().join("docs/runbooks");
    let mut want: BTreeSet<String> = BTreeSet::from(["README.md".to_string()]);
    for code in Code::ALL {
        let rel = PathBuf::from(code.runbook());
        assert_eq!(
            rel.parent(),
            Some(Path::new("docs/runbooks")),
            "{code}: runbook path {} is not in docs/runbooks/",
            rel.display()
        );
        let name = rel
            .file_name()
            .and_then(|n| n.to_str())
            .expect("runbook file name")
            .to_string();
        assert_eq!(name, format!("{code}.md"), "{code}: unexpected runbook file name");
        assert!(want.insert(name), "{code}: two codes share a runbook");
    }

    let mut present = BTreeSet::new();
    let mut strays = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())) {
        let entry = entry.expect("directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if want.contains(&name) {
            assert!(
                entry.file_type().expect("file type").is_file(),
                "docs/runbooks/{name} is not a regular file"
            );
            present.insert(name);
            continue;
        }
        let path = Path::new(&name);
        let is_markdown = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("md") || e.eq_ignore_ascii_case("markdown"));
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if is_markdown || looks_like_a_code(stem) || looks_like_a_code(&name) {
            strays.push(name);
        }
    }
    let missing: Vec<&String> = want.difference(&present).collect();
    assert!(missing.is_empty(), "docs/runbooks/ lacks {missing:?}");
    assert!(
        strays.is_empty(),
        "docs/runbooks/ holds runbook-like files for no code of src/taxonomy.rs: {strays:?}"
    );

    for code in Code::ALL {
        let text = read(&code.runbook());
        assert!(
            mentions(&text, code.as_str()),
            "{}: does not mention {code}",
            code.runbook()
        );
        let heading = text.lines().find(|l| l.starts_with("# ")).unwrap_or("");
        assert!(
            mentions(heading, code.as_str()),
            "{}: its title ({heading:?}) does not name {code}",
            code.runbook()
        );
    }
}

#[test]
fn mentions_matches_whole_codes_only() {
    assert!(mentions("reports 4.4.316.", "4.4.316"));
    assert!(mentions("# 4.4.316 — Connection refused", "4.4.316"));
    assert!(!mentions("see 4.4.3160", "4.4.316"));
    assert!(!mentions("see 14.4.316", "4.4.316"));
    assert!(!mentions("see 4.4.316.1", "4.4.316"));
    assert!(mentions("# other — Other delivery failure", "other"));
    assert!(!mentions("another", "other"));
    assert!(looks_like_a_code("4.4.319") && !looks_like_a_code("README") && !looks_like_a_code("4.4"));
}

/// Runs `cmd` to completion, killing it after `deadline`: (exit code, stdout, stderr).
fn run_with_deadline(mut cmd: Command, deadline: Duration) -> (Option<i32>, Vec<u8>, String) {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            b
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout pipe")));
    let err = drain(Box::new(child.stderr.take().expect("stderr pipe")));
    let started = Instant::now();
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(status) => break status,
            None if started.elapsed() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} still running after {deadline:?}; killed");
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    // The child has exited, so its pipes are closed and the readers finish.
    let stdout = out.join().expect("stdout reader");
    let stderr = String::from_utf8_lossy(&err.join().expect("stderr reader")).into_owned();
    (status.code(), stdout, stderr)
}

#[test]
fn binary_codes_json_is_docs_codes_json() {
    let mut cmd = Command::new(BIN);
    cmd.args(["codes", "--output", "json"]);
    let (code, stdout, stderr) = run_with_deadline(cmd, CODES_DEADLINE);
    assert_eq!(
        code,
        Some(0),
        "{BIN} codes --output json failed\n--- stderr ---\n{stderr}"
    );
    let printed: Value = serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!(
            "`codes --output json` did not print one JSON document ({e}):\n{}",
            String::from_utf8_lossy(&stdout)
        )
    });
    let file = read("docs/codes.json");
    let stored: Value = serde_json::from_str(&file)
        .unwrap_or_else(|e| panic!("docs/codes.json is not JSON ({e}); regenerate it with `{REGENERATE}`"));
    assert!(
        printed == stored,
        "`codes --output json` and docs/codes.json hold different data; regenerate it with `{REGENERATE}`"
    );
    let printed = String::from_utf8(stdout).expect("stdout is UTF-8");
    assert!(
        printed == file,
        "docs/codes.json is not byte for byte what `codes --output json` prints ({}); regenerate it with `{REGENERATE}`",
        first_difference(&file, &printed)
    );
    let codes: Vec<&str> = stored["codes"]
        .as_array()
        .expect("docs/codes.json: `codes` is an array")
        .iter()
        .map(|c| c["code"].as_str().expect("every entry has a `code` string"))
        .collect();
    assert_eq!(
        codes,
        Code::ALL.map(Code::as_str),
        "docs/codes.json: codes out of Code::ALL order"
    );
}
