//! Integration tests: one binary, one file per area. Everything talks to real loopback servers.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)]

mod agent;
mod browser;
mod cli;
mod common;
mod connect;
mod dns;
mod import;
mod smtp;
mod taxonomy;
mod tls;
