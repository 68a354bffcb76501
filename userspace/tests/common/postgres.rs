//! A real PostgreSQL server for a test: Debian's binaries, `initdb` into a temporary directory
//! and `pg_ctl` started inside a network namespace the test made (never a system service).
//! Stopped with `-m immediate` on drop, so a failing test leaves no server behind.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use super::{Netns, sh};

/// The password of the `quid` role (the tests' own; also in `password_file()`).
pub const PASSWORD: &str = "quid-test-password";

/// A running server in a namespace: database `quid`, owned by role `quid`.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    ns: String,
    pub port: u16,
}

/// The newest PostgreSQL installed (`/usr/lib/postgresql/<version>/bin`).
fn bin() -> PathBuf {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: scripts/bootstrap.sh installs it")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let v = versions.last().expect("no PostgreSQL version installed");
    PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"))
}

impl Postgres {
    /// Initialises and starts a server in `ns`, listening on every address there, on `port`.
    pub fn start(ns: &Netns, port: u16) -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        let pg = Postgres {
            bin: bin(),
            ns: ns.name.clone(),
            port,
            dir,
        };
        let d = pg.dir.path();
        std::fs::write(d.join("superpw"), "super-test-password\n").unwrap();
        std::fs::write(pg.password_file(), format!("{PASSWORD}\n")).unwrap();
        sh(&["chown", "-R", "postgres:postgres", d.to_str().unwrap()]);
        pg.as_postgres(&[
            pg.bin.join("initdb").to_str().unwrap(),
            "-D",
            pg.data().to_str().unwrap(),
            "-U",
            "postgres",
            // The superuser over the server's own socket (the test's setup and checks); every
            // router over TCP with a password.
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--pwfile",
            d.join("superpw").to_str().unwrap(),
            "--no-sync",
        ]);
        // Routers reach it over their links in the shared range 100.64.0.0/10.
        let hba = pg.data().join("pg_hba.conf");
        let text = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(&hba, text + "host all all 100.64.0.0/10 scram-sha-256\n").unwrap();
        pg.start_again();
        pg.psql_as(
            "postgres",
            "postgres",
            &format!("CREATE ROLE quid LOGIN PASSWORD '{PASSWORD}'"),
        );
        pg.psql_as("postgres", "postgres", "CREATE DATABASE quid OWNER quid");
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file holding the `quid` role's password (for `[store] password_file`).
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("password")
    }

    /// Runs a command as the `postgres` user inside the namespace.
    fn as_postgres(&self, args: &[&str]) -> String {
        let mut full = vec![
            "ip", "netns", "exec", &self.ns, "runuser", "-u", "postgres", "--",
        ];
        full.extend_from_slice(args);
        sh(&full)
    }

    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        let port = format!(
            "-c listen_addresses='*' -p {} -k {} -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, "runuser", "-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(port)
            .args(args);
        cmd.output().unwrap()
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn start_again(&self) {
        let out = self.pg_ctl(&["-w", "-t", "60", "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
    }

    /// Stops the server (fast: open transactions are rolled back, connections cut).
    pub fn stop(&self) {
        let out = self.pg_ctl(&["-w", "-m", "fast", "stop"]);
        assert!(out.status.success(), "pg_ctl stop failed: {out:?}");
    }

    /// Runs SQL in database `quid` as the superuser over the local socket; tab-separated rows.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_as("postgres", "quid", sql)
    }

    fn psql_as(&self, user: &str, db: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let host = self.dir.path().to_str().unwrap().to_owned();
        let psql = self.bin.join("psql");
        self.as_postgres(&[
            psql.to_str().unwrap(),
            "-h",
            &host,
            "-p",
            &port,
            "-U",
            user,
            "-d",
            db,
            "-AtF",
            "\t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
    }

    /// Turns TLS on with this certificate and key (PEM), and from then on accepts routers over
    /// TLS only.
    pub fn enable_tls(&self, cert: &str, key: &str) {
        let data = self.data();
        std::fs::write(data.join("server.crt"), cert).unwrap();
        std::fs::write(data.join("server.key"), key).unwrap();
        sh(&[
            "chown",
            "postgres:postgres",
            data.join("server.crt").to_str().unwrap(),
            data.join("server.key").to_str().unwrap(),
        ]);
        sh(&["chmod", "600", data.join("server.key").to_str().unwrap()]);
        let hba = data.join("pg_hba.conf");
        let text = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(
            &hba,
            text.replace(
                "\nhost all all 100.64.0.0/10",
                "\nhostssl all all 100.64.0.0/10",
            ),
        )
        .unwrap();
        self.psql("ALTER SYSTEM SET ssl = on");
        self.psql("SELECT pg_reload_conf()");
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Where its files are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let stopped = self.pg_ctl(&["-m", "immediate", "stop"]).status.success();
        // Without its namespace pg_ctl cannot run: end the server by its pid file.
        if !stopped
            && let Ok(pid) = std::fs::read_to_string(self.data().join("postmaster.pid"))
            && let Some(pid) = pid
                .lines()
                .next()
                .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGQUIT,
            );
        }
    }
}
