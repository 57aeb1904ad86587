//! Tahoe's Merkle hash trees (`allmydata/hashtree.py`, tahoe-formats.md §1.6).
//!
//! A tree over L leaves is padded to P = next power of two ≥ L leaves; padding leaf i is
//! `H("Merkle tree empty leaf", decimal(i))`. Nodes live in a flat array of 2P−1 hashes with the root
//! at index 0, node j's children at 2j+1 and 2j+2, and the leaves at P−1 … 2P−2. Internal nodes are
//! `Hpair("Merkle tree internal node", left, right)`.

use std::collections::BTreeMap;

use crate::hashes::{Hash, tagged_hash, tagged_pair_hash, tags};

/// The number of leaf slots (a power of two) of a tree over `num_leaves` leaves.
pub fn leaf_slots(num_leaves: usize) -> usize {
    num_leaves.max(1).next_power_of_two()
}

/// The number of nodes of a tree over `num_leaves` leaves.
pub fn node_count(num_leaves: usize) -> usize {
    2 * leaf_slots(num_leaves) - 1
}

/// The flat-array index of leaf `leaf`.
pub fn leaf_node_index(num_leaves: usize, leaf: usize) -> usize {
    leaf_slots(num_leaves) - 1 + leaf
}

/// The hash of padding leaf `position`.
pub fn empty_leaf_hash(position: usize) -> Hash {
    tagged_hash(tags::MERKLE_EMPTY_LEAF, position.to_string().as_bytes())
}

/// The hash of an internal node from its children.
pub fn internal_node_hash(left: &Hash, right: &Hash) -> Hash {
    tagged_pair_hash(tags::MERKLE_INTERNAL, left, right)
}

/// A complete Merkle tree.
#[derive(Clone, PartialEq, Eq)]
pub struct HashTree {
    nodes: Vec<Hash>,
    num_leaves: usize,
}

impl std::fmt::Debug for HashTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashTree")
            .field("num_leaves", &self.num_leaves)
            .finish_non_exhaustive()
    }
}

impl HashTree {
    /// Builds the tree over `leaves` (at least one).
    pub fn new(leaves: &[Hash]) -> Self {
        assert!(!leaves.is_empty(), "invariant: a hash tree has at least one leaf");
        let slots = leaf_slots(leaves.len());
        let mut nodes = vec![[0u8; 32]; 2 * slots - 1];
        let first_leaf = slots - 1;
        for (i, slot) in nodes[first_leaf..].iter_mut().enumerate() {
            *slot = leaves.get(i).copied().unwrap_or_else(|| empty_leaf_hash(i));
        }
        for j in (0..first_leaf).rev() {
            nodes[j] = internal_node_hash(&nodes[2 * j + 1], &nodes[2 * j + 2]);
        }
        HashTree {
            nodes,
            num_leaves: leaves.len(),
        }
    }

    /// The root hash.
    pub fn root(&self) -> Hash {
        self.nodes[0]
    }

    /// All nodes in array order, root first.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// The number of real (unpadded) leaves.
    pub fn num_leaves(&self) -> usize {
        self.num_leaves
    }

    /// Node `index`.
    pub fn node(&self, index: usize) -> Hash {
        self.nodes[index]
    }

    /// All nodes serialized root first, 32 bytes each.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.nodes.concat()
    }
}

/// The indexes of the nodes a verifier needs to check leaf `leaf` against the root: the sibling of
/// every node on the path from the leaf up to (not including) the root, bottom-up.
pub fn needed_hashes(num_leaves: usize, leaf: usize) -> Vec<usize> {
    let mut here = leaf_node_index(num_leaves, leaf);
    let mut needed = Vec::new();
    while here != 0 {
        let sibling = if here % 2 == 1 { here + 1 } else { here - 1 };
        needed.push(sibling);
        here = (here - 1) / 2;
    }
    needed
}

/// Why a leaf did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashTreeError {
    /// A hash needed to climb to the root was not provided.
    #[error("hash tree node {0} is missing")]
    MissingNode(usize),
    /// The computed root differs from the trusted root.
    #[error("hash tree root mismatch")]
    RootMismatch,
    /// A provided node contradicts the value computed from below.
    #[error("hash tree node {0} does not match")]
    NodeMismatch(usize),
    /// The leaf index is outside the tree.
    #[error("leaf {leaf} is outside a tree of {num_leaves} leaves")]
    LeafOutOfRange {
        /// The leaf asked for.
        leaf: usize,
        /// The tree's leaf count.
        num_leaves: usize,
    },
}

/// Checks that `leaf_hash` is leaf `leaf` of the tree whose root is `root`, using sibling hashes from
/// `nodes` (indexed as in the flat array; extra entries are ignored unless they lie on the path, in
/// which case they must agree).
pub fn verify_leaf(
    num_leaves: usize,
    leaf: usize,
    leaf_hash: &Hash,
    nodes: &BTreeMap<usize, Hash>,
    root: &Hash,
) -> Result<(), HashTreeError> {
    if leaf >= num_leaves {
        return Err(HashTreeError::LeafOutOfRange { leaf, num_leaves });
    }
    let mut here = leaf_node_index(num_leaves, leaf);
    let mut value = *leaf_hash;
    if nodes.get(&here).is_some_and(|claimed| claimed != &value) {
        return Err(HashTreeError::NodeMismatch(here));
    }
    while here != 0 {
        let (sibling, is_left) = if here % 2 == 1 {
            (here + 1, true)
        } else {
            (here - 1, false)
        };
        let sibling_hash = nodes.get(&sibling).ok_or(HashTreeError::MissingNode(sibling))?;
        value = if is_left {
            internal_node_hash(&value, sibling_hash)
        } else {
            internal_node_hash(sibling_hash, &value)
        };
        here = (here - 1) / 2;
    }
    if &value == root {
        Ok(())
    } else {
        Err(HashTreeError::RootMismatch)
    }
}

/// Checks a complete serialized tree (all 2P−1 nodes, as stored in immutable shares) for internal
/// consistency and against `root`: every internal node must be the hash of its children and the
/// padding leaves must be the empty-leaf hashes. Returns the real leaves.
pub fn verify_full_tree(num_leaves: usize, nodes: &[Hash], root: &Hash) -> Result<Vec<Hash>, HashTreeError> {
    let slots = leaf_slots(num_leaves);
    if nodes.len() != 2 * slots - 1 {
        return Err(HashTreeError::MissingNode(nodes.len()));
    }
    if &nodes[0] != root {
        return Err(HashTreeError::RootMismatch);
    }
    let first_leaf = slots - 1;
    for i in num_leaves..slots {
        if nodes[first_leaf + i] != empty_leaf_hash(i) {
            return Err(HashTreeError::NodeMismatch(first_leaf + i));
        }
    }
    for j in 0..first_leaf {
        if nodes[j] != internal_node_hash(&nodes[2 * j + 1], &nodes[2 * j + 2]) {
            return Err(HashTreeError::NodeMismatch(j));
        }
    }
    Ok(nodes[first_leaf..first_leaf + num_leaves].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaf(i: usize) -> Hash {
        tagged_hash(b"test leaf", &i.to_le_bytes())
    }

    #[test]
    fn single_leaf_root_is_the_leaf() {
        let tree = HashTree::new(&[leaf(0)]);
        assert_eq!(tree.root(), leaf(0));
        assert_eq!(tree.nodes().len(), 1);
        assert!(needed_hashes(1, 0).is_empty());
    }

    #[test]
    fn three_leaves_pad_with_position() {
        let leaves = [leaf(0), leaf(1), leaf(2)];
        let tree = HashTree::new(&leaves);
        assert_eq!(tree.nodes().len(), 7);
        assert_eq!(tree.node(6), empty_leaf_hash(3));
        let left = internal_node_hash(&leaves[0], &leaves[1]);
        let right = internal_node_hash(&leaves[2], &empty_leaf_hash(3));
        assert_eq!(tree.root(), internal_node_hash(&left, &right));
        assert_eq!(needed_hashes(3, 2), vec![6, 1]);
    }

    proptest! {
        #[test]
        fn every_leaf_verifies_and_a_wrong_leaf_does_not(n in 1usize..70, pick in 0usize..70) {
            let leaves: Vec<Hash> = (0..n).map(leaf).collect();
            let tree = HashTree::new(&leaves);
            let i = pick % n;
            let proof: BTreeMap<usize, Hash> =
                needed_hashes(n, i).into_iter().map(|j| (j, tree.node(j))).collect();
            prop_assert!(verify_leaf(n, i, &leaves[i], &proof, &tree.root()).is_ok());
            prop_assert!(verify_leaf(n, i, &leaf(n + 1), &proof, &tree.root()).is_err());
            prop_assert_eq!(verify_full_tree(n, tree.nodes(), &tree.root()).unwrap(), leaves);
        }
    }
}
