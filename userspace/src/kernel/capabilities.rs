//! The capabilities `quid run` needs, checked before anything is loaded: a missing one is named
//! with what it is for, instead of surfacing later as EPERM or a verifier error.
//!
//! Each was shown necessary by running the daemon under `setpriv` without it (tests/privilege.rs):
//! without CAP_BPF no map can be created, without CAP_NET_ADMIN the kernel refuses to load
//! (and attach) an XDP program, and without CAP_PERFMON the verifier refuses the parser's
//! pointer arithmetic ("pointer -= pointer prohibited").

use std::fmt;

/// One capability: its number, name and why quid needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// The bit in the kernel's capability sets.
    pub bit: u8,
    /// The name, as in capabilities(7).
    pub name: &'static str,
    /// What quid uses it for.
    pub why: &'static str,
}

/// CAP_NET_BIND_SERVICE: only when a listener is on a port below 1024.
pub const NET_BIND_SERVICE: Capability = Capability {
    bit: 10,
    name: "CAP_NET_BIND_SERVICE",
    why: "to listen on a port below 1024",
};
/// CAP_NET_ADMIN: load and attach XDP programs.
pub const NET_ADMIN: Capability = Capability {
    bit: 12,
    name: "CAP_NET_ADMIN",
    why: "to load XDP programs and attach them to the interfaces",
};
/// CAP_PERFMON: the verifier allows the parser's pointer arithmetic only with it.
pub const PERFMON: Capability = Capability {
    bit: 38,
    name: "CAP_PERFMON",
    why: "the verifier accepts the packet parser's pointer arithmetic only with it",
};
/// CAP_BPF: create maps, load programs, pin them.
pub const BPF: Capability = Capability {
    bit: 39,
    name: "CAP_BPF",
    why: "to create the maps and load the programs",
};

/// What `quid run` always needs.
pub const ALWAYS: [Capability; 3] = [BPF, NET_ADMIN, PERFMON];

/// Missing capabilities, with the way to grant them.
#[derive(Debug, PartialEq, Eq)]
pub struct Missing(pub Vec<Capability>);

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "quid run lacks capabilities it needs:")?;
        for c in &self.0 {
            writeln!(f, "  {}: {}", c.name, c.why)?;
        }
        let names: Vec<&str> = self.0.iter().map(|c| c.name).collect();
        let lower: Vec<String> = self
            .0
            .iter()
            .map(|c| format!("+{}", c.name[4..].to_lowercase()))
            .collect();
        write!(
            f,
            "run it as root, from the shipped quid.service (AmbientCapabilities={}), or with \
             setpriv --inh-caps={1} --ambient-caps={1}",
            names.join(" "),
            lower.join(",")
        )
    }
}

impl std::error::Error for Missing {}

/// The effective capability set of this process, from /proc/self/status.
pub fn effective() -> std::io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| std::io::Error::other("no CapEff line in /proc/self/status"))
}

/// Which of `needed` the set `effective` lacks.
pub fn missing(effective: u64, needed: &[Capability]) -> Option<Missing> {
    let lacking: Vec<Capability> = needed
        .iter()
        .filter(|c| effective & (1u64 << c.bit) == 0)
        .copied()
        .collect();
    (!lacking.is_empty()).then_some(Missing(lacking))
}

/// What `quid run` needs with listeners on `listens` (host:port; empty ones are off).
pub fn needed(listens: &[&str]) -> Vec<Capability> {
    let mut needs = ALWAYS.to_vec();
    let low_port = listens.iter().any(|l| {
        l.rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_some_and(|p| p < 1024)
    });
    if low_port {
        needs.push(NET_BIND_SERVICE);
    }
    needs
}

/// Checks this process against [`needed`].
pub fn check(listens: &[&str]) -> anyhow::Result<()> {
    let eff =
        effective().map_err(|e| anyhow::anyhow!("cannot read this process's capabilities: {e}"))?;
    match missing(eff, &needed(listens)) {
        Some(m) => Err(m.into()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_missing_capability_and_how_to_grant_it() {
        let only_bpf = 1u64 << BPF.bit;
        let m = missing(only_bpf, &ALWAYS).unwrap();
        assert_eq!(m.0, vec![NET_ADMIN, PERFMON]);
        let text = m.to_string();
        assert!(
            text.contains("CAP_NET_ADMIN: to load XDP programs"),
            "{text}"
        );
        assert!(text.contains("CAP_PERFMON"), "{text}");
        assert!(!text.contains("CAP_BPF:"), "{text}");
        assert!(
            text.contains("AmbientCapabilities=CAP_NET_ADMIN CAP_PERFMON"),
            "{text}"
        );
        assert!(
            text.contains("--ambient-caps=+net_admin,+perfmon"),
            "{text}"
        );
        let all = ALWAYS.iter().fold(0, |s, c| s | 1u64 << c.bit);
        assert_eq!(missing(all, &ALWAYS), None);
    }

    #[test]
    fn the_shipped_unit_grants_exactly_what_quid_needs() {
        let unit = include_str!("../../../dist/quid.service");
        let names: Vec<&str> = ALWAYS.iter().map(|c| c.name).collect();
        for key in ["AmbientCapabilities=", "CapabilityBoundingSet="] {
            let line = unit.lines().find_map(|l| l.strip_prefix(key)).unwrap();
            let mut granted: Vec<&str> = line.split_whitespace().collect();
            granted.sort_unstable();
            let mut wanted = names.clone();
            wanted.sort_unstable();
            assert_eq!(granted, wanted, "{key}");
        }
    }

    #[test]
    fn a_low_port_needs_net_bind_service() {
        assert_eq!(needed(&["127.0.0.1:9464", ""]), ALWAYS.to_vec());
        assert!(needed(&["0.0.0.0:443"]).contains(&NET_BIND_SERVICE));
        assert!(needed(&["[::]:80"]).contains(&NET_BIND_SERVICE));
    }
}
