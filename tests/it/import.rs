//! `import-connectors`: `Get-OutboundConnector | ConvertTo-Json` exports in the shapes PowerShell
//! writes them, turned into YAML that must load with the config loader and say what the JSON said.

use mailflow_exporter::config::{
    Config, Connector, ConnectorOrigin, ConnectorType, DomainPattern, HostName, HostPort, Role, Routing, TlsSettings,
};
use mailflow_exporter::import::{
    ImportError, ImportOptions, Imported, PLACEHOLDER_HOST, decode_export, import_connectors,
};
use proptest::prelude::*;
use std::path::Path;

macro_rules! fixture {
    ($name:literal) => {
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/import/", $name)
    };
}

fn opts() -> ImportOptions {
    ImportOptions {
        source_name: "connectors.json".into(),
        include_disabled: true,
    }
}

fn read(path: &str) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    decode_export(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Imports a fixture and loads the result with the real config loader.
fn import_file(path: &str, opts: &ImportOptions) -> (Imported, Config) {
    let json = read(path);
    let imported = import_connectors(&json, opts).unwrap_or_else(|e| panic!("{path}: {e}"));
    let config = Config::parse(Path::new("imported.yaml"), &imported.yaml)
        .unwrap_or_else(|e| panic!("{path}: the imported YAML does not load: {e}\n{}", imported.yaml));
    assert_eq!(config.connectors.len(), imported.connectors, "{}", imported.yaml);
    (imported, config)
}

fn connector<'a>(config: &'a Config, name: &str) -> &'a Connector {
    config
        .connector(name)
        .unwrap_or_else(|| panic!("no connector {name:?} in {:?}", config.connectors))
}

fn host(h: &str) -> HostPort {
    HostPort::parse(h).unwrap_or_else(|e| panic!("{h}: {e}"))
}

fn patterns(v: &[&str]) -> Vec<DomainPattern> {
    v.iter()
        .map(|s| DomainPattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")))
        .collect()
}

fn mx(v: &[&str]) -> Routing {
    Routing::Mx(
        v.iter()
            .map(|s| HostName::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")))
            .collect(),
    )
}

fn hosts(hs: &[&str]) -> Routing {
    Routing::SmartHosts(hs.iter().map(|h| host(h)).collect())
}

fn has_warning(imported: &Imported, needle: &str) -> bool {
    imported.warnings.iter().any(|w| w.contains(needle))
}

#[test]
fn single_object_from_powershell_7() {
    let (imported, config) = import_file(fixture!("single_ps7.json"), &opts());
    assert_eq!(imported.connectors, 1);
    // The one warning: CloudServicesMailEnabled (the hybrid path may refuse an outside probe).
    assert_eq!(imported.warnings.len(), 1, "{:?}", imported.warnings);
    assert!(
        has_warning(&imported, "CloudServicesMailEnabled"),
        "{:?}",
        imported.warnings
    );
    assert!(!imported.yaml.contains("TODO"), "{}", imported.yaml);
    let c = connector(&config, "Outbound to Contoso");
    assert!(c.carries.cloud_services_mail);
    assert!(!c.carries.route_all_via_on_premises && !c.carries.transport_rule_scoped);
    assert_eq!(c.carries.connector_source, ConnectorOrigin::Default);
    assert_eq!(c.role(), Role::Hybrid);
    assert!(c.enabled);
    assert_eq!(c.connector_type, ConnectorType::OnPremises);
    assert_eq!(c.probe.routing, hosts(&["mail.contoso.com", "mail2.contoso.com"]));
    assert_eq!(c.probe.recipient_domains, patterns(&["contoso.com", "*.contoso.com"]));
    assert_eq!(c.probe.tls_settings, TlsSettings::DomainValidation);
    assert_eq!(
        c.probe.tls_domain.as_ref().map(|d| d.to_string()).as_deref(),
        Some("*.contoso.com")
    );
    assert!(!c.test_mode);
    assert_eq!(
        c.comment.as_deref(),
        Some("Hybrid: all mail for contoso goes through the on-premises servers")
    );
    assert_eq!(c.probe.port, 25);

    let y = &imported.yaml;
    // Metadata as comments: Guid, UTC dates, scoping flags, MTA-STS/DANE.
    assert!(y.contains("# Guid 6f1c2a3e-8b4d-4e5f-9a0b-1c2d3e4f5a6b"), "{y}");
    assert!(y.contains("created 2024-06-01T06:00:00Z"), "{y}");
    assert!(y.contains("changed 2025-03-04T09:11:12Z"), "{y}");
    assert!(y.contains("    cloud_services_mail_enabled: true\n"), "{y}");
    assert!(y.contains("    transport_rule_scoped: false\n"), "{y}");
    assert!(y.contains("    connector_source: \"Default\"\n"), "{y}");
    assert!(y.contains("# MtaStsMode: None, SmtpDaneMode: Opportunistic"), "{y}");
    // Header: source, time of import, how to export; a defaults block.
    assert!(y.starts_with("# mailflow-exporter configuration"), "{y}");
    assert!(y.contains("# source:   connectors.json"), "{y}");
    assert!(y.contains("# imported: 20"), "{y}");
    assert!(
        y.contains("Get-OutboundConnector -IncludeTestModeConnectors $true"),
        "{y}"
    );
    assert!(y.contains("Sort-Object Guid -Unique | ConvertTo-Json -Depth 4"), "{y}");
    assert!(y.contains("\ndefaults:\n  interval: 60s\n"), "{y}");
    assert_eq!(config.defaults.interval.as_secs(), 60);
    assert_eq!(config.defaults.timeout.as_secs(), 10);
}

#[test]
fn array_from_windows_powershell_5_1_with_numbers_and_ms_dates() {
    let (imported, config) = import_file(fixture!("array_ps51.json"), &opts());
    assert_eq!(imported.connectors, 3);

    let a = connector(&config, "To Fabrikam smart host");
    assert_eq!(a.connector_type, ConnectorType::OnPremises); // 1
    assert_eq!(a.probe.tls_settings, TlsSettings::DomainValidation); // 4
    assert_eq!(
        a.probe.tls_domain.as_ref().map(|d| d.to_string()).as_deref(),
        Some("smtp.fabrikam.com")
    );
    assert_eq!(a.probe.routing, hosts(&["smtp.fabrikam.com"])); // a single string, not an array
    assert_eq!(a.probe.recipient_domains, patterns(&["fabrikam.com"]));
    assert_eq!(a.comment, None);

    let b = connector(&config, "Tailspin partner MX");
    assert_eq!(b.connector_type, ConnectorType::Partner); // 2
    assert_eq!(b.probe.tls_settings, TlsSettings::CertificateValidation); // 2
    assert_eq!(b.probe.routing, mx(&["tailspin.example"]));
    assert_eq!(b.comment.as_deref(), Some("Partner requires a valid certificate"));

    let c = connector(&config, "Woodgrove relay");
    assert_eq!(c.probe.tls_settings, TlsSettings::EncryptionOnly); // 1
    // TlsDomain without DomainValidation: a warning and a comment, not a value.
    assert_eq!(c.probe.tls_domain, None);
    assert!(has_warning(&imported, "TlsDomain") || has_warning(&imported, "tls_domain"));
    assert_eq!(c.comment, None, "an empty Comment is not written");

    let y = &imported.yaml;
    assert!(
        y.contains("#   \"relay.woodgrove.example\"  # is only used with TlsSettings DomainValidation"),
        "{y}"
    );
    // /Date(ms)/ in UTC.
    assert!(
        y.contains("created 2023-07-22T04:26:40Z, changed 2023-11-14T22:13:20Z"),
        "{y}"
    );
    assert!(y.contains("transport_rule_scoped: true"), "{y}");
    assert!(y.contains("rule-scoped"), "{y}");
    assert_eq!(c.role(), Role::RuleScoped);
    assert_eq!(a.role(), Role::Standard);
}

#[test]
fn partner_mx_with_wildcard_domains() {
    let (imported, config) = import_file(fixture!("partner_wildcard.json"), &opts());
    assert_eq!(imported.connectors, 2);

    // Wildcards only: kept, but disabled with a placeholder sample domain so the file loads.
    let w = connector(&config, "Partner MX wildcard");
    assert_eq!(w.connector_type, ConnectorType::Partner);
    assert!(
        !w.enabled,
        "an MX connector without a concrete domain is written disabled"
    );
    assert_eq!(w.probe.recipient_domains, patterns(&["*.contoso.com", "*"]));
    assert_eq!(w.probe.routing, mx(&[PLACEHOLDER_HOST]));
    assert_eq!(w.probe.tls_settings, TlsSettings::EncryptionOnly);
    assert!(
        has_warning(&imported, "wildcard domains only"),
        "{:?}",
        imported.warnings
    );

    // Wildcards plus a concrete domain: stays enabled, asks for sample domains.
    let m = connector(&config, "Partner MX mixed");
    assert!(m.enabled);
    assert_eq!(m.probe.recipient_domains, patterns(&["fabrikam.com", "*.fabrikam.net"]));
    assert_eq!(m.probe.routing, mx(&["fabrikam.com"]));
    assert_eq!(m.probe.tls_settings, TlsSettings::None);

    let y = &imported.yaml;
    assert!(y.contains("    sample_domains: []\n"), "{y}");
    assert!(y.contains("TODO"), "{y}");
    assert!(y.contains("changed 2026-01-02T03:04:05Z"), "{y}");
    // Enabling it without listing domains still fails visibly: the placeholder never resolves.
    assert!(PLACEHOLDER_HOST.ends_with(".invalid"));
}

#[test]
fn disabled_and_test_mode_connectors() {
    let (imported, config) = import_file(fixture!("disabled_testmode.json"), &opts());
    assert_eq!(imported.connectors, 2);
    let old = connector(&config, "Old relay (retired)");
    assert!(!old.enabled);
    assert_eq!(old.probe.tls_settings, TlsSettings::CertificateValidation);
    assert_eq!(old.probe.routing, hosts(&["old-relay.legacy.example"]));
    let new = connector(&config, "New relay (test mode)");
    assert!(new.enabled);
    assert!(new.test_mode);

    // Without disabled connectors: the file lists the skipped ones in a comment.
    let (imported, config) = import_file(
        fixture!("disabled_testmode.json"),
        &ImportOptions {
            include_disabled: false,
            ..opts()
        },
    );
    assert_eq!(imported.connectors, 1);
    assert!(config.connector("Old relay (retired)").is_none());
    assert!(
        imported.yaml.contains("not imported:\n# - Old relay (retired)"),
        "{}",
        imported.yaml
    );
}

#[test]
fn ip_smart_hosts_and_cidr_ranges() {
    let (imported, config) = import_file(fixture!("ip_cidr.json"), &opts());
    let c = connector(&config, "Datacenter relays");
    assert_eq!(
        c.probe.routing,
        hosts(&["192.0.2.10", "203.0.113.7", "2001:db8::25", "192.0.2.99"]),
        "{}",
        imported.yaml
    );
    assert!(c.enabled);
    assert!(
        has_warning(&imported, "\"198.51.100.0/28\" is a CIDR range"),
        "{:?}",
        imported.warnings
    );
    assert!(
        has_warning(&imported, "\"2001:db8:1::/64\" is a CIDR range"),
        "{:?}",
        imported.warnings
    );
    assert!(
        has_warning(&imported, "\"192.0.2.99/32\" is a single address"),
        "{:?}",
        imported.warnings
    );
    assert!(
        imported.yaml.contains("#   \"198.51.100.0/28\"  # is a CIDR range"),
        "{}",
        imported.yaml
    );

    // Only a range: nothing to probe, so a disabled connector with a placeholder.
    let r = connector(&config, "Range only");
    assert!(!r.enabled);
    assert_eq!(r.probe.routing, hosts(&[PLACEHOLDER_HOST]));
    assert!(imported.yaml.contains("#   \"203.0.113.0/24\""), "{}", imported.yaml);
}

#[test]
fn smart_hosts_and_domains_as_objects_and_smart_hosts_string() {
    let (imported, config) = import_file(fixture!("smarthost_objects.json"), &opts());
    let c = connector(&config, "Objects everywhere");
    assert_eq!(
        c.probe.routing,
        hosts(&[
            "smtp1.adatum.example",
            "192.0.2.115",
            "smtp2.adatum.example",
            "smtp3.adatum.example"
        ]),
        "{}",
        imported.yaml
    );
    assert_eq!(
        c.probe.recipient_domains,
        patterns(&["adatum.example", "*.adatum.example", "litware.example"])
    );
    assert_eq!(c.connector_type, ConnectorType::OnPremises);
    assert_eq!(c.probe.tls_settings, TlsSettings::CertificateValidation);

    let s = connector(&config, "Only SmartHostsString");
    assert_eq!(s.probe.routing, hosts(&["mx.proseware.example", "192.0.2.44"]));
    assert_eq!(s.probe.recipient_domains, patterns(&["proseware.example"]));
    assert_eq!(s.probe.tls_settings, TlsSettings::DomainValidation); // "4" as a string
    assert_eq!(
        s.probe.tls_domain.as_ref().map(|d| d.to_string()).as_deref(),
        Some("mx.proseware.example")
    );
    assert_eq!(s.connector_type, ConnectorType::Partner);
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
}

#[test]
fn utf8_bom_is_stripped() {
    let raw = std::fs::read(fixture!("bom.json")).unwrap();
    assert_eq!(&raw[..3], b"\xEF\xBB\xBF", "the fixture starts with a BOM");
    // Both the &str entry point (BOM as U+FEFF) and the byte decoder handle it.
    let as_text = String::from_utf8(raw).unwrap();
    let imported = import_connectors(&as_text, &opts()).unwrap();
    let config = Config::parse(Path::new("imported.yaml"), &imported.yaml).unwrap();
    let c = connector(&config, "Written by Out-File");
    assert_eq!(c.probe.routing, mx(&["bom.example"]));
    assert_eq!(c.connector_type, ConnectorType::Partner);
    assert!(
        imported
            .yaml
            .contains("changed 2025-12-31T23:59:59Z (no time zone in the export)"),
        "{}",
        imported.yaml
    );
    let (again, _) = import_file(fixture!("bom.json"), &opts());
    assert_eq!(again.connectors, 1);
}

#[test]
fn utf16_export_from_windows_powershell() {
    let json = read(fixture!("single_ps7.json"));
    let mut bytes = vec![0xFF, 0xFE];
    for u in json.encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    let decoded = decode_export(&bytes).unwrap();
    assert_eq!(decoded, json);
}

#[test]
fn names_and_comments_with_yaml_syntax_are_quoted() {
    let (imported, config) = import_file(fixture!("special_name.json"), &opts());
    let name = "*Contoso: \"east\" # 1 – 'primary' \\ [a], {b} & %c @d `e` | > !";
    let c = connector(&config, name);
    assert_eq!(
        c.comment.as_deref(),
        Some("line one: \"quoted\"\nline two # not a comment\ttab \\ backslash")
    );
    // Hosts and domains are normalised the way the loader does it.
    assert_eq!(c.probe.routing, hosts(&["mail.contoso.com"]));
    assert_eq!(c.probe.recipient_domains, patterns(&["contoso.com"]));
    assert_eq!(
        c.probe.tls_domain.as_ref().map(|d| d.to_string()).as_deref(),
        Some("mail.contoso.com")
    );
    // Unknown fields (Frobnicate, SomethingNew) are ignored.
    assert!(!imported.yaml.contains("Frobnicate"), "{}", imported.yaml);
}

#[test]
fn powershell_wrapped_array_and_empty_array() {
    let json = r#"{"value": [{"Name": "A", "UseMXRecord": true, "RecipientDomains": "a.example"}], "Count": 1}"#;
    let imported = import_connectors(json, &opts()).unwrap();
    let config = Config::parse(Path::new("imported.yaml"), &imported.yaml).unwrap();
    assert_eq!(connector(&config, "A").probe.routing, mx(&["a.example"]));

    let imported = import_connectors("[]", &opts()).unwrap();
    assert_eq!(imported.connectors, 0);
    assert!(has_warning(&imported, "no connectors"));
    let config = Config::parse(Path::new("imported.yaml"), &imported.yaml).unwrap();
    assert!(config.connectors.is_empty());
}

#[test]
fn duplicates_by_guid_are_dropped_and_by_name_renamed() {
    let json = r#"[
        {"Name": "Dup", "Guid": "g1", "UseMXRecord": true, "RecipientDomains": ["a.example"]},
        {"Name": "Dup", "Guid": "G1", "UseMXRecord": true, "RecipientDomains": ["a.example"]},
        {"Name": "Dup", "Guid": "g2", "UseMXRecord": true, "RecipientDomains": ["b.example"]}
    ]"#;
    let imported = import_connectors(json, &opts()).unwrap();
    let config = Config::parse(Path::new("imported.yaml"), &imported.yaml).unwrap();
    assert_eq!(config.connectors.len(), 2);
    assert_eq!(connector(&config, "Dup (2)").probe.routing, mx(&["b.example"]));
    assert!(has_warning(&imported, "same Guid"));
    assert!(has_warning(&imported, "same name"));
}

#[test]
fn not_json_is_an_error() {
    let err = import_connectors(&read(fixture!("not_json.txt")), &opts()).unwrap_err();
    assert!(matches!(err, ImportError::Json(_)), "{err:?}");
    assert!(err.to_string().contains("not valid JSON"), "{err}");
    assert!(import_connectors("", &opts()).is_err());
}

#[test]
fn json_that_is_not_connectors_is_an_error() {
    let err = import_connectors(&read(fixture!("scalar.json")), &opts()).unwrap_err();
    assert!(
        matches!(err, ImportError::NotConnectors { found: "a string" }),
        "{err:?}"
    );
    let err = import_connectors("[{\"Name\": \"a\"}, 7]", &opts()).unwrap_err();
    assert!(matches!(err, ImportError::NotAnObject { index: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("index 1"), "{err}");
}

#[test]
fn connector_without_name_names_the_index() {
    let err = import_connectors(&read(fixture!("missing_name.json")), &opts()).unwrap_err();
    assert!(matches!(err, ImportError::MissingName { index: 1 }), "{err:?}");
    assert!(err.to_string().contains("index 1"), "{err}");
    assert!(err.to_string().contains("Name"), "{err}");
}

#[test]
fn unknown_enum_values_name_the_connector_and_field() {
    let err = import_connectors(r#"{"Name": "X", "TlsSettings": 3}"#, &opts()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            ImportError::Field {
                index: 0,
                field: "TlsSettings",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        msg.contains("\"X\"") && msg.contains("TlsSettings") && msg.contains('3'),
        "{msg}"
    );
    let err = import_connectors(r#"{"Name": "X", "Enabled": "perhaps"}"#, &opts()).unwrap_err();
    assert!(matches!(err, ImportError::Field { field: "Enabled", .. }), "{err:?}");
    // ConnectorType is only a label: an unknown value is a warning, not an error.
    let imported = import_connectors(
        r#"{"Name": "X", "ConnectorType": 9, "RecipientDomains": "x.example"}"#,
        &opts(),
    )
    .unwrap();
    assert!(has_warning(&imported, "connector_type"), "{:?}", imported.warnings);
    Config::parse(Path::new("imported.yaml"), &imported.yaml).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any printable name and any comment survive the trip through YAML unchanged.
    #[test]
    fn names_and_comments_round_trip(
        name in prop_oneof!["[^\\p{Cc}]{1,64}", "[\\u{3041}-\\u{30FF} ]{30,200}"],
        comment in "(?s).{0,80}",
    ) {
        prop_assume!(!name.trim().is_empty());
        let json = serde_json::json!({
            "Name": name,
            "UseMXRecord": false,
            "SmartHosts": ["relay.example"],
            "Comment": comment,
        })
        .to_string();
        let imported = import_connectors(&json, &opts()).unwrap();
        let config = Config::parse(Path::new("imported.yaml"), &imported.yaml)
            .unwrap_or_else(|e| panic!("{e}\n{}", imported.yaml));
        let c = &config.connectors[0];
        if name.trim().chars().count() <= 128 {
            prop_assert_eq!(c.name(), name.trim());
        } else {
            // Cut to the loader's limit of 128 characters (not bytes), with a warning.
            prop_assert!(c.name().chars().count() <= 128 && name.trim().starts_with(c.name()), "{:?}", c.name());
            prop_assert!(imported.warnings.iter().any(|w| w.contains("128 characters")));
        }
        let expected = (!comment.trim().is_empty()).then_some(comment.as_str());
        prop_assert_eq!(c.comment.as_deref(), expected);
    }
}

/// `n` MX connectors called `name`, one recipient domain each.
fn same_name_export(name: &str, n: usize) -> String {
    let items: Vec<_> = (0..n)
        .map(|_| serde_json::json!({"Name": name, "UseMXRecord": true, "RecipientDomains": "a.example"}))
        .collect();
    serde_json::Value::Array(items).to_string()
}

/// Imports JSON text and loads the result with the real config loader.
fn import_json(json: &str) -> (Imported, Config) {
    let imported = import_connectors(json, &opts()).unwrap_or_else(|e| panic!("{e}"));
    let config = Config::parse(Path::new("imported.yaml"), &imported.yaml)
        .unwrap_or_else(|e| panic!("the imported YAML does not load: {e}\n{}", imported.yaml));
    assert_eq!(config.connectors.len(), imported.connectors);
    (imported, config)
}

fn names(config: &Config) -> Vec<&str> {
    config.connectors.iter().map(|c| c.name()).collect()
}

#[test]
fn equal_128_character_names_are_renamed_within_the_limit() {
    // 128 characters, 256 bytes: the limit counts characters. The third copy differs only by
    // trailing spaces, which the loader trims too.
    let long = "é".repeat(128);
    let mut items: Vec<_> = (0..12)
        .map(|_| serde_json::json!({"Name": long, "UseMXRecord": true, "RecipientDomains": "a.example"}))
        .collect();
    items[2]["Name"] = serde_json::Value::from(format!("{long}   "));
    let (imported, config) = import_json(&serde_json::Value::Array(items).to_string());
    let names = names(&config);
    assert_eq!(names.len(), 12);
    assert_eq!(names[0], long);
    assert_eq!(names[1], format!("{} (2)", "é".repeat(124)));
    assert_eq!(
        names[11],
        format!("{} (12)", "é".repeat(123)),
        "the base is cut, never the suffix"
    );
    assert!(names.iter().all(|n| n.chars().count() <= 128), "{names:?}");
    let unique: std::collections::HashSet<_> = names.iter().collect();
    assert_eq!(unique.len(), 12);
    assert!(
        has_warning(&imported, "shortened to stay within 128 characters"),
        "{:?}",
        imported.warnings
    );
}

#[test]
fn renamed_names_never_collide_with_exported_ones() {
    let json = r#"[
        {"Name": "Dup", "UseMXRecord": true, "RecipientDomains": "a.example"},
        {"Name": "Dup (2)", "UseMXRecord": true, "RecipientDomains": "a.example"},
        {"Name": "Dup", "UseMXRecord": true, "RecipientDomains": "a.example"},
        {"Name": "Dup", "UseMXRecord": true, "RecipientDomains": "a.example"},
        {"Name": "Dup (3)", "UseMXRecord": true, "RecipientDomains": "a.example"},
        {"Name": "dup", "UseMXRecord": true, "RecipientDomains": "a.example"}
    ]"#;
    let (imported, config) = import_json(json);
    assert!(!has_warning(&imported, "shortened"), "{:?}", imported.warnings);
    // Names differing only in case stay apart, as the loader (and the metrics labels) tell them apart.
    assert_eq!(
        names(&config),
        ["Dup", "Dup (2)", "Dup (3)", "Dup (4)", "Dup (3) (2)", "dup"]
    );
}

#[test]
fn twenty_thousand_equal_names_get_distinct_names_that_load() {
    // Renaming used to probe `(2)`, `(3)`, … from scratch for every copy: quadratic, ~25 s here.
    let (imported, config) = import_json(&same_name_export("Outbound to Contoso", 20_000));
    assert_eq!(imported.connectors, 20_000);
    let unique: std::collections::HashSet<&str> = names(&config).into_iter().collect();
    assert_eq!(unique.len(), 20_000);
    assert!(unique.contains("Outbound to Contoso (20000)"));
}

#[test]
fn more_connectors_than_an_agent_loads_is_an_error() {
    let items: Vec<_> = (0..60_000)
        .map(|i| serde_json::json!({"Name": format!("c{i}"), "UseMXRecord": true, "RecipientDomains": "a.example"}))
        .collect();
    let err = import_connectors(&serde_json::Value::Array(items).to_string(), &opts()).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::TooManyConnectors {
                found: 60_000,
                max: 50_000
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("split the export"), "{err}");
}

#[test]
fn thousands_of_domains_and_dozens_of_smart_hosts_are_capped_with_comments() {
    let domains: Vec<String> = (0..5_000).map(|i| format!("d{i}.example")).collect();
    let hosts: Vec<String> = (0..40).map(|i| format!("smtp{i}.example")).collect();
    let json = serde_json::json!([
        {"Name": "Many domains", "UseMXRecord": true, "RecipientDomains": domains},
        {"Name": "Many hosts", "UseMXRecord": false, "SmartHosts": hosts, "RecipientDomains": "b.example"},
    ])
    .to_string();
    let (imported, config) = import_json(&json);
    let d = connector(&config, "Many domains");
    assert_eq!(d.probe.recipient_domains.len(), 1000);
    assert!(d.enabled);
    let h = connector(&config, "Many hosts");
    let expected: Vec<&str> = hosts[..32].iter().map(String::as_str).collect();
    assert_eq!(h.probe.routing, self::hosts(&expected));
    assert!(
        has_warning(
            &imported,
            "recipient_domains: 5000 entries, the config takes at most 1000"
        ),
        "{:?}",
        imported.warnings
    );
    assert!(has_warning(
        &imported,
        "smart_hosts: 40 entries, the config takes at most 32"
    ));
    assert_eq!(imported.warnings.len(), 2, "one warning per list, not per entry");
    let y = &imported.yaml;
    assert!(
        y.contains("#   \"d4999.example\"  # beyond the 1000 the config takes"),
        "{y}"
    );
    assert!(
        y.contains("#   \"smtp39.example\"  # beyond the 32 the config takes"),
        "{y}"
    );
}

/// `big` connectors with 1000 recipient domains each, then `small` with one.
fn big_export(big: usize, small: usize) -> String {
    let domains: Vec<String> = (0..1000).map(|i| format!("d{i}.example")).collect();
    let items: Vec<_> = (0..big)
        .map(|i| serde_json::json!({"Name": format!("big {i}"), "UseMXRecord": true, "RecipientDomains": domains}))
        .chain((0..small).map(
            |i| serde_json::json!({"Name": format!("small {i}"), "UseMXRecord": true, "RecipientDomains": "a.example"}),
        ))
        .collect();
    serde_json::Value::Array(items).to_string()
}

#[test]
fn exports_beyond_the_parser_budget_are_written_compact() {
    // Just over the loader's node budget with every field spelled out (about 1012 nodes per big
    // connector, 12 per small one), just under it without the fields that repeat defaults.
    let budget = mailflow_exporter::config::parser_budget().max_nodes;
    let big = budget * 96 / 100_000;
    let small = budget * 4 / 1000;
    let (imported, config) = import_json(&big_export(big, small));
    assert_eq!(config.connectors.len(), big + small);
    assert!(
        has_warning(&imported, "fields that repeat the defaults"),
        "{:?}",
        imported.warnings
    );
    assert!(
        !imported.yaml.contains("    use_mx_record: true\n"),
        "defaults are left out"
    );
    let small = connector(&config, &format!("small {}", small - 1));
    assert!(small.enabled);
    assert_eq!(small.probe.routing, mx(&["a.example"]));
    assert_eq!(small.probe.tls_settings, TlsSettings::None);
}

#[test]
fn exports_beyond_the_parser_budget_even_compact_fail_with_the_reason() {
    let budget = mailflow_exporter::config::parser_budget().max_nodes;
    let big = budget * 104 / 100_000;
    let err = import_connectors(&big_export(big, 0), &opts()).unwrap_err();
    assert!(
        matches!(err, ImportError::TooLarge { connectors, .. } if connectors == big),
        "{err:?}"
    );
    assert!(err.to_string().contains(&format!("{budget} YAML nodes")), "{err}");
}

#[test]
fn the_loader_error_is_carried_when_the_output_would_not_load() {
    // The check after rendering: its error names the loader's file, line and field.
    let e = mailflow_exporter::config::ConfigError {
        file: "imported.yaml".into(),
        line: 29,
        column: 11,
        field: "connectors[1].name".into(),
        message: "connector name must be 1-128 printable characters".into(),
    };
    let err = ImportError::DoesNotLoad(e);
    assert!(
        err.to_string()
            .contains("imported.yaml:29:11: connectors[1].name: connector name must be"),
        "{err}"
    );
}

#[test]
fn utf16_without_bom_is_detected() {
    let expected = read(fixture!("single_ps7.json"));
    for f in [fixture!("utf16le_nobom.json"), fixture!("utf16be_nobom.json")] {
        let raw = std::fs::read(f).unwrap();
        assert!(raw[..2].contains(&0), "{f}: UTF-16 without a BOM");
        assert_eq!(read(f), expected, "{f}");
        let (imported, _) = import_file(f, &opts());
        assert_eq!(imported.connectors, 1);
    }
}

#[test]
fn yaml_breaking_characters_in_comments_and_names_load() {
    // U+FFFE is not YAML-printable: one in a comment line made the whole file unreadable.
    let odd = "x\u{FFFE}y\u{2028}z\u{85}w\u{feff}v\r\n#: - [ ]";
    let json = serde_json::json!([
        {"Name": format!("Disabled {odd}"), "Enabled": false, "UseMXRecord": true, "RecipientDomains": "a.example"},
        {"Name": format!("Kept {odd}"), "UseMXRecord": true, "RecipientDomains": ["a.example", format!("bad{odd}")],
         "Comment": odd, "Guid": odd, "SmtpDaneMode": odd},
    ])
    .to_string();
    let opts = ImportOptions {
        source_name: format!("export{odd}.json"),
        include_disabled: false,
    };
    let imported = import_connectors(&json, &opts).unwrap();
    let config =
        Config::parse(Path::new("imported.yaml"), &imported.yaml).unwrap_or_else(|e| panic!("{e}\n{}", imported.yaml));
    let c = &config.connectors[0];
    assert_eq!(c.name(), "Kept x\u{FFFE}y\u{2028}z w\u{feff}v  #: - [ ]");
    assert_eq!(c.comment.as_deref(), Some(odd));
}

#[test]
fn names_hosts_and_domains_at_the_edges() {
    let long_host = format!("{}.example", "a".repeat(300));
    let json = serde_json::json!([
        {"Name": "Edges", "UseMXRecord": false,
         "SmartHosts": ["fe80::1%eth0", "[::1]", "[2001:DB8::25]", long_host, "null", "Yes", "nan", "on.example."],
         "RecipientDomains": ["Contoso.COM.", " contoso.com", "contoso.com", "*", "*.Contoso.com", "*.contoso.com.", "true", "~"]},
        {"Name": "Star only", "UseMXRecord": true, "RecipientDomains": "*"},
    ])
    .to_string();
    let (imported, config) = import_json(&json);
    let c = connector(&config, "Edges");
    assert_eq!(
        c.probe.routing,
        hosts(&["::1", "2001:db8::25", "null", "yes", "nan", "on.example"]),
        "{}",
        imported.yaml
    );
    assert_eq!(
        c.probe.recipient_domains,
        patterns(&["contoso.com", "*", "*.contoso.com", "true"])
    );
    assert!(has_warning(&imported, "\"fe80::1%eth0\""), "{:?}", imported.warnings);
    assert!(has_warning(&imported, "\"~\""), "{:?}", imported.warnings);
    let s = connector(&config, "Star only");
    assert!(!s.enabled, "`*` can't be looked up by MX");

    // A name of spaces only is no name; the error names the index.
    let err = import_connectors(r#"[{"Name": "a"}, {"Name": " \u3000\t "}]"#, &opts()).unwrap_err();
    assert!(matches!(err, ImportError::MissingName { index: 1 }), "{err:?}");
}

/// Tokens that have broken YAML or the loader's rules before, to combine at random.
const NAME_PARTS: &[&str] = &[
    "a", "A", " ", "é", "\u{2028}", "\u{FFFE}", "#", ": ", "- ", "\"", "'", "\\", "\t", "(2)", " (2)", "null", "😀",
    "\u{7}",
];
const HOST_PARTS: &[&str] = &[
    "mail.test",
    "[::1]",
    "::1",
    "fe80::1%eth0",
    "192.0.2.1/32",
    "10.0.0.0/8",
    "yes",
    "null",
    "*",
    "*.x.test",
    "X.Test.",
    "a:25",
    "[",
    "]",
    ",",
    " ",
    "0x1",
    "1e3",
    "-a.test",
    "_srv.test",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever the names, hosts and domains, the import loads or fails with a reason; it never
    /// writes a file the agent refuses (the importer parses its own output).
    #[test]
    fn any_mix_of_tricky_values_loads(
        conns in proptest::collection::vec(
            (
                prop_oneof![
                    proptest::collection::vec(proptest::sample::select(NAME_PARTS), 1..6),
                    // Few distinct names, so that duplicates (and renames at the limit) are common.
                    proptest::sample::select(&["é", "A ", "a", " a", "a (2)"][..]).prop_map(|p| vec![p]),
                ],
                proptest::sample::select(&[1usize, 64, 128][..]),
                any::<bool>(),
                proptest::collection::vec(proptest::sample::select(HOST_PARTS), 0..6),
                proptest::collection::vec(proptest::sample::select(HOST_PARTS), 0..6),
            ),
            1..12,
        ),
    ) {
        let items: Vec<_> = conns
            .iter()
            .map(|(parts, repeat, use_mx, hs, ds)| {
                serde_json::json!({
                    "Name": parts.concat().repeat(*repeat),
                    "UseMXRecord": use_mx,
                    "SmartHosts": hs,
                    "RecipientDomains": ds.concat(),
                    "Comment": parts.concat(),
                })
            })
            .collect();
        match import_connectors(&serde_json::Value::Array(items).to_string(), &opts()) {
            Ok(imported) => {
                let config = Config::parse(Path::new("imported.yaml"), &imported.yaml)
                    .unwrap_or_else(|e| panic!("{e}\n{}", imported.yaml));
                let unique: std::collections::HashSet<&str> = names(&config).into_iter().collect();
                prop_assert_eq!(unique.len(), config.connectors.len());
            }
            Err(e) => prop_assert!(matches!(e, ImportError::MissingName { .. }), "{e}"),
        }
    }
}
