//! Loopback fault servers shared by `demo` and the integration tests, so the two cannot drift.
pub mod dns;
pub mod pki;
pub mod scenarios;
pub mod smtp;
pub mod tenant;
