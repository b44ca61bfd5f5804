//! Replica placement: partition `p` of a topic starts on the ring of live
//! brokers at `cursor + p` and takes the next `factor` brokers, so replicas
//! of one partition are distinct and first replicas (preferred leaders)
//! spread evenly over brokers, across topics too (the cursor moves on).

use super::NodeId;

/// `count` replica lists of `factor` distinct brokers from `live` (ascending
/// ids); the caller has checked `1 <= factor <= live.len()`.
pub fn place(live: &[NodeId], cursor: u64, count: usize, factor: usize) -> Vec<Vec<NodeId>> {
    debug_assert!(factor >= 1 && factor <= live.len());
    if live.is_empty() {
        return vec![Vec::new(); count];
    }
    let ring = live.len() as u64;
    (0..count as u64)
        .map(|p| {
            let start = (cursor + p) % ring;
            (0..factor as u64)
                .map(|r| live[((start + r) % ring) as usize])
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_distinct_and_first_replicas_rotate() {
        let placed = place(&[1, 2, 3], 0, 4, 2);
        assert_eq!(placed, vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 2]]);
        let next = place(&[1, 2, 3], 4, 1, 3);
        assert_eq!(next, vec![vec![2, 3, 1]]);
    }
}
