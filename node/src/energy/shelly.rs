//! Shelly Gen2 plugs (Plus Plug S and kin): `GET /rpc/Switch.GetStatus?id=N` answers
//! `aenergy.total`, the energy the switch has passed in watt-hours.

use super::{EnergyError, plug};
use crate::counter::Raw;

/// One watt-hour is 3600 J, so a millionth of one is 3600 µJ.
const MICRO_JOULES_PER_MICRO_WH: u64 = 3_600;

/// The status URL of switch `switch` of the plug at `base` (`http://192.0.2.10`).
pub fn status_url(base: &str, switch: u32) -> String {
    format!(
        "{}/rpc/Switch.GetStatus?id={switch}",
        base.trim_end_matches('/')
    )
}

/// Reads the switch's energy total in microjoules.
pub fn read(agent: &ureq::Agent, base: &str, switch: u32) -> Result<Raw, EnergyError> {
    let url = status_url(base, switch);
    let status = plug::get_json(agent, &url)?;
    let value = plug::micro_joules(&url, &status, "/aenergy/total", MICRO_JOULES_PER_MICRO_WH)?;
    Ok(Raw { value, identity: 0 })
}
