//! Any request body through the intake's decoding and every admission rule: no panic, and a
//! body that is not a valid report signed by the node is never admitted.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use quid::{
    settlement::admission::{self as admit, Admission, History, Limits},
    settlement::nodes::{Node, Nodes},
    settlement::report::MAX_FIGURE,
};

const NOW: i64 = 1_795_600_000;

/// The node `pi` and its key, made once: deriving the public key costs about as much as a run.
static NODE: LazyLock<(Nodes, ed25519_dalek::SigningKey)> = LazyLock::new(|| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let nodes = Nodes::from_iter([Node {
        id: "pi".into(),
        subscriber: "alice".into(),
        key: key.verifying_key(),
        cpu_cores: 4,
        storage_bytes: 1 << 40,
        max_watts: 1000,
    }]);
    (nodes, key)
});

fuzz_target!(|data: &[u8]| {
    let (nodes, key) = &*NODE;
    let Ok(report) = quid::settlement::report::parse(data) else {
        return;
    };
    let _ = report.period();
    let _ = report.canonical();
    let history = History::default();
    for h in [None, Some(&history)] {
        if let Ok(Admission::Accept(p)) = admit::admit(&report, nodes, h, NOW, Limits::default(), Some(0)) {
            // Only a report the node really signed gets through, and its figures are sane.
            assert_eq!(report.verify(&key.verifying_key()), Ok(true));
            assert!(p.end > p.start);
            assert!(report.figures().iter().all(|&(_, v)| v <= MAX_FIGURE));
        }
    }
});
