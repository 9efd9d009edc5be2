//! `import-connectors`: `Get-OutboundConnector | ConvertTo-Json` exports in the shapes PowerShell
//! writes them, turned into YAML that must load with the config loader and say what the JSON said.

use mailflow_exporter::config::{
    Config, Connector, ConnectorType, DomainPattern, HostName, HostPort, Routing, TlsSettings,
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
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
    assert!(!imported.yaml.contains("TODO"), "{}", imported.yaml);
    let c = connector(&config, "Outbound to Contoso");
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
    assert!(
        y.contains("# IsTransportRuleScoped: false, AllAcceptedDomains: false, RouteAllMessagesViaOnPremises: false"),
        "{y}"
    );
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
    assert!(y.contains("IsTransportRuleScoped: true"), "{y}");
    assert!(y.contains("rule-scoped"), "{y}");
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
