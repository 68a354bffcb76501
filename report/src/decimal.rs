//! Exact decimal figures: a `3600.25` typed by a person or sent by a metering plug becomes a
//! whole number of millionths without passing through a float, so no rounding changes what is
//! signed.

use crate::report::MAX_FIGURE;

/// Why a decimal figure cannot be sent exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// Not digits with at most one '.'.
    #[error("not a decimal number: use digits and at most one '.', like 3600.25")]
    Syntax,
    /// More than 6 decimal places: a report carries whole millionths.
    #[error(
        "more than 6 decimal places: a report carries whole millionths; round it (or, on \
         `quid node report`, give the exact integer with --cpu-core-micros / --energy-microjoules)"
    )]
    Precision,
    /// Larger than a report may carry.
    #[error("too large: at most {MAX_FIGURE} millionths")]
    Range,
}

/// A non-negative decimal (`3600`, `0.5`, `21487.558`) as an exact number of millionths,
/// parsed as text: no float rounding can change what is signed.
pub fn decimal_micros(text: &str) -> Result<u64, DecimalError> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return Err(DecimalError::Syntax);
    }
    if frac.len() > 6 {
        return Err(DecimalError::Precision);
    }
    let mut value: u64 = 0;
    for b in int
        .bytes()
        .chain(frac.bytes())
        .chain("000000".bytes().skip(frac.len()))
    {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(DecimalError::Range)?;
    }
    if value > MAX_FIGURE {
        return Err(DecimalError::Range);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn decimals_become_exact_millionths_or_a_clear_error() {
        assert_eq!(decimal_micros("3600"), Ok(3_600_000_000));
        assert_eq!(decimal_micros("21487.558"), Ok(21_487_558_000));
        assert_eq!(decimal_micros(".5"), Ok(500_000));
        assert_eq!(decimal_micros("100.000001"), Ok(100_000_001));
        assert_eq!(
            decimal_micros("100.00000000000001"),
            Err(DecimalError::Precision)
        );
        for bad in ["", ".", "-1", "1e3", "1.2.3", " 1", "NaN"] {
            assert_eq!(decimal_micros(bad), Err(DecimalError::Syntax), "{bad}");
        }
        assert_eq!(
            decimal_micros("9223372036854.775807"),
            Ok(i64::MAX.unsigned_abs())
        );
        assert_eq!(
            decimal_micros("9223372036854.775808"),
            Err(DecimalError::Range)
        );
        assert_eq!(
            decimal_micros("99999999999999999999"),
            Err(DecimalError::Range)
        );
    }
}
