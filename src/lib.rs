#![forbid(unsafe_code)]
//! mailflow-exporter: checks Exchange Online outbound connector targets the way Exchange Online
//! delivers to them, and names every failure with the code Exchange Online would report.

pub mod agent;
pub mod check;
pub mod clock;
pub mod code;
pub mod config;
pub mod demo;
pub mod http;
pub mod import;
pub mod lab;
pub mod metrics;
pub mod probe;
pub mod report;
pub mod serve;
pub mod status_page;
pub mod status_view;
pub mod store;
