//! What became of a report: waiting for the meter, or settled as matched, disputed or
//! unmetered (see `matching` for the rules). Kept in the store as the text of
//! [`Outcome::as_str`].

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// A report's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Recorded, not yet settled (the books do not cover its period yet, or its node left).
    Pending,
    /// Its claim agrees with the meter within tolerance: full credit.
    Matched,
    /// Its claim disagrees with the meter: credit by the `disputed` policy.
    Disputed,
    /// Part of its period was never metered: no credit.
    Unmetered,
}

impl Outcome {
    /// Every outcome, in no particular order.
    pub const ALL: [Outcome; 4] = [
        Outcome::Pending,
        Outcome::Matched,
        Outcome::Disputed,
        Outcome::Unmetered,
    ];

    /// The outcome's text, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Matched => "matched",
            Outcome::Disputed => "disputed",
            Outcome::Unmetered => "unmetered",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so widths and alignment in format strings apply.
        f.pad(self.as_str())
    }
}

/// An outcome text quid does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a report outcome (pending, matched, disputed, unmetered): the store was \
     edited outside quid or written by a newer quid"
)]
pub struct UnknownOutcome(pub String);

impl FromStr for Outcome {
    type Err = UnknownOutcome;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == text)
            .ok_or_else(|| UnknownOutcome(crate::settlement::report::quote(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_back_as_written_and_unknown_text_is_an_error() {
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>(), Ok(o));
        }
        assert_eq!(format!("{:<9}|", Outcome::Matched), "matched  |");
        let err = "settled".parse::<Outcome>().unwrap_err();
        assert!(
            err.to_string()
                .contains("`settled` is not a report outcome"),
            "{err}"
        );
    }
}
