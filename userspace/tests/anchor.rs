//! The anchored ledger through the CLI on real stores: `quid ledger verify` finds an edited
//! entry, a truncated tail and a consistently rewritten chain (against the stored and the
//! exported checkpoints), and `quid statement verify --against` tells an honest pair of
//! statements from one whose history was rewritten in between. No root needed.

// Integration-test crates are test code throughout: `cfg(test)` lets clippy.toml's
// allow-unwrap/expect-in-tests apply to their helpers too.
#![cfg(test)]

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use quid::{
    ledger::chain::{self, EntryKind, NewEntry},
    ledger::statement_issue,
    store::Store,
};
use rusqlite::Connection;

const OPERATOR: [u8; 32] = [42; 32];

/// A config in `dir` with its state in `dir/state` and the operator key beside it.
fn config(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::write(dir.join("subscribers.csv"), "id,name,plan,prefixes\n").unwrap();
    std::fs::write(dir.join("operator.key"), hex::encode(OPERATOR)).unwrap();
    let cfg = "[daemon]\nstate_dir = \"state\"\n[subscribers]\nfile = \"subscribers.csv\"\n\
               [settlement]\noperator_key = \"operator.key\"\n\
               [[interface]]\nname = \"lo\"\nrole = \"access\"\nxdp_mode = \"generic\"\n";
    let path = dir.join("quid.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

/// `quid ARGS --config CONFIG`: (success, stdout and stderr).
fn quid(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quid"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn verify(config: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["ledger", "verify", "--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    quid(&args)
}

/// Copies the directory `from` (config, key, state) to a new temporary one.
fn copy(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to.path())
        .status()
        .unwrap();
    assert!(out.success());
    to
}

fn db(dir: &Path) -> Connection {
    Connection::open(dir.join("state").join(quid::store::FILE)).unwrap()
}

/// Rewrites the chain from entry 1 with every hash recomputed and the balances re-summed, as
/// someone with write access to the file and the source code would: the chain alone verifies.
fn rewrite_consistently(conn: &Connection) {
    let rows: Vec<(i64, i64, String, String, i64, String)> = conn
        .prepare("SELECT seq, at, subscriber, kind, amount, reference FROM ledger ORDER BY seq")
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut prev = chain::GENESIS.to_owned();
    for (seq, at, sub, kind, amount, reference) in rows {
        let kind: EntryKind = kind.parse().unwrap();
        let h = chain::hash(&prev, seq, at, &sub, kind, amount, &reference);
        conn.execute(
            "UPDATE ledger SET hash = unhex(?1) WHERE seq = ?2",
            rusqlite::params![h, seq],
        )
        .unwrap();
        prev = h;
    }
    conn.execute_batch(
        "DELETE FROM balances;
         INSERT INTO balances SELECT subscriber, sum(amount) FROM ledger GROUP BY subscriber;",
    )
    .unwrap();
}

#[test]
fn ledger_verify_finds_an_edit_a_truncated_tail_and_a_consistent_rewrite() {
    let base = tempfile::tempdir().unwrap();
    let cfg = config(base.path());
    {
        let mut s = Store::open(&base.path().join("state")).unwrap();
        for i in 0..10 {
            s.append(&[NewEntry::adjustment(
                if i % 2 == 0 { "alice" } else { "bob" },
                1_795_000_000 + i,
                1_000 + i,
                format!("entry {i}"),
            )])
            .unwrap();
        }
    }
    let (ok, out) = verify(&cfg, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("no checkpoints"), "{out}");
    let (ok, out) = quid(&["ledger", "checkpoint", "--config", cfg.to_str().unwrap()]);
    assert!(
        ok && out.contains("checkpoint 1 signed: ledger entry 10"),
        "{out}"
    );
    let exported = base.path().join("checkpoints.jsonl");
    let (ok, out) = quid(&[
        "ledger",
        "checkpoints",
        "--export",
        exported.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let (ok, out) = verify(&cfg, &["--checkpoints", exported.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(
        out.contains("10 entries") && out.contains("checkpoints ok: 1 stored and 1 exported"),
        "{out}"
    );

    // An edited entry: the chain names it.
    let edited = copy(base.path());
    db(edited.path())
        .execute("UPDATE ledger SET amount = 9 WHERE seq = 3", [])
        .unwrap();
    let (ok, out) = verify(&edited.path().join("quid.toml"), &[]);
    assert!(
        !ok && out.contains("ledger entry 3: its contents do not match its hash"),
        "{out}"
    );

    // The newest entries deleted (balances made to agree): the chain alone is intact, the
    // checkpoint is not.
    let truncated = copy(base.path());
    let conn = db(truncated.path());
    conn.execute_batch(
        "DELETE FROM ledger WHERE seq > 7; DELETE FROM balances;
         INSERT INTO balances SELECT subscriber, sum(amount) FROM ledger GROUP BY subscriber;",
    )
    .unwrap();
    let (ok, out) = verify(&truncated.path().join("quid.toml"), &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("checkpoint 1 signed entry 10") && out.contains("truncated"),
        "{out}"
    );

    // The whole chain rewritten with recomputed hashes: the checkpoint's signed head differs.
    let rewritten = copy(base.path());
    let conn = db(rewritten.path());
    conn.execute("UPDATE ledger SET amount = 5 WHERE seq = 2", [])
        .unwrap();
    rewrite_consistently(&conn);
    let rcfg = rewritten.path().join("quid.toml");
    let (ok, out) = verify(&rcfg, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("checkpoint 1 signed entry 10") && out.contains("was rewritten"),
        "{out}"
    );
    // Whoever holds the key on the router can delete the checkpoints and sign new ones: the
    // store then agrees with itself, and only the copy kept off the router tells.
    conn.execute("DELETE FROM checkpoints", []).unwrap();
    let (ok, out) = quid(&["ledger", "checkpoint", "--config", rcfg.to_str().unwrap()]);
    assert!(ok, "{out}");
    let (ok, out) = verify(&rcfg, &[]);
    assert!(ok, "{out}");
    let (ok, out) = verify(&rcfg, &["--checkpoints", exported.to_str().unwrap()]);
    assert!(!ok && out.contains("was rewritten"), "{out}");

    // Checkpoints signed by another key are not the operator's.
    let (ok, out) = verify(
        &cfg,
        &[
            "--operator-key",
            &hex::encode(SigningKey::from_bytes(&[1; 32]).verifying_key().to_bytes()),
        ],
    );
    assert!(!ok && out.contains("not by the operator key"), "{out}");
}

#[test]
fn statement_verify_against_accepts_an_honest_pair_and_rejects_a_rewritten_history() {
    let base = tempfile::tempdir().unwrap();
    let cfg = config(base.path());
    let state = base.path().join("state");
    let key_path = base.path().join("operator.key");
    let (oct, _) = quid::clock::month_bounds("2026-10").unwrap();
    let (nov, _) = quid::clock::month_bounds("2026-11").unwrap();
    let (dec, _) = quid::clock::month_bounds("2026-12").unwrap();
    let issue = |now: i64| {
        let store = Store::open(&state).unwrap();
        statement_issue::issue_due(&store, ["alice"], &key_path, &state, now)
            .unwrap()
            .unwrap()
    };
    {
        let mut s = Store::open(&state).unwrap();
        for day in 0..3 {
            s.append(&[
                NewEntry::allowance("alice", oct + day * 86_400, 10_000, 0),
                NewEntry::usage_debit("bob", oct + day * 86_400, -300, 0, 10),
            ])
            .unwrap();
        }
    }
    issue(nov + 3_600);
    {
        let mut s = Store::open(&state).unwrap();
        s.append(&[NewEntry::usage_debit("alice", nov + 7_200, -2_500, 0, 10)])
            .unwrap();
    }
    issue(dec + 3_600);
    let statements = state.join("statements");
    let older = statements.join("2026-10/alice.json");
    let newer = statements.join("2026-11/alice.json");
    let public = hex::encode(SigningKey::from_bytes(&OPERATOR).verifying_key().to_bytes());
    let against = |newer: &Path, older: &Path| {
        quid(&[
            "statement",
            "verify",
            newer.to_str().unwrap(),
            "--against",
            older.to_str().unwrap(),
            "--operator-key",
            &public,
        ])
    };
    let (ok, out) = against(&newer, &older);
    assert!(ok, "{out}");
    assert!(out.contains("extends, unchanged"), "{out}");
    // The older one first is a mistake, said as one.
    let (ok, out) = against(&older, &newer);
    assert!(!ok && out.contains("not of an earlier month"), "{out}");
    let (ok, out) = verify(&cfg, &[]);
    assert!(ok && out.contains("checkpoints ok: 2 stored"), "{out}");

    // October's history rewritten with recomputed hashes, then November issued again from it:
    // each statement verifies alone, the pair does not.
    db(base.path())
        .execute("UPDATE ledger SET amount = 20000 WHERE seq = 1", [])
        .unwrap();
    rewrite_consistently(&db(base.path()));
    std::fs::remove_dir_all(statements.join("2026-11")).unwrap();
    issue(dec + 3_600);
    let (ok, out) = quid(&[
        "statement",
        "verify",
        newer.to_str().unwrap(),
        "--operator-key",
        &public,
    ]);
    assert!(ok, "{out}");
    let (ok, out) = against(&newer, &older);
    assert!(!ok, "{out}");
    assert!(
        out.contains("history between the two statements was rewritten"),
        "{out}"
    );
    // And the ledger's own verify names the rewrite against October's signed head.
    let (ok, out) = verify(&cfg, &[]);
    assert!(!ok && out.contains("was rewritten"), "{out}");
}

/// A config whose store is a copy of the previous release's (tests/fixtures/store-2026-11).
fn previous_release() -> (tempfile::TempDir, PathBuf) {
    let base = tempfile::tempdir().unwrap();
    let cfg = config(base.path());
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-2026-11/quid.db"),
        base.path().join("state").join(quid::store::FILE),
    )
    .unwrap();
    (base, cfg)
}

#[test]
fn the_previous_releases_store_is_sealed_not_rewritten() {
    let (base, cfg) = previous_release();
    let hashes = |dir: &Path| -> Vec<String> {
        db(dir)
            // Hex text before the first open, 32 bytes after: the same values either way.
            .prepare(
                "SELECT CASE typeof(hash) WHEN 'blob' THEN lower(hex(hash)) ELSE hash END
                 FROM ledger ORDER BY seq",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let before = hashes(base.path());
    assert_eq!(before.len(), 751);
    let (ok, out) = verify(&cfg, &[]);
    assert!(ok && out.contains("751 entries"), "{out}");
    let (ok, out) = quid(&["ledger", "checkpoint", "--config", cfg.to_str().unwrap()]);
    assert!(ok && out.contains("ledger entry 751"), "{out}");
    let (ok, out) = verify(&cfg, &[]);
    assert!(ok && out.contains("checkpoints ok: 1 stored"), "{out}");
    // Sealed, not rewritten: every old hash stands, and alice's balance is as before.
    assert_eq!(hashes(base.path()), before);
    let (ok, out) = quid(&["balance", "alice", "--config", cfg.to_str().unwrap()]);
    assert!(ok && out.contains("55.683310"), "{out}");
    // Opening again changes nothing (the migration step is idempotent).
    let s = Store::open(&base.path().join("state")).unwrap();
    assert_eq!(s.checkpoints().unwrap().len(), 1);
}

/// The previous release's store (no plan history) gives its month's report: the fixture's
/// figures (its README), under the plan its subscriber has, from the first open's migration.
#[test]
fn the_previous_releases_store_reports_its_month() {
    let (base, cfg) = previous_release();
    let subscribers = base.path().join("subscribers.csv");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quid"))
        .args([
            "report",
            "--period",
            "2026-11",
            "--json",
            "--subscribers-csv",
        ])
        .arg(&subscribers)
        .arg("--subscribers-parquet")
        .arg(base.path().join("subscribers.parquet"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fleet = &r["fleet"];
    assert_eq!(
        fleet["bytes"]["internet"]["down"], 259_200_000_000_u64,
        "{r}"
    );
    assert_eq!(fleet["bytes"]["internet"]["up"], 64_800_000_000_u64, "{r}");
    assert_eq!(fleet["bytes"]["grid"]["down"], 36_000_000_000_u64, "{r}");
    assert_eq!(fleet["contributions"]["reports"], 30, "{r}");
    assert_eq!(fleet["credits"], 58_599_310, "{r}");
    assert_eq!(fleet["debits"], -2_916_000, "{r}");
    assert_eq!(fleet["net"], 55_683_310, "{r}");
    let plans = r["plans"].as_array().unwrap();
    assert_eq!(plans.len(), 1, "{r}");
    assert_eq!(plans[0]["bytes"], fleet["bytes"], "{r}");
    assert_eq!(plans[0]["plan"], "home", "{r}");
    // Her own hours: 410 MB down (360 Internet, 50 grid) and 90 MB up every hour of the month,
    // so her 95th percentile is that hour: 911,111 and 200,000 bits/s.
    let rows = std::fs::read_to_string(&subscribers).unwrap();
    assert_eq!(
        rows,
        "period_start,subscriber,plans,plan,p95_down_bytes_per_hour,p95_up_bytes_per_hour,\
         p95_down_bits_per_second,p95_up_bits_per_second,down_bytes,up_bytes\n\
         2026-11,alice,home,home,410000000,90000000,911111,200000,295200000000,64800000000\n"
    );
    let parquet = std::fs::read(base.path().join("subscribers.parquet")).unwrap();
    assert!(parquet.starts_with(b"PAR1") && parquet.ends_with(b"PAR1"));
}
