//! How many bytes one read may return, counted in whole batches (KIP-74).

use bytes::Bytes;

/// A byte limit on a read. Batches are never split: a batch is taken whole
/// or not at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimit {
    pub max_bytes: usize,
    /// KIP-74: the first batch is taken even when it alone exceeds
    /// `max_bytes`, so a consumer always makes progress. Kafka grants this
    /// only to the first partition of a fetch that returns data.
    pub first_batch_whole: bool,
}

impl ReadLimit {
    /// At most `max_bytes`, except that the first batch is always taken.
    pub fn first_batch_whole(max_bytes: usize) -> ReadLimit {
        ReadLimit {
            max_bytes,
            first_batch_whole: true,
        }
    }

    /// At most `max_bytes`, without exception.
    pub fn strict(max_bytes: usize) -> ReadLimit {
        ReadLimit {
            max_bytes,
            first_batch_whole: false,
        }
    }

    /// Whether a batch of `size` bytes may follow `taken_batches` batches
    /// holding `taken_bytes`.
    pub fn admits(&self, taken_batches: usize, taken_bytes: usize, size: usize) -> bool {
        (taken_batches == 0 && self.first_batch_whole)
            || taken_bytes.saturating_add(size) <= self.max_bytes
    }

    /// Whether no batch can be taken at all.
    pub fn admits_nothing(&self) -> bool {
        self.max_bytes == 0 && !self.first_batch_whole
    }

    /// The longest prefix of `batches` this limit admits: (batch count, bytes).
    pub fn admitted_prefix(&self, batches: &[Bytes]) -> (usize, usize) {
        let mut bytes = 0usize;
        for (count, batch) in batches.iter().enumerate() {
            if !self.admits(count, bytes, batch.len()) {
                return (count, bytes);
            }
            bytes += batch.len();
        }
        (batches.len(), bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches(sizes: &[usize]) -> Vec<Bytes> {
        sizes.iter().map(|&n| Bytes::from(vec![0u8; n])).collect()
    }

    #[test]
    fn an_oversize_first_batch_is_admitted_only_when_the_limit_allows_it() {
        let oversize = batches(&[100, 10]);
        assert_eq!(
            ReadLimit::first_batch_whole(50).admitted_prefix(&oversize),
            (1, 100)
        );
        assert_eq!(ReadLimit::strict(50).admitted_prefix(&oversize), (0, 0));
    }

    #[test]
    fn batches_stop_at_the_first_one_that_does_not_fit() {
        let three = batches(&[30, 30, 5]);
        assert_eq!(ReadLimit::strict(60).admitted_prefix(&three), (2, 60));
        assert_eq!(ReadLimit::strict(59).admitted_prefix(&three), (1, 30));
        assert_eq!(
            ReadLimit::first_batch_whole(65).admitted_prefix(&three),
            (3, 65)
        );
    }

    #[test]
    fn a_zero_limit_admits_only_a_whole_first_batch() {
        assert!(ReadLimit::strict(0).admits_nothing());
        assert!(!ReadLimit::first_batch_whole(0).admits_nothing());
        assert_eq!(
            ReadLimit::first_batch_whole(0).admitted_prefix(&batches(&[7, 1])),
            (1, 7)
        );
    }
}
