//! Values by subscriber id for subscribers that come in id order, as the books hand them
//! out: the sorted map is walked alongside them instead of searched for each one, so a
//! million lookups read the map once, in order. Asked out of order, it searches.

use std::collections::{BTreeMap, btree_map};

/// A walk through `map` in step with ids asked in ascending order.
pub struct InOrder<'a, V> {
    map: &'a BTreeMap<String, V>,
    walk: std::iter::Peekable<btree_map::Iter<'a, String, V>>,
    last: Option<&'a str>,
}

impl<'a, V> InOrder<'a, V> {
    /// A walk from the start of `map`.
    pub fn new(map: &'a BTreeMap<String, V>) -> InOrder<'a, V> {
        InOrder {
            map,
            walk: map.iter().peekable(),
            last: None,
        }
    }

    /// The value of `id`, if `map` has one.
    pub fn get(&mut self, id: &'a str) -> Option<&'a V> {
        if self.last.is_some_and(|last| last >= id) {
            // Out of order (or asked twice): the walk cannot go back.
            return self.map.get(id);
        }
        self.last = Some(id);
        while self.walk.next_if(|(k, _)| k.as_str() < id).is_some() {}
        self.walk.next_if(|(k, _)| k.as_str() == id).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_and_out_of_order_answers_are_the_maps() {
        let map: BTreeMap<String, u32> = [("b", 2), ("d", 4), ("e", 5)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let mut walk = InOrder::new(&map);
        let asked = ["a", "b", "c", "e", "d", "d", "f", "b"];
        let got: Vec<Option<u32>> = asked.iter().map(|id| walk.get(id).copied()).collect();
        let want: Vec<Option<u32>> = asked.iter().map(|id| map.get(*id).copied()).collect();
        assert_eq!(got, want);
    }
}
