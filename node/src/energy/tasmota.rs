//! Tasmota plugs: `GET /cm?cmnd=Status%208` answers `StatusSNS.ENERGY.Total`, the energy
//! counted since `TotalStartTime`, in kilowatt-hours.

use super::{EnergyError, plug};
use crate::counter::Raw;

/// One kWh is 3.6 MJ, so a millionth of one (a mWh) is 3.6 J = 3,600,000 µJ.
const MICRO_JOULES_PER_MICRO_KWH: u64 = 3_600_000;

/// The status URL of the plug at `base` (`http://192.0.2.11`).
pub fn status_url(base: &str) -> String {
    format!("{}/cm?cmnd=Status%208", base.trim_end_matches('/'))
}

/// Reads the plug's energy total in microjoules.
pub fn read(agent: &ureq::Agent, base: &str) -> Result<Raw, EnergyError> {
    let url = status_url(base);
    let status = plug::get_json(agent, &url)?;
    let value = plug::micro_joules(
        &url,
        &status,
        "/StatusSNS/ENERGY/Total",
        MICRO_JOULES_PER_MICRO_KWH,
    )?;
    Ok(Raw { value, identity: 0 })
}
