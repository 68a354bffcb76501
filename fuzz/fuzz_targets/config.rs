//! Any config text: parsed or refused with a located error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match quid::config::Config::parse(text, "fuzz.toml".as_ref()) {
        Ok(c) => {
            let _ = c.subscribers.sizes();
            let _ = c.grid.nets();
        }
        Err(e) => assert!(e.to_string().starts_with("fuzz.toml")),
    }
});
