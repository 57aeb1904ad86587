//! A set of disjoint half-open byte ranges: which parts of an immutable upload have been written.

use std::collections::BTreeMap;
use std::ops::Range;

/// Disjoint, non-adjacent ranges `start..end`, kept merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct RangeSet {
    /// start → end (exclusive).
    ranges: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// Adds `start..end`, merging with overlapping or touching ranges.
    pub(super) fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let touching: Vec<(u64, u64)> = self
            .ranges
            .range(..=end)
            .rev()
            .take_while(|(_, r_end)| **r_end >= start)
            .map(|(s, e)| (*s, *e))
            .collect();
        let (mut new_start, mut new_end) = (start, end);
        for (s, e) in touching {
            self.ranges.remove(&s);
            new_start = new_start.min(s);
            new_end = new_end.max(e);
        }
        self.ranges.insert(new_start, new_end);
    }

    /// The parts of `start..end` that are in the set, in order.
    pub(super) fn intersections(&self, start: u64, end: u64) -> Vec<Range<u64>> {
        let mut out: Vec<Range<u64>> = self
            .ranges
            .range(..end)
            .rev()
            .take_while(|(_, r_end)| **r_end > start)
            .map(|(s, e)| (*s).max(start)..(*e).min(end))
            .filter(|r| !r.is_empty())
            .collect();
        out.reverse();
        out
    }

    /// The parts of `start..end` that are not in the set, in order.
    pub(super) fn gaps(&self, start: u64, end: u64) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut cursor = start;
        for covered in self.intersections(start, end) {
            if covered.start > cursor {
                out.push(cursor..covered.start);
            }
            cursor = covered.end;
        }
        if cursor < end {
            out.push(cursor..end);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn merges_and_reports_gaps() {
        let mut set = RangeSet::default();
        set.insert(10, 20);
        set.insert(30, 40);
        assert_eq!(set.gaps(0, 50), vec![0..10, 20..30, 40..50]);
        set.insert(20, 30);
        assert_eq!(set.gaps(0, 50), vec![0..10, 40..50]);
        assert_eq!(set.intersections(15, 45), vec![15..40]);
        set.insert(5, 5);
        assert_eq!(set.ranges.len(), 1);
        set.insert(0, 100);
        assert!(set.gaps(0, 100).is_empty());
    }

    proptest! {
        #[test]
        fn agrees_with_a_bitmap(writes in proptest::collection::vec((0u64..64, 0u64..16), 0..20)) {
            let mut set = RangeSet::default();
            let mut bitmap = [false; 80];
            for (start, len) in writes {
                set.insert(start, start + len);
                for b in &mut bitmap[start as usize..(start + len) as usize] {
                    *b = true;
                }
            }
            let mut expected_gaps = Vec::new();
            let mut i = 0;
            while i < 80 {
                if !bitmap[i] {
                    let s = i;
                    while i < 80 && !bitmap[i] {
                        i += 1;
                    }
                    expected_gaps.push(s as u64..i as u64);
                } else {
                    i += 1;
                }
            }
            prop_assert_eq!(set.gaps(0, 80), expected_gaps);
            // Stored ranges are disjoint and non-adjacent.
            let stored: Vec<_> = set.ranges.iter().collect();
            for pair in stored.windows(2) {
                prop_assert!(pair[0].1 < pair[1].0);
            }
        }
    }
}
