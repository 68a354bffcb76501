#![cfg(test)]
//! The read commands as an operator's shell uses them, without root: piped into a reader that
//! stops early, and asked about a subscriber that does not exist (issue 16).

mod common;

use std::{
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use common::quid_cli;
use quid::metering::snapshot::{
    ByClass, Count, DaemonState, Directions, Snapshot, SubscriberTotals,
};

/// A config (interface `lo`, which every host has) whose state directory holds a store and
/// the totals snapshot of a stopped daemon with 500 subscribers (subscriber i: i packets each
/// way, 100 i bytes up of which 10 i grid, 1000 i bytes down, all Internet).
fn config_with_totals(dir: &Path) -> PathBuf {
    let config = common::write_config(
        dir,
        &[("lo", "access", "auto")],
        "id,name,plan,prefixes\nalice,A,home,192.0.2.1\n",
    );
    let state = dir.join("state");
    drop(common::sqlite(&state));
    let subscribers = (0..500u64)
        .map(|i| SubscriberTotals {
            id: format!("s{i}"),
            name: format!("Subscriber {i}"),
            plan: "home".into(),
            removed: false,
            upload: Count {
                packets: i,
                bytes: i * 100,
            },
            download: Count {
                packets: i,
                bytes: i * 1000,
            },
            by_class: Some(ByClass {
                internet: Directions {
                    upload: Count {
                        packets: i / 2,
                        bytes: i * 90,
                    },
                    download: Count {
                        packets: i,
                        bytes: i * 1000,
                    },
                },
                grid: Directions {
                    upload: Count {
                        packets: i - i / 2,
                        bytes: i * 10,
                    },
                    download: Count::default(),
                },
            }),
        })
        .collect();
    Snapshot {
        state: DaemonState::Stopped,
        pid: 1,
        taken_at_unix: 1_795_000_000,
        interval_secs: 1,
        generation: 0,
        subscribers,
        interfaces: vec![],
    }
    .write(&state)
    .unwrap();
    config
}

/// Runs `quid ARGS` with its stdout the write end of a pipe whose read end is already closed,
/// as `quid ... | head -1` is once head has its line: every write fails with EPIPE.
fn quid_into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_quid"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// `quid subscribers | head -1`: quid ends as `cat` would (killed by SIGPIPE, which the shell
/// shows as 141), quietly, instead of panicking with exit 101.
#[test]
fn read_commands_end_quietly_on_a_closed_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_totals(dir.path());
    let config = config.to_str().unwrap();
    for args in [
        vec!["subscribers"],
        vec!["subscribers", "--json"],
        vec!["store", "stats"],
        vec!["store", "stats", "--json"],
        vec!["--help"],
    ] {
        let mut args = args.clone();
        if args[0] != "--help" {
            args.extend(["--config", config]);
        }
        let out = quid_into_closed_pipe(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr, "", "quid {args:?} wrote to stderr");
        // clap swallows the broken pipe itself and exits 0; our own output dies of SIGPIPE.
        if args[0] == "--help" {
            assert_eq!(
                out.status.code(),
                Some(0),
                "quid {args:?}: {:?}",
                out.status
            );
        } else {
            assert_eq!(
                out.status.signal(),
                Some(libc::SIGPIPE),
                "quid {args:?}: {:?}",
                out.status
            );
        }
    }
    // With a reader that keeps reading, the same commands succeed.
    let (ok, out) = quid_cli(config.as_ref(), &["subscribers"]);
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().next(),
        Some("(daemon stopped; these are its final totals)")
    );
    assert_eq!(
        out.lines().filter(|l| l.contains("Subscriber ")).count(),
        500,
        "{out}"
    );
    // Units and separators, Internet and grid apart: s499 sent 44,910 B over the Internet
    // and 4,990 B to the grid, and received 499,000 B.
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("s499 "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        row[4..],
        [
            "499", "44.9", "kB", "4.99", "kB", "499", "499", "kB", "0", "B"
        ],
        "{out}"
    );
}

/// A mistyped subscriber is an error naming it and how to list the real ones, not a line of
/// zeros with exit 0; a known one (here only in the ledger) still answers.
#[test]
fn an_unknown_subscriber_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_totals(dir.path());
    let state = dir.path().join("state");
    let listed = format!(
        "quid: unknown subscriber `bob`: the store in {} has no record of it; `quid \
         subscribers` lists the subscribers (`quid balance` every balance)\n",
        state.display()
    );
    for args in [
        &["usage", "bob", "--from", "2026-11-01", "--to", "2026-12-01"][..],
        &["balance", "bob"],
        &["ledger", "show", "bob"],
        &["ledger", "adjust", "bob", "--amount=5", "--reason", "typo"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_quid"))
            .args(args)
            .arg("--config")
            .arg(dir.path().join("quid.toml"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "quid {args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "quid {args:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            listed,
            "quid {args:?}"
        );
    }
    // The refused adjustment wrote nothing.
    let store = quid::store::Store::open(&state).unwrap();
    assert!(store.entries(None).unwrap().is_empty());
    let mut store = store;
    store
        .append(&[quid::ledger::chain::NewEntry::adjustment(
            "alice",
            1_795_000_000,
            300,
            "test".into(),
        )])
        .unwrap();
    drop(store);
    let (ok, out) = quid_cli(&config, &["balance", "alice"]);
    assert!(ok, "{out}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["alice", "0.000300", "0.000000", "0.000300"]
    );
    // Known to the store's subscribers (as a daemon run records them), with no usage yet.
    common::sqlite(&state)
        .execute(
            "INSERT INTO subscribers (id, name, plan, prefixes, slot, removed, last, total)
             VALUES ('carol', 'C', 'home', '192.0.2.3/32', NULL, 0, x'', x'')",
            [],
        )
        .unwrap();
    let (ok, out) = quid_cli(
        &config,
        &[
            "usage",
            "carol",
            "--from",
            "2026-11-01",
            "--to",
            "2026-12-01",
        ],
    );
    assert!(ok, "{out}");
}

/// `quid balance` reads as an operator reads money: thousands separators and all six
/// decimals, for positive and negative balances; `--json` keeps the exact integers.
#[test]
fn balances_read_with_thousands_separators() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_totals(dir.path());
    let mut store = quid::store::Store::open(&dir.path().join("state")).unwrap();
    store
        .append(&[
            quid::ledger::chain::NewEntry::adjustment(
                "alice",
                1_795_000_000,
                1_234_567_890_123,
                "grant".into(),
            ),
            quid::ledger::chain::NewEntry::adjustment(
                "bob",
                1_795_000_000,
                -2_500_000_001,
                "debt".into(),
            ),
        ])
        .unwrap();
    drop(store);
    let (ok, out) = quid_cli(&config, &["balance"]);
    assert!(ok, "{out}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            ["alice", "1,234,567.890123", "0.000000", "1,234,567.890123"],
            ["bob", "-2,500.000001", "0.000000", "-2,500.000001"],
        ],
        "{out}"
    );
    let doc = quid_json(&config, &["balance", "bob", "--json"]);
    assert_eq!(doc["balances"][0]["balance"], -2_500_000_001_i64, "{doc}");
    assert_eq!(
        doc["balances"][0]["balance_after_pending"], -2_500_000_001_i64,
        "{doc}"
    );
}

/// `quid operator token ARGS --out DIR/token`: (exit code, stdout, stderr).
fn token(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_quid"))
        .args(["operator", "token", "--out"])
        .arg(dir.join("token"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The token's mode and group.
fn mode_and_gid(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).unwrap();
    (m.mode() & 0o7777, m.gid())
}

/// Without --group the token goes to the daemon user's group, or, on a host without user
/// `quid`, keeps the caller's with a warning; a group that does not exist writes nothing.
#[test]
fn an_operator_token_is_readable_by_the_daemons_group() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    let (code, _, err) = token(dir.path(), &["--group", "qt-no-such-group"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        "quid: no group `qt-no-such-group` on this host (getent group lists them)\n"
    );
    assert!(!path.exists());
    let (code, out, err) = token(dir.path(), &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        format!(
            "wrote a new operator token to {}; set operator.token_file to it\n",
            path.display()
        )
    );
    match nix::unistd::User::from_name("quid").unwrap() {
        Some(quid) => {
            assert_eq!(err, "");
            assert_eq!(mode_and_gid(&path), (0o640, quid.gid.as_raw()));
        }
        None => {
            assert_eq!(
                err,
                format!(
                    "quid: no user `quid` on this host (the package creates it): {} keeps your \
                     group; `chgrp` it to the daemon's group, or give --group\n",
                    path.display()
                )
            );
            assert_eq!(
                mode_and_gid(&path),
                (0o640, nix::unistd::getegid().as_raw())
            );
        }
    }
    // The token is 64 hex digits and a newline, as the daemon reads it.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.len(), 65, "{text:?}");
}

/// --group hands the file to a group the caller is not in (only root may).
#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn an_operator_token_goes_to_the_group_given() {
    let dir = tempfile::tempdir().unwrap();
    let nogroup = nix::unistd::Group::from_name("nogroup").unwrap().unwrap();
    let (code, _, err) = token(dir.path(), &["--group", "nogroup"]);
    assert_eq!((code, err.as_str()), (Some(0), ""));
    assert_eq!(
        mode_and_gid(&dir.path().join("token")),
        (0o640, nogroup.gid.as_raw())
    );
}

/// `quid check` on a config whose interface does not exist fails, naming it; on `lo` it says
/// what `auto` would attach; `--files-only` checks a config meant for another host; a table
/// with no subscribers is refused unless allowed.
#[test]
fn check_looks_at_this_hosts_interfaces() {
    let dir = tempfile::tempdir().unwrap();
    let table = "id,name,plan,prefixes\nalice,A,home,192.0.2.1\n";
    let config = common::write_config(
        dir.path(),
        &[("lo", "access", "auto"), ("qt-none0", "core", "auto")],
        table,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_quid"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "quid: {}: interface `qt-none0` does not exist on this host (`ip -br link` lists \
             them)\n(`quid check --files-only` checks a config meant for another host)\n",
            config.display()
        )
    );
    let (ok, out) = quid_cli(&config, &["check", "--files-only"]);
    assert!(ok, "{out}");
    assert_eq!(
        out,
        format!(
            "{}: ok; 1 subscribers, 1 IPv4 and 0 IPv6 prefixes, 2 interfaces (not checked on \
             this host)\n",
            config.display()
        )
    );
    let config = common::write_config(dir.path(), &[("lo", "access", "auto")], table);
    let (ok, out) = quid_cli(&config, &["check"]);
    assert!(ok, "{out}");
    // The loopback driver has no native XDP (a kernel before 6.3 cannot say).
    let no_native = "no native XDP in the driver; auto attaches generic (slower, counts the same)";
    let unknown = "the kernel does not say whether the driver runs XDP natively; tries native, \
                   then (auto only) generic";
    let head = format!(
        "{}: ok; 1 subscribers, 1 IPv4 and 0 IPv6 prefixes, 1 interfaces\n  lo: ifindex 1, \
         xdp_mode auto: ",
        config.display()
    );
    assert!(
        out == format!("{head}{no_native}\n") || out == format!("{head}{unknown}\n"),
        "{out}"
    );
    let config = common::write_config(
        dir.path(),
        &[("lo", "access", "auto")],
        "id,name,plan,prefixes\n",
    );
    let (ok, out) = quid_cli(&config, &["check"]);
    assert!(!ok);
    assert!(
        out.contains(
            ":0: table: no subscribers: quid would count nothing; add them, or set \
                      `allow_empty = true` under [subscribers] to run with none on purpose"
        ),
        "{out}"
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[subscribers]\n", "[subscribers]\nallow_empty = true\n"),
    )
    .unwrap();
    let (ok, out) = quid_cli(&config, &["check"]);
    assert!(ok && out.contains("ok; 0 subscribers"), "{out}");
}

/// Under systemd (stderr is the stream `JOURNAL_STREAM` names) every log line and the final
/// error are one line each with a `<N>` priority and no timestamp; elsewhere, plain text.
#[test]
fn under_journald_each_event_is_one_prioritised_line() {
    use std::{io::Read as _, os::unix::fs::MetadataExt as _};
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(
        dir.path(),
        &[("lo", "access", "auto")],
        "id,name,plan,prefixes\n",
    );
    let run = |journal: bool, args: &[&str]| {
        let (mut reader, writer) = std::io::pipe().unwrap();
        let stream = {
            let fd = std::os::fd::OwnedFd::from(writer.try_clone().unwrap());
            let m = std::fs::File::from(fd).metadata().unwrap();
            format!("{}:{}", m.dev(), m.ino())
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quid"));
        cmd.args(args).arg("--config").arg(&config).stderr(writer);
        if journal {
            cmd.env("JOURNAL_STREAM", stream);
        } else {
            cmd.env_remove("JOURNAL_STREAM");
        }
        let status = cmd.status().unwrap();
        drop(cmd);
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        (status.code(), text)
    };
    let table = dir.path().join("subscribers.csv");
    let message = format!(
        "1 error in the subscriber table: | {}:0: table: no subscribers: quid would count \
         nothing; add them, or set `allow_empty = true` under [subscribers] to run with none on \
         purpose | quid refuses to start on a bad table",
        table.display()
    );
    assert_eq!(
        run(true, &["check"]),
        (Some(1), format!("<3>quid: {message}\n"))
    );
    let (code, text) = run(false, &["check"]);
    assert_eq!(code, Some(1));
    assert!(
        text.starts_with("quid: 1 error in the subscriber table:\n  "),
        "{text}"
    );
    // A new store logs what it set up: info lines, each `<6>` and nothing else before it.
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    let (code, text) = run(true, &["store", "stats"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.is_empty());
    for line in text.lines() {
        assert!(line.starts_with("<6>store: "), "{text}");
    }
}

/// Runs `quid ARGS --config CONFIG`, which must succeed, and parses its stdout as JSON.
fn quid_json(config: &Path, args: &[&str]) -> serde_json::Value {
    let out = common::quid_cli_output(config, args);
    assert!(
        out.status.success(),
        "quid {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "quid {args:?} printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Every read command answers `--json` with the documented shape and raw integers (README,
/// "JSON output"), so scripts need not parse the tables.
#[test]
fn every_read_command_answers_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_totals(dir.path());
    let state = dir.path().join("state");
    let mut store = quid::store::Store::open(&state).unwrap();
    store
        .append(&[
            quid::ledger::chain::NewEntry::adjustment("alice", 1_795_000_000, 300, "a".into()),
            quid::ledger::chain::NewEntry::adjustment("alice", 1_795_000_100, -100, "b".into()),
        ])
        .unwrap();
    let report = quid::settlement::report::Report {
        node: "pi".into(),
        seq: 1,
        period_start: "2026-11-24T10:00:00Z".into(),
        period_end: "2026-11-24T11:00:00Z".into(),
        cpu_core_micros: 1,
        storage_byte_seconds: 2,
        energy_microjoules: 3,
        energy_source: Some(quid::settlement::report::EnergySource::Tasmota),
        grid_bytes_sent: 4,
        grid_bytes_received: 5,
        signature: "00".repeat(64),
    };
    store
        .insert_report(&report, report.period().unwrap(), 0, "alice")
        .unwrap();
    drop(store);
    // Known to the store's subscribers (as a daemon run records them), with no usage yet.
    common::sqlite(&state)
        .execute(
            "INSERT INTO subscribers (id, name, plan, prefixes, slot, removed, last, total)
             VALUES ('alice', 'A', 'home', '192.0.2.1/32', NULL, 0, x'', x'')",
            [],
        )
        .unwrap();

    let subs = quid_json(&config, &["subscribers", "--json"]);
    assert_eq!(subs["subscribers"].as_array().unwrap().len(), 500);
    assert_eq!(subs["subscribers"][3]["download"]["bytes"], 3000);
    let s3 = &subs["subscribers"][3]["by_class"];
    assert_eq!(s3["internet"]["upload"]["bytes"], 270, "{s3}");
    assert_eq!(s3["grid"]["upload"]["bytes"], 30, "{s3}");
    assert_eq!(s3["grid"]["upload"]["packets"], 2, "{s3}");
    assert_eq!(s3["internet"]["download"]["bytes"], 3000, "{s3}");
    assert_eq!(s3["grid"]["download"]["bytes"], 0, "{s3}");

    let reports = quid_json(&config, &["node", "reports", "pi", "--json"]);
    assert_eq!(reports["node"], "pi", "{reports}");
    let first = &reports["reports"][0];
    assert_eq!(first["energy_source"], "tasmota", "{reports}");
    assert_eq!(first["energy_microjoules"], 3, "{reports}");
    assert_eq!(first["period_start"], "2026-11-24T10:00:00Z", "{reports}");
    assert_eq!(first["outcome"], "pending", "{reports}");

    let stats = quid_json(&config, &["store", "stats", "--json"]);
    assert!(stats["file_bytes"].as_u64().unwrap() > 0, "{stats}");
    assert!(
        stats["tiers"].is_array() && stats["tables"].is_array(),
        "{stats}"
    );

    let usage = quid_json(
        &config,
        &[
            "usage",
            "alice",
            "--from",
            "2026-11-01",
            "--to",
            "2026-12-01",
            "--json",
        ],
    );
    assert_eq!(usage["subscriber"], "alice", "{usage}");
    assert_eq!(usage["total"]["down_bytes"], 0, "{usage}");
    assert!(usage["records"].is_array(), "{usage}");
    assert_eq!(usage["total_by_class"]["grid"]["down_bytes"], 0, "{usage}");
    assert_eq!(
        usage["total_by_class"]["internet"]["up_bytes"], 0,
        "{usage}"
    );

    let balances = quid_json(&config, &["balance", "--json"]);
    let alice = serde_json::json!({
        "subscriber": "alice",
        "balance": 200,
        "pending_debit": 0,
        "balance_after_pending": 200,
    });
    assert_eq!(balances, serde_json::json!({ "balances": [alice.clone()] }));
    assert_eq!(
        quid_json(&config, &["balance", "alice", "--json"]),
        serde_json::json!({ "balances": [alice] })
    );

    let ledger = quid_json(&config, &["ledger", "show", "alice", "--json"]);
    assert_eq!(ledger["subscriber"], "alice");
    let entries = ledger["entries"].as_array().unwrap();
    let got: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e["seq"].as_i64().unwrap(),
                e["at"].as_i64().unwrap(),
                e["kind"].as_str().unwrap().to_owned(),
                e["amount"].as_i64().unwrap(),
                e["balance"].as_i64().unwrap(),
                e["reference"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, 1_795_000_000, "adjustment".into(), 300, 300, "a".into()),
            (2, 1_795_000_100, "adjustment".into(), -100, 200, "b".into()),
        ]
    );
    assert!(entries[1]["hash"].is_string() && entries[1]["prev"] == entries[0]["hash"]);

    // The month's report: alice's entries under her plan, the rows also as CSV, Parquet and HTML.
    let csv = dir.path().join("report.csv");
    let csv_arg = csv.to_str().unwrap();
    let html = dir.path().join("report.html");
    let parquet = dir.path().join("report.parquet");
    let report = quid_json(
        &config,
        &[
            "report",
            "--period",
            "2026-11",
            "--json",
            "--csv",
            csv_arg,
            "--html",
            html.to_str().unwrap(),
            "--parquet",
            parquet.to_str().unwrap(),
        ],
    );
    let parquet = std::fs::read(&parquet).unwrap();
    assert!(parquet.starts_with(b"PAR1") && parquet.ends_with(b"PAR1"));
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("<svg").count(), 4, "{page}");
    assert_eq!(report["period"], "2026-11", "{report}");
    assert_eq!(report["plans"][0]["plan"], "home", "{report}");
    assert_eq!(report["plans"][0]["credits"], 300, "{report}");
    assert_eq!(report["fleet"]["debits"], -100, "{report}");
    assert_eq!(report["fleet"]["net"], 200, "{report}");
    assert_eq!(report["net_deciles"][10], 200, "{report}");
    let csv = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("period_start,plan,active,"), "{csv}");
    assert!(lines[2].starts_with("2026-11,fleet,0,0,"), "{csv}");
    assert!(lines[2].contains(",300,-100,200,"), "{csv}");
}

/// The manual pages and completions come from the clap definitions: a page for every visible
/// subcommand and completions that know the subcommands and their flags.
#[test]
fn man_pages_and_completions_are_generated_from_the_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_quid"))
        .args(["generate-docs", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let man = dir.path().join("man");
    for page in [
        "quid.1",
        "quid-run.1",
        "quid-balance.1",
        "quid-ledger-show.1",
    ] {
        let text = std::fs::read_to_string(man.join(page)).unwrap();
        assert!(text.starts_with(".ie \\n(.g .ds Aq"), "{page}: {text}");
    }
    let top = std::fs::read_to_string(man.join("quid.1")).unwrap();
    assert!(top.contains("quid\\-usage(1)"), "{top}");
    assert!(
        !man.join("quid-generate-docs.1").exists(),
        "the hidden command got a page"
    );
    for file in ["quid.bash", "_quid", "quid.fish"] {
        let script = std::fs::read_to_string(dir.path().join("completions").join(file)).unwrap();
        assert!(
            script.contains("statement") && script.contains("json"),
            "{file}"
        );
    }
    let bash = Command::new(env!("CARGO_BIN_EXE_quid"))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(bash.status.success());
    assert_eq!(
        String::from_utf8_lossy(&bash.stdout),
        std::fs::read_to_string(dir.path().join("completions/quid.bash")).unwrap()
    );
}
