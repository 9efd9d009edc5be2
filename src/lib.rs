#![forbid(unsafe_code)]
//! mailflow-exporter: checks Exchange Online outbound connector targets the way Exchange Online
//! delivers to them, and names every failure with the code Exchange Online would report.
//!
//! Layers, lower ones never importing higher ones (see ARCHITECTURE.md):
//! [`taxonomy`] and [`config`] → [`probe`] → [`agent`] → [`web`] → [`cli`].
//! [`import`] turns a tenant export into config; [`lab`] holds the loopback fault servers that
//! `demo` and the tests share.

pub mod agent;
pub mod cli;
pub mod config;
pub mod import;
pub mod lab;
pub mod probe;
pub mod taxonomy;
pub mod tenant;
pub mod timefmt;
pub mod web;
