//! Slow and flooding clients cannot starve the report endpoint or the scrape: connections
//! that send nothing are closed after the header timeout, a trickled body is answered 408,
//! one address cannot hold more than its share, a full listener refuses new connections at
//! once, and the scrape has a listener of its own. Needs root (namespaces).

// Integration-test crates are test code throughout: `cfg(test)` lets clippy.toml's
// allow-unwrap/expect-in-tests apply to their helpers too.
#![cfg(test)]

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, TcpStream},
    time::{Duration, Instant},
};

use common::{Daemon, connect_from, http_here, metric, report, write_config_sections};

const TABLE: &str = "id,name,plan,prefixes\nalice,Alice,home,100.64.9.1\n";

/// Whether the server closed `s` (EOF) within `within`.
fn closed_within(mut s: &TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn idle_trickling_and_flooding_clients_cannot_starve_reports_or_the_scrape() {
    let (r, _s) = common::router_and_sender();
    let dir = tempfile::tempdir().unwrap();
    let key = common::write_nodes(dir.path(), 3);
    // The report below covers time before this daemon started: an earlier run metered it.
    common::metered_since(
        &dir.path().join("state"),
        &["alice"],
        &["pi"],
        common::now() - 4 * 3600,
    );
    let config = write_config_sections(
        dir.path(),
        &[("acc", "access", "auto")],
        TABLE,
        &format!(
            "{}
[http]
max_connections = 8
max_connections_per_ip = 4
header_timeout_secs = 3
request_timeout_secs = 4
",
            common::LISTENERS
        ),
    );
    let daemon = Daemon::start(&r, &config);
    let body = report(&key, "pi", 1, 7200, |_| {});
    r.run(move || {
        let flooder = Ipv4Addr::new(127, 0, 0, 2);
        // Ten idle connections from one address: four are held, six closed at once.
        let idle: Vec<TcpStream> = (0..10).map(|_| connect_from(flooder, 9465)).collect();
        // Long enough for the listener to have taken all ten, well within the header timeout.
        std::thread::sleep(Duration::from_millis(800));
        let refused_at_once = idle
            .iter()
            .filter(|c| closed_within(c, Duration::from_millis(20)))
            .count();
        assert_eq!(refused_at_once, 6, "per-address limit");
        // The listener is not starved: a node elsewhere reports, the scrape answers.
        let (code, answer) = http_here(9465, "POST", "/v1/reports", &body);
        assert_eq!(code, 200, "a report was starved by idle connections: {answer}");
        assert_eq!(http_here(9464, "GET", "/metrics", b"").0, 200);
        // Fill the listener from another address: the ninth connection is refused at once.
        let more: Vec<TcpStream> = (0..4)
            .map(|_| connect_from(Ipv4Addr::new(127, 0, 0, 3), 9465))
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let ninth = connect_from(Ipv4Addr::new(127, 0, 0, 5), 9465);
        assert!(
            closed_within(&ninth, Duration::from_millis(500)),
            "a full listener queued a connection"
        );
        // The scrape has its own listener: it answers while the reports listener is full.
        let (code, _) = http_here(9464, "GET", "/metrics", b"");
        assert_eq!(code, 200, "the scrape was starved");
        // The idle ones are closed by the header timeout (3 s), freeing the listener.
        let started = Instant::now();
        assert!(
            idle.iter()
                .chain(more.iter())
                .all(|c| closed_within(c, Duration::from_secs(5))),
            "idle connections were not closed"
        );
        assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
        // Malformed, but answered: the listener is free again.
        let (code, answer) = http_here(9465, "POST", "/v1/reports", b"{}");
        assert_eq!(code, 400, "{answer}");
        // A body trickled slower than the request timeout (4 s) is answered 408.
        let mut slow = connect_from(Ipv4Addr::new(127, 0, 0, 6), 9465);
        slow.write_all(
            b"POST /v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"node\"",
        )
        .unwrap();
        let mut answer = String::new();
        let _ = slow.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"reason\":\"timeout\""), "{answer}");
    });

    std::thread::sleep(Duration::from_millis(1200));
    let (_, text) = r.run(|| http_here(9464, "GET", "/metrics", b""));
    let series = |outcome: &str| {
        metric(
            &text,
            &format!("quid_http_connections_total{{listener=\"reports\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(series("refused_per_ip"), 6);
    assert!(series("refused_full") >= 1);
    assert_eq!(
        metric(
            &text,
            "quid_http_requests_timed_out_total{listener=\"reports\"}"
        ),
        1
    );
    daemon.stop();
}
