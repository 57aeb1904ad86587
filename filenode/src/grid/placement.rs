//! Share placement: the permuted ring and Tahoe's "servers of happiness" (tahoe-formats.md §5).
//!
//! Servers are ranked per storage index by `SHA1(SI ‖ permutation seed)`. An upload considers the
//! first 2N of them, asks each which shares it already holds, and then places shares in three stages,
//! each a maximum bipartite matching: shares already on read-only servers, shares already on writable
//! servers, then new shares on writable servers that hold nothing yet (in ring order). Shares still
//! unplaced go round-robin to the writable servers with the fewest shares. *Happiness* is the size of
//! a maximum matching between servers and the shares they will hold; an upload succeeds only if it
//! reaches `shares.happy`. Pure: no IO.

use std::collections::{BTreeMap, BTreeSet};

use crate::hashes::permute_server_hash;

/// Orders servers (given as permutation seeds) by their ring position for `storage_index`; returns
/// indexes into `seeds`.
pub fn permuted_order(storage_index: &[u8; 16], seeds: &[&[u8]]) -> Vec<usize> {
    permuted_order_preferring(storage_index, seeds, &[])
}

/// [`permuted_order`] with the preferred servers (`preferred[i]`, Tahoe's `[client]
/// peers.preferred`; a missing entry is not preferred) first: Tahoe sorts on (not preferred, ring
/// position), so preferred servers keep their ring order among themselves, and so do the others.
pub fn permuted_order_preferring(
    storage_index: &[u8; 16],
    seeds: &[&[u8]],
    preferred: &[bool],
) -> Vec<usize> {
    let mut order: Vec<(bool, [u8; 20], usize)> = seeds
        .iter()
        .enumerate()
        .map(|(i, seed)| {
            let unpreferred = !preferred.get(i).copied().unwrap_or(false);
            (unpreferred, permute_server_hash(storage_index, seed), i)
        })
        .collect();
    order.sort();
    order.into_iter().map(|(_, _, i)| i).collect()
}

/// What the uploader knows about one candidate server (in ring order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Candidate {
    /// Whether it can take a new share of the allocated size.
    pub writable: bool,
    /// Shares of this storage index it already holds.
    pub existing: BTreeSet<u16>,
    /// Shares it holds a corrupt copy of and keeps (a server cannot hold two copies of a share, so
    /// a good copy of these must go elsewhere).
    pub blocked: BTreeSet<u16>,
}

/// Where shares go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placement {
    /// New shares to upload, by candidate index.
    pub uploads: BTreeMap<usize, BTreeSet<u16>>,
    /// Shares that stay where they already are, by candidate index (only those counted towards
    /// happiness).
    pub kept: BTreeMap<usize, BTreeSet<u16>>,
    /// Servers of happiness this placement achieves.
    pub happiness: usize,
}

/// Places shares 0..total on `candidates` (in ring order).
pub fn place_shares(total: u16, candidates: &[Candidate]) -> Placement {
    let mut placed: BTreeMap<u16, usize> = BTreeMap::new();
    let mut used_servers: BTreeSet<usize> = BTreeSet::new();

    // Stages 1 and 2: keep existing shares, read-only holders first.
    for want_writable in [false, true] {
        let edges: BTreeMap<usize, BTreeSet<u16>> = candidates
            .iter()
            .enumerate()
            .filter(|(i, c)| c.writable == want_writable && !used_servers.contains(i))
            .map(|(i, c)| {
                (
                    i,
                    c.existing
                        .iter()
                        .copied()
                        .filter(|s| *s < total && !placed.contains_key(s))
                        .collect(),
                )
            })
            .collect();
        for (server, share) in maximum_matching(&edges) {
            placed.insert(share, server);
            used_servers.insert(server);
        }
    }
    let kept_shares: BTreeSet<u16> = placed.keys().copied().collect();

    // Stage 3: one new share for each remaining writable server, in ring order.
    let mut free: Vec<usize> = candidates
        .iter()
        .enumerate()
        .filter(|(i, c)| c.writable && !used_servers.contains(i))
        .map(|(i, _)| i)
        .collect();
    let unplaced: Vec<u16> = (0..total).filter(|s| !placed.contains_key(s)).collect();
    let mut leftovers = Vec::new();
    for share in unplaced {
        match free.iter().position(|&i| !candidates[i].blocked.contains(&share)) {
            Some(at) => {
                placed.insert(share, free.remove(at));
            }
            None => leftovers.push(share),
        }
    }

    // Leftovers: round-robin over writable servers, fewest shares first (ties in ring order).
    let writable: Vec<usize> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.writable)
        .map(|(i, _)| i)
        .collect();
    if !writable.is_empty() {
        let mut load: BTreeMap<usize, usize> = writable.iter().map(|&i| (i, 0)).collect();
        for server in placed.values() {
            if let Some(n) = load.get_mut(server) {
                *n += 1;
            }
        }
        for share in leftovers {
            let Some(&server) = writable
                .iter()
                .filter(|i| !candidates[**i].blocked.contains(&share))
                .min_by_key(|i| (load[i], **i))
            else {
                continue;
            };
            *load.get_mut(&server).expect("invariant: writable server") += 1;
            placed.insert(share, server);
        }
    }

    let mut placement = Placement::default();
    for (share, server) in placed {
        let bucket = if kept_shares.contains(&share) {
            &mut placement.kept
        } else {
            &mut placement.uploads
        };
        bucket.entry(server).or_default().insert(share);
    }
    // Happiness counts every share a server will hold, including extra existing copies.
    let mut holdings: BTreeMap<usize, BTreeSet<u16>> = BTreeMap::new();
    for (server, c) in candidates.iter().enumerate() {
        let shares: BTreeSet<u16> = c.existing.iter().copied().filter(|s| *s < total).collect();
        if !shares.is_empty() {
            holdings.insert(server, shares);
        }
    }
    for (server, shares) in &placement.uploads {
        holdings.entry(*server).or_default().extend(shares);
    }
    placement.happiness = happiness(&holdings);
    placement
}

/// Servers of happiness of a mapping server → shares: the size of a maximum matching.
pub fn happiness(holdings: &BTreeMap<usize, BTreeSet<u16>>) -> usize {
    maximum_matching(holdings).len()
}

/// A maximum bipartite matching (Kuhn's augmenting paths; N ≤ 256 shares, a few hundred servers).
fn maximum_matching(edges: &BTreeMap<usize, BTreeSet<u16>>) -> Vec<(usize, u16)> {
    fn augment(
        server: usize,
        edges: &BTreeMap<usize, BTreeSet<u16>>,
        share_owner: &mut BTreeMap<u16, usize>,
        visited: &mut BTreeSet<u16>,
    ) -> bool {
        for &share in &edges[&server] {
            if visited.insert(share) {
                let free = match share_owner.get(&share) {
                    None => true,
                    Some(&other) => augment(other, edges, share_owner, visited),
                };
                if free {
                    share_owner.insert(share, server);
                    return true;
                }
            }
        }
        false
    }
    let mut share_owner: BTreeMap<u16, usize> = BTreeMap::new();
    for &server in edges.keys() {
        augment(server, edges, &mut share_owner, &mut BTreeSet::new());
    }
    share_owner
        .into_iter()
        .map(|(share, server)| (server, share))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn writable(n: usize) -> Vec<Candidate> {
        vec![
            Candidate {
                writable: true,
                existing: BTreeSet::new(),
                blocked: BTreeSet::new(),
            };
            n
        ]
    }

    #[test]
    fn preferred_servers_come_first_in_ring_order() {
        let seeds: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 32]).collect();
        let seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
        let si = [9u8; 16];
        let plain = permuted_order(&si, &seeds);
        let mut preferred = vec![false; 10];
        // Two servers from the back half of the ring.
        preferred[plain[7]] = true;
        preferred[plain[9]] = true;
        let order = permuted_order_preferring(&si, &seeds, &preferred);
        assert_eq!(order[..2], [plain[7], plain[9]]);
        let rest: Vec<usize> = plain.iter().copied().filter(|i| !preferred[*i]).collect();
        assert_eq!(order[2..], rest[..]);
        // Nothing preferred (or flags missing): the plain ring.
        assert_eq!(permuted_order_preferring(&si, &seeds, &[false; 10]), plain);
        assert_eq!(permuted_order_preferring(&si, &seeds, &[]), plain);
    }

    #[test]
    fn ten_servers_get_one_share_each() {
        let placement = place_shares(10, &writable(20));
        assert_eq!(placement.happiness, 10);
        assert_eq!(placement.uploads.len(), 10);
        // Ring order: the first ten servers.
        assert_eq!(
            placement.uploads.keys().copied().collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
        assert!(placement.kept.is_empty());
    }

    #[test]
    fn few_servers_share_the_load_and_happiness_is_the_server_count() {
        let placement = place_shares(10, &writable(4));
        assert_eq!(placement.happiness, 4);
        let counts: Vec<usize> = placement.uploads.values().map(BTreeSet::len).collect();
        assert_eq!(counts.iter().sum::<usize>(), 10);
        assert!(counts.iter().all(|&c| c == 2 || c == 3), "{counts:?}");
    }

    #[test]
    fn existing_shares_are_kept_and_not_uploaded_again() {
        let mut candidates = writable(10);
        candidates[3].existing = [0, 1].into();
        candidates[7].writable = false;
        candidates[7].existing = [2].into();
        let placement = place_shares(10, &candidates);
        assert_eq!(placement.happiness, 10);
        assert!(placement.kept[&7].contains(&2));
        assert!(placement.kept.values().flatten().count() >= 2);
        let uploaded: BTreeSet<u16> = placement.uploads.values().flatten().copied().collect();
        assert!(!uploaded.contains(&2));
        assert_eq!(uploaded.len() + placement.kept.values().flatten().count(), 10);
    }

    #[test]
    fn a_share_never_goes_where_a_corrupt_copy_stays() {
        // Server 0 keeps a corrupt share 0; the good copy goes to another server, also as a
        // leftover when there are fewer servers than shares.
        for n in [10, 3] {
            let mut candidates = writable(n);
            candidates[0].blocked = [0].into();
            let placement = place_shares(10, &candidates);
            let on_zero = placement.uploads.get(&0).cloned().unwrap_or_default();
            assert!(!on_zero.contains(&0), "{n}: {placement:?}");
            let placed: BTreeSet<u16> = placement.uploads.values().flatten().copied().collect();
            assert_eq!(placed.len(), 10, "{n}");
        }
        // With one server that keeps it, share 0 has nowhere to go.
        let mut candidates = writable(1);
        candidates[0].blocked = [0].into();
        let placement = place_shares(10, &candidates);
        assert!(!placement.uploads[&0].contains(&0));
        assert_eq!(placement.uploads[&0].len(), 9);
    }

    #[test]
    fn no_writable_servers_means_no_happiness() {
        let candidates = vec![
            Candidate {
                writable: false,
                existing: BTreeSet::new(),
                blocked: BTreeSet::new(),
            };
            5
        ];
        let placement = place_shares(10, &candidates);
        assert_eq!(placement.happiness, 0);
        assert!(placement.uploads.is_empty());
    }

    #[test]
    fn matching_beats_greedy() {
        // Server 0 could take share 0 or 1, server 1 only share 0: a greedy pick of 0 for server 0
        // would leave server 1 unmatched.
        let edges: BTreeMap<usize, BTreeSet<u16>> = [(0, [0, 1].into()), (1, [0].into())].into();
        assert_eq!(happiness(&edges), 2);
    }

    proptest! {
        #[test]
        fn every_share_is_placed_on_a_writable_server_or_kept(
            total in 1u16..20,
            servers in proptest::collection::vec((any::<bool>(), proptest::collection::btree_set(0u16..20, 0..4)), 1..15),
        ) {
            let candidates: Vec<Candidate> =
                servers.into_iter().map(|(writable, existing)| Candidate { writable, existing, blocked: BTreeSet::new() }).collect();
            let placement = place_shares(total, &candidates);
            let mut seen = BTreeSet::new();
            for (server, shares) in &placement.uploads {
                prop_assert!(candidates[*server].writable);
                for s in shares { prop_assert!(seen.insert(*s)); }
            }
            for (server, shares) in &placement.kept {
                for s in shares {
                    prop_assert!(candidates[*server].existing.contains(s));
                    prop_assert!(seen.insert(*s));
                }
            }
            let any_writable = candidates.iter().any(|c| c.writable);
            if any_writable {
                prop_assert_eq!(seen.len(), total as usize);
            }
            let servers_with_something = candidates.iter().enumerate()
                .filter(|(i, c)| !c.existing.iter().all(|s| *s >= total) || placement.uploads.contains_key(i))
                .count();
            prop_assert!(placement.happiness <= servers_with_something.min(total as usize));
        }
    }
}
