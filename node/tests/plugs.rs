//! The metering plug readers against the documented answers (see `fixtures/README.md`)
//! served on loopback, and against plugs that answer wrongly.
#![cfg(test)]

mod support;

use std::sync::{Arc, Mutex};

use quid_node::{counter::Counter, energy::EnergySource};

const SHELLY: &str = include_str!("fixtures/shelly_switch_getstatus.json");
const TASMOTA: &str = include_str!("fixtures/tasmota_status8.json");

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(std::time::Duration::from_secs(5))
        .build()
}

/// A plug whose answer the test changes between readings.
fn plug(first: &str, path: &'static str) -> (support::Server, Arc<Mutex<String>>) {
    let body = Arc::new(Mutex::new(first.to_owned()));
    let b = body.clone();
    let server = support::serve(Arc::new(move |line: &str, _: &str| {
        if line.starts_with(&format!("GET {path} ")) {
            (200, b.lock().unwrap().clone())
        } else {
            (404, "{}".to_owned())
        }
    }));
    (server, body)
}

#[test]
fn shelly_total_is_read_in_microjoules_and_a_reset_counts_from_zero() {
    let (server, body) = plug(SHELLY, "/rpc/Switch.GetStatus?id=0");
    let source = EnergySource::Shelly {
        url: server.url.clone(),
        switch: 0,
    };
    let (raw, roll) = source.read(&agent()).unwrap().unwrap();
    // 6.532 Wh = 23515.2 J, exactly.
    assert_eq!(raw.value, 23_515_200_000);
    let mut c = Counter::new();
    c.advance(raw, roll);
    *body.lock().unwrap() = SHELLY.replace("\"total\":6.532", "\"total\":7.532");
    let (raw, roll) = source.read(&agent()).unwrap().unwrap();
    c.advance(raw, roll);
    assert_eq!(c.total, 3_600_000_000);
    // The plug was reset: 0.5 Wh since.
    *body.lock().unwrap() = SHELLY.replace("\"total\":6.532", "\"total\":0.5");
    let (raw, roll) = source.read(&agent()).unwrap().unwrap();
    c.advance(raw, roll);
    assert_eq!(c.total, 3_600_000_000 + 1_800_000_000);
}

#[test]
fn tasmota_total_is_read_in_microjoules() {
    let (server, _) = plug(TASMOTA, "/cm?cmnd=Status%208");
    let source = EnergySource::Tasmota {
        url: server.url.clone(),
    };
    let (raw, _) = source.read(&agent()).unwrap().unwrap();
    assert_eq!(server_bodies_len(&server), 0);
    // 12.345 kWh = 44.442 MJ.
    assert_eq!(raw.value, 44_442_000_000_000);
}

#[test]
fn a_plug_that_answers_wrongly_gets_a_clear_error() {
    let cases = [
        ("not json", "not JSON"),
        ("{\"id\":0}", "without a number at /aenergy/total"),
        ("{\"aenergy\":{\"total\":\"6.5\"}}", "without a number"),
        ("{\"aenergy\":{\"total\":-1.5}}", "not a decimal number"),
        (
            "{\"aenergy\":{\"total\":1.1234567}}",
            "more than 6 decimal places",
        ),
    ];
    for (answer, expected) in cases {
        let (server, _) = plug(answer, "/rpc/Switch.GetStatus?id=0");
        let source = EnergySource::Shelly {
            url: server.url,
            switch: 0,
        };
        let err = source.read(&agent()).unwrap_err().to_string();
        assert!(err.contains(expected), "{answer}: {err}");
    }
    // The wrong switch: 404.
    let (server, _) = plug(SHELLY, "/rpc/Switch.GetStatus?id=0");
    let source = EnergySource::Shelly {
        url: server.url,
        switch: 1,
    };
    let err = source.read(&agent()).unwrap_err().to_string();
    assert!(err.contains("did not answer"), "{err}");
    // Nobody listening (a port just released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let source = EnergySource::Tasmota {
        url: format!("http://127.0.0.1:{port}"),
    };
    let err = source.read(&agent()).unwrap_err().to_string();
    assert!(err.contains("is it on"), "{err}");
}

/// A GET carries no body: one empty body per request.
fn server_bodies_len(server: &support::Server) -> usize {
    server
        .bodies
        .lock()
        .unwrap()
        .iter()
        .filter(|b| !b.is_empty())
        .count()
}
