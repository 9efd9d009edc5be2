//! Zones for the in-process fake DNS (`mailflow_exporter::lab::dns`), so smart hosts can be
//! given by name and resolved over real packets, as with a real connector.

use mailflow_exporter::lab::dns::{Answer, FakeDns, Qtype, Record, Zone};
use std::net::Ipv4Addr;

/// The lab's smart host name: lab certificates are issued for it and lab zones resolve it.
pub const LAB_HOST: &str = "mail.lab.test";

/// Sets `name` A 127.0.0.1.
pub fn a_loopback<'z>(zone: &'z mut Zone, name: &str) -> &'z mut Zone {
    zone.set(name, Qtype::A, Answer::Records(vec![Record::A(Ipv4Addr::LOCALHOST)]))
}

/// `name` with these A records and MX NODATA, so a smart host name is used by its own
/// addresses (no MX redirection).
pub fn host_zone(name: &str, addrs: &[Ipv4Addr]) -> Zone {
    let mut zone = Zone::new();
    zone.set(
        name,
        Qtype::A,
        Answer::Records(addrs.iter().map(|a| Record::A(*a)).collect()),
    )
    .set(name, Qtype::Mx, Answer::NoData);
    zone
}

/// [`LAB_HOST`] → 127.0.0.1 (MX NODATA); anything else is NXDOMAIN.
pub fn lab_zone() -> Zone {
    host_zone(LAB_HOST, &[Ipv4Addr::LOCALHOST])
}

/// Serves `zone` on a loopback UDP/TCP port.
pub async fn serve(zone: Zone) -> FakeDns {
    FakeDns::start(zone).await.expect("fake DNS starts")
}

/// Serves [`lab_zone`].
pub async fn lab_dns() -> FakeDns {
    serve(lab_zone()).await
}
