//! Config files for `serve` in the README's format, written as text so a test can also write
//! what validation must reject. (`agent.rs` keeps its own richer builder.)

use std::net::SocketAddr;

/// A YAML double-quoted string.
pub fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A connector probing one smart host (a loopback IP or a name the test's DNS resolves).
pub fn smart_host(name: &str, host: &str, port: u16, tls: &str) -> String {
    format!(
        "  - name: {}\n    use_mx_record: false\n    smart_hosts: [{}]\n    port: {port}\n    tls_settings: {tls}\n",
        q(name),
        q(host)
    )
}

/// A connector probing the loopback address `addr` without TLS requirements.
pub fn at(name: &str, addr: SocketAddr) -> String {
    smart_host(name, &addr.ip().to_string(), addr.port(), "none")
}

/// A connector routed by the MX of `domains`, on a lab port.
pub fn mx(name: &str, domains: &[&str], port: u16, tls: &str) -> String {
    let list: Vec<String> = domains.iter().map(|d| q(d)).collect();
    format!(
        "  - name: {}\n    recipient_domains: [{}]\n    port: {port}\n    tls_settings: {tls}\n",
        q(name),
        list.join(", ")
    )
}

/// The whole file: `defaults` lines (indented two spaces, e.g. `"interval: 1s"`), the DNS
/// server every name is asked of, then the connectors.
pub fn file(defaults: &[&str], dns: Option<SocketAddr>, connectors: &[String]) -> String {
    let mut y = String::from("defaults:\n  helo: probe.lab.test\n");
    for d in defaults {
        y += &format!("  {d}\n");
    }
    if let Some(d) = dns {
        y += &format!("dns:\n  servers: [{}]\n", q(&d.to_string()));
    }
    y += "connectors:\n";
    for c in connectors {
        y += c;
    }
    y
}

/// Probing every second with one-second steps, so states change within seconds.
pub const FAST: &[&str] = &["interval: 1s", "timeout: 1s"];
