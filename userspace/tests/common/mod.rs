//! Test hosts: network namespaces and veth pairs that a test creates and always removes,
//! raw frame injection, and the real `quid` daemon running inside a namespace.
#![allow(dead_code)]

pub mod postgres;
pub mod prometheus;

use std::{
    fs::File,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use quid::metering::snapshot::Snapshot;

/// Frames the daemon's interfaces have seen, in every bucket.
pub fn frames_seen(s: &Snapshot) -> u64 {
    s.interfaces
        .iter()
        .map(|i| {
            i.attributed.packets
                + i.non_ip.packets
                + i.unknown.packets
                + i.malformed.packets
                + i.pppoe_discovery.packets
        })
        .sum()
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Has the program `cmd` starts (a server: the daemon, Prometheus, Kea, FreeRADIUS, an agent)
/// killed when the test thread that starts it ends: a test that panics before its guard's
/// drop, or a test run killed outright, leaves no server behind. The guards still stop them
/// first on a normal end. The signal follows the program through `ip netns exec` and
/// `nsenter`, which exec it in the same process.
pub fn dies_with_test(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs in the child between fork and exec and calls only prctl(2),
    // which is async-signal-safe, touching no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace named `qt-<pid>-<n>-<tag>`, deleted (with its interfaces) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        remove_stale();
        let name = format!(
            "qt-{}-{}-{tag}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        // No IPv6 autoconfiguration chatter (router solicitations, MLD, DAD): the tests count
        // every frame, so the only traffic must be the test's own.
        ns.exec(&["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Enables IPv6 on the namespace's interfaces created from now on.
    pub fn enable_ipv6(&self) {
        self.exec(&["sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/default/disable_ipv6; echo 0 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad; echo 0 > /proc/sys/net/ipv6/conf/default/router_solicitations; echo 0 > /proc/sys/net/ipv6/conf/default/accept_ra"]);
    }

    /// Runs `f` on a thread that has entered this namespace (sockets it opens live here).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = File::open(&path).unwrap();
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    /// Starts `f` on a thread that has entered this namespace, without waiting for it.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = File::open(&path).unwrap();
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
    }

    /// The ifindex of an interface in this namespace.
    pub fn ifindex(&self, ifname: &str) -> u32 {
        let name = ifname.to_owned();
        self.run(move || nix::net::if_::if_nametoindex(name.as_str()).unwrap())
    }

    /// Whether an XDP program is attached to `ifname`.
    pub fn has_xdp(&self, ifname: &str) -> bool {
        self.exec(&["ip", "-d", "link", "show", ifname])
            .contains("prog/xdp")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Deletes namespaces left by test processes that no longer exist (killed, not unwound).
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name.strip_prefix("qt-").and_then(|r| r.split('-').next()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
    for e in std::fs::read_dir("/sys/fs/bpf")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("qt-").and_then(|r| r.split('-').next())
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = quid::kernel::loader::remove_pins(&e.path());
        }
    }
}

/// The usual test host: a router namespace with access interface `acc`, wired by veth to a
/// sender namespace's `acc-p`.
pub fn router_and_sender() -> (Netns, Netns) {
    let r = Netns::new("rtr");
    let s = Netns::new("snd");
    veth(&r, "acc", &s, "acc-p");
    (r, s)
}

/// Config sections for the exporter on 9464 and the report intake on 9465 (nodes.csv).
pub const LISTENERS: &str = "
[metrics]
listen = \"127.0.0.1:9464\"
subscribers = \"all\"

[reports]
listen = \"127.0.0.1:9465\"
nodes = \"nodes.csv\"
";

/// A veth pair: `a` in namespace `ns_a`, `b` in `ns_b`, both up.
pub fn veth(ns_a: &Netns, a: &str, ns_b: &Netns, b: &str) {
    sh(&[
        "ip", "-n", &ns_a.name, "link", "add", a, "type", "veth", "peer", "name", b, "netns",
        &ns_b.name,
    ]);
    sh(&["ip", "-n", &ns_a.name, "link", "set", a, "up"]);
    sh(&["ip", "-n", &ns_b.name, "link", "set", b, "up"]);
}

/// An AF_PACKET socket that sends whole frames, as given, out of one interface.
pub struct Injector {
    fd: OwnedFd,
    ifindex: i32,
}

impl Injector {
    pub fn new(ns: &Netns, ifname: &str) -> Injector {
        let ifindex = i32::try_from(ns.ifindex(ifname)).unwrap();
        let raw = ns.run(move || {
            // Protocol 0: send only, so the socket never queues received frames.
            // SAFETY: socket(2) takes no pointers; a negative result is checked below.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            fd
        });
        Injector {
            // SAFETY: `raw` is the fresh, checked socket above, owned by nothing else.
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
            ifindex,
        }
    }

    /// Sends `frame` `count` times.
    pub fn send(&self, frame: &[u8], count: usize) {
        // SAFETY: sockaddr_ll is plain integers, for which all zeroes is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = u16::try_from(libc::AF_PACKET).unwrap();
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        let addr_len = u32::try_from(std::mem::size_of::<libc::sockaddr_ll>()).unwrap();
        for _ in 0..count {
            // SAFETY: the frame and the address are valid for reads of the lengths passed.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&addr as *const libc::sockaddr_ll).cast(),
                    addr_len,
                )
            };
            assert_eq!(
                usize::try_from(n).ok(),
                Some(frame.len()),
                "sendto: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// The real `quid run` inside a namespace; killed on drop if the test did not stop it.
pub struct Daemon {
    child: Option<Child>,
    pub state_dir: PathBuf,
    pub config: PathBuf,
    log: PathBuf,
}

/// A bpffs pin directory of its own for one test (removed by [`PinDir`]'s drop).
pub fn pin_dir() -> PinDir {
    PinDir(PathBuf::from(format!(
        "/sys/fs/bpf/qt-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )))
}

/// A test's pin directory: whatever quid left pinned there is removed on drop.
pub struct PinDir(pub PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = quid::kernel::loader::remove_pins(&self.0);
    }
}

/// Writes a config and table into `dir`; the daemon detaches on SIGTERM.
pub fn write_config(dir: &Path, interfaces: &[(&str, &str, &str)], table: &str) -> PathBuf {
    write_config_sections(dir, interfaces, table, "")
}

/// Like [`write_config`], with more config sections (`[metrics]`, `[reports]`, ...) appended.
pub fn write_config_sections(
    dir: &Path,
    interfaces: &[(&str, &str, &str)],
    table: &str,
    sections: &str,
) -> PathBuf {
    let pin_dir = config_pin_dir(dir);
    let config = write_config_with(
        dir,
        interfaces,
        table,
        &format!("pin_dir = \"{pin_dir}\"\non_stop = \"detach\"\n"),
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text + sections).unwrap();
    config
}

/// The pin directory of the config [`write_config_sections`] writes into `dir`: on bpffs, named
/// after the test's temp dir; a killed run's pins go with `remove_stale`.
pub fn config_pin_dir(dir: &Path) -> String {
    format!(
        "/sys/fs/bpf/qt-{}-{}",
        std::process::id(),
        // bpffs refuses names with a '.'.
        dir.file_name().unwrap().to_string_lossy().replace('.', "_")
    )
}

/// Writes `dir/nodes.csv` with one node `pi` of subscriber alice (2 cores, 1 GB, 10 W) whose
/// key is made from `seed`; returns that key.
pub fn write_nodes(dir: &Path, seed: u8) -> ed25519_dalek::SigningKey {
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    std::fs::write(
        dir.join("nodes.csv"),
        format!(
            "node,subscriber,public_key,cpu_cores,storage_bytes,max_watts\npi,alice,{},2,1000000000,10\n",
            hex::encode(key.verifying_key().to_bytes())
        ),
    )
    .unwrap();
    key
}

/// One HTTP/1.1 request to 127.0.0.1:`port` of the calling thread's namespace: (status, body);
/// status 0 when nothing answered.
pub fn http_here(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    http_on(s, method, path, body)
}

/// One HTTP/1.1 request on an open connection: (status, body); status 0 when nothing answered.
pub fn http_on(mut s: std::net::TcpStream, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).is_err() || s.write_all(body).is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// `quid node report` for `node` from inside `ns`, to the intake on 127.0.0.1:9465, signed
/// with `key_file`, plus `args`: (success, stdout and stderr).
pub fn node_report(ns: &Netns, node: &str, key_file: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name))
        .arg(env!("CARGO_BIN_EXE_quid"))
        .args([
            "node",
            "report",
            "--url",
            "http://127.0.0.1:9465",
            "--node",
            node,
        ])
        .arg("--key")
        .arg(key_file)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
            + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Runs `quid ARGS --config CONFIG` on the host: (success, stdout and stderr).
pub fn quid_cli(config: &Path, args: &[&str]) -> (bool, String) {
    let out = quid_cli_output(config, args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Runs `quid ARGS --config CONFIG` on the host and returns its output as it is.
pub fn quid_cli_output(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_quid"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

/// Writes a config and table into `dir`, with extra `[daemon]` lines.
pub fn write_config_with(
    dir: &Path,
    interfaces: &[(&str, &str, &str)],
    table: &str,
    daemon_extra: &str,
) -> PathBuf {
    std::fs::write(dir.join("subscribers.csv"), table).unwrap();
    let mut cfg = format!(
        "[daemon]\ninterval_secs = 1\nstate_dir = \"{}\"\n{daemon_extra}\n[subscribers]\nfile = \"subscribers.csv\"\ncapacity = 1024\nprefix_capacity = 1024\n",
        dir.join("state").display()
    );
    for (name, role, mode) in interfaces {
        cfg += &format!(
            "\n[[interface]]\nname = \"{name}\"\nrole = \"{role}\"\nxdp_mode = \"{mode}\"\n"
        );
    }
    let path = dir.join("quid.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

impl Daemon {
    /// Starts the daemon and waits until it has attached and written its first snapshot.
    pub fn start(ns: &Netns, config: &Path) -> Daemon {
        Daemon::start_with(ns, config, &[])
    }

    /// Like [`Daemon::start`], with `quid` run by `wrapper` (setpriv, unshare, ...), which must
    /// exec it so the child's pid stays quid's.
    pub fn start_with(ns: &Netns, config: &Path, wrapper: &[String]) -> Daemon {
        let dir = config.parent().unwrap();
        Daemon::start_program(
            ns,
            config,
            wrapper,
            env!("CARGO_BIN_EXE_quid").as_ref(),
            dir,
        )
    }

    /// Like [`Daemon::start_with`], running the binary `quid` (an installed one), with the
    /// state directory and the log in `dir`.
    pub fn start_program(
        ns: &Netns,
        config: &Path,
        wrapper: &[String],
        quid: &Path,
        dir: &Path,
    ) -> Daemon {
        let state_dir = dir.join("state");
        let log = dir.join("quid.log");
        let child = quid_run_program(ns, quid, config, wrapper)
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child: Some(child),
            state_dir,
            config: config.to_owned(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // This daemon's own snapshot: a killed predecessor's may still say "running".
            let pid = d.child.as_ref().unwrap().id();
            if let Ok(s) = Snapshot::read(&d.state_dir)
                && s.state == quid::metering::snapshot::DaemonState::Running
                && s.pid == pid
            {
                return d;
            }
            if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("quid exited early ({status}):\n{}", d.log());
            }
            assert!(
                Instant::now() < deadline,
                "quid did not start within 20 s:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's pid (the wrappers exec quid).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (at most 15 s, else fails with `what` and the log) until `ok` holds for the
    /// daemon's snapshot, and returns it.
    pub fn wait_for(&self, what: &str, ok: impl Fn(&Snapshot) -> bool) -> Snapshot {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(s) = Snapshot::read(&self.state_dir)
                && ok(&s)
            {
                return s;
            }
            assert!(Instant::now() < deadline, "{what}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (at most 10 s, else fails with the log) until the log contains `text`.
    pub fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(text) {
            assert!(Instant::now() < deadline, "no `{text}` in:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the daemon dies mid-interval, as in a crash.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, wait for a clean exit, and return the final snapshot.
    pub fn stop(self) -> Snapshot {
        // nsenter execs quid, so the child pid is quid's.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.pid()).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        self.exited()
    }

    /// Waits (at most 20 s) for a daemon someone else stopped to exit cleanly, and returns
    /// the final snapshot.
    pub fn exited(mut self) -> Snapshot {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "quid did not stop within 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "quid failed ({status}):\n{}", self.log());
        let snap = Snapshot::read(&self.state_dir).unwrap();
        assert_eq!(snap.state, quid::metering::snapshot::DaemonState::Stopped);
        snap
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `quid run --config CONFIG` in `ns`, run by `wrapper` (setpriv, unshare, ...; may be empty),
/// which must exec it so the child's pid stays quid's.
fn quid_run(ns: &Netns, config: &Path, wrapper: &[String]) -> Command {
    quid_run_program(ns, env!("CARGO_BIN_EXE_quid").as_ref(), config, wrapper)
}

/// [`quid_run`] with the binary `quid`.
fn quid_run_program(ns: &Netns, quid: &Path, config: &Path, wrapper: &[String]) -> Command {
    // nsenter switches only the network namespace: unlike `ip netns exec`, which mounts a
    // fresh /sys, the daemon sees the host's bpffs, so its pins outlive it.
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", ns.name))
        .args(wrapper)
        .arg(quid)
        .args(["run", "--config"])
        .arg(config);
    dies_with_test(&mut cmd);
    cmd
}

/// Runs [`quid_run`] where quid is expected to refuse to start, for at most 20 s: (exit
/// success, stderr).
pub fn quid_run_refused(ns: &Netns, config: &Path, wrapper: &[String]) -> (bool, String) {
    let mut cmd = quid_run(ns, config, wrapper);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.success(), err)
}

/// Unix seconds now.
pub fn now() -> i64 {
    quid::clock::Clock::system().now_i64().unwrap()
}

/// A signed one-hour report ending `end_ago` seconds ago.
pub fn report(
    key: &ed25519_dalek::SigningKey,
    node: &str,
    seq: u64,
    end_ago: i64,
    edit: impl FnOnce(&mut quid::settlement::report::Report),
) -> Vec<u8> {
    let t = now() - end_ago;
    let mut r = quid::settlement::report::Report {
        node: node.into(),
        seq,
        period_start: quid::settlement::report::rfc3339(t - 3600),
        period_end: quid::settlement::report::rfc3339(t),
        cpu_core_micros: 3_600_000_000,
        storage_byte_seconds: 1_000_000_000 * 3600,
        energy_microjoules: 10 * 3_600_000_000,
        energy_source: Some(quid::settlement::report::EnergySource::Rapl),
        grid_bytes_sent: 5_000,
        grid_bytes_received: 7_000,
        signature: String::new(),
    };
    edit(&mut r);
    if r.sign(key).is_err() {
        r.signature = "00".repeat(64);
    }
    serde_json::to_vec(&r).unwrap()
}

/// The value of `series` (name and labels) in an exposition.
pub fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series}"))
}

/// A TCP connection to 127.0.0.1:`port` from `source` (any 127/8 address), in the calling
/// thread's namespace.
pub fn connect_from(source: std::net::Ipv4Addr, port: u16) -> std::net::TcpStream {
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::empty(),
        None,
    )
    .unwrap();
    let bind = nix::sys::socket::SockaddrIn::from(std::net::SocketAddrV4::new(source, 0));
    nix::sys::socket::bind(std::os::fd::AsRawFd::as_raw_fd(&socket), &bind).unwrap();
    let to = nix::sys::socket::SockaddrIn::new(127, 0, 0, 1, port);
    nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&socket), &to).unwrap();
    let s = std::net::TcpStream::from(socket);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// A plain SQLite connection to the store in `state_dir` (opened by quid first, so it exists
/// with the current schema), for tests that read the tables directly or edit them behind
/// quid's back: quid itself keeps its connection to itself.
pub fn sqlite(state_dir: &Path) -> rusqlite::Connection {
    std::fs::create_dir_all(state_dir).unwrap();
    drop(quid::store::Store::open(state_dir).unwrap());
    let c = rusqlite::Connection::open(state_dir.join(quid::store::FILE)).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

/// Writes into the store in `state_dir` (created if needed) what an earlier daemon run would
/// have recorded: the meter ran from `since` until now, `subscribers` were metered throughout,
/// and `nodes` were registered at `since`. Tests that report for time before their daemon
/// started call it first, as quid refuses reports for time it never metered.
pub fn metered_since(state_dir: &Path, subscribers: &[&str], nodes: &[&str], since: i64) {
    let c = sqlite(state_dir);
    let until = now();
    c.execute(
        "INSERT INTO meter_spans (start, end) VALUES (?1, ?2)",
        [since, until],
    )
    .unwrap();
    for s in subscribers {
        c.execute(
            "INSERT INTO metering (subscriber, start, end) VALUES (?1, ?2, ?3)",
            rusqlite::params![s, since, until],
        )
        .unwrap();
    }
    for n in nodes {
        c.execute(
            "INSERT INTO nodes_seen (node, first_seen) VALUES (?1, ?2)",
            rusqlite::params![n, since],
        )
        .unwrap();
    }
}

/// Waits (at most 20 s) for a table reload after the one numbered `after`, and returns it.
pub fn wait_reload(state: &Path, after: u64) -> quid::subscribers::reload_result::ReloadResult {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(r) = quid::subscribers::reload_result::ReloadResult::read(state)
            && r.seq > after
        {
            return r;
        }
        assert!(Instant::now() < deadline, "no reload within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes a shared secret file readable by its owner only (quid refuses one others can read).
pub fn write_secret(path: &Path, secret: &str) {
    std::fs::write(path, format!("{secret}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Writes `frames` as a pcap file (Ethernet link type, microsecond timestamps a millisecond
/// apart) for `tcpreplay`.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    // Magic, version 2.4 (two u16s: 2 then 4), UTC, no accuracy figure, snapshot length,
    // LINKTYPE_ETHERNET; little-endian throughout.
    for word in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65_535, 1] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    for (i, f) in frames.iter().enumerate() {
        let len = u32::try_from(f.len()).unwrap();
        let usec = u32::try_from(i * 1_000).unwrap();
        for word in [1_800_000_000u32, usec, len, len] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap();
}

/// Replays the pcap file `path` out of interface `dev` of `ns` with `tcpreplay`, as fast as
/// it goes; panics with what tcpreplay said if it fails.
pub fn tcpreplay(ns: &Netns, dev: &str, path: &Path) {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "tcpreplay",
            "--topspeed",
            "--intf1",
            dev,
        ])
        .arg(path)
        .output()
        .expect("tcpreplay is missing: scripts/bootstrap.sh installs it");
    assert!(
        out.status.success(),
        "tcpreplay on {dev}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
