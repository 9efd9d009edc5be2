//! Certificate dates, read independently of the code under test.

/// Seconds in a day, for certificate validity windows.
pub const DAY: i64 = 86_400;

/// Now as fractional Unix seconds (the exporter's timestamps are fractional too).
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// `not_after` of a DER certificate, parsed here rather than trusted from a report.
pub fn not_after_of(der: &[u8]) -> i64 {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("certificate parses");
    cert.validity().not_after.timestamp()
}

/// Asserts `unix` lies `days` days from now (a few minutes of slack for generation time).
#[track_caller]
pub fn assert_days_from_now(unix: i64, days: i64) {
    let delta = unix as f64 - now_unix();
    assert!(
        (delta - (days * DAY) as f64).abs() < 300.0,
        "{unix} is {delta:.0}s from now, expected {days} days"
    );
}
