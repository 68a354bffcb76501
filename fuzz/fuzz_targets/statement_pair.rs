//! Any two texts as a subscriber's statement files and exported checkpoints: verifying them,
//! and one against the other, never panics, and nothing not signed by the operator key is
//! accepted.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use quid::ledger::{checkpoint, statement};

/// The operator's public key, made once.
static KEY: LazyLock<ed25519_dalek::VerifyingKey> =
    LazyLock::new(|| ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]).verifying_key());

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (newer, older) = text.split_once('\u{0}').unwrap_or((&text, ""));
    let n = statement::verify(newer, Some(&KEY));
    let o = statement::verify(older, Some(&KEY));
    if let (Ok(n), Ok(o)) = (&n, &o) {
        let _ = statement::check_against(n, o);
    }
    if let Ok(lines) = checkpoint::parse_lines(&text) {
        if checkpoint::verify_chain(&lines, Some(&KEY)).is_ok() {
            // Only checkpoints the operator signed form a chain that verifies.
            let expected: String = KEY.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
            assert!(lines.iter().all(|c| c.operator_key.eq_ignore_ascii_case(&expected)));
        }
        let heads = checkpoint::Heads::of(&lines);
        let _ = heads.check_end(0);
    }
});
