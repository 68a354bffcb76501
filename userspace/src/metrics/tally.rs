//! The running counters behind `subscriber="other"` and the per-plan families, advanced once
//! per interval by each subscriber's increase since the last one.
//!
//! Recomputing them from lifetime totals made them go down: `other` (everything less the
//! listed subscribers) fell whenever a subscriber entered the top N, and a plan's sum (by each
//! subscriber's *current* plan) fell when a subscriber left the plan, both read by Prometheus
//! as resets and turned into false traffic. Here every series only ever adds increases:
//!
//! - A subscriber's interval goes to its own series when that series was also exported the
//!   interval before (Prometheus sees the increase), and to `other` otherwise (a series that
//!   appears only sets its baseline, so its first interval would be lost).
//! - A subscriber whose series comes back after a gap resumes at the value it left with: the
//!   gap's traffic went to `other`, and Prometheus would count the step across the gap again.
//! - A plan adds the interval's increase of the subscribers that have it at the interval's
//!   end (a plan change counts from the interval it is made in).
//!
//! The series live as long as the daemon process; a restart starts them again from the books'
//! lifetime totals, which Prometheus handles as the reset it is.

use std::collections::{BTreeMap, HashMap};

use quid_common::{DIR_CLASS_PAIRS, SubscriberCounters};

/// How many figures are counted per subscriber.
pub const FIGURES: usize = 2 * DIR_CLASS_PAIRS + CONTRIBUTIONS;
/// Index of the first contribution figure (cpu core-seconds, storage byte-seconds, joules).
pub const CONTRIBUTION: usize = 2 * DIR_CLASS_PAIRS;
const CONTRIBUTIONS: usize = 3;

/// One subscriber's counts: bytes then packets of each (direction, class) pair, then the
/// settled contributions in whole units.
pub type Figures = [u64; FIGURES];

/// The figures of `counters` and the whole-unit `contributions`.
pub fn figures(counters: &SubscriberCounters, contributions: [u64; CONTRIBUTIONS]) -> Figures {
    let mut f = [0; FIGURES];
    for (i, p) in counters.pairs.iter().enumerate() {
        f[2 * i] = p.bytes;
        f[2 * i + 1] = p.packets;
    }
    f[CONTRIBUTION..].copy_from_slice(&contributions);
    f
}

/// The counters of `f` (the pairs, without the contributions).
pub fn counters(f: &Figures) -> SubscriberCounters {
    let mut c = SubscriberCounters::default();
    for (i, p) in c.pairs.iter_mut().enumerate() {
        p.bytes = f[2 * i];
        p.packets = f[2 * i + 1];
    }
    c
}

fn add(to: &mut Figures, f: &Figures) {
    for (t, v) in to.iter_mut().zip(f) {
        *t = t.saturating_add(*v);
    }
}

/// `now` less `then`, each figure at least 0: a total that went back (it never should)
/// counts nothing rather than wrapping into a spike.
fn since(now: &Figures, then: &Figures) -> Figures {
    let mut d = [0; FIGURES];
    for (o, (n, t)) in d.iter_mut().zip(now.iter().zip(then)) {
        *o = n.saturating_sub(*t);
    }
    d
}

/// One subscriber as an interval sees it.
pub struct Seen<'a> {
    /// The subscriber's row key (unique, never reused).
    pub key: i64,
    /// Its plan at the end of the interval.
    pub plan: &'a str,
    /// Its lifetime figures now.
    pub now: Figures,
    /// Whether it gets a series of its own this interval.
    pub listed: bool,
}

/// A subscriber's row key and its lifetime figures when last seen.
type Sighting = (i64, Figures);

/// A subscriber that has had a series of its own.
struct Series {
    value: Figures,
    /// The update that last exported it.
    listed_at: u64,
}

/// Each plan's running figures and its subscribers with traffic in the last interval.
#[derive(Default, Clone, Copy)]
pub struct Plan {
    /// Running figures, as [`Figures`].
    pub figures: Figures,
    /// Subscribers of the plan whose bytes or packets moved in the last interval.
    pub active: u64,
}

/// The running counters, kept for the daemon's life.
#[derive(Default)]
pub struct Tally {
    /// Every subscriber's row key and lifetime figures at the last update, in the order it
    /// saw them. The books hand subscribers out in the same order every interval, so each one
    /// is found at the next place and updated there: one pass in memory order, where a map
    /// keyed by subscriber cost a cache miss per subscriber and most of the interval.
    last: Vec<Sighting>,
    /// Subscribers that have had a series of their own (only under `top:N`).
    series: HashMap<i64, Series>,
    other: Figures,
    plans: BTreeMap<String, Plan>,
    /// Updates made so far (0: none yet).
    updates: u64,
}

impl Tally {
    /// Advances every running counter by one interval of `subscribers` (each once).
    pub fn update<'a>(&mut self, subscribers: impl Iterator<Item = Seen<'a>>) {
        let updated = self.updates > 0;
        let previous = self.updates;
        self.updates += 1;
        let this = self.updates;
        for p in self.plans.values_mut() {
            p.active = 0;
        }
        // Until the first subscriber out of place, `last` is updated where it stands; from
        // there on it is rebuilt, the rest found through an index of the old order.
        let mut cursor = 0usize;
        let mut rebuilt: Option<(Vec<Sighting>, HashMap<i64, usize>)> = None;
        for s in subscribers {
            let in_place = rebuilt.is_none() && self.last.get(cursor).is_some_and(|l| l.0 == s.key);
            let (first_sight, delta) = if in_place {
                let last = &mut self.last[cursor].1;
                let delta = since(&s.now, last);
                *last = s.now;
                cursor += 1;
                (false, delta)
            } else {
                let (order, index) = rebuilt.get_or_insert_with(|| {
                    let index = self
                        .last
                        .iter()
                        .enumerate()
                        .map(|(i, l)| (l.0, i))
                        .collect();
                    (self.last[..cursor].to_vec(), index)
                });
                order.push((s.key, s.now));
                match index.get(&s.key) {
                    Some(&i) => (false, since(&s.now, &self.last[i].1)),
                    None => (true, s.now),
                }
            };
            let plan = match self.plans.get_mut(s.plan) {
                Some(p) => p,
                None => self.plans.entry(s.plan.to_owned()).or_default(),
            };
            add(&mut plan.figures, &delta);
            if updated && delta[..CONTRIBUTION].iter().any(|&v| v > 0) {
                plan.active += 1;
            }
            if !s.listed {
                add(&mut self.other, &delta);
                continue;
            }
            match self.series.get_mut(&s.key) {
                Some(series) => {
                    if series.listed_at == previous {
                        add(&mut series.value, &delta);
                    } else {
                        // Back after a gap: the value it left with (see the module's doc).
                        add(&mut self.other, &delta);
                    }
                    series.listed_at = this;
                }
                None => {
                    // A new series only sets its baseline: its interval goes to `other`,
                    // except on the first update, where every series starts at once.
                    if updated || !first_sight {
                        add(&mut self.other, &delta);
                    }
                    self.series.insert(
                        s.key,
                        Series {
                            value: s.now,
                            listed_at: this,
                        },
                    );
                }
            }
        }
        // Subscribers no longer in the books are left out (a key is never reused).
        match rebuilt {
            Some((order, _)) => self.last = order,
            None => self.last.truncate(cursor),
        }
    }

    /// The value of the listed subscriber `key`'s series (its lifetime figures until it
    /// first drops out of the list).
    pub fn series(&self, key: i64) -> Figures {
        self.series.get(&key).map_or([0; FIGURES], |s| s.value)
    }

    /// Everything not in a series of its own.
    pub fn other(&self) -> &Figures {
        &self.other
    }

    /// Every plan seen since the daemon started, in name order.
    pub fn plans(&self) -> &BTreeMap<String, Plan> {
        &self.plans
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes only: subscriber `key` on `plan` with `bytes`, listed or not.
    fn seen(key: i64, plan: &str, bytes: u64, listed: bool) -> Seen<'_> {
        let mut now = [0; FIGURES];
        now[0] = bytes;
        Seen {
            key,
            plan,
            now,
            listed,
        }
    }

    /// What Prometheus' `increase()` adds up over samples of one series: every step up, and
    /// after a step down (a reset) the value itself.
    fn increase(samples: &[u64]) -> u64 {
        samples
            .windows(2)
            .map(|w| if w[1] >= w[0] { w[1] - w[0] } else { w[1] })
            .sum()
    }

    #[test]
    fn other_and_listed_series_never_go_down_and_add_up_to_the_traffic() {
        // Lifetime bytes of three subscribers over five intervals; the top 1 changes hands
        // twice, and `a` comes back after a gap.
        let totals: [[u64; 3]; 6] = [
            [100, 50, 10],
            [100, 300, 10],
            [600, 300, 20],
            [600, 900, 20],
            [1500, 900, 25],
            [1600, 900, 25],
        ];
        let mut tally = Tally::default();
        let mut by_series: BTreeMap<String, Vec<Option<u64>>> = BTreeMap::new();
        for t in totals {
            let top = (0..3).max_by_key(|&i| t[i]).unwrap();
            let key = |i: usize| i64::try_from(i).unwrap();
            tally.update((0..3).map(|i| seen(key(i), "home", t[i], i == top)));
            let mut sample = |name: &str, v: Option<u64>| {
                by_series.entry(name.into()).or_default().push(v);
            };
            for i in 0..3 {
                sample(&i.to_string(), (i == top).then(|| tally.series(key(i))[0]));
            }
            sample("other", Some(tally.other()[0]));
            sample("plan", Some(tally.plans()["home"].figures[0]));
        }
        let mut sum = 0;
        for (name, samples) in &by_series {
            // Prometheus drops the stale gap: the samples before and after it are adjacent.
            let present: Vec<u64> = samples.iter().flatten().copied().collect();
            assert!(
                present.windows(2).all(|w| w[1] >= w[0]),
                "{name} went down: {samples:?}"
            );
            if name != "plan" {
                sum += increase(&present);
            }
        }
        let traffic = (1600 + 900 + 25) - (100 + 50 + 10);
        assert_eq!(sum, traffic);
        // The top subscriber's last interval is in its own series.
        assert_eq!(by_series["0"].last(), Some(&Some(200)));
        let plan: Vec<u64> = by_series["plan"].iter().flatten().copied().collect();
        assert_eq!(increase(&plan), traffic);
    }

    #[test]
    fn a_plan_change_moves_only_later_traffic_and_active_counts_only_traffic() {
        let mut tally = Tally::default();
        tally.update([seen(1, "home", 1000, false), seen(2, "home", 5, false)].into_iter());
        // Neither is active on the first update: nothing says what the interval counted.
        assert_eq!(tally.plans()["home"].active, 0);
        tally.update([seen(1, "biz", 1000, false), seen(2, "home", 7, false)].into_iter());
        let (home, biz) = (tally.plans()["home"], tally.plans()["biz"]);
        assert_eq!((home.figures[0], biz.figures[0]), (1007, 0));
        // The idle subscriber that moved is active nowhere; the one with traffic is.
        assert_eq!((home.active, biz.active), (1, 0));
        tally.update([seen(1, "biz", 1400, false), seen(2, "home", 7, false)].into_iter());
        let (home, biz) = (tally.plans()["home"], tally.plans()["biz"]);
        assert_eq!((home.figures[0], biz.figures[0]), (1007, 400));
        assert_eq!((home.active, biz.active), (0, 1));
    }

    #[test]
    fn subscribers_that_come_go_and_change_places_are_each_counted_from_their_own_last() {
        let mut tally = Tally::default();
        let mut other = Vec::new();
        for step in [
            &[(1, 100), (2, 50), (3, 10)][..],
            // 2 leaves, 4 comes in between.
            &[(1, 150), (4, 20), (3, 30)],
            // Another order.
            &[(3, 35), (1, 170), (4, 25)],
            // The last one leaves.
            &[(3, 35), (1, 170)],
            // 4 again: its figures were let go, so it counts as first seen.
            &[(3, 36), (1, 171), (4, 30)],
        ] {
            tally.update(step.iter().map(|&(k, b)| seen(k, "home", b, false)));
            other.push(tally.other()[0]);
        }
        assert_eq!(other, [160, 250, 280, 280, 312]);
    }

    #[test]
    fn a_total_that_went_back_counts_nothing() {
        let mut tally = Tally::default();
        tally.update([seen(1, "home", 1000, false)].into_iter());
        tally.update([seen(1, "home", 10, false)].into_iter());
        assert_eq!(tally.other()[0], 1000);
        tally.update([seen(1, "home", 30, false)].into_iter());
        assert_eq!(tally.other()[0], 1020);
    }
}
