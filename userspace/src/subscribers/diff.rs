//! Which subscribers a new table adds, removes and changes, by position in each table.
//!
//! An edited table file keeps its order: the two tables are walked side by side, and only
//! where the ids differ are they put aside and matched by id. A change of a few thousand
//! lines in a million then costs a sequential comparison plus hashing for the lines around
//! the change, instead of hashing every id of both tables.

use std::collections::HashMap;

use super::table::Table;

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

/// Compares `old` and `new` (ids are unique within each, as [`Table`] guarantees).
pub fn diff(old: &Table, new: &Table) -> TableDiff {
    let (o, n) = (&old.subscribers, &new.subscribers);
    let mut d = TableDiff::default();
    // Lines put aside, by id: not yet matched in the other table.
    let mut old_aside: HashMap<&str, usize> = HashMap::new();
    let mut new_aside: HashMap<&str, usize> = HashMap::new();
    let matched = |d: &mut TableDiff, i: usize, j: usize| {
        if o[i] != n[j] {
            d.changed.push((i, j));
        }
    };
    let (mut i, mut j) = (0, 0);
    while i < o.len() && j < n.len() {
        if o[i].id == n[j].id {
            matched(&mut d, i, j);
            (i, j) = (i + 1, j + 1);
        } else if let Some(nj) = new_aside.remove(o[i].id.as_str()) {
            matched(&mut d, i, nj);
            i += 1;
        } else if let Some(oi) = old_aside.remove(n[j].id.as_str()) {
            matched(&mut d, oi, j);
            j += 1;
        } else {
            old_aside.insert(&o[i].id, i);
            new_aside.insert(&n[j].id, j);
            (i, j) = (i + 1, j + 1);
        }
    }
    for (oi, s) in o.iter().enumerate().skip(i) {
        match new_aside.remove(s.id.as_str()) {
            Some(nj) => matched(&mut d, oi, nj),
            None => {
                old_aside.insert(&s.id, oi);
            }
        }
    }
    for (nj, s) in n.iter().enumerate().skip(j) {
        match old_aside.remove(s.id.as_str()) {
            Some(oi) => matched(&mut d, oi, nj),
            None => {
                new_aside.insert(&s.id, nj);
            }
        }
    }
    // What is still aside has no partner.
    d.removed = old_aside.into_values().collect();
    d.added = new_aside.into_values().collect();
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
