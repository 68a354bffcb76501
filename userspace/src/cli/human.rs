//! Figures as an operator reads them: thousands separators and byte units. Only the tables
//! use these; every `--json` keeps the raw integers.

/// `n` with thousands separators: `1,531,540`.
pub fn count(n: u64) -> String {
    separated(&n.to_string())
}

/// Micro-credits as credits with thousands separators and all six decimals, so nothing is
/// rounded away: `-1,234,567.890123`.
pub fn credits(micro: i128) -> String {
    let sign = if micro < 0 { "-" } else { "" };
    let m = micro.unsigned_abs();
    format!(
        "{sign}{}.{:06}",
        separated(&(m / 1_000_000).to_string()),
        m % 1_000_000
    )
}

/// A run of decimal digits with a comma before every group of three from the right.
fn separated(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// Bytes in decimal (SI) units with three significant figures: `532 B`, `1.53 MB`, `47.6 GB`.
/// Truncated, not rounded, so a figure never shows more than was counted.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let (mut unit, mut divisor) = (0, 1u128);
    while u128::from(n) >= divisor * 1000 && unit + 1 < UNITS.len() {
        unit += 1;
        divisor *= 1000;
    }
    if unit == 0 {
        return format!("{n} B");
    }
    let hundredths = u128::from(n) * 100 / divisor;
    let (whole, frac) = (hundredths / 100, hundredths % 100);
    match whole {
        0..10 => format!("{whole}.{frac:02} {}", UNITS[unit]),
        10..100 => format!("{whole}.{} {}", frac / 10, UNITS[unit]),
        _ => format!("{whole} {}", UNITS[unit]),
    }
}

/// Exact bytes with separators and the scaled figure: `1,531,540 B (1.53 MB)`.
pub fn bytes_exact(n: u64) -> String {
    if n < 1000 {
        return format!("{n} B");
    }
    format!("{} B ({})", count(n), bytes(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_get_separators_and_bytes_units() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(1_531_540), "1,531,540");
        assert_eq!(count(u64::MAX), "18,446,744,073,709,551,615");
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_000), "1.00 kB");
        assert_eq!(bytes(1_531_540), "1.53 MB");
        assert_eq!(bytes(1_999_999), "1.99 MB");
        assert_eq!(bytes(47_600_000_000), "47.6 GB");
        assert_eq!(bytes(344_000_000), "344 MB");
        assert_eq!(bytes(u64::MAX), "18.4 EB");
        assert_eq!(bytes_exact(532), "532 B");
        assert_eq!(bytes_exact(4_160_000), "4,160,000 B (4.16 MB)");
    }

    #[test]
    fn credits_keep_six_decimals_and_get_separators() {
        assert_eq!(credits(0), "0.000000");
        assert_eq!(credits(200), "0.000200");
        assert_eq!(credits(-26_543), "-0.026543");
        assert_eq!(credits(999_999_999), "999.999999");
        assert_eq!(credits(1_000_000_000), "1,000.000000");
        assert_eq!(credits(-1_234_567_890_123), "-1,234,567.890123");
        assert_eq!(credits(i128::from(i64::MAX)), "9,223,372,036,854.775807");
        assert_eq!(
            credits(i128::from(i64::MIN) * 2),
            "-18,446,744,073,709.551616"
        );
    }
}
