//! How the programs are attached: the role of an interface, the XDP mode, the kernel log level.

use std::fmt;

use serde::Deserialize;

use crate::kernel::link_type::Framing;

/// Kernel log level, mapped onto aya-log's levels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelLog {
    #[default]
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl KernelLog {
    /// The value of the eBPF global `AYA_LOG_LEVEL` (0 disables every statement, which the
    /// verifier then removes as dead code).
    pub fn aya_level(self) -> u8 {
        self as u8
    }
}

/// What an interface faces, which decides who the subscriber is in a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Faces subscribers: the source is the subscriber (upload).
    Access,
    /// Faces upstream: the destination is the subscriber (download).
    Core,
    /// Router on a stick: both.
    Both,
}

impl Role {
    /// The eBPF program implementing this role on a link framed as `framing`.
    pub fn program(self, framing: Framing) -> &'static str {
        match (self, framing) {
            (Role::Access, Framing::Ethernet) => "quid_access",
            (Role::Core, Framing::Ethernet) => "quid_core",
            (Role::Both, Framing::Ethernet) => "quid_both",
            (Role::Access, Framing::Ip) => "quid_access_ip",
            (Role::Core, Framing::Ip) => "quid_core_ip",
            (Role::Both, Framing::Ip) => "quid_both_ip",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Access => "access",
            Role::Core => "core",
            Role::Both => "both",
        })
    }
}

/// How to attach: native with a generic fallback (`auto`), or one mode forced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeSetting {
    #[default]
    Auto,
    Native,
    Generic,
}
