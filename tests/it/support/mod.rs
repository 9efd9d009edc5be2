//! The one test-support layer. Every helper shared by the areas lives here once, so a fix to
//! a deadline, a port race or a parser reaches every test at the same time.
//!
//! Rules the helpers enforce: only loopback, a deadline on every wait, children killed on drop.

pub mod certs;
pub mod config;
pub mod dns;
pub mod http;
pub mod metrics;
pub mod net;
pub mod probe;
pub mod process;
pub mod scratch;
pub mod sha1;
pub mod smtp;
