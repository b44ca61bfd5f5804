//! The security files under the data directory (credentials, ACLs): read
//! once at start-up, replaced whole on each change (temp file + fsync +
//! rename + directory fsync), so a crash leaves the old file or the new one.
//! Security changes are rare and small: plain blocking calls are fine.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("at most {max} {what} are kept")]
    TooMany { what: &'static str, max: usize },
}

/// Decodes the file at `path`, or gives `T::default()` when there is none.
pub fn load<T: Default>(
    path: &Path,
    decode: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => decode(&bytes).map_err(|message| StoreError::Corrupt {
            path: path.to_path_buf(),
            message,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(source) => Err(StoreError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Replaces the file at `path` with `bytes`.
pub fn store(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    crate::storage::file::replace_file_blocking(path, bytes).map_err(|source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    })
}
