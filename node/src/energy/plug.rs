//! What both metering plugs share: one bounded HTTP GET of a JSON status, and turning the
//! decimal energy total it holds into microjoules exactly (as text, never through a float).

use std::io::Read as _;

use super::EnergyError;

/// The largest status answer read: both plugs answer in well under 4 KiB.
const MAX_ANSWER: u64 = 64 * 1024;

/// GETs `url` and parses the answer as JSON; the error says what the plug did wrong.
pub fn get_json(agent: &ureq::Agent, url: &str) -> Result<serde_json::Value, EnergyError> {
    let err = |problem: String| EnergyError::Plug {
        url: url.to_owned(),
        problem,
    };
    let resp = agent.get(url).call().map_err(|e| {
        err(format!(
            "did not answer: {e} (is it on, and is [energy] url right?)"
        ))
    })?;
    let mut body = Vec::new();
    resp.into_reader()
        .take(MAX_ANSWER)
        .read_to_end(&mut body)
        .map_err(|e| err(format!("answer could not be read: {e}")))?;
    serde_json::from_slice(&body)
        .map_err(|e| err(format!("answered something that is not JSON: {e}")))
}

/// The number at `pointer` (a JSON pointer such as `/aenergy/total`) as microjoules, given
/// how many microjoules one millionth of the plug's unit is.
pub fn micro_joules(
    url: &str,
    status: &serde_json::Value,
    pointer: &str,
    micro_joules_per_millionth: u64,
) -> Result<u64, EnergyError> {
    let err = |problem: String| EnergyError::Plug {
        url: url.to_owned(),
        problem,
    };
    let number = status
        .pointer(pointer)
        .and_then(serde_json::Value::as_number)
        .ok_or_else(|| {
            err(format!(
                "answered without a number at {pointer}: is it the right kind of plug?"
            ))
        })?;
    let text = number.to_string();
    let millionths = quid_report::decimal::decimal_micros(&text)
        .map_err(|e| err(format!("reported {pointer} = {text}: {e}")))?;
    millionths
        .checked_mul(micro_joules_per_millionth)
        .ok_or_else(|| err(format!("reported {pointer} = {text}, too large to count")))
}
