//! The daemon's HTTP edges: serving with limits, TLS, and the operator API.

pub mod operator;
pub mod serve;
pub mod tls;
