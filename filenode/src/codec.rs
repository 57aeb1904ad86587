//! Erasure coding byte-identical to zfec (tahoe-formats.md §9, crates.md §4).
//!
//! zfec and reed-solomon-erasure use the same field, GF(2⁸) mod 0x11d, and the same systematic
//! construction `E = V · V_top⁻¹`; they differ only in the Vandermonde evaluation points. zfec uses
//! 0 followed by αⁱ, so [`ZfecField`] overrides `nth` to return those points and `ReedSolomon<ZfecField>`
//! then produces zfec's shares while keeping the crate's SIMD `mul_slice` kernels. The k == N case
//! (no parity), which `ReedSolomon` refuses, is plain copying.

use reed_solomon_erasure::galois_8;

/// GF(2⁸) with zfec's evaluation points.
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq)]
pub struct ZfecField;

impl reed_solomon_erasure::Field for ZfecField {
    const ORDER: usize = 256;
    type Elem = u8;

    fn add(a: u8, b: u8) -> u8 {
        a ^ b
    }
    fn mul(a: u8, b: u8) -> u8 {
        galois_8::mul(a, b)
    }
    fn div(a: u8, b: u8) -> u8 {
        galois_8::div(a, b)
    }
    fn exp(a: u8, n: usize) -> u8 {
        galois_8::exp(a, n)
    }
    fn zero() -> u8 {
        0
    }
    fn one() -> u8 {
        1
    }
    fn nth_internal(n: usize) -> u8 {
        if n == 0 { 0 } else { galois_8::exp(2, n - 1) }
    }
    // The SIMD kernels panic on empty slices (crates.md §4), so guard them.
    fn mul_slice(c: u8, input: &[u8], out: &mut [u8]) {
        if !input.is_empty() {
            galois_8::mul_slice(c, input, out)
        }
    }
    fn mul_slice_add(c: u8, input: &[u8], out: &mut [u8]) {
        if !input.is_empty() {
            galois_8::mul_slice_xor(c, input, out)
        }
    }
}

/// Invalid coding parameters or inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// k and N must satisfy 1 ≤ k ≤ N ≤ 256.
    #[error("invalid encoding parameters {needed}-of-{total}: need 1 <= k <= N <= 256")]
    BadParameters {
        /// k.
        needed: usize,
        /// N.
        total: usize,
    },
    /// Decoding needs k blocks with distinct share numbers below N, all the same length.
    #[error("decoding needs {needed} distinct blocks of equal length with share numbers below {total}")]
    BadBlocks {
        /// k.
        needed: usize,
        /// N.
        total: usize,
    },
}

/// A zfec-compatible k-of-N erasure code.
pub struct Codec {
    needed: usize,
    total: usize,
    rs: Option<reed_solomon_erasure::ReedSolomon<ZfecField>>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Codec({}-of-{})", self.needed, self.total)
    }
}

impl Codec {
    /// A k-of-N code; 1 ≤ k ≤ N ≤ 256.
    pub fn new(needed: usize, total: usize) -> Result<Self, CodecError> {
        if needed == 0 || needed > total || total > 256 {
            return Err(CodecError::BadParameters { needed, total });
        }
        let rs = if needed == total {
            None
        } else {
            Some(
                reed_solomon_erasure::ReedSolomon::new(needed, total - needed)
                    .map_err(|_| CodecError::BadParameters { needed, total })?,
            )
        };
        Ok(Codec { needed, total, rs })
    }

    /// k.
    pub fn needed(&self) -> usize {
        self.needed
    }

    /// N.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Computes the N−k parity blocks of `data` (k equal-length pieces) into `parity`.
    pub fn encode_parity<D: AsRef<[u8]>, P: AsRef<[u8]> + AsMut<[u8]>>(&self, data: &[D], parity: &mut [P]) {
        assert_eq!(
            data.len(),
            self.needed,
            "invariant: encode takes exactly k pieces"
        );
        assert_eq!(
            parity.len(),
            self.total - self.needed,
            "invariant: encode fills N-k parity blocks"
        );
        if let Some(rs) = &self.rs {
            if data[0].as_ref().is_empty() {
                return;
            }
            rs.encode_sep(data, parity)
                .expect("invariant: pieces and parity have equal lengths");
        }
    }

    /// Encodes k equal-length pieces into all N blocks (the first k are copies of the pieces).
    pub fn encode<D: AsRef<[u8]>>(&self, data: &[D]) -> Vec<Vec<u8>> {
        let len = data.first().map_or(0, |d| d.as_ref().len());
        let mut parity = vec![vec![0u8; len]; self.total - self.needed];
        self.encode_parity(data, &mut parity);
        data.iter().map(|d| d.as_ref().to_vec()).chain(parity).collect()
    }

    /// Recovers the k data pieces from any k blocks with distinct share numbers.
    pub fn decode(&self, blocks: &[(usize, &[u8])]) -> Result<Vec<Vec<u8>>, CodecError> {
        let bad = CodecError::BadBlocks {
            needed: self.needed,
            total: self.total,
        };
        if blocks.len() != self.needed {
            return Err(bad);
        }
        let len = blocks[0].1.len();
        let mut slots: Vec<Option<Vec<u8>>> = vec![None; self.total];
        for &(shnum, block) in blocks {
            if shnum >= self.total || block.len() != len || slots[shnum].is_some() {
                return Err(bad);
            }
            slots[shnum] = Some(block.to_vec());
        }
        if slots[..self.needed].iter().all(Option::is_some) || len == 0 {
            return Ok(slots
                .into_iter()
                .take(self.needed)
                .map(Option::unwrap_or_default)
                .collect());
        }
        let rs = self.rs.as_ref().ok_or(bad.clone())?;
        rs.reconstruct_data(&mut slots).map_err(|_| bad)?;
        Ok(slots
            .into_iter()
            .take(self.needed)
            .map(|s| s.expect("invariant: reconstruct_data fills every data slot"))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_bad_parameters() {
        assert!(Codec::new(0, 1).is_err());
        assert!(Codec::new(4, 3).is_err());
        assert!(Codec::new(1, 257).is_err());
        assert!(Codec::new(256, 256).is_ok());
        assert!(Codec::new(1, 1).is_ok());
    }

    #[test]
    fn zfec_points_for_ten_shares() {
        use reed_solomon_erasure::Field;
        let points: Vec<u8> = (0..10).map(ZfecField::nth).collect();
        assert_eq!(points, vec![0, 1, 2, 4, 8, 16, 32, 64, 128, 29]);
    }

    proptest! {
        #[test]
        fn any_k_blocks_decode(needed in 1usize..12, extra in 0usize..8, len in 0usize..300, seed: u64) {
            let total = needed + extra;
            let codec = Codec::new(needed, total).unwrap();
            let pieces: Vec<Vec<u8>> = (0..needed)
                .map(|i| (0..len).map(|j| (seed as usize).wrapping_mul(31).wrapping_add(i * 7 + j * 13) as u8).collect())
                .collect();
            let blocks = codec.encode(&pieces);
            prop_assert_eq!(blocks.len(), total);
            // Take the last k blocks (mostly parity) in reverse order.
            let chosen: Vec<(usize, &[u8])> =
                (total - needed..total).rev().map(|i| (i, blocks[i].as_slice())).collect();
            prop_assert_eq!(codec.decode(&chosen).unwrap(), pieces);
        }
    }
}
