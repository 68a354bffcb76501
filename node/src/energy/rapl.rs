//! RAPL: a powercap zone's `energy_uj`, which wraps to 0 after `max_energy_range_uj` (every
//! few minutes to an hour at full load, hence the agent's frequent sampling).

use std::path::Path;

use super::EnergyError;
use crate::counter::{Raw, Rollover};

fn read_u64(path: &Path) -> Result<u64, EnergyError> {
    let err = |message: String| EnergyError::Rapl {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    text.trim().parse().map_err(|_| {
        err(format!(
            "not an integer: {:?}",
            quid_report::report::quote(&text)
        ))
    })
}

/// Reads `energy_uj` and the wrap point of the zone `zone`.
pub fn read(zone: &Path) -> Result<(Raw, Rollover), EnergyError> {
    let max = read_u64(&zone.join("max_energy_range_uj"))?;
    let value = read_u64(&zone.join("energy_uj"))?;
    Ok((Raw { value, identity: 0 }, Rollover::Wrap { max }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::Counter;

    /// A fixture zone laid out like `/sys/class/powercap/intel-rapl:0` (the figures are those
    /// of an Intel package zone: max_energy_range_uj 262143328850).
    fn zone(energy: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("name"), "package-0\n").unwrap();
        std::fs::write(dir.path().join("max_energy_range_uj"), "262143328850\n").unwrap();
        std::fs::write(dir.path().join("energy_uj"), format!("{energy}\n")).unwrap();
        dir
    }

    #[test]
    fn energy_is_read_and_a_wrap_adds_up() {
        let z = zone(262_143_000_000);
        let mut c = Counter::new();
        let (raw, roll) = read(z.path()).unwrap();
        c.advance(raw, roll);
        std::fs::write(z.path().join("energy_uj"), "1000000\n").unwrap();
        let (raw, roll) = read(z.path()).unwrap();
        c.advance(raw, roll);
        assert_eq!(c.total, 328_850 + 1_000_000);
    }

    #[test]
    fn a_missing_zone_or_a_bad_file_is_named() {
        let z = zone(5);
        std::fs::write(z.path().join("energy_uj"), "lots\n").unwrap();
        let err = read(z.path()).unwrap_err().to_string();
        assert!(
            err.contains("energy_uj") && err.contains("not an integer"),
            "{err}"
        );
        let err = read(&z.path().join("nope")).unwrap_err().to_string();
        assert!(err.contains("max_energy_range_uj"), "{err}");
    }
}
