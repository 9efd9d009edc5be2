//! TCP connect: no answer (4.4.315), refused (4.4.316), and what happens right after connect
//! (4.4.318), against real loopback sockets.

use crate::support::probe::*;
use crate::support::smtp;
use mailflow_exporter::config::TlsSettings;
use mailflow_exporter::lab::smtp::{Behavior, BlackholeListener, FaultServer, closed_port};
use mailflow_exporter::probe::Phase;
use mailflow_exporter::taxonomy::{Code, Reason};
use std::time::Duration;

#[tokio::test]
async fn refused_port() {
    let dead = closed_port().unwrap();
    let r = probe(opts(None, None), &spec(vec![at(dead)], TlsSettings::None)).await;
    assert_fails(&r, Code::ConnectionRefused, Reason::Refused, Phase::Connect);
    assert!(
        r.message.contains(&format!("[LastAttemptedIP={dead}]")),
        "{}",
        r.message
    );
}

#[tokio::test]
async fn dropped_syns_time_out() {
    let hole = BlackholeListener::start().unwrap();
    let mut s = spec(vec![at(hole.addr())], TlsSettings::None);
    s.timeout = Duration::from_millis(700);
    let r = probe(opts(None, None), &s).await;
    assert_fails(&r, Code::ConnectionTimedOut, Reason::ConnectTimeout, Phase::Connect);
    let connect = r.attempts[0].durations[&Phase::Connect];
    assert!(connect >= 0.6, "gave up before the deadline: {connect}");
}

#[tokio::test]
async fn reset_right_after_accept() {
    let srv = FaultServer::start(Behavior::ResetAtConnect).await.unwrap();
    let r = probe(opts(None, None), &spec(vec![at(srv.addr())], TlsSettings::None)).await;
    assert_fails(&r, Code::ConnectionClosedAbruptly, Reason::Reset, Phase::Banner);
}

#[tokio::test]
async fn closed_right_after_accept() {
    let srv = FaultServer::start(Behavior::CloseAtConnect).await.unwrap();
    let r = probe(opts(None, None), &spec(vec![at(srv.addr())], TlsSettings::None)).await;
    assert_fails(&r, Code::ConnectionClosedAbruptly, Reason::Closed, Phase::Banner);
}

#[tokio::test]
async fn failover_from_dead_smart_host_to_live_one() {
    let dead = closed_port().unwrap();
    let live = smtp::plain().await;
    let r = probe(
        opts(None, None),
        &spec(vec![at(dead), at(live.addr())], TlsSettings::None),
    )
    .await;
    assert_delivered(&r);
    assert_eq!(r.attempts.len(), 2);
    assert_eq!(r.attempts[0].code, Some(Code::ConnectionRefused));
    assert!(r.attempts[1].delivered);
    assert!(r.attempts[1].source_address.is_some_and(|s| s.ip().is_loopback()));
}

#[tokio::test]
async fn all_hosts_fail_reports_the_last_attempt() {
    let busy = FaultServer::start(Behavior::Banner421).await.unwrap();
    let dead = closed_port().unwrap();
    let r = probe(
        opts(None, None),
        &spec(vec![at(busy.addr()), at(dead)], TlsSettings::None),
    )
    .await;
    assert_fails(&r, Code::ConnectionRefused, Reason::Refused, Phase::Connect);
    assert_eq!(r.attempts[0].code, Some(Code::CannotConnect));
    assert!(
        r.message.contains(&format!("[LastAttemptedIP={dead}]")),
        "{}",
        r.message
    );
}

#[tokio::test]
async fn every_smart_host_is_probed_even_after_success() {
    // A broken backup host must show up while the primary still works.
    let live = smtp::plain().await;
    let dead = closed_port().unwrap();
    let r = probe(
        opts(None, None),
        &spec(vec![at(live.addr()), at(dead)], TlsSettings::None),
    )
    .await;
    assert_delivered(&r);
    assert_eq!(r.attempts.len(), 2);
    assert_eq!(r.attempts[1].reason, Some(Reason::Refused));
}
