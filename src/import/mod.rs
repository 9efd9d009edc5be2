//! `import-connectors`: turns the output of `Get-OutboundConnector | ConvertTo-Json` into our YAML
//! configuration (see `config.rs`), so an admin starts from what Exchange Online really has.
//!
//! The export comes in many shapes: one object or an array; enums as names (PowerShell 7) or as
//! numbers (Windows PowerShell 5.1); dates as ISO-8601 or `/Date(ms)/`; multi-valued properties as
//! arrays, single strings or arrays of objects. The JSON is walked as a `serde_json::Value` and every
//! field is read leniently; what can't be carried over is kept as a YAML comment and reported as a
//! warning. The written file is parsed with [`crate::config::Config::parse`] before it is handed
//! out: an import either loads in the agent or fails with the reason, never exits 0 with a file the
//! agent refuses.
//!
//! Limits of the loader, and what an import does about them:
//! - more than [`MAX_SMART_HOSTS`] smart hosts or [`MAX_DOMAINS`] recipient domains on one
//!   connector: the first ones (export order) are written, the rest kept as comments with one
//!   warning. The connector stays monitored through what fits, and the admin sees what was left out.
//! - more than [`MAX_CONNECTORS`] connectors: an error. Leaving connectors out would silently stop
//!   monitoring some; sharding across agents is the admin's call.
//! - more than the config parser's budget (`config::parser_budget`) (nodes, events, bytes) or [`MAX_FILE_BYTES`]: the
//!   file is written again without the fields that only repeat the loader's defaults; if even that
//!   is too large, an error that says so.

use crate::config::{
    Config, ConfigError, ConnectorName, ConnectorType, DomainPattern, HostPort, MAX_CONNECTOR_NAME_CHARS,
    MAX_CONNECTORS, MAX_DOMAINS, MAX_FILE_BYTES, MAX_SMART_HOSTS, TlsSettings,
};
use serde_json::{Map, Value};
use serde_saphyr::budget::{BudgetBreach, EnforcingPolicy, check_yaml_budget};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

/// What an admin runs in Exchange Online PowerShell to produce the file we import. Plain
/// `Get-OutboundConnector` hides test-mode and (sometimes) rule-scoped connectors, hence three calls.
pub const EXPORT_COMMAND: &str = "$all = @(Get-OutboundConnector) + @(Get-OutboundConnector -IsTransportRuleScoped $true) +\n       @(Get-OutboundConnector -IncludeTestModeConnectors $true)\n$all | Sort-Object Guid -Unique | ConvertTo-Json -Depth 4 | Out-File -Encoding utf8 connectors.json";

/// A name under the reserved `.invalid` TLD (RFC 6761): it never resolves, so a connector that still
/// carries it fails loudly (4.4.312) instead of probing something real.
pub const PLACEHOLDER_HOST: &str = "replace-me.invalid";

/// How to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// Where the JSON came from (a file name), shown in the header comment.
    pub source_name: String,
    /// Keep connectors that are disabled in Exchange Online (written with `enabled: false`).
    pub include_disabled: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            source_name: "connectors.json".to_string(),
            include_disabled: true,
        }
    }
}

/// The result of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The configuration file, ready to write.
    pub yaml: String,
    /// How many connectors the file holds.
    pub connectors: usize,
    /// What could not be carried over as is (also written as comments in `yaml`).
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the export is not UTF-8 or UTF-16 text: {0}")]
    Encoding(String),
    #[error(
        "not valid JSON ({0}); expected the output of `Get-OutboundConnector | ConvertTo-Json` (not Format-List or a table)"
    )]
    Json(#[source] serde_json::Error),
    #[error(
        "expected a connector object or an array of connector objects (the output of `Get-OutboundConnector | ConvertTo-Json`), found {found}"
    )]
    NotConnectors { found: &'static str },
    #[error("connector at index {index}: expected a JSON object, found {found}")]
    NotAnObject { index: usize, found: &'static str },
    #[error("connector at index {index}: Name is missing or empty")]
    MissingName { index: usize },
    #[error("connector at index {index} ({name:?}): {field}: {message}")]
    Field {
        index: usize,
        name: String,
        field: &'static str,
        message: String,
    },
    #[error(
        "the export holds {found} connectors; an agent loads at most {max}: split the export (e.g. by Name) and run one agent per part"
    )]
    TooManyConnectors { found: usize, max: usize },
    #[error(
        "the configuration for {connectors} connector(s) is too large for the agent to load ({reason}): split the export (e.g. by Name) and run one agent per part"
    )]
    TooLarge { connectors: usize, reason: String },
    /// The generated YAML failed [`Config::parse`]: a bug in the importer, reported with the
    /// loader's `file:line:column: field: message` instead of writing a file the agent refuses.
    #[error("the generated configuration does not load (please report this with the export): {0}")]
    DoesNotLoad(#[source] ConfigError),
}

/// The file name the loader's check reports in [`ImportError::DoesNotLoad`].
const CHECK_FILE_NAME: &str = "imported.yaml";

/// Decodes an export file as PowerShell may have written it: UTF-8 with or without a BOM (`Out-File
/// -Encoding utf8`, PowerShell 7), UTF-16 with a BOM (Windows PowerShell 5.1 `Out-File` / `>`),
/// UTF-32 (`-Encoding utf32`), and UTF-16/UTF-32 that lost their BOM (copied through tools that strip
/// it). Without a BOM the encoding follows from the NUL bytes around the first character, which in
/// JSON is always ASCII (`[`, `{`, whitespace) and never NUL (RFC 4627, section 3).
pub fn decode_export(bytes: &[u8]) -> Result<String, ImportError> {
    fn units<const N: usize>(bytes: &[u8], what: &str) -> Result<impl Iterator<Item = [u8; N]>, ImportError> {
        if !bytes.len().is_multiple_of(N) {
            return Err(ImportError::Encoding(format!(
                "{what} text whose length is not a multiple of {N} bytes"
            )));
        }
        Ok(bytes.chunks_exact(N).map(|c| {
            let mut unit = [0; N];
            unit.copy_from_slice(c);
            unit
        }))
    }
    fn utf16(bytes: &[u8], le: bool) -> Result<String, ImportError> {
        let units = units::<2>(bytes, "UTF-16")?.map(|p| {
            if le {
                u16::from_le_bytes(p)
            } else {
                u16::from_be_bytes(p)
            }
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|e| ImportError::Encoding(format!("bad UTF-16: {e}")))
    }
    fn utf32(bytes: &[u8], le: bool) -> Result<String, ImportError> {
        units::<4>(bytes, "UTF-32")?
            .map(|q| {
                let n = if le {
                    u32::from_le_bytes(q)
                } else {
                    u32::from_be_bytes(q)
                };
                char::from_u32(n).ok_or_else(|| ImportError::Encoding(format!("bad UTF-32: {n:#x} is not a character")))
            })
            .collect()
    }
    fn utf8(bytes: &[u8]) -> Result<String, ImportError> {
        String::from_utf8(bytes.to_vec()).map_err(|e| ImportError::Encoding(e.to_string()))
    }
    // UTF-32LE's BOM starts with UTF-16LE's: test it first.
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE, 0x00, 0x00]) {
        return utf32(rest, true);
    }
    if let Some(rest) = bytes.strip_prefix(&[0x00, 0x00, 0xFE, 0xFF]) {
        return utf32(rest, false);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return utf8(rest);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(rest, true);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(rest, false);
    }
    let nul = |i: usize| bytes.get(i).map(|&b| b == 0);
    match (nul(0), nul(1), nul(2), nul(3)) {
        (Some(true), Some(true), Some(true), Some(false)) => utf32(bytes, false),
        (Some(false), Some(true), Some(true), Some(true)) => utf32(bytes, true),
        (Some(true), Some(false), ..) => utf16(bytes, false),
        (Some(false), Some(true), ..) => utf16(bytes, true),
        _ => utf8(bytes),
    }
}

/// Converts the JSON export into a configuration file that [`Config::parse`] accepts.
pub fn import_connectors(json: &str, opts: &ImportOptions) -> Result<Imported, ImportError> {
    let text = json.strip_prefix('\u{feff}').unwrap_or(json);
    let root: Value = serde_json::from_str(text).map_err(ImportError::Json)?;
    let items = top_level_items(&root)?;

    let mut warnings = Vec::new();
    let mut conns = Vec::new();
    let mut skipped = Vec::new();
    let mut names = UniqueNames::default();
    let mut guids: HashSet<String> = HashSet::new();
    for (index, item) in items.iter().enumerate() {
        let Value::Object(obj) = item else {
            return Err(ImportError::NotAnObject {
                index,
                found: kind(item),
            });
        };
        let mut c = read_connector(index, obj)?;
        if let Some(g) = &c.guid
            && !guids.insert(g.to_ascii_lowercase())
        {
            warnings.push(format!(
                "connector at index {index} ({:?}): same Guid as an earlier connector; skipped as a duplicate",
                c.name
            ));
            continue;
        }
        if !c.enabled && !opts.include_disabled {
            skipped.push(c.name);
            continue;
        }
        let exported_name = c.name.clone();
        let name = names.claim(&c.name);
        if name != c.name {
            let shortened = if !name.starts_with(c.name.as_str()) {
                format!(" (shortened to stay within {MAX_CONNECTOR_NAME_CHARS} characters)")
            } else {
                String::new()
            };
            c.warn(format!(
                "another connector has the same name; written as {name:?}{shortened}"
            ));
            c.name = name;
        }
        warnings.extend(
            c.warnings
                .iter()
                .map(|w| format!("connector at index {index} ({exported_name:?}): {w}")),
        );
        conns.push(c);
    }
    if items.is_empty() {
        warnings.push("the export holds no connectors".to_string());
    }
    if conns.len() > MAX_CONNECTORS {
        return Err(ImportError::TooManyConnectors {
            found: conns.len(),
            max: MAX_CONNECTORS,
        });
    }

    let mut yaml = render_file(opts, &conns, &warnings, &skipped, false);
    if fits(&yaml).is_err() {
        warnings.push(
            "with every field spelled out the file would exceed what the agent loads; fields that repeat the defaults (enabled: true, use_mx_record: true, tls_settings: none, connector_type: OnPremises, empty lists) and the metadata comments are left out".to_string(),
        );
        yaml = render_file(opts, &conns, &warnings, &skipped, true);
        fits(&yaml).map_err(|reason| ImportError::TooLarge {
            connectors: conns.len(),
            reason,
        })?;
    }
    Config::parse(Path::new(CHECK_FILE_NAME), &yaml).map_err(ImportError::DoesNotLoad)?;
    Ok(Imported {
        yaml,
        connectors: conns.len(),
        warnings,
    })
}

/// Whether the loader can take `yaml` as far as size goes: [`MAX_FILE_BYTES`] and the budget
/// [`Config::parse`] parses with. `Err` says which limit, in words.
fn fits(yaml: &str) -> Result<(), String> {
    if u64::try_from(yaml.len()).map_or(true, |n| n > MAX_FILE_BYTES) {
        return Err(format!(
            "{} bytes, the agent reads at most {MAX_FILE_BYTES}",
            yaml.len()
        ));
    }
    let budget = crate::config::parser_budget();
    let limits = budget.clone();
    // A scan error is left to `Config::parse`, which reports it with a location.
    let Ok(report) = check_yaml_budget(yaml, budget, EnforcingPolicy::AllContent) else {
        return Ok(());
    };
    match report.breached {
        None => Ok(()),
        Some(BudgetBreach::Nodes { .. }) => Err(format!(
            "more than {} YAML nodes, the config parser's limit; a connector takes about 6 to 15 plus one per recipient domain and smart host",
            limits.max_nodes
        )),
        Some(BudgetBreach::Events { .. }) => Err(format!(
            "more than {} YAML events, the config parser's limit; every comment line counts",
            limits.max_events
        )),
        Some(BudgetBreach::ScalarBytes { .. }) => Err(format!(
            "more than {} bytes of values, the config parser's limit",
            limits.max_total_scalar_bytes
        )),
        Some(other) => Err(format!("beyond the config parser's limits: {other:?}")),
    }
}

/// Connector names made unique in linear time. A counter per base remembers the next suffix to
/// try, so N equal names cost about N look-ups instead of N²/2 (20,000 equal names took ~25 s).
#[derive(Default)]
struct UniqueNames {
    taken: HashSet<String>,
    next: HashMap<String, usize>,
}

impl UniqueNames {
    /// `name` when it is free, else `base (n)`: the loader's names are 1..=128 characters, so the
    /// base is shortened, never the suffix, which is what keeps the names apart.
    fn claim(&mut self, name: &str) -> String {
        if self.taken.insert(name.to_string()) {
            return name.to_string();
        }
        let mut n: usize = 2;
        loop {
            let suffix = format!(" ({n})");
            let keep = MAX_CONNECTOR_NAME_CHARS.saturating_sub(suffix.chars().count());
            let cut: String = name.chars().take(keep).collect();
            let base = cut.trim_end();
            let next = self.next.entry(base.to_string()).or_insert(2);
            if *next > n {
                // Everything below `next` was handed out or found taken for this base.
                n = *next;
                continue;
            }
            *next = n + 1;
            let candidate = format!("{base}{suffix}");
            if self.taken.insert(candidate.clone()) {
                return candidate;
            }
            n += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the JSON

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn top_level_items(root: &Value) -> Result<Vec<&Value>, ImportError> {
    match root {
        Value::Array(a) => Ok(a.iter().collect()),
        Value::Object(m) => {
            // Windows PowerShell 5.1 sometimes wraps an array as {"value": [...], "Count": n}.
            if get(m, "Name").is_none()
                && let Some(Value::Array(a)) = get(m, "value")
            {
                return Ok(a.iter().collect());
            }
            Ok(vec![root])
        }
        other => Err(ImportError::NotConnectors { found: kind(other) }),
    }
}

/// A property by name: exact first, then ignoring ASCII case. JSON `null` counts as absent.
fn get<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key)
        .or_else(|| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
        .filter(|v| !v.is_null())
}

/// A short, single-line rendering of a JSON value for messages and comments.
fn brief(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// Booleans as PowerShell may write them: true/false, "True"/"False", "$true", 0/1.
fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.trim().trim_start_matches('$').to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        },
        // {"value": true, ...} as Windows PowerShell writes values that carry extra properties.
        Value::Object(m) => get(m, "value").and_then(as_bool),
        _ => None,
    }
}

/// An enum as a name or as its number. `Ok(None)` when absent/null.
enum EnumValue {
    Name(String),
    Number(i64),
}

fn as_enum(v: Option<&Value>) -> Result<Option<EnumValue>, String> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            match s.parse::<i64>() {
                Ok(n) => Ok(Some(EnumValue::Number(n))),
                Err(_) => Ok(Some(EnumValue::Name(s.to_string()))),
            }
        }
        Some(Value::Number(n)) => n
            .as_i64()
            .map(|n| Some(EnumValue::Number(n)))
            .ok_or_else(|| format!("{n} is not an enum value")),
        Some(Value::Object(m)) => as_enum(get(m, "value")),
        Some(other) => Err(format!("expected a name or a number, found {}", kind(other))),
    }
}

// Integer values of the Exchange enums, as Windows PowerShell 5.1 writes them. Taken from the
// definitions in Microsoft.Exchange.Data.dll (Exchange 2013/2016, decompiled copies found by code
// search; they agree): `TlsAuthLevel { EncryptionOnly = 1, CertificateValidation = 2,
// DomainValidation = 4 }` and `TenantConnectorType { OnPremises = 1, Partner = 2 }`. A null
// TlsSettings is JSON null; 0 is accepted as the same ("no level").
fn tls_from_json(v: Option<&Value>) -> Result<TlsSettings, String> {
    match as_enum(v)? {
        None => Ok(TlsSettings::None),
        Some(EnumValue::Number(n)) => match n {
            0 => Ok(TlsSettings::None),
            1 => Ok(TlsSettings::EncryptionOnly),
            2 => Ok(TlsSettings::CertificateValidation),
            4 => Ok(TlsSettings::DomainValidation),
            n => Err(format!(
                "unknown TlsAuthLevel number {n} (known: 1 EncryptionOnly, 2 CertificateValidation, 4 DomainValidation)"
            )),
        },
        Some(EnumValue::Name(s)) => TlsSettings::parse(&s).ok_or_else(|| {
            format!("unknown value {s:?} (known: EncryptionOnly, CertificateValidation, DomainValidation, null)")
        }),
    }
}

fn connector_type_from_json(v: Option<&Value>) -> Result<Option<ConnectorType>, String> {
    match as_enum(v)? {
        None => Ok(None),
        Some(EnumValue::Number(1)) => Ok(Some(ConnectorType::OnPremises)),
        Some(EnumValue::Number(2)) => Ok(Some(ConnectorType::Partner)),
        Some(EnumValue::Number(n)) => Err(format!(
            "unknown TenantConnectorType number {n} (known: 1 OnPremises, 2 Partner)"
        )),
        Some(EnumValue::Name(s)) => ConnectorType::parse(&s)
            .map(Some)
            .ok_or_else(|| format!("unknown value {s:?} (known: OnPremises, Partner)")),
    }
}

/// Keys that hold the text of a smart host object (`SmartHost`: `Domain` (a `Hostname`) or `Address`
/// (an `IPAddress`, whose text is `IPAddressToString`)).
const HOST_KEYS: &[&str] = &[
    "Domain",
    "Address",
    "HostnameString",
    "IPAddressToString",
    "SmartHost",
    "Host",
    "Value",
    "ToString",
    "Name",
];
/// Keys that hold the text of a recipient domain object (`SmtpDomainWithSubdomains`).
const DOMAIN_KEYS: &[&str] = &["Address", "Domain", "SmtpDomain", "Value", "ToString", "Name"];

fn pick_string(m: &Map<String, Value>, keys: &[&str], depth: u8) -> Option<String> {
    for k in keys {
        match get(m, k) {
            Some(Value::String(s)) if !s.trim().is_empty() => return Some(s.trim().to_string()),
            Some(Value::Object(inner)) if depth > 0 => {
                if let Some(s) = pick_string(inner, keys, depth - 1) {
                    return Some(s);
                }
            }
            _ => {}
        }
    }
    None
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ListKind {
    Hosts,
    Domains,
}

fn pick_item(m: &Map<String, Value>, kind: ListKind) -> Option<String> {
    match kind {
        ListKind::Hosts => pick_string(m, HOST_KEYS, 3),
        ListKind::Domains => {
            if get(m, "IsStar").and_then(as_bool) == Some(true) {
                return Some("*".to_string());
            }
            let s = pick_string(m, DOMAIN_KEYS, 3)?;
            if get(m, "IncludeSubDomains").and_then(as_bool) == Some(true) && !s.starts_with('*') {
                Some(format!("*.{s}"))
            } else {
                Some(s)
            }
        }
    }
}

/// Collects the strings of a multi-valued property: an array, a single (maybe comma-separated)
/// string, objects with a sensible text field, or Windows PowerShell's `{"value": [...]}` wrapper.
fn collect_strings(v: &Value, kind: ListKind, out: &mut Vec<String>, bad: &mut Vec<String>, depth: u8) {
    match v {
        Value::Null => {}
        Value::String(s) => {
            for part in s.split([',', ';']).flat_map(str::split_whitespace) {
                let part = part.trim_matches(|c| c == '"' || c == '\'');
                if !part.is_empty() {
                    out.push(part.to_string());
                }
            }
        }
        Value::Array(items) if depth > 0 => {
            for item in items {
                collect_strings(item, kind, out, bad, depth - 1);
            }
        }
        Value::Object(m) if depth > 0 => {
            if get(m, "Name").is_none()
                && let Some(inner @ Value::Array(_)) = get(m, "value")
            {
                collect_strings(inner, kind, out, bad, depth - 1);
            } else if let Some(s) = pick_item(m, kind) {
                out.push(s);
            } else {
                bad.push(brief(v));
            }
        }
        other => bad.push(brief(other)),
    }
}

/// `SmartHostsString` as Exchange writes it: `[mail.contoso.com],[192.0.2.1]` or plain, comma-separated.
fn split_smart_hosts_string(s: &str) -> Vec<String> {
    s.split([',', ';'])
        .map(|p| {
            p.trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .trim()
                .to_string()
        })
        .filter(|p| !p.is_empty())
        .collect()
}

/// A date as ISO-8601 (with or without offset) or `/Date(ms)/`, rendered in UTC.
fn parse_date(v: &Value) -> Option<String> {
    use time::format_description::well_known::{Iso8601, Rfc3339};
    use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};
    let s = match v {
        Value::String(s) => s.trim(),
        Value::Number(n) => return n.as_i64().and_then(from_epoch_ms),
        // {"value": "/Date(..)/", "DisplayHint": 2, "DateTime": "..."} (Windows PowerShell 5.1).
        Value::Object(m) => return get(m, "value").and_then(parse_date),
        _ => return None,
    };
    if let Some(inner) = s.strip_prefix("/Date(").and_then(|r| r.strip_suffix(")/")) {
        // `/Date(1700000000000)/` or `/Date(1700000000000+0100)/`: the number is UTC either way.
        let digits_end = inner
            .char_indices()
            .find(|&(i, c)| i > 0 && (c == '+' || c == '-'))
            .map(|(i, _)| i)
            .unwrap_or(inner.len());
        return inner[..digits_end].parse::<i64>().ok().and_then(from_epoch_ms);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339).or_else(|_| OffsetDateTime::parse(s, &Iso8601::DEFAULT)) {
        return Some(format_utc(t.to_offset(UtcOffset::UTC)));
    }
    if let Ok(t) = PrimitiveDateTime::parse(s, &Iso8601::DEFAULT) {
        return Some(format!("{} (no time zone in the export)", format_utc(t.assume_utc())));
    }
    None
}

fn from_epoch_ms(ms: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    Some(format_utc(t))
}

fn format_utc(t: time::OffsetDateTime) -> String {
    crate::timefmt::rfc3339_unix(t.unix_timestamp()).unwrap_or_else(|| t.to_string())
}

/// A connector as we will write it.
struct Conn {
    name: String,
    guid: Option<String>,
    /// As in Exchange Online.
    enabled: bool,
    connector_type: Option<ConnectorType>,
    use_mx: bool,
    smart_hosts: Vec<String>,
    recipient_domains: Vec<String>,
    /// Wildcard recipient domains of an MX connector (need sample domains).
    wildcards: Vec<String>,
    tls: TlsSettings,
    tls_domain: Option<String>,
    test_mode: bool,
    /// Scoping and hybrid flags, written as fields (they set the connector's alert severity).
    carries: Vec<(&'static str, bool)>,
    connector_source: Option<String>,
    comment: Option<String>,
    /// `(field, commented-out value, reason)`: what we could not write as a value.
    dropped: Vec<(&'static str, String, String)>,
    /// Metadata comment lines (Guid, dates, scoping flags, MTA-STS/DANE).
    meta: Vec<String>,
    /// The connector can't load as exported: written disabled with a placeholder.
    placeholder: Option<Placeholder>,
    warnings: Vec<String>,
}

enum Placeholder {
    /// MX routing with no concrete recipient domain.
    SampleDomains,
    /// Smart-host routing with no probeable smart host.
    SmartHosts,
}

impl Conn {
    fn warn(&mut self, w: String) {
        self.warnings.push(w);
    }

    fn drop_value(&mut self, field: &'static str, value: &str, reason: String) {
        self.warn(format!("{field}: {value:?} {reason}"));
        self.dropped.push((field, value.to_string(), reason));
    }

    /// Entries beyond the loader's cap for `field`: kept as comments under one warning, since a
    /// warning per entry would bury the others (an export may list thousands).
    fn drop_over_limit(&mut self, field: &'static str, over: Vec<String>, max: usize) {
        if over.is_empty() {
            return;
        }
        self.warn(format!(
            "{field}: {} entries, the config takes at most {max}; the first {max} are written, the other {} kept as comments",
            max + over.len(),
            over.len()
        ));
        let reason = format!("beyond the {max} the config takes");
        self.dropped
            .extend(over.into_iter().map(|v| (field, v, reason.clone())));
    }
}

fn read_connector(index: usize, m: &Map<String, Value>) -> Result<Conn, ImportError> {
    let name = match get(m, "Name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::String(_)) | None => return Err(ImportError::MissingName { index }),
        Some(other) => {
            return Err(ImportError::Field {
                index,
                name: brief(other),
                field: "Name",
                message: format!("expected a string, found {}", kind(other)),
            });
        }
    };
    let field_err = |field: &'static str, message: String| ImportError::Field {
        index,
        name: name.clone(),
        field,
        message,
    };
    let mut warnings = Vec::new();
    if name.chars().any(char::is_control) {
        warnings.push("Name holds control characters; they were replaced by spaces".to_string());
    }
    // The same rule as the loader's: at most 128 characters (not bytes).
    let clean_name = match ConnectorName::sanitize(&name) {
        Some(n) => n.as_str().to_string(),
        None => return Err(ImportError::MissingName { index }),
    };
    if name.trim().chars().count() > MAX_CONNECTOR_NAME_CHARS {
        warnings.push(format!(
            "Name is longer than the {MAX_CONNECTOR_NAME_CHARS} characters the config takes; shortened to {clean_name:?}"
        ));
    }

    let read_bool = |field: &'static str| -> Result<Option<bool>, ImportError> {
        match get(m, field) {
            None => Ok(None),
            Some(v) => as_bool(v)
                .map(Some)
                .ok_or_else(|| field_err(field, format!("expected true or false, found {}", brief(v)))),
        }
    };

    let enabled = read_bool("Enabled")?.unwrap_or(true);
    let test_mode = read_bool("TestMode")?.unwrap_or(false);
    let tls = tls_from_json(get(m, "TlsSettings")).map_err(|e| field_err("TlsSettings", e))?;
    let guid = get(m, "Guid").map(brief);

    let mut c = Conn {
        name: clean_name,
        guid: guid.clone(),
        enabled,
        connector_type: None,
        use_mx: true,
        smart_hosts: Vec::new(),
        recipient_domains: Vec::new(),
        wildcards: Vec::new(),
        tls,
        tls_domain: None,
        test_mode,
        carries: Vec::new(),
        connector_source: None,
        comment: None,
        dropped: Vec::new(),
        meta: Vec::new(),
        placeholder: None,
        warnings,
    };

    match connector_type_from_json(get(m, "ConnectorType")) {
        Ok(t) => c.connector_type = t,
        Err(e) => c.drop_value(
            "connector_type",
            &get(m, "ConnectorType").map(brief).unwrap_or_default(),
            format!("is not a connector type we know ({e}); left at the default, on-premises"),
        ),
    }

    // Metadata comments.
    let mut ids = Vec::new();
    if let Some(g) = &guid {
        ids.push(format!("Guid {g}"));
    }
    let date = |utc: &str, local: &str| get(m, utc).or_else(|| get(m, local)).and_then(parse_date);
    if let Some(d) = date("WhenCreatedUTC", "WhenCreated") {
        ids.push(format!("created {d}"));
    }
    if let Some(d) = date("WhenChangedUTC", "WhenChanged") {
        ids.push(format!("changed {d}"));
    }
    if !ids.is_empty() {
        c.meta.push(ids.join(", "));
    }
    for (key, field) in [
        ("RouteAllMessagesViaOnPremises", "route_all_messages_via_on_premises"),
        ("CloudServicesMailEnabled", "cloud_services_mail_enabled"),
        ("IsTransportRuleScoped", "transport_rule_scoped"),
        ("AllAcceptedDomains", "all_accepted_domains"),
    ] {
        match get(m, key).map(|v| (v, as_bool(v))) {
            Some((_, Some(b))) => c.carries.push((field, b)),
            Some((v, None)) => c.drop_value(field, &brief(v), format!("is not true or false ({key})")),
            None => {}
        }
    }
    if let Some(Value::String(src)) = get(m, "ConnectorSource") {
        let src = src.trim();
        if !src.is_empty() {
            c.connector_source = Some(src.to_string());
        }
    }
    if c.carries.contains(&("cloud_services_mail_enabled", true)) {
        c.warn(
            "CloudServicesMailEnabled (the hybrid path): on-premises servers often accept Microsoft 365 only by its \
             certificate, so a probe from elsewhere may be refused where Exchange Online is not"
                .into(),
        );
    }
    let modes: Vec<String> = ["MtaStsMode", "SmtpDaneMode"]
        .iter()
        .filter_map(|k| get(m, k).map(|v| format!("{k}: {}", brief(v))))
        .collect();
    if !modes.is_empty() {
        c.meta.push(modes.join(", "));
    }
    if get(m, "IsTransportRuleScoped").and_then(as_bool) == Some(true) {
        c.meta
            .push("rule-scoped: Exchange Online uses it only for messages a mail flow rule sends to it".into());
    }

    // Recipient domains.
    let mut raw_domains = Vec::new();
    let mut bad = Vec::new();
    if let Some(v) = get(m, "RecipientDomains") {
        collect_strings(v, ListKind::Domains, &mut raw_domains, &mut bad, 4);
    }
    for b in bad {
        c.drop_value("recipient_domains", &b, "is not a domain we can read".into());
    }
    let mut seen = HashSet::new();
    let mut over = Vec::new();
    for d in raw_domains {
        match normalize_domain(&d) {
            Ok(v) if !seen.insert(v.clone()) => {}
            Ok(v) if c.recipient_domains.len() >= MAX_DOMAINS => over.push(v),
            Ok(v) => c.recipient_domains.push(v),
            Err(e) => c.drop_value("recipient_domains", &d, format!("is not a domain: {e}")),
        }
    }
    c.drop_over_limit("recipient_domains", over, MAX_DOMAINS);

    // Smart hosts.
    let mut raw_hosts = Vec::new();
    let mut bad = Vec::new();
    if let Some(v) = get(m, "SmartHosts") {
        collect_strings(v, ListKind::Hosts, &mut raw_hosts, &mut bad, 4);
    }
    if raw_hosts.is_empty()
        && let Some(Value::String(s)) = get(m, "SmartHostsString")
    {
        raw_hosts = split_smart_hosts_string(s);
    }
    for b in bad {
        c.drop_value("smart_hosts", &b, "is not a smart host we can read".into());
    }
    let mut hosts = Vec::new();
    let mut seen = HashSet::new();
    for h in raw_hosts {
        match classify_smart_host(&h) {
            HostVerdict::Keep(v, note) => {
                if let Some(n) = note {
                    c.warn(format!("smart_hosts: {h:?} {n}"));
                }
                if seen.insert(v.clone()) {
                    hosts.push(v);
                }
            }
            HostVerdict::Drop(reason) => c.drop_value("smart_hosts", &h, reason),
        }
    }

    // Routing.
    c.use_mx = match read_bool("UseMXRecord")? {
        Some(b) => b,
        None => {
            let guess = hosts.is_empty() && !c.dropped.iter().any(|(f, _, _)| *f == "smart_hosts");
            c.warn(format!(
                "UseMXRecord is missing; written as use_mx_record: {guess} ({})",
                if guess {
                    "the export lists no smart host"
                } else {
                    "the export lists smart hosts"
                }
            ));
            guess
        }
    };
    if c.use_mx {
        for h in hosts {
            c.drop_value(
                "smart_hosts",
                &h,
                "is ignored by Exchange Online while UseMXRecord is true (kept as a comment)".into(),
            );
        }
        c.wildcards = c
            .recipient_domains
            .iter()
            .filter(|d| d.starts_with('*'))
            .cloned()
            .collect();
        let concrete = c.recipient_domains.iter().any(|d| !d.starts_with('*'));
        if !concrete {
            c.placeholder = Some(Placeholder::SampleDomains);
            c.warn(if c.recipient_domains.is_empty() {
                "routes by MX but lists no recipient domain; written disabled with a placeholder sample domain".into()
            } else {
                format!(
                    "routes by MX to wildcard domains only ({}); written disabled with a placeholder sample domain: list concrete domains in sample_domains",
                    c.wildcards.join(", ")
                )
            });
        } else if !c.wildcards.is_empty() {
            c.warn(format!(
                "wildcard recipient domains ({}) can't be looked up by MX; list concrete domains in sample_domains",
                c.wildcards.join(", ")
            ));
        }
    } else {
        let over = hosts.split_off(hosts.len().min(MAX_SMART_HOSTS));
        c.drop_over_limit("smart_hosts", over, MAX_SMART_HOSTS);
        c.smart_hosts = hosts;
        if c.smart_hosts.is_empty() {
            c.placeholder = Some(Placeholder::SmartHosts);
            c.warn(
                "routes to smart hosts but none can be probed; written disabled with a placeholder smart host".into(),
            );
        }
    }

    // TLS.
    if let Some(v) = get(m, "TlsDomain") {
        let raw = brief(v);
        if !raw.trim().is_empty() {
            if c.tls == TlsSettings::DomainValidation {
                match normalize_domain(&raw) {
                    Ok(d) if d != "*" => c.tls_domain = Some(d),
                    Ok(_) => c.drop_value("tls_domain", &raw, "matches nothing useful".into()),
                    Err(e) => c.drop_value("tls_domain", &raw, format!("is not a domain: {e}")),
                }
            } else {
                c.drop_value(
                    "tls_domain",
                    &raw,
                    format!(
                        "is only used with TlsSettings DomainValidation, but this connector has {}",
                        c.tls
                    ),
                );
            }
        }
    }

    if let Some(v) = get(m, "Comment") {
        let s = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if !s.trim().is_empty() {
            c.comment = Some(s);
        }
    }
    Ok(c)
}

/// A recipient-domain pattern as the config loader wants it: `*`, `name`, or `*.name`.
fn normalize_domain(raw: &str) -> Result<String, crate::config::NameError> {
    DomainPattern::parse(raw).map(|d| d.to_string())
}

enum HostVerdict {
    /// The value to write, and a note when it was changed.
    Keep(String, Option<String>),
    /// Why it can't be probed.
    Drop(String),
}

fn classify_smart_host(raw: &str) -> HostVerdict {
    let s = raw.trim();
    let s = match s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(inner) => inner.trim(),
        None => s,
    };
    if let Some((addr, prefix)) = s.split_once('/') {
        return match (addr.trim().parse::<IpAddr>(), prefix.trim().parse::<u8>()) {
            (Ok(ip), Ok(p)) if (ip.is_ipv4() && p == 32) || (ip.is_ipv6() && p == 128) => {
                HostVerdict::Keep(ip.to_string(), Some(format!("is a single address; written as {ip}")))
            }
            (Ok(ip), Ok(p)) if (ip.is_ipv4() && p < 32) || (ip.is_ipv6() && p < 128) => HostVerdict::Drop(
                "is a CIDR range, which can't be probed as a whole; list the addresses in it to probe".into(),
            ),
            _ => HostVerdict::Drop("is neither a host name, an IP address nor a CIDR range".into()),
        };
    }
    match HostPort::parse(s) {
        Ok(hp) if hp.port.is_none() => {
            let v = hp.to_string();
            let note = (v != s && !v.eq_ignore_ascii_case(s.trim_end_matches('.'))).then(|| format!("written as {v}"));
            HostVerdict::Keep(v, note)
        }
        Ok(_) => HostVerdict::Drop("has a port; Exchange Online always delivers to port 25".into()),
        Err(e) => HostVerdict::Drop(format!("can't be probed: {e}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Writing the YAML

/// Text safe inside a `#` comment: one line of YAML-printable characters. Comments can't escape,
/// and the parser refuses the whole file for one non-printable character (e.g. U+FFFE).
fn comment_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if is_yaml_printable(c) && !matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}') {
                c
            } else {
                ' '
            }
        })
        .collect()
}

/// A YAML double-quoted scalar; escapes everything YAML would not take literally.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if is_yaml_printable(c) && !matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}') => out.push(c),
            c => {
                let n = u32::from(c);
                if n <= 0xFFFF {
                    let _ = write!(out, "\\u{n:04X}");
                } else {
                    let _ = write!(out, "\\U{n:08X}");
                }
            }
        }
    }
    out.push('"');
    out
}

/// YAML 1.2 `c-printable` minus the line breaks.
fn is_yaml_printable(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{7E}' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// A host or domain plain when that is unambiguous (starts with a letter, only `[A-Za-z0-9._-]`,
/// not a YAML keyword); double-quoted otherwise (IP addresses, wildcards, anything else).
fn scalar(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "true" | "false" | "on" | "off" | "null"
        );
    if plain { s.to_string() } else { quote(s) }
}

/// One connector. `compact` leaves out what only repeats the loader's defaults (and the metadata
/// comments), for exports too large for the parser's budget otherwise.
fn render_connector(c: &Conn, compact: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "  - name: {}", quote(&c.name));
    if !compact {
        for m in &c.meta {
            let _ = writeln!(o, "    # {}", comment_text(m));
        }
    }
    let dropped = |o: &mut String, field: &str| {
        for (f, v, reason) in &c.dropped {
            if *f == field {
                let _ = writeln!(o, "    #   {}  # {}", comment_text(&quote(v)), comment_text(reason));
            }
        }
    };
    let has_dropped = |field: &str| c.dropped.iter().any(|(f, _, _)| *f == field);

    let enabled = c.enabled && c.placeholder.is_none();
    if c.enabled && !enabled {
        let _ = writeln!(
            o,
            "    # TODO: enabled in Exchange Online, but disabled here until the placeholder below is replaced"
        );
    }
    if !compact || !enabled {
        let _ = writeln!(o, "    enabled: {enabled}");
    }
    if let Some(t) = c.connector_type
        && (!compact || t != ConnectorType::default())
    {
        let _ = writeln!(o, "    connector_type: {}", t.as_str());
    }
    if has_dropped("connector_type") {
        let _ = writeln!(o, "    # ConnectorType could not be read:");
        dropped(&mut o, "connector_type");
    }
    if !compact || !c.use_mx {
        let _ = writeln!(o, "    use_mx_record: {}", c.use_mx);
    }

    // Smart hosts.
    match (&c.placeholder, c.use_mx) {
        (Some(Placeholder::SmartHosts), _) => {
            let _ = writeln!(
                o,
                "    # TODO: no smart host of this connector can be probed (see below). The loader needs at\n    # least one with use_mx_record: false, so the import wrote a placeholder under .invalid (it never\n    # resolves) and disabled the connector: replace it with real hosts, then set enabled: true."
            );
            let _ = writeln!(o, "    smart_hosts: [{PLACEHOLDER_HOST}]");
        }
        (_, false) => {
            let _ = writeln!(o, "    smart_hosts:");
            for h in &c.smart_hosts {
                let _ = writeln!(o, "      - {}", scalar(h));
            }
        }
        _ => {}
    }
    if has_dropped("smart_hosts") {
        let _ = writeln!(o, "    # smart hosts not written:");
        dropped(&mut o, "smart_hosts");
    }

    // Recipient domains.
    if c.recipient_domains.is_empty() {
        if !compact {
            let _ = writeln!(o, "    recipient_domains: []");
        }
    } else {
        let _ = writeln!(o, "    recipient_domains:");
        for d in &c.recipient_domains {
            let _ = writeln!(o, "      - {}", scalar(d));
        }
    }
    if has_dropped("recipient_domains") {
        let _ = writeln!(o, "    # recipient domains not written:");
        dropped(&mut o, "recipient_domains");
    }
    match &c.placeholder {
        Some(Placeholder::SampleDomains) => {
            let what = if c.wildcards.is_empty() {
                "This connector routes by MX but lists no recipient domain".to_string()
            } else {
                format!("{} can't be looked up by MX", comment_text(&c.wildcards.join(", ")))
            };
            let _ = writeln!(
                o,
                "    # TODO: {what}: replace the placeholder with concrete domains this\n    # connector delivers for (e.g. a subdomain you send to), then set enabled: true. The loader needs\n    # at least one concrete domain for an MX connector, so the import wrote a placeholder under\n    # .invalid (it never resolves) and disabled the connector."
            );
            let _ = writeln!(o, "    sample_domains: [{PLACEHOLDER_HOST}]");
        }
        _ if !c.wildcards.is_empty() => {
            let _ = writeln!(
                o,
                "    # TODO: {} can't be looked up by MX: list concrete domains to probe for them.",
                comment_text(&c.wildcards.join(", "))
            );
            if !compact {
                let _ = writeln!(o, "    sample_domains: []");
            }
        }
        _ => {}
    }

    if !compact || c.tls != TlsSettings::default() {
        let _ = writeln!(o, "    tls_settings: {}", c.tls.as_str());
    }
    if let Some(d) = &c.tls_domain {
        let _ = writeln!(o, "    tls_domain: {}", scalar(d));
    }
    if has_dropped("tls_domain") {
        let _ = writeln!(o, "    # tls_domain not written:");
        dropped(&mut o, "tls_domain");
    }
    if c.test_mode {
        let _ = writeln!(o, "    test_mode: true");
    }
    for (field, value) in &c.carries {
        if *value || !compact {
            let _ = writeln!(o, "    {field}: {value}");
        }
    }
    if let Some(src) = &c.connector_source {
        let _ = writeln!(o, "    connector_source: {}", quote(src));
    }
    if let Some(cm) = &c.comment {
        let _ = writeln!(o, "    comment: {}", quote(cm));
    }
    o
}

fn render_file(opts: &ImportOptions, conns: &[Conn], warnings: &[String], skipped: &[String], compact: bool) -> String {
    let blocks: Vec<String> = conns.iter().map(|c| render_connector(c, compact)).collect();
    let now = time::OffsetDateTime::now_utc();
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# mailflow-exporter configuration, imported from Exchange Online outbound connectors"
    );
    let _ = writeln!(o, "# source:   {}", comment_text(&opts.source_name));
    let _ = writeln!(
        o,
        "# imported: {} by `mailflow-exporter import-connectors`",
        format_utc(now)
    );
    let todo = if blocks.iter().any(|b| b.contains("# TODO")) {
        "; review every TODO below"
    } else {
        ""
    };
    let _ = writeln!(
        o,
        "# {} connector(s), {} warning(s){todo}.",
        blocks.len(),
        warnings.len()
    );
    let _ = writeln!(o, "#");
    let _ = writeln!(
        o,
        "# To export again (Exchange Online PowerShell, after Connect-ExchangeOnline):"
    );
    for line in EXPORT_COMMAND.lines() {
        let _ = writeln!(o, "#   {line}");
    }
    if !warnings.is_empty() {
        let _ = writeln!(o, "#");
        let _ = writeln!(o, "# Warnings:");
        for w in warnings {
            let _ = writeln!(o, "# - {}", comment_text(w));
        }
    }
    if !skipped.is_empty() {
        let _ = writeln!(o, "#");
        let _ = writeln!(o, "# Disabled in Exchange Online and not imported:");
        for s in skipped {
            let _ = writeln!(o, "# - {}", comment_text(s));
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "defaults:");
    let _ = writeln!(o, "  interval: 60s");
    let _ = writeln!(o, "  timeout: 10s");
    let _ = writeln!(
        o,
        "  message_expiration: 24h        # Exchange Online retries for 12h to 24h"
    );
    let _ = writeln!(
        o,
        "  # helo: probe.example.net     # EHLO name; default: this machine's host name"
    );
    let _ = writeln!(
        o,
        "# dns: {{ servers: [\"127.0.0.53:53\"] }}   # default: the system resolver"
    );
    let _ = writeln!(o);
    if blocks.is_empty() {
        let _ = writeln!(o, "connectors: []");
    } else {
        let _ = writeln!(o, "connectors:");
        for (i, b) in blocks.iter().enumerate() {
            if i > 0 {
                let _ = writeln!(o);
            }
            o.push_str(b);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_what_yaml_would_read() {
        assert_eq!(quote("a: \"b\" # c"), r#""a: \"b\" # c""#);
        assert_eq!(quote("x\ny\u{1}"), r#""x\ny\u0001""#);
        assert_eq!(quote("\u{2028}"), r#""\u2028""#);
        assert_eq!(scalar("mail.contoso.com"), "mail.contoso.com");
        assert_eq!(scalar("*.contoso.com"), "\"*.contoso.com\"");
        assert_eq!(scalar("192.0.2.1"), "\"192.0.2.1\"");
        assert_eq!(scalar("yes"), "\"yes\"");
    }

    #[test]
    fn dates_in_both_shapes() {
        let d = |s: &str| parse_date(&Value::String(s.into()));
        assert_eq!(d("/Date(1700000000000)/").as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(d("/Date(1700000000000+0100)/").as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(
            d("2023-11-14T23:13:20.1234567+01:00").as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        assert_eq!(d("2023-11-14T22:13:20Z").as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(
            d("2023-11-14T22:13:20").as_deref(),
            Some("2023-11-14T22:13:20Z (no time zone in the export)")
        );
        assert_eq!(d("last Tuesday"), None);
    }

    #[test]
    fn enum_numbers() {
        let n = |i: i64| tls_from_json(Some(&Value::from(i)));
        assert_eq!(n(1), Ok(TlsSettings::EncryptionOnly));
        assert_eq!(n(2), Ok(TlsSettings::CertificateValidation));
        assert_eq!(n(4), Ok(TlsSettings::DomainValidation));
        assert!(n(3).is_err());
        assert_eq!(tls_from_json(None), Ok(TlsSettings::None));
        assert_eq!(
            connector_type_from_json(Some(&Value::from(2))),
            Ok(Some(ConnectorType::Partner))
        );
        assert_eq!(
            connector_type_from_json(Some(&Value::from("OnPremises"))),
            Ok(Some(ConnectorType::OnPremises))
        );
    }

    #[test]
    fn smart_host_shapes() {
        assert!(matches!(classify_smart_host("[192.0.2.1]"), HostVerdict::Keep(h, None) if h == "192.0.2.1"));
        assert!(matches!(classify_smart_host("192.0.2.0/28"), HostVerdict::Drop(_)));
        assert!(matches!(classify_smart_host("192.0.2.7/32"), HostVerdict::Keep(h, Some(_)) if h == "192.0.2.7"));
        assert!(matches!(classify_smart_host("mail.test:26"), HostVerdict::Drop(_)));
        assert_eq!(
            split_smart_hosts_string("[a.example],[192.0.2.1]"),
            vec!["a.example".to_string(), "192.0.2.1".to_string()]
        );
    }

    #[test]
    fn utf16_exports_decode() {
        let mut bytes = vec![0xFF, 0xFE];
        for u in "[{\"Name\":\"é\"}]".encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(decode_export(&bytes).ok().as_deref(), Some("[{\"Name\":\"é\"}]"));
        assert_eq!(decode_export(b"\xEF\xBB\xBF[]").ok().as_deref(), Some("[]"));
        assert!(decode_export(b"\xFF\xFE\x00").is_err());
    }

    #[test]
    fn bomless_utf16_and_utf32_follow_from_the_nul_bytes() {
        let text = " [{\"Name\":\"é😀\"}]";
        let le16: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let be16: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
        let le32: Vec<u8> = text.chars().flat_map(|c| u32::from(c).to_le_bytes()).collect();
        let be32: Vec<u8> = text.chars().flat_map(|c| u32::from(c).to_be_bytes()).collect();
        for bytes in [&le16, &be16, &le32, &be32] {
            assert_eq!(decode_export(bytes).ok().as_deref(), Some(text), "{bytes:02x?}");
        }
        let with_bom = |bom: &[u8], body: &[u8]| [bom, body].concat();
        assert_eq!(
            decode_export(&with_bom(&[0xFF, 0xFE, 0, 0], &le32)).ok().as_deref(),
            Some(text)
        );
        assert_eq!(
            decode_export(&with_bom(&[0, 0, 0xFE, 0xFF], &be32)).ok().as_deref(),
            Some(text)
        );
        // The shortest exports: `[]` and `{}`.
        assert_eq!(decode_export(&[b'[', 0, b']', 0]).ok().as_deref(), Some("[]"));
        assert_eq!(decode_export(&[0, b'{', 0, b'}']).ok().as_deref(), Some("{}"));
        assert!(decode_export(&[b'[', 0, b']']).is_err(), "odd length");
        assert_eq!(decode_export(b"[]").ok().as_deref(), Some("[]"));
    }

    #[test]
    fn unique_names_stay_within_the_limit_across_suffix_widths() {
        let mut names = UniqueNames::default();
        let long = "x".repeat(MAX_CONNECTOR_NAME_CHARS);
        let got: Vec<String> = (0..12).map(|_| names.claim(&long)).collect();
        assert_eq!(got[0], long);
        assert_eq!(got[1], format!("{} (2)", "x".repeat(124)));
        assert_eq!(got[11], format!("{} (12)", "x".repeat(123)));
        assert!(got.iter().all(|n| n.chars().count() <= MAX_CONNECTOR_NAME_CHARS));
        // A base cut before a space loses the space, not a character of the suffix.
        let spaced = format!("{} {}", "y".repeat(123), "z".repeat(4));
        assert_eq!(names.claim(&spaced), spaced);
        assert_eq!(names.claim(&spaced), format!("{} (2)", "y".repeat(123)));
    }

    #[test]
    fn comments_hold_only_printable_characters() {
        assert_eq!(
            comment_text("a\u{FFFE}b\u{2028}c\nd\u{85}e\u{feff}f\u{1}g"),
            "a b c d e f g"
        );
    }
}
