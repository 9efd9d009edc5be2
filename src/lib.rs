#![forbid(unsafe_code)]
//! mailflow-exporter: checks Exchange Online outbound connector targets the way Exchange Online
//! delivers to them, and names every failure with the code Exchange Online would report.

pub mod check;
pub mod code;
pub mod config;
pub mod demo;
pub mod lab;
pub mod probe;
pub mod report;
