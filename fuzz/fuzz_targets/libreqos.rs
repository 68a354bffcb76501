//! Any LibreQoS ShapedDevices.csv: parsed or refused row by row, never a panic; a parsed
//! table has one subscriber per circuit, each with at least one prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quid::subscribers::libreqos::{PlanFrom, parse};

fuzz_target!(|data: &[u8]| {
    for plan in [PlanFrom::MaxRates, PlanFrom::Column("Comment".into())] {
        match parse(data, "ShapedDevices.csv".as_ref(), &plan) {
            Ok(t) => {
                let mut ids: Vec<&str> = t.subscribers.iter().map(|s| s.id.as_str()).collect();
                ids.sort_unstable();
                ids.dedup();
                assert_eq!(ids.len(), t.subscribers.len());
                assert!(t.subscribers.iter().all(|s| !s.prefixes.is_empty()));
            }
            Err(errors) => assert!(!errors.0.is_empty()),
        }
    }
});
