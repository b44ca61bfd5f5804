//! What the cleaner asks of a partition log: its sealed segments as they
//! are now, and putting a cleaned segment in place of one. The cleaning
//! itself is [`crate::storage::cleaner`]'s job.
//!
//! A swap checks, without awaiting in between, that the segment it replaces
//! is still the one it read (retention or DeleteRecords may have removed
//! it meanwhile); readers that already hold the old file keep reading it.

use std::rc::Rc;

use super::super::cleaner::{hook, swap};
use super::super::error::Error;
use super::super::file::{self, IoMode, SegmentFile};
use super::super::segment::{self, Segment};
use super::super::types::Offset;
use super::{PartitionLog, State};

/// A sealed segment as the cleaner sees it.
#[derive(Clone)]
pub struct SealedSegment {
    pub base_offset: Offset,
    /// The base offset of the segment after it: where its offsets end.
    pub end_offset: Offset,
    pub bytes: u64,
    /// The largest batch maxTimestamp in it.
    pub max_timestamp_ms: Option<i64>,
    pub(crate) file: Rc<SegmentFile>,
}

impl SealedSegment {
    fn is_current(&self, state: &State) -> bool {
        state
            .segments
            .sealed_at(self.base_offset)
            .is_some_and(|s| Rc::ptr_eq(s.file(), &self.file))
    }
}

impl PartitionLog {
    /// Every segment below the active one, oldest first.
    pub fn sealed_segments(&self) -> Vec<SealedSegment> {
        let state = self.state.borrow();
        let bases = state.segments.base_offsets();
        state
            .segments
            .sealed()
            .zip(bases.iter().skip(1))
            .map(|(s, &end_offset)| SealedSegment {
                base_offset: s.base_offset(),
                end_offset,
                bytes: s.written_bytes(),
                max_timestamp_ms: s.index().max_timestamp.map(|m| m.timestamp.get()),
                file: s.file().clone(),
            })
            .collect()
    }

    pub(crate) fn io_mode(&self) -> IoMode {
        self.io_mode
    }

    /// Tells this opening of the log from any other, even of the same
    /// directory (a topic deleted and created again).
    pub(crate) fn opening_id(&self) -> u64 {
        self.log_id
    }

    /// Puts the synced `.cleaned` file of `old` (holding `bytes`) in its
    /// place. A cleaned segment left empty is removed instead, unless it is
    /// the oldest (which keeps the log start offset where it is). Returns
    /// false when `old` was no longer there to replace.
    pub(crate) async fn install_cleaned(
        &self,
        old: &SealedSegment,
        bytes: u64,
    ) -> Result<bool, Error> {
        let base = old.base_offset;
        let first = self.state.borrow().segments.first_base_offset();
        if bytes == 0 && first != Some(base) {
            return self.remove_emptied(old).await;
        }
        self.mark_changing().await?;
        swap::commit(&self.dir, base).await?;
        hook::pause("swap").await;
        {
            let state = self.state.borrow();
            if Self::check_open(&state).is_err() || !old.is_current(&state) {
                swap::discard(&self.dir, base);
                return Ok(false);
            }
            swap::install(&self.dir, base)?;
        }
        let path = Segment::log_path(&self.dir, base);
        let file = SegmentFile::open(&path, self.io_mode).await?;
        let interval = self.state.borrow().config.index_interval_bytes;
        let scan = segment::scan(&file, base, bytes, interval).await?;
        if scan.valid_bytes != bytes {
            return Err(Error::InvalidLayout(
                path,
                "a cleaned segment does not scan whole",
            ));
        }
        let segment = Segment::opened(
            file,
            base,
            bytes,
            scan.index,
            old.end_offset,
            (self.clock)(),
        );
        let index_files = segment.encode_indexes()?;
        let installed = {
            let mut state = self.state.borrow_mut();
            old.is_current(&state) && state.segments.replace_sealed(segment).is_some()
        };
        self.cache.remove_log_below(self.log_id, old.end_offset);
        file::sync_dir(&self.dir).await?;
        if installed {
            index_files.write(&self.dir).await?;
        }
        hook::pause("installed").await;
        Ok(installed)
    }

    /// Removes a segment whose every record was superseded.
    async fn remove_emptied(&self, old: &SealedSegment) -> Result<bool, Error> {
        self.mark_changing().await?;
        let removed = {
            let mut state = self.state.borrow_mut();
            if Self::check_open(&state).is_err() || !old.is_current(&state) {
                None
            } else {
                Segment::remove_files(&self.dir, old.base_offset)?;
                state.segments.remove_sealed(old.base_offset)
            }
        };
        swap::discard(&self.dir, old.base_offset);
        self.cache.remove_log_below(self.log_id, old.end_offset);
        file::sync_dir(&self.dir).await?;
        Ok(removed.is_some())
    }
}
