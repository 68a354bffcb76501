//! A real Prometheus (Debian's package) for a test: started in a namespace the test made,
//! scraping quid there on 127.0.0.1:9464 with the project's rules, killed on drop.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::Netns;

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A GET over loopback inside `ns`; returns (status code, body).
pub fn get(ns: &Netns, port: u16, path: &str) -> (u16, String) {
    let path = path.to_owned();
    let (code, body) = ns.run(move || super::http_here(port, "GET", &path, b""));
    (code, dechunk(body))
}

/// A body as sent with `Transfer-Encoding: chunked` (Prometheus' larger answers) joined; any
/// other body (JSON starts with `{`, text with a letter or `#`) as it is.
fn dechunk(body: String) -> String {
    if !body.starts_with(|c: char| c.is_ascii_hexdigit()) || body.starts_with('#') {
        return body;
    }
    let mut out = String::new();
    let mut rest = body.as_str();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus in the router's namespace, killed on drop.
pub struct Prometheus(Child);

/// Starts Prometheus in `r` scraping quid on 9464 every second with the rules, and waits until
/// it is ready.
pub fn start_prometheus(r: &Netns, dir: &Path) -> Prometheus {
    let prom_dir = dir.join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let prom_cfg = prom_dir.join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: quid\n    static_configs:\n      - targets: ['127.0.0.1:9464']\n",
            repo().join("dashboards/rules/quid.rules.yml").display()
        ),
    )
    .unwrap();
    let prom = Prometheus(
        super::dies_with_test(&mut Command::new("nsenter"))
            .arg(format!("--net=/run/netns/{}", r.name))
            .arg("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.join("data").display()
            ))
            .args(["--web.listen-address=127.0.0.1:9090", "--log.level=warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package) is installed by scripts/bootstrap.sh"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(r, 9090, "/-/ready").0 != 200 {
        assert!(Instant::now() < deadline, "prometheus did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    prom
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
