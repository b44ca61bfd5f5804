//! The controller's durable Raft storage: one append-only file of records
//! (log entries and hard states), each `[length u32][crc32c u32][kind u8][bytes]`
//! with the bytes prost-encoded. Appends are synced before `persist` returns,
//! so no message that depends on them leaves before they are durable. On
//! start-up the file is replayed in order into raft-rs's `MemStorage` (a
//! later entry at an index already seen replaces the suffix, exactly as
//! the append did); a torn or corrupt tail is cut off.
//!
//! Metadata changes are rare and small, so plain blocking file calls on the
//! controller's shard are fine here (as for the topic table).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message as _;
use raft::prelude::{ConfState, Entry, HardState};
use raft::storage::MemStorage;

/// The largest controller log replayed at start-up.
pub const RAFT_LOG_BYTES_MAX: u64 = 1 << 30;
/// The largest single record (one entry or hard state).
pub const RAFT_RECORD_BYTES_MAX: usize = 16 << 20;
const RECORD_HEADER_BYTES: usize = 9;
const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const LOG_FILE: &str = "raft.log";

#[derive(Debug, thiserror::Error)]
pub enum RaftLogError {
    #[error("controller log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("controller log {path} is larger than {RAFT_LOG_BYTES_MAX} bytes")]
    TooLarge { path: PathBuf },
    #[error("a controller log record of {0} bytes is larger than {RAFT_RECORD_BYTES_MAX}")]
    RecordTooLarge(usize),
}

pub struct RaftLog {
    path: PathBuf,
    file: File,
    memory: MemStorage,
}

impl RaftLog {
    /// Opens (or creates) `<dir>/raft.log` and replays it over a storage
    /// whose configuration is `voters`.
    pub fn open(dir: &Path, voters: Vec<u64>) -> Result<RaftLog, RaftLogError> {
        let path = dir.join(LOG_FILE);
        let io = |source| RaftLogError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let memory = MemStorage::new_with_conf_state(ConfState::from((voters, vec![])));
        let bytes = match std::fs::metadata(&path) {
            Ok(meta) if meta.len() > RAFT_LOG_BYTES_MAX => {
                return Err(RaftLogError::TooLarge { path })
            }
            Ok(_) => std::fs::read(&path).map_err(io)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let good = replay(&bytes, &memory);
        clamp_commit(&memory);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        if good < bytes.len() {
            tracing::warn!(path = %path.display(), kept = good, dropped = bytes.len() - good, "cutting a torn or corrupt tail off the controller log");
            file.set_len(good as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        Ok(RaftLog { path, file, memory })
    }

    /// The storage raft-rs reads; it shares its contents with this log.
    pub fn storage(&self) -> MemStorage {
        self.memory.clone()
    }

    /// Appends `entries` and `hard_state`, syncs, then makes them visible
    /// to raft-rs.
    pub fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), RaftLogError> {
        let mut buffer = Vec::new();
        for entry in entries {
            push_record(&mut buffer, KIND_ENTRY, &entry.encode_to_vec())?;
        }
        if let Some(state) = hard_state {
            push_record(&mut buffer, KIND_HARD_STATE, &state.encode_to_vec())?;
        }
        let io = |source| RaftLogError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&buffer).map_err(io)?;
        // fsync errors are fatal to the caller: an unknown disk state must not vote.
        self.file.sync_data().map_err(io)?;
        let mut memory = self.memory.wl();
        if !entries.is_empty() {
            memory
                .append(entries)
                .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        }
        if let Some(state) = hard_state {
            memory.set_hardstate(state.clone());
        }
        Ok(())
    }

    /// The commit index the leader learnt (stored with the next hard state).
    pub fn set_commit(&self, commit: u64) {
        self.memory.wl().mut_hard_state().commit = commit;
    }
}

/// raft-rs refuses to start with a commit index past the last entry; after
/// a cut tail the commit can only be known again from the leader.
fn clamp_commit(memory: &MemStorage) {
    let last = raft::Storage::last_index(memory).unwrap_or(0);
    let mut core = memory.wl();
    if core.hard_state().commit > last {
        core.mut_hard_state().commit = last;
    }
}

fn push_record(buffer: &mut Vec<u8>, kind: u8, bytes: &[u8]) -> Result<(), RaftLogError> {
    if bytes.len() > RAFT_RECORD_BYTES_MAX {
        return Err(RaftLogError::RecordTooLarge(bytes.len()));
    }
    let mut crc = crc32c::crc32c(&[kind]);
    crc = crc32c::crc32c_append(crc, bytes);
    buffer.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buffer.extend_from_slice(&crc.to_le_bytes());
    buffer.push(kind);
    buffer.extend_from_slice(bytes);
    Ok(())
}

/// Replays records into `memory`; returns the length of the good prefix.
fn replay(bytes: &[u8], memory: &MemStorage) -> usize {
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + RECORD_HEADER_BYTES) {
        let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let kind = header[8];
        if length > RAFT_RECORD_BYTES_MAX {
            break;
        }
        let start = at + RECORD_HEADER_BYTES;
        let Some(body) = bytes.get(start..start + length) else {
            break;
        };
        if crc32c::crc32c_append(crc32c::crc32c(&[kind]), body) != crc {
            break;
        }
        if !apply_record(kind, body, memory) {
            break;
        }
        at = start + length;
    }
    at
}

/// Applies one checked record; `false` if it cannot follow what came before.
fn apply_record(kind: u8, body: &[u8], memory: &MemStorage) -> bool {
    match kind {
        KIND_ENTRY => {
            let Ok(entry) = Entry::decode(body) else {
                return false;
            };
            // MemStorage refuses gaps and writes below its first index.
            let Ok(last) = raft::Storage::last_index(memory) else {
                return false;
            };
            if entry.index == 0 || entry.index > last + 1 {
                return false;
            }
            memory.wl().append(&[entry]).is_ok()
        }
        KIND_HARD_STATE => match HardState::decode(body) {
            Ok(state) => {
                memory.wl().set_hardstate(state);
                true
            }
            Err(_) => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn entries_and_hard_state_survive_a_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RaftLog::open(dir.path(), vec![1, 2, 3]).unwrap();
        log.persist(&[entry(1, 1, b"a"), entry(2, 1, b"b")], None)
            .unwrap();
        // A new leader's entries replace index 2 on.
        let state = HardState {
            term: 2,
            vote: 3,
            commit: 2,
        };
        log.persist(&[entry(2, 2, b"c")], Some(&state)).unwrap();
        drop(log);
        let path = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let length = bytes.len();
        bytes.extend_from_slice(&[7, 0, 0, 0, 1]);
        std::fs::write(&path, &bytes).unwrap();
        let log = RaftLog::open(dir.path(), vec![1, 2, 3]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), length as u64);
        let storage = log.storage();
        assert_eq!(storage.last_index().unwrap(), 2);
        let entries = storage
            .entries(1, 3, None, raft::GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(entries[1].data, b"c");
        let initial = storage.initial_state().unwrap();
        assert_eq!(initial.hard_state, state);
        assert_eq!(initial.conf_state.voters, vec![1, 2, 3]);
    }
}
