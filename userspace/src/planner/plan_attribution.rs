//! The plan in force for a subscriber at a time, from the plan history: usage of an hour (or a
//! day) belongs to the plan in force when it began, a report to the plan in force at the last
//! second of its period, a ledger entry to the plan in force when it was dated. A change during
//! an hour counts from the next hour. Time before a subscriber's first recorded plan belongs
//! to that first plan (nothing older is known).

use crate::store::{PlanHistory, PlanSpan};

/// The plan named for usage and reports of subscribers the table never held.
pub const UNKNOWN_PLAN: &str = "(unknown)";

/// Looks plans up by subscriber key and time.
pub struct PlanAt {
    history: PlanHistory,
}

impl PlanAt {
    /// Over `history` (its spans in (key, since) order, as the store reads them).
    pub fn new(history: PlanHistory) -> PlanAt {
        PlanAt { history }
    }

    /// Every plan name, by index.
    pub fn names(&self) -> &[String] {
        &self.history.plans
    }

    /// The name of plan `index` (or [`UNKNOWN_PLAN`]).
    pub fn name(&self, index: Option<u32>) -> &str {
        index
            .and_then(|i| self.history.plans.get(i as usize))
            .map_or(UNKNOWN_PLAN, String::as_str)
    }

    /// The spans of subscriber `key`, oldest first (look them up once for many times).
    pub fn spans(&self, key: i64) -> &[PlanSpan] {
        let s = &self.history.spans;
        let first = s.partition_point(|p| p.key < key);
        let end = first + s[first..].partition_point(|p| p.key == key);
        &s[first..end]
    }

    /// The index of the plan in force for `key` at unix time `t` (`None`: no plan known).
    pub fn at(&self, key: i64, t: i64) -> Option<u32> {
        in_force(self.spans(key), t)
    }

    /// The index of `key`'s plan at `t` for a key that may be unknown.
    pub fn at_opt(&self, key: Option<i64>, t: i64) -> Option<u32> {
        key.and_then(|k| self.at(k, t))
    }
}

/// The plan in force at `t` among one subscriber's `spans` (see [`PlanAt::spans`]).
pub fn in_force(spans: &[PlanSpan], t: i64) -> Option<u32> {
    match spans {
        [only] => Some(only.plan),
        _ => {
            let after = spans.partition_point(|p| p.since <= t);
            spans.get(after.saturating_sub(1)).map(|p| p.plan)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SINCE_ALWAYS;

    #[test]
    fn the_plan_in_force_changes_at_its_time_and_starts_with_the_first() {
        let span = |key, since, plan| PlanSpan { key, since, plan };
        let at = PlanAt::new(PlanHistory {
            plans: vec!["home".into(), "pro".into()],
            spans: vec![
                span(1, SINCE_ALWAYS, 0),
                span(1, 100, 1),
                span(1, 200, 0),
                span(3, 50, 1),
            ],
        });
        assert_eq!(at.at(1, -5), Some(0));
        assert_eq!(at.at(1, 99), Some(0));
        assert_eq!(at.at(1, 100), Some(1));
        assert_eq!(at.at(1, 199), Some(1));
        assert_eq!(at.at(1, 200), Some(0));
        // Before the first recorded plan: that plan.
        assert_eq!(at.at(3, 0), Some(1));
        assert_eq!(at.at(2, 0), None);
        assert_eq!(at.name(at.at(3, 60)), "pro");
        assert_eq!(at.name(None), UNKNOWN_PLAN);
    }
}
