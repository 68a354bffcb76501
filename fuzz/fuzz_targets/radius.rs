//! Any datagram at the RADIUS accounting port: parsed, authenticated and read, or refused;
//! never a panic, and a packet that parses keeps every attribute inside its length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quid::radius::{
    attributes::{Accounting, SubscriberAttribute},
    authenticator::verify_request,
    packet::Packet,
};

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::parse(data) else {
        return;
    };
    let len = packet.bytes().len();
    assert!(len <= data.len());
    for a in packet.attributes() {
        assert!(a.offset + 2 + a.value.len() <= len);
    }
    let _ = verify_request(&packet, b"fuzz");
    for by in [
        SubscriberAttribute::UserName,
        SubscriberAttribute::CallingStationId,
        SubscriberAttribute::NasPortId,
        SubscriberAttribute::Class,
    ] {
        if let Ok(acct) = Accounting::read(&packet, by) {
            assert!(acct.prefixes.iter().all(|p| p.trunc() == *p));
        }
    }
});
