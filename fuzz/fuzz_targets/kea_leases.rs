//! Any Kea lease file: the first line read as a header, every other line as a lease or refused
//! with a reason, never a panic; a lease read is a prefix with host bits clear, keyed by it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quid::bindings::dhcp::lease::Header;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines();
    let Some(Ok(header)) = lines.next().map(Header::parse) else {
        return;
    };
    for line in lines {
        if let Ok(lease) = header.lease(line) {
            assert_eq!(lease.prefix.trunc(), lease.prefix);
            assert!(!lease.key().is_empty());
        }
    }
});
