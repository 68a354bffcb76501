//! RADIUS accounting in: a NAS's Start, Interim-Update and Stop bind and release its
//! subscribers' addresses live. The codec (`packet`, `attributes`, `authenticator`) is quid's
//! own, small and fuzzed; everything a peer sends is checked before it is believed.

pub mod accounting_out;
pub mod attributes;
pub mod authenticator;
pub mod binder;
pub mod config;
pub mod listener;
pub mod outcome;
pub mod packet;
pub mod request;
pub mod retransmissions;
pub mod sessions;
