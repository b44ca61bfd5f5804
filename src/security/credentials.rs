//! SCRAM credentials: salted and hashed (StoredKey, ServerKey; never the
//! password), kept in `<data>/scram-credentials.meta` and published to every
//! shard as an immutable table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::scram::ScramMechanism;
use super::stored::{self, StoreError};

/// The file under the data directory that holds the credentials.
pub const CREDENTIALS_FILE: &str = "scram-credentials.meta";
/// Users with credentials the broker keeps (a bound on the file and table).
pub const CREDENTIALS_MAX: usize = 100_000;

/// One user's credential for one mechanism (RFC 5802's stored form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub mechanism: ScramMechanism,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// Every user's credentials, by user then mechanism.
#[derive(Debug, Clone, Default)]
pub struct CredentialTable {
    by_user: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
}

impl CredentialTable {
    pub fn get(&self, user: &str, mechanism: ScramMechanism) -> Option<&ScramCredential> {
        self.by_user.get(user)?.get(&mechanism)
    }

    /// The user's credentials, strongest mechanism first (PLAIN checks one).
    pub fn of_user(&self, user: &str) -> impl Iterator<Item = &ScramCredential> {
        self.by_user
            .get(user)
            .into_iter()
            .flat_map(|m| m.values().rev())
    }

    pub fn users(
        &self,
    ) -> impl Iterator<Item = (&str, &BTreeMap<ScramMechanism, ScramCredential>)> {
        self.by_user.iter().map(|(user, m)| (user.as_str(), m))
    }

    pub fn len(&self) -> usize {
        self.by_user.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_user.is_empty()
    }
}

/// A change to one user's credential.
#[derive(Debug, Clone)]
pub enum CredentialChange {
    Upsert {
        user: String,
        credential: ScramCredential,
    },
    Delete {
        user: String,
        mechanism: ScramMechanism,
    },
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct StoredCredential {
    user: String,
    mechanism: i8,
    salt: Vec<u8>,
    iterations: u32,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct StoredCredentials {
    credentials: Vec<StoredCredential>,
}

/// The persisted writer of the credential table (lives on the metadata shard).
pub struct CredentialStore {
    path: PathBuf,
    table: Arc<CredentialTable>,
}

impl CredentialStore {
    pub fn load(data_dir: &Path) -> Result<CredentialStore, StoreError> {
        let path = data_dir.join(CREDENTIALS_FILE);
        let table = stored::load(&path, decode)?;
        Ok(CredentialStore {
            path,
            table: Arc::new(table),
        })
    }

    pub fn table(&self) -> Arc<CredentialTable> {
        self.table.clone()
    }

    /// Applies `changes` and stores the result before it becomes the table.
    pub fn apply(
        &mut self,
        changes: &[CredentialChange],
    ) -> Result<Arc<CredentialTable>, StoreError> {
        let mut table = (*self.table).clone();
        for change in changes {
            match change {
                CredentialChange::Upsert { user, credential } => {
                    table
                        .by_user
                        .entry(user.clone())
                        .or_default()
                        .insert(credential.mechanism, credential.clone());
                }
                CredentialChange::Delete { user, mechanism } => {
                    if let Some(mechanisms) = table.by_user.get_mut(user) {
                        mechanisms.remove(mechanism);
                        if mechanisms.is_empty() {
                            table.by_user.remove(user);
                        }
                    }
                }
            }
        }
        if table.len() > CREDENTIALS_MAX {
            return Err(StoreError::TooMany {
                what: "users with credentials",
                max: CREDENTIALS_MAX,
            });
        }
        stored::store(&self.path, &encode(&table))?;
        self.table = Arc::new(table);
        Ok(self.table.clone())
    }
}

fn encode(table: &CredentialTable) -> Vec<u8> {
    let stored = StoredCredentials {
        credentials: table
            .users()
            .flat_map(|(user, mechanisms)| {
                mechanisms.values().map(move |c| StoredCredential {
                    user: user.to_string(),
                    mechanism: c.mechanism.wire_type(),
                    salt: c.salt.clone(),
                    iterations: c.iterations,
                    stored_key: c.stored_key.clone(),
                    server_key: c.server_key.clone(),
                })
            })
            .collect(),
    };
    rkyv::to_bytes::<rkyv::rancor::Error>(&stored)
        .expect("serializing plain owned data into memory cannot fail")
        .to_vec()
}

fn decode(bytes: &[u8]) -> Result<CredentialTable, String> {
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(bytes);
    let stored = rkyv::from_bytes::<StoredCredentials, rkyv::rancor::Error>(&aligned)
        .map_err(|e| e.to_string())?;
    let mut table = CredentialTable::default();
    for c in stored.credentials {
        let mechanism = ScramMechanism::from_wire_type(c.mechanism)
            .ok_or_else(|| format!("unknown SCRAM mechanism {}", c.mechanism))?;
        table.by_user.entry(c.user).or_default().insert(
            mechanism,
            ScramCredential {
                mechanism,
                salt: c.salt,
                iterations: c.iterations,
                stored_key: c.stored_key,
                server_key: c.server_key,
            },
        );
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_survive_a_reload_and_deletes_remove_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = CredentialStore::load(dir.path()).unwrap();
        let credential = ScramMechanism::Sha256
            .credential_for_password("clear-text-password", 4096)
            .unwrap();
        store
            .apply(&[CredentialChange::Upsert {
                user: "alice".into(),
                credential: credential.clone(),
            }])
            .unwrap();
        let reloaded = CredentialStore::load(dir.path()).unwrap().table();
        assert_eq!(
            reloaded.get("alice", ScramMechanism::Sha256),
            Some(&credential)
        );
        let bytes = std::fs::read(dir.path().join(CREDENTIALS_FILE)).unwrap();
        assert!(
            !bytes.windows(19).any(|w| w == b"clear-text-password"),
            "no clear-text password"
        );
        store
            .apply(&[CredentialChange::Delete {
                user: "alice".into(),
                mechanism: ScramMechanism::Sha256,
            }])
            .unwrap();
        assert!(CredentialStore::load(dir.path())
            .unwrap()
            .table()
            .is_empty());
    }

    #[test]
    fn a_corrupt_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CREDENTIALS_FILE), b"not rkyv").unwrap();
        assert!(matches!(
            CredentialStore::load(dir.path()),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
