#![forbid(unsafe_code)]
pub mod lab;
