//! Any subscriber table: parsed or refused line by line, never a panic; a parsed table's
//! prefixes are all owned by a subscriber of the table.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match quid::subscribers::table::Table::parse(data, "fuzz.csv".as_ref()) {
        Ok(t) => {
            let (v4, v6) = t.prefix_counts();
            let listed: usize = t.subscribers.iter().map(|s| s.prefixes.len()).sum();
            assert_eq!(v4 + v6, listed);
        }
        Err(errors) => assert!(!errors.0.is_empty()),
    }
});
