//! Microsoft's defer reason lines (`Reason: [{LED=450 4.4.316 Connection refused [...]};...]`),
//! parsed defensively into a [`super::DeferReason`].
//!
//! The format is not documented: `{KEY=value}` groups inside `[...]`, the LED value carrying
//! its own `[Key=value]` parts, any of them missing, empty, or holding `;`, `]` and non-ASCII
//! text. So the parser only looks for what it needs (the status at the start of the LED value,
//! two bracketed fields) and gives up with `None` rather than guessing; every byte index it
//! slices at is an ASCII byte, so no input can make it panic.

use super::DeferReason;
use crate::probe::escape;
use crate::taxonomy::Code;

/// The reason text kept for display (escaped), in characters.
pub const MAX_TEXT: usize = 300;
/// A server name or address kept from the line, in characters.
const MAX_FIELD: usize = 255;

/// None when the text holds no recognisable reason; never panics on any input.
pub fn parse(text: &str) -> Option<DeferReason> {
    if let Some(led) = led_value(text) {
        let line = led.trim();
        if line.is_empty() {
            return None;
        }
        // An LED value starts with its reply; a status found deeper (inside `[Message=...]`)
        // is the remote server's, not Microsoft's.
        let status = status_at(line.as_bytes(), 0);
        return Some(reason(line, status));
    }
    let (start, status) = find_status(text)?;
    let rest = &text[start..];
    let line = rest.split(['\r', '\n']).next().unwrap_or(rest).trim();
    Some(reason(line, Some(status)))
}

fn reason(line: &str, status: Option<&str>) -> DeferReason {
    DeferReason {
        status: status.map(str::to_string),
        code: status.map(|s| Code::parse(s).unwrap_or(Code::Other)),
        text: escape(line, MAX_TEXT),
        server: bracket_field(line, "LastAttemptedServerName"),
        ip: bracket_field(line, "LastAttemptedIP"),
        at: None,
    }
}

/// The value of the `LED=` group: up to the `}` that closes it, skipping `}` inside `[...]`.
fn led_value(text: &str) -> Option<&str> {
    let start = find_ci(text.as_bytes(), b"LED=")? + 4;
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut first_close = None;
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        match b {
            b'[' => depth += 1,
            b']' => depth = depth.saturating_sub(1),
            b'}' => {
                first_close.get_or_insert(i);
                if depth == 0 {
                    return Some(&text[start..i]);
                }
            }
            _ => {}
        }
    }
    // An unclosed `[` swallowed the group's end: fall back to the first `}` after `LED=`.
    Some(&text[start..first_close.unwrap_or(bytes.len())])
}

/// ASCII case-insensitive search.
fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (0..=hay.len() - needle.len()).find(|&i| hay[i..i + needle.len()].eq_ignore_ascii_case(needle))
}

/// `[Key=value]` inside the line: the value up to the next `]`, escaped; empty → None.
fn bracket_field(line: &str, key: &str) -> Option<String> {
    let pat = format!("[{key}=");
    let start = find_ci(line.as_bytes(), pat.as_bytes())? + pat.len();
    let rest = &line[start..];
    let value = rest.split(']').next().unwrap_or(rest).trim();
    (!value.is_empty()).then(|| escape(value, MAX_FIELD))
}

/// The first `DDD C.S.D` (a reply code and an enhanced status) that starts at a word boundary.
fn find_status(text: &str) -> Option<(usize, &str)> {
    let bytes = text.as_bytes();
    (0..bytes.len())
        .filter(|&i| i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
        .find_map(|i| status_at(bytes, i).map(|s| (i, s)))
}

/// The enhanced status (`4.4.316`) if `bytes[i..]` starts with `450 4.4.316`.
fn status_at(bytes: &[u8], i: usize) -> Option<&str> {
    let reply = bytes.get(i..i + 3)?;
    if !matches!(reply[0], b'2'..=b'5') || !reply.iter().all(u8::is_ascii_digit) || bytes.get(i + 3) != Some(&b' ') {
        return None;
    }
    let start = i + 4;
    let class = *bytes.get(start)?;
    if !matches!(class, b'2' | b'4' | b'5') || bytes.get(start + 1) != Some(&b'.') {
        return None;
    }
    let mut j = start + 2;
    for part in 0..2 {
        let digits = bytes[j.min(bytes.len())..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if !(1..=3).contains(&digits) {
            return None;
        }
        j += digits;
        if part == 0 {
            if bytes.get(j) != Some(&b'.') {
                return None;
            }
            j += 1;
        }
    }
    if bytes.get(j).is_some_and(|b| b.is_ascii_digit() || *b == b'.') {
        return None;
    }
    // All bytes in start..j are ASCII, so both ends are char boundaries.
    std::str::from_utf8(&bytes[start..j]).ok()
}

/// Undoes the XML escapes of a trace event's `data` (where the reason can sit in an attribute).
pub fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REFUSED: &str = "Reason: [{LED=450 4.4.316 Connection refused [Message=Socket error code 10061] [LastAttemptedServerName=hybrid.contoso.example] [LastAttemptedIP=203.0.113.5:25] [DM6NAM04FT012.eop-nam04.prod.protection.outlook.com 2026-12-01T10:15:32.000Z 08DC1234ABCD]};{MSG=};{FQDN=hybrid.contoso.example};{IP=203.0.113.5};{LRT=12/1/2026 10:15:32 AM}]";

    #[test]
    fn connection_refused() {
        let r = parse(REFUSED).unwrap();
        assert_eq!(r.status.as_deref(), Some("4.4.316"));
        assert_eq!(r.code, Some(Code::ConnectionRefused));
        assert_eq!(r.server.as_deref(), Some("hybrid.contoso.example"));
        assert_eq!(r.ip.as_deref(), Some("203.0.113.5:25"));
        assert!(
            r.text
                .starts_with("450 4.4.316 Connection refused [Message=Socket error code 10061]")
        );
        assert!(r.text.ends_with("08DC1234ABCD]"), "{}", r.text);
        assert!(!r.text.contains("MSG="));
    }

    #[test]
    fn subject_mismatch_keeps_microsofts_code() {
        let s = "Reason: [{LED=450 4.4.317 Cannot connect to remote server [Message=SubjectMismatch Expected Subject: *.contoso.example. Presented Subject: CN=ExchangeServer01. Thumbprint: D0AC11] [LastAttemptedServerName=mail.contoso.example] [LastAttemptedIP=192.0.2.10:25] [SmtpSecurity=-1;-1]};{MSG=};{FQDN=};{IP=};{LRT=}]";
        let r = parse(s).unwrap();
        assert_eq!(r.code, Some(Code::CannotConnect));
        assert!(r.text.contains("SubjectMismatch"));
        assert_eq!(r.ip.as_deref(), Some("192.0.2.10:25"));
    }

    #[test]
    fn starttls_and_tls_failures() {
        let s = "Reason: [{LED=450 4.4.317 Cannot establish session with remote server [Message=451 5.7.3 STARTTLS is required to send mail] [LastAttemptedServerName=smtp.fabrikam.example]};{MSG=};{FQDN=};{IP=};{LRT=}]";
        let r = parse(s).unwrap();
        assert_eq!(r.status.as_deref(), Some("4.4.317"));
        assert!(r.text.contains("451 5.7.3 STARTTLS is required"));
        let s = "Reason: [{LED=450 4.4.317 Cannot connect to remote server [Message=451 4.4.0 TLS negotiation failed with error SocketError] [LastAttemptedServerName=mx.fabrikam.example] [LastAttemptedIP=198.51.100.7:25] [SmtpSecurity=-2;-2] [CH2PR00 2026-12-01T10:00:00.000Z 08DC]};{MSG=4. OutboundProxyTargetIP: 198.51.100.7. OutboundProxyTargetHostName: mx.fabrikam.example};{FQDN=};{IP=};{LRT=}]";
        let r = parse(s).unwrap();
        assert_eq!(r.code, Some(Code::CannotConnect));
        assert!(r.text.contains("TLS negotiation failed"));
        assert!(!r.text.contains("OutboundProxy"));
        let s = "Reason: [{LED=450 4.4.317 Cannot connect to remote server [Message=451 4.4.0 Security status IllegalMessage]};{MSG=};{FQDN=};{IP=};{LRT=}]";
        assert_eq!(parse(s).unwrap().code, Some(Code::CannotConnect));
    }

    #[test]
    fn bare_lines_and_other_codes() {
        let r = parse("450 4.4.316 Connection refused [LastAttemptedIP=203.0.113.5:25]\r\nmore").unwrap();
        assert_eq!(r.code, Some(Code::ConnectionRefused));
        assert_eq!(
            r.text,
            "450 4.4.316 Connection refused [LastAttemptedIP=203.0.113.5:25]"
        );
        let r = parse("Delivery deferred: 451 4.7.500 Server busy").unwrap();
        assert_eq!(r.status.as_deref(), Some("4.7.500"));
        assert_eq!(r.code, Some(Code::Other));
        assert_eq!(
            parse("{LED=450 4.7.320 Certificate validation failed}").unwrap().code,
            Some(Code::CertificateValidationFailed)
        );
        assert_eq!(
            parse("LED=450 4.4.312 DNS query failed").unwrap().code,
            Some(Code::DnsQueryFailed)
        );
    }

    #[test]
    fn unrecognised_and_odd_inputs() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("The message was successfully delivered."), None);
        assert_eq!(parse("Reason: [{LED=};{MSG=};{FQDN=};{IP=};{LRT=}]"), None);
        assert_eq!(parse("1450 4.4.316 x"), None);
        assert_eq!(parse("450 4.4.3166 x"), None);
        assert_eq!(parse("450 4.4. x"), None);
        // An LED without a status still shows its text, with no code.
        let r = parse("Reason: [{LED=Something unusual happened};{MSG=}]").unwrap();
        assert_eq!((r.status, r.code), (None, None));
        assert_eq!(r.text, "Something unusual happened");
        // An unclosed bracket does not swallow the rest of the reason.
        let r = parse("Reason: [{LED=450 4.4.318 Connection closed [Message=oops};{MSG=x};{FQDN=}]").unwrap();
        assert_eq!(r.code, Some(Code::ConnectionClosedAbruptly));
        assert!(!r.text.contains("MSG"));
        // `]` and `;` in values, non-ASCII text escaped.
        let r = parse("Reason: [{LED=450 4.4.316 Verbindung abgelehnt [Message=Zugriff ]verweigert; ü] [LastAttemptedServerName=mx.müller.example]};{MSG=}]").unwrap();
        assert_eq!(r.code, Some(Code::ConnectionRefused));
        assert!(r.text.contains("\\xfc"), "{}", r.text);
        assert_eq!(r.server.as_deref(), Some("mx.m\\xfcller.example"));
        let long = format!("450 4.4.316 {}", "x".repeat(5000));
        assert!(parse(&long).unwrap().text.chars().count() <= MAX_TEXT + 1);
        assert_eq!(xml_unescape("&lt;a b=&quot;c&amp;amp;&quot;&gt;"), "<a b=\"c&amp;\">");
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_in_led_shapes(a in "[\\[\\]{};=0-9. a-zA-Zé\u{1F600}]{0,60}", b in "[\\[\\]{};=:0-9.a-z ]{0,40}") {
            let s = format!("Reason: [{{LED=450 4.4.316 {a} [LastAttemptedServerName={b}] [LastAttemptedIP={a}]}};{{MSG={b}}}]");
            let r = parse(&s);
            prop_assert!(r.is_some());
            let _ = parse(&format!("LED={a}{b}"));
            let _ = parse(&format!("{a}450 4.{b}"));
        }

        #[test]
        fn never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = parse(&s);
        }
    }
}
