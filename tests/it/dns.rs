//! DNS: MX first for smart host names, preference order, NODATA fallback, null MX, and every DNS
//! failure class, against the in-process DNS server over real UDP/TCP packets.

use crate::support::dns::{LAB_HOST, a_loopback, host_zone, lab_zone, serve};
use crate::support::probe::*;
use crate::support::smtp;
use mailflow_exporter::config::TlsSettings;
use mailflow_exporter::lab::dns::{Answer, Qtype, Record, Zone};
use mailflow_exporter::lab::smtp::closed_port;
use mailflow_exporter::probe::Phase;
use mailflow_exporter::taxonomy::{Code, Reason};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

async fn run(zone: Zone, host: &str, port: u16) -> mailflow_exporter::probe::ProbeReport {
    let dns = serve(zone).await;
    let mut s = spec(vec![named(host, port)], TlsSettings::None);
    s.timeout = Duration::from_secs(1);
    probe(opts(Some(dns.addr()), None), &s).await
}

#[tokio::test]
async fn nxdomain_smart_host() {
    let mut z = Zone::new();
    z.set_all("gone.lab.test", Answer::NxDomain);
    let r = run(z, "gone.lab.test", 25).await;
    assert_fails(&r, Code::DnsQueryFailed, Reason::Nxdomain, Phase::Dns);
    assert!(
        r.message.contains("LastAttemptedServerName=gone.lab.test"),
        "{}",
        r.message
    );
    assert!(!r.message.contains("LastAttemptedIP"), "no IP was tried: {}", r.message);
}

#[tokio::test]
async fn servfail() {
    let mut z = Zone::new();
    z.set_all("broken.lab.test", Answer::ServFail);
    let r = run(z, "broken.lab.test", 25).await;
    assert_fails(&r, Code::DnsQueryFailed, Reason::Servfail, Phase::Dns);
}

#[tokio::test]
async fn refused_by_dns_server() {
    let mut z = Zone::new();
    z.set_all("policy.lab.test", Answer::Refused);
    let r = run(z, "policy.lab.test", 25).await;
    assert_fails(&r, Code::DnsQueryFailed, Reason::DnsRefused, Phase::Dns);
}

#[tokio::test]
async fn silent_dns_times_out_within_the_deadline() {
    let mut z = Zone::new();
    z.set_all("silent.lab.test", Answer::Silent);
    let r = run(z, "silent.lab.test", 25).await;
    assert_fails(&r, Code::DnsQueryFailed, Reason::DnsTimeout, Phase::Dns);
    // Bounded by the step deadline (1 s), not by the resolver's own retry schedule.
    assert!(r.duration_seconds < 5.0, "took {}", r.duration_seconds);
}

#[tokio::test]
async fn name_without_addresses() {
    let mut z = Zone::new();
    z.set("empty.lab.test", Qtype::Mx, Answer::NoData);
    z.set("empty.lab.test", Qtype::A, Answer::NoData);
    z.set("empty.lab.test", Qtype::Aaaa, Answer::NoData);
    let r = run(z, "empty.lab.test", 25).await;
    assert_fails(&r, Code::DnsQueryFailed, Reason::NoAddress, Phase::Dns);
}

#[tokio::test]
async fn null_mx_on_a_smart_host_name() {
    let mut z = Zone::new();
    z.set(
        "nomail.lab.test",
        Qtype::Mx,
        Answer::Records(vec![Record::Mx(0, ".".into())]),
    );
    a_loopback(&mut z, "nomail.lab.test");
    let r = run(z, "nomail.lab.test", 25).await;
    assert_fails(&r, Code::DnsQueryFailed, Reason::NullMx, Phase::Dns);
}

#[tokio::test]
async fn unreachable_dns_server() {
    // Nothing listens on this UDP/TCP port: the resolver gets ICMP port unreachable / RST.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = sock.local_addr().unwrap();
    drop(sock);
    let mut s = spec(vec![named("mail.lab.test", 25)], TlsSettings::None);
    s.timeout = Duration::from_secs(1);
    let r = probe(opts(Some(dead), None), &s).await;
    let dump = serde_json::to_string(&r).unwrap();
    assert_eq!(r.code, Some(Code::DnsQueryFailed), "{dump}");
    assert!(
        matches!(r.reason, Some(Reason::DnsUnreachable | Reason::DnsTimeout)),
        "{dump}"
    );
}

#[tokio::test]
async fn smart_host_name_uses_mx_first_in_preference_order() {
    let good = smtp::plain().await;
    let mut z = Zone::new();
    // Listed out of order on purpose: preference decides, not answer order.
    z.set(
        "relay.lab.test",
        Qtype::Mx,
        Answer::Records(vec![
            Record::Mx(20, "backup.lab.test".into()),
            Record::Mx(10, "primary.lab.test".into()),
        ]),
    );
    a_loopback(&mut z, "relay.lab.test"); // must NOT be used: MX wins
    z.set_all("primary.lab.test", Answer::NxDomain);
    a_loopback(&mut z, "backup.lab.test");
    let r = run(z, "relay.lab.test", good.addr().port()).await;
    assert_delivered(&r);
    let hosts: Vec<(&str, Option<u16>)> = r.attempts.iter().map(|a| (a.host.as_str(), a.mx_preference)).collect();
    assert_eq!(
        hosts,
        vec![("primary.lab.test", Some(10)), ("backup.lab.test", Some(20))]
    );
    assert_eq!(r.attempts[0].reason, Some(Reason::Nxdomain));
    assert!(r.attempts[1].delivered);
    assert_eq!(good.connections(), 1);
}

#[tokio::test]
async fn smart_host_without_mx_uses_its_address() {
    let good = smtp::plain().await;
    let r = run(lab_zone(), LAB_HOST, good.addr().port()).await;
    assert_delivered(&r);
    assert_eq!(r.attempts.len(), 1);
    assert_eq!(r.attempts[0].mx_preference, None);
    assert!(r.attempts[0].durations.contains_key(&Phase::Dns));
}

#[tokio::test]
async fn every_address_is_an_attempt_and_failover_works() {
    let good = smtp::plain().await;
    // 127.0.0.2 has no listener on this port → refused; 127.0.0.1 serves.
    let z = host_zone("multi.lab.test", &[Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::LOCALHOST]);
    let r = run(z, "multi.lab.test", good.addr().port()).await;
    assert_delivered(&r);
    assert_eq!(r.attempts.len(), 2);
    assert_eq!(r.attempts[0].code, Some(Code::ConnectionRefused));
    assert!(r.attempts[1].delivered);
}

#[tokio::test]
async fn large_answer_is_fetched_over_tcp_and_attempts_are_bounded() {
    let good = smtp::plain().await;
    // Too big for UDP: the server truncates and the resolver retries over TCP.
    let dns = serve(host_zone("big.lab.test", &[Ipv4Addr::LOCALHOST; 80])).await;
    let s = spec(vec![named("big.lab.test", good.addr().port())], TlsSettings::None);
    let r = probe(opts(Some(dns.addr()), None), &s).await;
    assert_delivered(&r);
    assert!(
        r.attempts.len() <= 4,
        "attempts per host are capped: {}",
        r.attempts.len()
    );
}

#[tokio::test]
async fn mx_routing_implicit_mx_and_route_failure() {
    let good = smtp::plain().await;
    let mut z = Zone::new();
    z.set(
        "contoso.lab.test",
        Qtype::Mx,
        Answer::Records(vec![Record::Mx(10, "mx.contoso.lab.test".into())]),
    );
    a_loopback(&mut z, "mx.contoso.lab.test");
    // NODATA for MX → the domain's own A (RFC 5321 implicit MX)
    z.set("implicit.lab.test", Qtype::Mx, Answer::NoData);
    a_loopback(&mut z, "implicit.lab.test");
    z.set_all("expired.lab.test", Answer::NxDomain);
    let dns = serve(z).await;

    let s = mx_spec(
        &["contoso.lab.test", "implicit.lab.test"],
        good.addr().port(),
        TlsSettings::None,
    );
    let r = probe(opts(Some(dns.addr()), None), &s).await;
    assert_delivered(&r);
    assert_eq!(r.attempts.len(), 2);
    assert_eq!(r.attempts[0].host, "mx.contoso.lab.test");
    assert_eq!(r.attempts[1].host, "implicit.lab.test");

    // One broken recipient domain means mail to it queues: the connector is not delivered.
    let s = mx_spec(
        &["contoso.lab.test", "expired.lab.test"],
        good.addr().port(),
        TlsSettings::None,
    );
    let r = probe(opts(Some(dns.addr()), None), &s).await;
    assert_fails(&r, Code::DnsQueryFailed, Reason::Nxdomain, Phase::Dns);
    assert!(r.message.contains("expired.lab.test"), "{}", r.message);
}

#[tokio::test]
async fn mx_host_refused_then_next_preference() {
    let dead = closed_port().unwrap();
    let mut z = Zone::new();
    z.set(
        "fab.lab.test",
        Qtype::Mx,
        Answer::Records(vec![
            Record::Mx(5, "a.fab.lab.test".into()),
            Record::Mx(5, "b.fab.lab.test".into()),
        ]),
    );
    a_loopback(&mut z, "a.fab.lab.test");
    z.set(
        "b.fab.lab.test",
        Qtype::A,
        Answer::Records(vec![Record::A(Ipv4Addr::new(127, 0, 0, 3))]),
    );
    let dns = serve(z).await;
    // Port of a closed socket: both hosts refuse.
    let s = mx_spec(&["fab.lab.test"], dead.port(), TlsSettings::None);
    let r = probe(opts(Some(dns.addr()), None), &s).await;
    assert_fails(&r, Code::ConnectionRefused, Reason::Refused, Phase::Connect);
    assert_eq!(r.attempts.len(), 2);
    // The top level reports the last attempt, as Exchange does.
    assert!(
        r.message.contains("LastAttemptedServerName=b.fab.lab.test"),
        "{}",
        r.message
    );
    assert!(
        r.message
            .contains(&format!("LastAttemptedIP=127.0.0.3:{}", dead.port())),
        "{}",
        r.message
    );
}

#[tokio::test]
async fn aaaa_records_are_attempted_after_a() {
    let mut z = Zone::new();
    z.set("v6.lab.test", Qtype::Mx, Answer::NoData);
    z.set("v6.lab.test", Qtype::A, Answer::NoData);
    z.set(
        "v6.lab.test",
        Qtype::Aaaa,
        Answer::Records(vec![Record::Aaaa(Ipv6Addr::LOCALHOST)]),
    );
    let dead = closed_port().unwrap();
    let r = run(z, "v6.lab.test", dead.port()).await;
    // ::1 may or may not be configured on the test host; either way the address was tried.
    assert_eq!(r.attempts.len(), 1);
    assert_eq!(r.attempts[0].ip, Some(Ipv6Addr::LOCALHOST.into()));
    assert!(!r.delivered);
    assert_ne!(r.code, Some(Code::DnsQueryFailed));
}
