//! The storage audit against a real reservation on disk: a node that keeps the router's fill
//! passes every audit; nodes that lie about it (deleted chunks, a lossy copy, data made again
//! from what they can see, replayed or late answers) fail and lose storage credit.
#![cfg(test)]

use std::os::unix::fs::FileExt as _;

use nix::fcntl::{FallocateFlags, fallocate};
use quid_node::{fill::Fill, storage};
use quid_report::{
    audit::{CHUNK_BYTES, Challenge, FillKey, Verdict},
    audit_score::{AuditScore, Standing, storage_credit},
};

const CHUNKS: u64 = 256;
const BYTES: u64 = CHUNKS * CHUNK_BYTES as u64;

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// A reservation of 256 chunks, filled by the router with `key`'s chunks.
fn filled(key: &FillKey) -> (tempfile::TempDir, Fill) {
    let dir = tempfile::tempdir().unwrap();
    storage::reserve(dir.path(), BYTES).unwrap();
    let fill = Fill::open(dir.path()).unwrap();
    assert_eq!(fill.capacity(), CHUNKS);
    for i in 0..CHUNKS {
        fill.write(i, &key.chunk(i)).unwrap();
    }
    fill.sync().unwrap();
    (dir, fill)
}

/// Frees `len` bytes at `offset` of `file` (the data is gone, the length stays).
fn punch(file: &std::fs::File, offset: u64, len: u64) {
    fallocate(
        file,
        FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
        i64::try_from(offset).unwrap(),
        i64::try_from(len).unwrap(),
    )
    .unwrap();
}

/// One audit as the router runs it: a fresh challenge, the node's answer from its disk (an
/// error is no answer), the verdict.
fn audit(key: &FillKey, fill: &Fill) -> Verdict {
    let challenge = Challenge::new("pi", CHUNKS, now_ms() + 5_000).unwrap();
    match fill.answer(&challenge) {
        Ok(answer) => key.judge(&challenge, &answer, now_ms()),
        Err(_) => Verdict::Failed(quid_report::audit::Failure::Late),
    }
}

/// Audits until the first failure, at most `max`; the number of the failing audit.
fn first_failure(key: &FillKey, fill: &Fill, max: u32) -> Option<u32> {
    (1..=max).find(|_| !audit(key, fill).passed())
}

#[test]
fn a_node_keeping_its_fill_passes_every_audit_and_earns_its_whole_claim() {
    let key = FillKey::generate().unwrap();
    let (_dir, fill) = filled(&key);
    let mut score = AuditScore::default();
    for _ in 0..200 {
        let v = audit(&key, &fill);
        assert_eq!(v, Verdict::Passed);
        score.record(v.passed());
    }
    assert_eq!(score.standing, Standing::Good);
    assert_eq!(
        storage_credit(BYTES * 900, BYTES, 900, 200, 200, score.standing),
        BYTES * 900
    );
}

/// The fill is incompressible: its bytes are as evenly spread as random bytes, so a node
/// cannot keep a compressed copy (unlike Chia's plots, which compression beat).
#[test]
fn the_fill_has_the_entropy_of_random_bytes() {
    let key = FillKey::generate().unwrap();
    let mut counts = [0u64; 256];
    for i in 0..64 {
        for b in key.chunk(i) {
            counts[usize::from(b)] += 1;
        }
    }
    let n: u64 = counts.iter().sum();
    let entropy: f64 = counts
        .iter()
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.log2()
        })
        .sum();
    assert!(entropy > 7.99, "{entropy} bits per byte");
}

/// Deleting 10% of the chunks (their blocks freed, then the space allocated again so the
/// reservation still looks whole) is found within a few audits: one passes with probability
/// at most 0.9^16 = 0.185, so ten in a row with 5e-8. Credit falls to the share passed, and
/// the node is disqualified.
#[test]
fn a_node_that_deleted_ten_percent_fails_within_ten_audits_and_loses_credit() {
    let key = FillKey::generate().unwrap();
    let (dir, fill) = filled(&key);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join(storage::RESERVATION))
        .unwrap();
    let chunk = CHUNK_BYTES as u64;
    for i in (0..CHUNKS).step_by(10) {
        punch(&file, i * chunk, chunk);
    }
    // The allocation meter alone is fooled once the holes are allocated again.
    fallocate(
        &file,
        FallocateFlags::empty(),
        0,
        i64::try_from(BYTES).unwrap(),
    )
    .unwrap();
    assert_eq!(storage::allocated(dir.path(), BYTES), BYTES);
    let failed_at = first_failure(&key, &fill, 10);
    assert!(
        failed_at.is_some(),
        "passed 10 audits missing 10% of chunks"
    );
    let mut score = AuditScore::default();
    let mut passed = 0;
    for _ in 0..40 {
        let ok = audit(&key, &fill).passed();
        passed += u32::from(ok);
        score.record(ok);
    }
    assert!(passed < 20, "passed {passed} of 40");
    let claim = BYTES * 900;
    assert!(storage_credit(claim, BYTES, 900, 40, passed, Standing::Good) < claim / 2);
    assert_eq!(score.standing, Standing::Disqualified, "{}", score.value());
    assert_eq!(
        storage_credit(claim, BYTES, 900, 40, passed, score.standing),
        0
    );
}

/// A lossy copy (half of every chunk kept, the rest freed) or a truncated reservation fails
/// the first audit.
#[test]
fn a_node_keeping_half_of_each_chunk_or_a_shorter_file_fails_at_once() {
    let key = FillKey::generate().unwrap();
    let (dir, fill) = filled(&key);
    let path = dir.path().join(storage::RESERVATION);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let chunk = CHUNK_BYTES as u64;
    for i in 0..CHUNKS {
        punch(&file, i * chunk + chunk / 2, chunk / 2);
    }
    assert_eq!(first_failure(&key, &fill, 1), Some(1));
    file.set_len(BYTES / 2).unwrap();
    let short = Fill::open(dir.path()).unwrap();
    assert_eq!(short.capacity(), CHUNKS / 2);
    assert_eq!(first_failure(&key, &short, 1), Some(1));
}

/// Data made again from what the node can see (its id, its own key, one chunk it kept copied
/// over the others) is not the fill.
#[test]
fn a_node_answering_from_data_it_made_itself_fails() {
    let key = FillKey::generate().unwrap();
    let (_dir, fill) = filled(&key);
    let guesses = [
        FillKey::from_bytes([0; 32]),
        FillKey::from_bytes(*b"pi\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"),
        FillKey::from_bytes(quid_report::report::keygen().unwrap().to_bytes()),
    ];
    for guess in guesses {
        for i in 0..CHUNKS {
            fill.write(i, &guess.chunk(i)).unwrap();
        }
        assert_eq!(first_failure(&key, &fill, 1), Some(1));
    }
    // One real chunk kept and served for every index.
    let kept = key.chunk(0);
    for i in 0..CHUNKS {
        fill.write(i, &kept).unwrap();
    }
    assert_eq!(first_failure(&key, &fill, 1), Some(1));
}

/// An answer kept from an earlier audit, or an honest one that comes too late (fetched from
/// elsewhere), fails.
#[test]
fn a_replayed_or_late_answer_fails() {
    let key = FillKey::generate().unwrap();
    let (dir, fill) = filled(&key);
    let first = Challenge::new("pi", CHUNKS, now_ms() + 5_000).unwrap();
    let kept = fill.answer(&first).unwrap();
    assert!(key.judge(&first, &kept, now_ms()).passed());
    // The node then drops its fill and replays.
    std::fs::File::create(dir.path().join(storage::RESERVATION))
        .unwrap()
        .write_all_at(&[0; 8], 0)
        .unwrap();
    let next = Challenge::new("pi", CHUNKS, now_ms() + 5_000).unwrap();
    assert!(!key.judge(&next, &kept, now_ms()).passed());
    let mut renamed = kept.clone();
    renamed.nonce = next.nonce.clone();
    assert!(!key.judge(&next, &renamed, now_ms()).passed());
    let (_dir2, honest) = filled(&key);
    let late = Challenge::new("pi", CHUNKS, now_ms() - 1).unwrap();
    let answer = honest.answer(&late).unwrap();
    assert!(!key.judge(&late, &answer, now_ms()).passed());
}
