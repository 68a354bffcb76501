//! The canonical signing encoding is unambiguous: decoding the bytes of any encodable report
//! gives back exactly its fields, so two different reports never share a signature. Signing
//! and verifying round-trip, and a change to any signed byte breaks the signature.
#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use quid::settlement::report::{EnergySource, MAGIC, MAGIC_V3, Report, rfc3339};

/// The signing key, made once: no run needs to derive it again.
static KEY: LazyLock<ed25519_dalek::SigningKey> =
    LazyLock::new(|| ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]));

#[derive(Debug, Arbitrary)]
struct Input {
    node: String,
    seq: u64,
    start: i64,
    len: i64,
    /// Use these texts instead of formatted times, to reach odd RFC 3339 forms.
    raw_times: Option<(String, String)>,
    figures: [u64; 3],
    grid: [u64; 2],
    /// A version 3 report's energy source (an index into `EnergySource::ALL`), or version 2.
    source: Option<u8>,
    flip: u16,
}

/// What the canonical bytes hold: node, seq, period, figures, grid, energy source.
type Decoded = (String, u64, i64, i64, [u64; 3], [u64; 2], Option<u8>);

/// Reads the canonical bytes back (the format in `quid::report`'s documentation).
fn decode(b: &[u8]) -> Option<Decoded> {
    let (v3, rest) = match b.strip_prefix(MAGIC.as_slice()) {
        Some(rest) => (false, rest),
        None => (true, b.strip_prefix(MAGIC_V3.as_slice())?),
    };
    let (len, rest) = rest.split_at_checked(2)?;
    let len = usize::from(u16::from_be_bytes(len.try_into().ok()?));
    let (id, rest) = rest.split_at_checked(len)?;
    let (rest, source) = if v3 {
        let (words, source) = rest.split_at_checked(rest.len().checked_sub(1)?)?;
        (words, Some(source[0]))
    } else {
        (rest, None)
    };
    if rest.len() != 8 * 8 {
        return None;
    }
    let mut words = rest.chunks_exact(8).map(|c| <[u8; 8]>::try_from(c).ok());
    let mut next = || words.next().flatten();
    let (seq, start, end) = (next()?, next()?, next()?);
    Some((
        String::from_utf8(id.to_vec()).ok()?,
        u64::from_be_bytes(seq),
        i64::from_be_bytes(start),
        i64::from_be_bytes(end),
        [next()?, next()?, next()?].map(u64::from_be_bytes),
        [next()?, next()?].map(u64::from_be_bytes),
        source,
    ))
}

fuzz_target!(|input: Input| {
    let (period_start, period_end) = input.raw_times.clone().unwrap_or_else(|| {
        (
            rfc3339(input.start),
            rfc3339(input.start.saturating_add(input.len)),
        )
    });
    let mut report = Report {
        node: input.node,
        seq: input.seq,
        period_start,
        period_end,
        cpu_core_micros: input.figures[0],
        storage_byte_seconds: input.figures[1],
        energy_microjoules: input.figures[2],
        energy_source: input
            .source
            .map(|i| EnergySource::ALL[usize::from(i) % EnergySource::ALL.len()]),
        grid_bytes_sent: input.grid[0],
        grid_bytes_received: input.grid[1],
        signature: String::new(),
    };
    let Ok(bytes) = report.canonical() else {
        return;
    };
    let period = report.period().expect("canonical() read the period");
    let decoded = decode(&bytes).expect("canonical bytes decode");
    assert_eq!(
        decoded,
        (
            report.node.clone(),
            report.seq,
            period.start,
            period.end,
            [
                report.cpu_core_micros,
                report.storage_byte_seconds,
                report.energy_microjoules
            ],
            [report.grid_bytes_sent, report.grid_bytes_received],
            report.energy_source.map(EnergySource::code),
        )
    );
    let key = &*KEY;
    report.sign(key).expect("an encodable report signs");
    assert_eq!(report.verify(&key.verifying_key()), Ok(true));
    // Any change to a signed field breaks the signature.
    let mut altered = report.clone();
    match input.flip % 5 {
        0 => altered.seq = altered.seq.wrapping_add(1),
        1 => altered.grid_bytes_sent ^= 1,
        2 => altered.cpu_core_micros ^= 1,
        3 => {
            // Another source, or none instead of one (and one instead of none).
            altered.energy_source = match altered.energy_source {
                None => Some(EnergySource::None),
                Some(EnergySource::None) => None,
                Some(_) => Some(EnergySource::None),
            }
        }
        _ => altered.node.push('x'),
    }
    assert_ne!(altered.verify(&key.verifying_key()), Ok(true));
});
