//! Security state on the shards: the SCRAM credential and ACL tables every
//! shard reads (immutable snapshots, like the topic table) and, on the
//! metadata shard only, the durable stores that change them. A change is stored, then
//! published to every shard before the caller gets its answer.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use futures::future::join_all;

use super::mesh::run_on;
use super::startup::StartError;
use super::{Shard, ShardId, METADATA_SHARD};
use crate::config::SecurityConfig;
use crate::security::acl::{Acl, AclFilter, AclStore, AclTable};
use crate::security::credentials::{CredentialChange, CredentialStore};
use crate::security::stored::StoreError;
use crate::security::CredentialTable;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SecurityChangeError {
    #[error("the security store could not be changed: {0}")]
    Failed(String),
}

/// The writer side, loaded before the shards start.
pub struct SecurityStore {
    credentials: CredentialStore,
    acls: AclStore,
}

impl SecurityStore {
    /// Loads the stored credentials and adds the `--add-scram` users that
    /// have no credential for their mechanism yet (an existing one is kept,
    /// as `kafka-storage format --add-scram` does on a formatted directory).
    pub fn open(data_dir: &Path, config: &SecurityConfig) -> Result<SecurityStore, StartError> {
        let mut credentials = CredentialStore::load(data_dir)?;
        let table = credentials.table();
        let mut added = Vec::new();
        for user in &config.bootstrap_users {
            if table.get(&user.name, user.mechanism).is_some() {
                continue;
            }
            let credential = user
                .mechanism
                .credential_for_password(&user.password, user.iterations)
                .map_err(|e| StoreError::Write {
                    path: data_dir.to_path_buf(),
                    source: std::io::Error::other(e.to_string()),
                })?;
            tracing::info!(user = %user.name, mechanism = user.mechanism.name(), "SCRAM user created");
            added.push(CredentialChange::Upsert {
                user: user.name.clone(),
                credential,
            });
        }
        if !added.is_empty() {
            credentials.apply(&added)?;
        }
        let acls = AclStore::load(data_dir)?;
        Ok(SecurityStore { credentials, acls })
    }

    /// The tables every shard starts with.
    pub fn snapshot(&self) -> SecuritySnapshot {
        SecuritySnapshot {
            credentials: self.credentials.table(),
            acls: self.acls.table(),
        }
    }
}

/// The immutable tables a shard reads; `Send`, so they travel to every shard.
#[derive(Clone)]
pub struct SecuritySnapshot {
    pub credentials: Arc<CredentialTable>,
    pub acls: Arc<AclTable>,
}

/// One shard's view, plus the store on the metadata shard.
pub struct ShardSecurity {
    current: RefCell<SecuritySnapshot>,
    store: Option<RefCell<SecurityStore>>,
}

impl ShardSecurity {
    pub fn new(snapshot: SecuritySnapshot, store: Option<SecurityStore>) -> ShardSecurity {
        ShardSecurity {
            current: RefCell::new(snapshot),
            store: store.map(RefCell::new),
        }
    }

    pub fn credentials(&self) -> Arc<CredentialTable> {
        self.current.borrow().credentials.clone()
    }

    pub fn acls(&self) -> Arc<AclTable> {
        self.current.borrow().acls.clone()
    }
}

impl Shard {
    /// Applies credential changes on the metadata shard, stores them and
    /// publishes the new table to every shard.
    pub async fn change_credentials(
        self: &Rc<Self>,
        changes: Vec<CredentialChange>,
    ) -> Result<(), SecurityChangeError> {
        run_on(self, METADATA_SHARD, move |s| async move {
            s.change_credentials_here(changes).await
        })
        .await
        .unwrap_or_else(|e| Err(SecurityChangeError::Failed(e.to_string())))
    }

    async fn change_credentials_here(
        self: Rc<Self>,
        changes: Vec<CredentialChange>,
    ) -> Result<(), SecurityChangeError> {
        let _permit = self.admin_permit.acquire_permit(1).await;
        let table = self
            .security_store()?
            .borrow_mut()
            .credentials
            .apply(&changes)
            .map_err(|e| SecurityChangeError::Failed(e.to_string()))?;
        self.publish_security(move |snapshot| snapshot.credentials = table.clone())
            .await
    }

    /// Adds `added` and removes what `removed` matches, on the metadata
    /// shard; stores and publishes the result. Returns the removed bindings.
    pub async fn change_acls(
        self: &Rc<Self>,
        added: Vec<Acl>,
        removed: Vec<AclFilter>,
    ) -> Result<Vec<Acl>, SecurityChangeError> {
        run_on(self, METADATA_SHARD, move |s| async move {
            s.change_acls_here(added, removed).await
        })
        .await
        .unwrap_or_else(|e| Err(SecurityChangeError::Failed(e.to_string())))
    }

    async fn change_acls_here(
        self: Rc<Self>,
        added: Vec<Acl>,
        removed: Vec<AclFilter>,
    ) -> Result<Vec<Acl>, SecurityChangeError> {
        let _permit = self.admin_permit.acquire_permit(1).await;
        let (table, gone) = self
            .security_store()?
            .borrow_mut()
            .acls
            .change(added, &removed)
            .map_err(|e| SecurityChangeError::Failed(e.to_string()))?;
        self.publish_security(move |snapshot| snapshot.acls = table.clone())
            .await?;
        Ok(gone)
    }

    /// The security store, which only the metadata shard holds.
    fn security_store(&self) -> Result<&RefCell<SecurityStore>, SecurityChangeError> {
        self.security
            .store
            .as_ref()
            .ok_or_else(|| SecurityChangeError::Failed("not the metadata shard".into()))
    }

    /// Runs `change` on every shard's snapshot.
    async fn publish_security(
        self: &Rc<Self>,
        change: impl Fn(&mut SecuritySnapshot) + Clone + Send + 'static,
    ) -> Result<(), SecurityChangeError> {
        let applies = ShardId::all(self.shard_count()).map(|target| {
            let change = change.clone();
            run_on(self, target, move |s| async move {
                change(&mut s.security.current.borrow_mut());
            })
        });
        for outcome in join_all(applies).await {
            outcome.map_err(|e| SecurityChangeError::Failed(e.to_string()))?;
        }
        Ok(())
    }
}
