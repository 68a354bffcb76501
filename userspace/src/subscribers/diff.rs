//! Which subscribers a new table adds, removes and changes, by position in each table.
//!
//! An edited table file keeps its order: the two tables are walked side by side, and only
//! where the ids differ are they put aside and matched by id. A change of a few thousand
//! lines in a million then costs a sequential comparison plus hashing for the lines around
//! the change, instead of hashing every id of both tables.

use std::{collections::HashMap, ops::Range};

use super::table::{Subscriber, Table};

/// The difference between two tables, as positions (ascending) in them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableDiff {
    /// Positions in the new table of subscribers the old one does not have.
    pub added: Vec<usize>,
    /// Positions in the old table of subscribers the new one does not have.
    pub removed: Vec<usize>,
    /// (old, new) positions of subscribers whose name, plan or prefixes differ.
    pub changed: Vec<(usize, usize)>,
}

impl TableDiff {
    /// Whether the tables hold the same subscribers, each the same.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// The difference from the new table back to the old one.
    pub fn reversed(&self) -> TableDiff {
        TableDiff {
            added: self.removed.clone(),
            removed: self.added.clone(),
            changed: self.changed.iter().map(|&(i, j)| (j, i)).collect(),
        }
    }
}

/// Tables at least this long are compared in two halves on two threads.
const SPLIT_AT: usize = 100_000;
/// How far from the new table's middle its counterpart in the old table is looked for.
const ANCHOR_REACH: usize = 4096;

/// Compares `old` and `new` (ids are unique within each, as [`Table`] guarantees).
pub fn diff(old: &Table, new: &Table) -> TableDiff {
    let (o, n) = (&old.subscribers[..], &new.subscribers[..]);
    if o.is_empty() || n.is_empty() {
        // The first install (or everyone removed): nothing to pair, no id to hash.
        return TableDiff {
            added: if o.is_empty() {
                (0..n.len()).collect()
            } else {
                Vec::new()
            },
            removed: if o.is_empty() {
                Vec::new()
            } else {
                (0..o.len()).collect()
            },
            changed: Vec::new(),
        };
    }
    // A long table is cut where a subscriber of the new table's middle sits in both, and the
    // halves walked at once: the walk reads every line of both tables, which at a million
    // subscribers is most of a change's cost.
    if let Some((i, j)) = (n.len() >= SPLIT_AT).then(|| anchor(o, n)).flatten() {
        let halves = std::thread::scope(|scope| {
            let second = std::thread::Builder::new()
                .name("quid-table-diff".into())
                .spawn_scoped(scope, || walk(o, n, i..o.len(), j..n.len()));
            let first = walk(o, n, 0..i, 0..j);
            second
                .ok()
                .and_then(|h| h.join().ok())
                .map(|second| (first, second))
        });
        if let Some((first, second)) = halves {
            return finish(o, n, [first, second]);
        }
    }
    finish(o, n, [walk(o, n, 0..o.len(), 0..n.len())])
}

/// Positions (old, new) of one subscriber near the middle of the new table, if it is in
/// both within [`ANCHOR_REACH`] lines of each other.
fn anchor(o: &[Subscriber], n: &[Subscriber]) -> Option<(usize, usize)> {
    let j = n.len() / 2;
    let from = j.saturating_sub(ANCHOR_REACH);
    let to = j.saturating_add(ANCHOR_REACH).min(o.len());
    let i = (from..to).find(|&i| o[i].id == n[j].id)?;
    Some((i, j))
}

/// A stretch of both tables walked side by side: the subscribers found changed, and the
/// lines left without a partner in the stretch.
struct Walked<'a> {
    changed: Vec<(usize, usize)>,
    old_aside: HashMap<&'a str, usize>,
    new_aside: HashMap<&'a str, usize>,
}

/// Walks `o[old]` and `n[new]` side by side; where the ids differ, lines are put aside by
/// id until their partner comes.
fn walk<'a>(
    o: &'a [Subscriber],
    n: &'a [Subscriber],
    old: Range<usize>,
    new: Range<usize>,
) -> Walked<'a> {
    let mut w = Walked {
        changed: Vec::new(),
        old_aside: HashMap::new(),
        new_aside: HashMap::new(),
    };
    let matched = |w: &mut Walked, i: usize, j: usize| {
        if o[i] != n[j] {
            w.changed.push((i, j));
        }
    };
    let (mut i, mut j) = (old.start, new.start);
    while i < old.end && j < new.end {
        if o[i].id == n[j].id {
            matched(&mut w, i, j);
            (i, j) = (i + 1, j + 1);
        } else if let Some(nj) = w.new_aside.remove(o[i].id.as_str()) {
            matched(&mut w, i, nj);
            i += 1;
        } else if let Some(oi) = w.old_aside.remove(n[j].id.as_str()) {
            matched(&mut w, oi, j);
            j += 1;
        } else {
            w.old_aside.insert(&o[i].id, i);
            w.new_aside.insert(&n[j].id, j);
            (i, j) = (i + 1, j + 1);
        }
    }
    for (oi, s) in o.iter().enumerate().take(old.end).skip(i) {
        match w.new_aside.remove(s.id.as_str()) {
            Some(nj) => matched(&mut w, oi, nj),
            None => {
                w.old_aside.insert(&s.id, oi);
            }
        }
    }
    for (nj, s) in n.iter().enumerate().take(new.end).skip(j) {
        match w.old_aside.remove(s.id.as_str()) {
            Some(oi) => matched(&mut w, oi, nj),
            None => {
                w.new_aside.insert(&s.id, nj);
            }
        }
    }
    w
}

/// Pairs what the stretches left aside across them (a line moved from one to the other);
/// what is still aside has no partner: removed, or added.
fn finish<const N: usize>(o: &[Subscriber], n: &[Subscriber], walked: [Walked; N]) -> TableDiff {
    let mut d = TableDiff::default();
    let mut old_aside: HashMap<&str, usize> = HashMap::new();
    let mut new_aside = Vec::new();
    for w in walked {
        d.changed.extend(w.changed);
        old_aside.extend(w.old_aside);
        new_aside.extend(w.new_aside);
    }
    for (id, j) in new_aside {
        match old_aside.remove(id) {
            Some(i) if o[i] != n[j] => d.changed.push((i, j)),
            Some(_) => {}
            None => d.added.push(j),
        }
    }
    d.removed = old_aside.into_values().collect();
    d.removed.sort_unstable();
    d.added.sort_unstable();
    d.changed.sort_unstable_by_key(|&(_, j)| j);
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscribers::table::Subscriber;

    fn sub(id: &str, plan: &str) -> Subscriber {
        Subscriber {
            id: id.into(),
            name: String::new(),
            plan: plan.into(),
            prefixes: Vec::new(),
        }
    }

    /// The same difference, by hashing every id of both tables.
    fn by_id(old: &Table, new: &Table) -> TableDiff {
        let before: HashMap<&str, usize> = old
            .subscribers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let after: HashMap<&str, usize> = new
            .subscribers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let mut d = TableDiff::default();
        for (j, s) in new.subscribers.iter().enumerate() {
            match before.get(s.id.as_str()) {
                None => d.added.push(j),
                Some(&i) if old.subscribers[i] != *s => d.changed.push((i, j)),
                Some(_) => {}
            }
        }
        for (i, s) in old.subscribers.iter().enumerate() {
            if !after.contains_key(s.id.as_str()) {
                d.removed.push(i);
            }
        }
        d
    }

    /// A number below `n`, the same on every run: the hash of a counter that moves on.
    fn pick(counter: &mut u64, n: usize) -> usize {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut h = DefaultHasher::new();
        counter.hash(&mut h);
        *counter += 1;
        usize::try_from(h.finish() % u64::try_from(n).unwrap()).unwrap()
    }

    #[test]
    fn a_side_by_side_walk_finds_what_hashing_every_id_finds() {
        let mut counter = 0;
        for round in 0..300 {
            let len = pick(&mut counter, 40);
            let old = Table {
                subscribers: (0..len).map(|i| sub(&format!("s{i}"), "home")).collect(),
            };
            let mut new = old.clone();
            for _ in 0..pick(&mut counter, 8) {
                match pick(&mut counter, 4) {
                    0 if !new.subscribers.is_empty() => {
                        let at = pick(&mut counter, new.subscribers.len());
                        new.subscribers.remove(at);
                    }
                    1 => {
                        let at = pick(&mut counter, new.subscribers.len() + 1);
                        let id = format!("n{round}-{}", pick(&mut counter, 1000));
                        if new.subscribers.iter().all(|s| s.id != id) {
                            new.subscribers.insert(at, sub(&id, "home"));
                        }
                    }
                    2 if !new.subscribers.is_empty() => {
                        let at = pick(&mut counter, new.subscribers.len());
                        new.subscribers[at].plan = "biz".into();
                    }
                    // Moves a line: the same subscriber elsewhere in the file.
                    _ if new.subscribers.len() > 1 => {
                        let from = pick(&mut counter, new.subscribers.len());
                        let s = new.subscribers.remove(from);
                        let to = pick(&mut counter, new.subscribers.len() + 1);
                        new.subscribers.insert(to, s);
                    }
                    _ => {}
                }
            }
            let d = diff(&old, &new);
            assert_eq!(d, by_id(&old, &new), "round {round}");
            let mut back = diff(&new, &old);
            back.changed.sort_unstable();
            let mut reversed = d.reversed();
            reversed.changed.sort_unstable();
            assert_eq!(reversed, back, "round {round}");
        }
    }

    #[test]
    fn long_tables_walked_in_two_halves_find_what_hashing_every_id_finds() {
        let old = Table {
            subscribers: (0..SPLIT_AT + 10)
                .map(|i| sub(&format!("s{i}"), "home"))
                .collect(),
        };
        let mut new = old.clone();
        let middle = new.subscribers.len() / 2;
        // Lines moved across the cut both ways, removed and changed on both sides, added.
        let early = new.subscribers.remove(10);
        new.subscribers.insert(middle + 100, early);
        let late = new.subscribers.remove(middle + 500);
        new.subscribers.insert(20, late);
        new.subscribers.remove(middle - 3);
        new.subscribers.remove(5);
        new.subscribers[middle + 7].plan = "biz".into();
        new.subscribers[3].plan = "biz".into();
        new.subscribers.insert(middle + 1, sub("new-1", "home"));
        new.subscribers.push(sub("new-2", "home"));
        assert!(anchor(&old.subscribers, &new.subscribers).is_some());
        let d = diff(&old, &new);
        assert_eq!(d, by_id(&old, &new));
        assert_eq!((d.added.len(), d.removed.len(), d.changed.len()), (2, 2, 2));
    }

    #[test]
    fn from_or_to_an_empty_table_everyone_is_added_or_removed() {
        let some = Table {
            subscribers: (0..3).map(|i| sub(&format!("s{i}"), "home")).collect(),
        };
        let none = Table::default();
        assert_eq!(diff(&none, &some), by_id(&none, &some));
        assert_eq!(diff(&some, &none), by_id(&some, &none));
        assert!(diff(&none, &none).is_empty());
    }

    #[test]
    fn a_reversed_table_is_the_same_table() {
        let old = Table {
            subscribers: (0..10).map(|i| sub(&format!("s{i}"), "home")).collect(),
        };
        let mut new = old.clone();
        new.subscribers.reverse();
        assert!(diff(&old, &new).is_empty());
        new.subscribers[3].plan = "biz".into();
        assert_eq!(diff(&old, &new).changed, [(6, 3)]);
    }
}
