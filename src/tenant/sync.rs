//! The Exchange Online admin API (`InvokeCommand`): `Get-OutboundConnector`,
//! `Get-TransportConfig`, `Get-AcceptedDomain`.
//!
//! This is the API the ExchangeOnlineManagement module itself uses, not a documented one: every
//! field is optional, and only `Get-OutboundConnector` (the one read the sync exists for) fails
//! the sync; the others fall back to "unknown" with a warning.

use super::api::{Api, ApiError, ApiName, pct};
use super::{AcceptedDomain, SyncView};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

/// Pages per cmdlet at most (1000 objects per page; tenants have a few dozen connectors).
pub const MAX_PAGES: usize = 20;

/// The `InvokeCommand` URL of the tenant.
pub fn invoke_url(exchange_base: &str, tenant_id: &str) -> String {
    format!("{exchange_base}/adminapi/beta/{}/InvokeCommand", pct(tenant_id, b""))
}

/// Runs one read-only cmdlet and collects its objects across pages (the module repeats the
/// same POST on `@odata.nextLink`).
pub async fn invoke(api: &Api, cmdlet: &str, parameters: Value) -> Result<Vec<Value>, ApiError> {
    let body = json!({"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters}});
    let headers: [(&str, &str); 4] = [
        ("x-cmdletname", cmdlet),
        ("x-responseformat", "json"),
        ("x-serializationlevel", "Partial"),
        ("prefer", "odata.maxpagesize=1000"),
    ];
    let mut url = Some(invoke_url(api.exchange_base(), api.tenant_id()));
    let mut out = Vec::new();
    let mut pages = 0;
    while let Some(u) = url.take() {
        if pages >= MAX_PAGES {
            tracing::warn!(cmdlet, pages, "admin API: stopped after {MAX_PAGES} pages");
            break;
        }
        let page = api.page(ApiName::AdminApi, &u, Some((&headers, &body))).await?;
        pages += 1;
        out.extend(page.items);
        url = page.next;
    }
    Ok(out)
}

pub async fn read(api: &Api, now: SystemTime) -> Result<SyncView, ApiError> {
    // Plain, test-mode included, rule-scoped: together they list every connector.
    let mut all = invoke(api, "Get-OutboundConnector", json!({})).await?;
    for params in [
        json!({"IncludeTestModeConnectors": true}),
        json!({"IsTransportRuleScoped": true}),
    ] {
        match invoke(api, "Get-OutboundConnector", params).await {
            Ok(more) => all.extend(more),
            Err(e) => {
                tracing::warn!(error = %e, "admin API: an extra Get-OutboundConnector read failed; using what was read")
            }
        }
    }
    let connectors = Value::Array(dedup_connectors(all));

    let message_expiration = match invoke(api, "Get-TransportConfig", json!({})).await {
        Ok(objs) => {
            let raw = objs.iter().find_map(|o| o.get("MessageExpiration"));
            let parsed = raw.and_then(expiration);
            if parsed.is_none() {
                tracing::warn!(
                    value = raw.map(|v| crate::probe::escape(&v.to_string(), 80)),
                    "admin API: MessageExpiration missing or not understood"
                );
            }
            parsed
        }
        Err(e) => {
            tracing::warn!(error = %e, "admin API: Get-TransportConfig failed; message expiration unknown");
            None
        }
    };

    let accepted_domains = match invoke(api, "Get-AcceptedDomain", json!({})).await {
        Ok(objs) => objs.iter().filter_map(accepted_domain).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "admin API: Get-AcceptedDomain failed");
            Vec::new()
        }
    };

    Ok(SyncView {
        fetched_at: now,
        connectors,
        message_expiration,
        accepted_domains,
    })
}

/// Objects, de-duplicated by `Guid` (else `Name`, case-insensitively), first seen kept in order.
/// Anything that is not an object is dropped.
pub fn dedup_connectors(all: Vec<Value>) -> Vec<Value> {
    let mut seen = HashSet::new();
    all.into_iter()
        .filter(|c| c.is_object())
        .filter(|c| {
            let key = ["Guid", "Name"]
                .iter()
                .find_map(|k| c.get(*k).and_then(Value::as_str).filter(|s| !s.trim().is_empty()))
                .map(|s| s.trim().to_ascii_lowercase());
            match key {
                Some(k) => seen.insert(k),
                None => true,
            }
        })
        .collect()
}

/// `MessageExpiration` as the API may serialise a .NET TimeSpan: `d.hh:mm:ss[.fffffff]` or
/// `hh:mm:ss` text, or an object with `TotalSeconds`/`TotalMilliseconds`.
pub fn expiration(v: &Value) -> Option<Duration> {
    match v {
        Value::String(s) => parse_timespan(s),
        Value::Object(o) => {
            if let Some(s) = o.get("TotalSeconds").and_then(Value::as_f64) {
                secs_f64(s)
            } else {
                o.get("TotalMilliseconds")
                    .and_then(Value::as_f64)
                    .and_then(|ms| secs_f64(ms / 1000.0))
            }
        }
        _ => None,
    }
}

fn secs_f64(s: f64) -> Option<Duration> {
    (s.is_finite() && s > 0.0 && s < 1e10).then(|| Duration::from_secs_f64(s))
}

/// A .NET TimeSpan string (`1.00:00:00`, `12:00:00`, `2.00:00:00.5`); negative or malformed →
/// None.
pub fn parse_timespan(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (days, clock) = match s.split_once('.') {
        Some((d, rest)) if rest.contains(':') && !d.contains(':') => (d.parse::<u64>().ok()?, rest),
        _ => (0, s),
    };
    let mut parts = clock.split(':');
    let h: u64 = parts.next()?.parse().ok()?;
    let m: u64 = parts.next()?.parse().ok()?;
    let sec_part = parts.next()?;
    if parts.next().is_some() || h > 23 || m > 59 {
        return None;
    }
    let (whole, frac) = sec_part.split_once('.').unwrap_or((sec_part, ""));
    let sec: u64 = whole.parse().ok()?;
    if sec > 59 || !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 7 {
        return None;
    }
    let nanos = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse::<u32>().ok()?
    };
    let total = days.checked_mul(86_400)?.checked_add(h * 3600 + m * 60 + sec)?;
    let d = Duration::new(total, nanos);
    (!d.is_zero()).then_some(d)
}

/// One `Get-AcceptedDomain` object. `DomainName` may be text or an object with `Domain`;
/// `DomainType` text or the enum number (0 Authoritative, 1 ExternalRelay, 2 InternalRelay).
pub fn accepted_domain(o: &Value) -> Option<AcceptedDomain> {
    let name = match o.get("DomainName") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Object(m)) => m.get("Domain").and_then(Value::as_str),
        _ => None,
    }
    .or_else(|| o.get("Name").and_then(Value::as_str))?
    .trim()
    .trim_end_matches('.')
    .to_ascii_lowercase();
    if name.is_empty() {
        return None;
    }
    let domain_type = match o.get("DomainType") {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => "Authoritative".into(),
            Some(1) => "ExternalRelay".into(),
            Some(2) => "InternalRelay".into(),
            _ => n.to_string(),
        },
        _ => String::new(),
    };
    Some(AcceptedDomain {
        domain: crate::probe::escape(&name, 255),
        domain_type: crate::probe::escape(&domain_type, 40),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("1.00:00:00"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_timespan("12:00:00"), Some(Duration::from_secs(43_200)));
        assert_eq!(
            parse_timespan("2.06:30:15.5"),
            Some(Duration::new(196_215, 500_000_000))
        );
        for bad in [
            "",
            "1 day",
            "-1.00:00:00",
            "25:00:00",
            "1.00:00",
            "00:00:00",
            "P1D",
            "1.2.3",
        ] {
            assert_eq!(parse_timespan(bad), None, "{bad}");
        }
        assert_eq!(
            expiration(&json!({"TotalSeconds": 43200.0})),
            Some(Duration::from_secs(43_200))
        );
        assert_eq!(expiration(&json!(5)), None);
    }

    #[test]
    fn dedup_by_guid_then_name() {
        let v = dedup_connectors(vec![
            json!({"Guid": "A", "Name": "one"}),
            json!({"Guid": "a", "Name": "one again"}),
            json!({"Name": "Two"}),
            json!({"Name": "two"}),
            json!({"Identity": "three"}),
            json!("not an object"),
        ]);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0]["Name"], "one");
    }

    #[test]
    fn accepted_domain_shapes() {
        let d = accepted_domain(&json!({"DomainName": "Contoso.Example", "DomainType": "InternalRelay"})).unwrap();
        assert!(d.is_internal_relay());
        assert_eq!(d.domain, "contoso.example");
        let d = accepted_domain(&json!({"DomainName": {"Domain": "fabrikam.example"}, "DomainType": 0})).unwrap();
        assert_eq!(d.domain_type, "Authoritative");
        assert_eq!(accepted_domain(&json!({"DomainType": "Authoritative"})), None);
    }

    #[test]
    fn url() {
        assert_eq!(
            invoke_url("https://outlook.example", "contoso.onmicrosoft.com"),
            "https://outlook.example/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand"
        );
    }
}
