//! The segments of one partition, oldest first. The last one is the active
//! segment, where appends go; the others are sealed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::Error;
use super::segment::Segment;
use super::types::Offset;

pub struct SegmentSet {
    /// The partition directory, named in errors.
    dir: PathBuf,
    /// By base offset.
    segments: BTreeMap<Offset, Segment>,
}

impl SegmentSet {
    pub fn new(dir: &Path, segments: BTreeMap<Offset, Segment>) -> SegmentSet {
        SegmentSet {
            dir: dir.to_path_buf(),
            segments,
        }
    }

    pub fn active(&self) -> Result<&Segment, Error> {
        self.segments
            .values()
            .next_back()
            .ok_or_else(|| no_active_segment(&self.dir))
    }

    pub fn active_mut(&mut self) -> Result<&mut Segment, Error> {
        let dir = &self.dir;
        self.segments
            .values_mut()
            .next_back()
            .ok_or_else(|| no_active_segment(dir))
    }

    /// Starts a new active segment; the previous one is sealed.
    pub fn push_active(&mut self, segment: Segment) {
        debug_assert!(
            self.segments
                .last_key_value()
                .is_none_or(|(_, active)| active.next_offset() == segment.base_offset()),
            "a new segment continues the log"
        );
        self.segments.insert(segment.base_offset(), segment);
    }

    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Every segment, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Segment> {
        self.segments.values()
    }

    /// The sealed segments, oldest first (every one but the active).
    pub fn sealed(&self) -> impl Iterator<Item = &Segment> {
        self.segments
            .values()
            .take(self.segments.len().saturating_sub(1))
    }

    pub fn base_offsets(&self) -> Vec<Offset> {
        self.segments.keys().copied().collect()
    }

    pub fn first_base_offset(&self) -> Option<Offset> {
        self.segments.keys().next().copied()
    }

    /// Total bytes of the segment files.
    pub fn total_bytes(&self) -> u64 {
        self.segments.values().map(Segment::written_bytes).sum()
    }

    /// The segment that holds `offset` (the last one based at or below it),
    /// and the base offset of the segment after it.
    pub fn containing(&self, offset: Offset) -> Option<(&Segment, Option<Offset>)> {
        let (_, segment) = self.segments.range(..=offset).next_back()?;
        let following = self
            .segments
            .range(Offset(offset.get().saturating_add(1))..)
            .next()
            .map(|(base, _)| *base);
        Some((segment, following))
    }

    /// Removes the `count` oldest sealed segments (never the active one).
    pub fn remove_oldest(&mut self, count: usize) -> Vec<Segment> {
        let count = count.min(self.segments.len().saturating_sub(1));
        let mut removed = Vec::with_capacity(count);
        for _ in 0..count {
            if let Some((_, segment)) = self.segments.pop_first() {
                removed.push(segment);
            }
        }
        removed
    }

    /// How many of the oldest segments hold only offsets below `offset`: those
    /// followed by a segment based at or below it.
    pub fn count_wholly_below(&self, offset: Offset) -> usize {
        self.segments
            .keys()
            .skip(1)
            .take_while(|&&following_base| following_base <= offset)
            .count()
    }

    /// The sealed segment based at `base_offset`, if there is one.
    pub fn sealed_at(&self, base_offset: Offset) -> Option<&Segment> {
        let active = self.segments.keys().next_back()?;
        (base_offset < *active)
            .then(|| self.segments.get(&base_offset))
            .flatten()
    }

    /// Puts a rewritten sealed segment (compaction) in place of the one with
    /// its base offset, returning the old one.
    pub fn replace_sealed(&mut self, segment: Segment) -> Option<Segment> {
        self.sealed_at(segment.base_offset())?;
        self.segments.insert(segment.base_offset(), segment)
    }

    /// Removes one sealed segment that is not the oldest (compaction left it
    /// empty; the oldest stays so the log start offset does not move).
    pub fn remove_sealed(&mut self, base_offset: Offset) -> Option<Segment> {
        let first = self.first_base_offset()?;
        if base_offset == first {
            return None;
        }
        self.sealed_at(base_offset)?;
        self.segments.remove(&base_offset)
    }

    /// Drops every segment (the log is being deleted).
    pub fn clear(&mut self) {
        self.segments.clear();
    }
}

fn no_active_segment(dir: &Path) -> Error {
    Error::InvalidLayout(dir.to_path_buf(), "no active segment")
}
