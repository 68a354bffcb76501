//! quid's XDP accounting: parse a frame, find its subscriber, count it.
//!
//! The binaries (`quid`, `quid-bench`) only declare entry points; everything they run is here
//! so that the benchmark measures exactly the code the daemon attaches.
#![no_std]

pub mod account;
pub mod lookup;
pub mod maps;
pub mod parse;
