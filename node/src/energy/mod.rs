//! Electricity supplied: where the joules come from (RAPL, a metering plug, or nothing) and
//! reading each source as a raw counter in microjoules.

pub mod plug;
pub mod rapl;
pub mod shelly;
pub mod tasmota;

use serde::{Deserialize, Serialize};

use crate::counter::{Raw, Rollover};

/// Where the energy figure comes from: an ISP-supplied plug is a meter, RAPL is the CPU
/// package's own estimate, none means the report claims no energy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub enum EnergySource {
    /// No energy is claimed.
    None,
    /// A RAPL powercap zone, e.g. `/sys/class/powercap/intel-rapl:0`.
    Rapl { zone: std::path::PathBuf },
    /// A Shelly Gen2 plug: `http://<plug>/rpc/Switch.GetStatus?id=<switch>`.
    Shelly {
        url: String,
        #[serde(default)]
        switch: u32,
    },
    /// A Tasmota plug: `http://<plug>/cm?cmnd=Status%208`.
    Tasmota { url: String },
}

/// Why an energy source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EnergyError {
    /// A RAPL file is missing or unreadable.
    #[error(
        "cannot read {path}: {message} (RAPL needs root since Linux 5.10; check [energy] zone)"
    )]
    Rapl { path: String, message: String },
    /// The plug did not answer, or answered something that is not its status.
    #[error("the plug at {url} {problem}")]
    Plug { url: String, problem: String },
}

impl EnergySource {
    /// The source's name as `status` shows it.
    pub fn name(&self) -> &'static str {
        self.reported().as_str()
    }

    /// The source as a version 3 report states it.
    pub fn reported(&self) -> quid_report::report::EnergySource {
        use quid_report::report::EnergySource as Reported;
        match self {
            EnergySource::None => Reported::None,
            EnergySource::Rapl { .. } => Reported::Rapl,
            EnergySource::Shelly { .. } => Reported::Shelly,
            EnergySource::Tasmota { .. } => Reported::Tasmota,
        }
    }

    /// Reads the source now: its counter in microjoules and how that counter rolls over;
    /// `None` for no source.
    pub fn read(&self, agent: &ureq::Agent) -> Result<Option<(Raw, Rollover)>, EnergyError> {
        match self {
            EnergySource::None => Ok(None),
            EnergySource::Rapl { zone } => rapl::read(zone).map(Some),
            EnergySource::Shelly { url, switch } => {
                shelly::read(agent, url, *switch).map(|r| Some((r, Rollover::Reset)))
            }
            EnergySource::Tasmota { url } => {
                tasmota::read(agent, url).map(|r| Some((r, Rollover::Reset)))
            }
        }
    }
}
