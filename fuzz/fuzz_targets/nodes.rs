//! Any nodes file: parsed or refused line by line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match quid::settlement::nodes::Nodes::parse(data, "fuzz.csv".as_ref()) {
        Ok(n) => assert!(n.by_id.values().all(|node| !node.id.is_empty())),
        Err(errors) => assert!(!errors.0.is_empty()),
    }
});
