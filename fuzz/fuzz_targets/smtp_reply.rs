//! The SMTP reply parser on arbitrary server bytes (the server is untrusted).
//!
//! Checked on every input:
//! * no panic;
//! * a complete reply consumed `0 < used <= data.len()` bytes, ending at a line end, and parsing that
//!   prefix alone gives the same reply (nothing after it influenced the result);
//! * reading the same bytes in pieces, as `Session` does, never errors early: every shorter prefix
//!   of a complete reply is "need more", and so is every prefix of an incomplete one;
//! * the code is 100..=599, there are 1..=max_lines lines, and no line (nor the `Display` form)
//!   holds a control character: server text is escaped to printable ASCII (plus `…` when cut).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailflow_exporter::probe::smtp::{Limits, parse_reply};

fn printable(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_graphic() || c == ' ' || c == '…')
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let whole = parse_reply(data, limits);
    match &whole {
        Ok(Some((reply, used))) => {
            let used = *used;
            assert!(used > 0 && used <= data.len(), "used {used} of {}", data.len());
            assert_eq!(data[used - 1], b'\n', "a reply ends at a line end");
            assert_eq!(
                parse_reply(&data[..used], limits),
                whole,
                "the consumed prefix alone parses the same"
            );
            assert!((100..=599).contains(&reply.code), "code {}", reply.code);
            assert!(!reply.lines.is_empty() && reply.lines.len() <= limits.max_lines);
            for line in &reply.lines {
                assert!(!line.chars().any(char::is_control), "control character in {line:?}");
                assert!(printable(line), "unescaped character in {line:?}");
            }
            let shown = reply.to_string();
            assert!(printable(&shown), "unescaped character in Display {shown:?}");
            // Piecewise arrival: just before and just after every line end inside the reply, and
            // half-way, the parser must ask for more instead of failing or answering early.
            let mut cuts = vec![used - 1, used / 2];
            for (i, &b) in data[..used - 1].iter().enumerate() {
                if b == b'\n' {
                    cuts.extend([i, i + 1]);
                }
            }
            for cut in cuts {
                assert_eq!(
                    parse_reply(&data[..cut], limits),
                    Ok(None),
                    "prefix of {cut} bytes of a complete {used}-byte reply"
                );
            }
        }
        Ok(None) => {
            // Incomplete: any shorter prefix is incomplete too (never an early error).
            for cut in [data.len().saturating_sub(1), data.len() / 2] {
                assert_eq!(parse_reply(&data[..cut], limits), Ok(None), "prefix of {cut} bytes");
            }
        }
        Err(e) => {
            // The message is shown to people and logged: escaped as well.
            let msg = e.to_string();
            assert!(!msg.chars().any(char::is_control), "control character in error {msg:?}");
        }
    }
});
