//! Integration tests: one binary, one file per area, helpers shared through `support`.
//! Everything talks to real loopback servers.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)]

mod agent;
mod browser;
mod cli;
mod connect;
mod dns;
mod exo;
mod hostile;
mod import;
mod operator;
mod scale;
mod smtp;
mod support;
mod taxonomy;
mod tenant;
mod tls;
mod webface;
