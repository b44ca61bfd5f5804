//! ACLs with Kafka's model: a binding allows or denies one principal, from
//! one host, one operation on resources named literally or by prefix. The
//! table is immutable once published to the shards, and a check walks it
//! without allocating. Kept in `<data>/acls.meta`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::stored::{self, StoreError};
use super::Principal;

/// The file under the data directory that holds the ACLs.
pub const ACLS_FILE: &str = "acls.meta";
/// ACL bindings the broker keeps (a bound on the file and every check).
pub const ACLS_MAX: usize = 100_000;
/// The one name a CLUSTER resource has.
pub const CLUSTER_RESOURCE_NAME: &str = "kafka-cluster";
/// A literal resource name, principal name or host that matches every one.
pub const WILDCARD: &str = "*";

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $value:expr),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),* }

        impl $name {
            /// The number Kafka sends for it.
            pub fn code(self) -> i8 {
                match self { $($name::$variant => $value),* }
            }

            pub fn from_code(code: i8) -> Option<$name> {
                match code { $($value => Some($name::$variant),)* _ => None }
            }
        }
    };
}

wire_enum!(
    /// Kafka's `ResourceType` (ANY = 1 exists only in filters).
    ResourceType { Any = 1, Topic = 2, Group = 3, Cluster = 4, TransactionalId = 5 }
);
wire_enum!(
    /// Kafka's `PatternType`; bindings are LITERAL or PREFIXED, filters may
    /// also say ANY or MATCH.
    PatternType { Any = 1, Match = 2, Literal = 3, Prefixed = 4 }
);
wire_enum!(
    /// Kafka's `AclOperation` (ANY = 1 exists only in filters).
    Operation {
        Any = 1, All = 2, Read = 3, Write = 4, Create = 5, Delete = 6, Alter = 7,
        Describe = 8, ClusterAction = 9, DescribeConfigs = 10, AlterConfigs = 11,
        IdempotentWrite = 12, CreateTokens = 13, DescribeTokens = 14,
    }
);
wire_enum!(
    /// Kafka's `AclPermissionType` (ANY = 1 exists only in filters).
    Permission { Any = 1, Deny = 2, Allow = 3 }
);

impl Operation {
    /// Kafka's implied operations: DESCRIBE is allowed by READ, WRITE,
    /// DELETE or ALTER; DESCRIBE_CONFIGS by ALTER_CONFIGS.
    fn allowed_by(self, granted: Operation) -> bool {
        granted == self
            || granted == Operation::All
            || match self {
                Operation::Describe => matches!(
                    granted,
                    Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
                ),
                Operation::DescribeConfigs => granted == Operation::AlterConfigs,
                _ => false,
            }
    }
}

/// One ACL binding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Acl {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern: PatternType,
    /// `User:alice`, or `User:*` for every user.
    pub principal: Principal,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAcl {
    #[error("resource type must be TOPIC, GROUP, CLUSTER or TRANSACTIONAL_ID")]
    ResourceType,
    #[error("pattern type must be LITERAL or PREFIXED")]
    Pattern,
    #[error("operation must be a concrete operation, not ANY")]
    Operation,
    #[error("permission type must be ALLOW or DENY")]
    Permission,
    #[error("invalid principal {0:?}: expected Type:name")]
    Principal(String),
    #[error("resource name and host must not be empty")]
    Empty,
    #[error("a CLUSTER resource is named kafka-cluster")]
    ClusterName,
    #[error("a PREFIXED resource name may not be the wildcard '*'")]
    PrefixedWildcard,
}

impl Acl {
    /// Checks a binding from a CreateAcls request.
    pub fn check(&self) -> Result<(), InvalidAcl> {
        if self.resource_type == ResourceType::Any {
            return Err(InvalidAcl::ResourceType);
        }
        if !matches!(self.pattern, PatternType::Literal | PatternType::Prefixed) {
            return Err(InvalidAcl::Pattern);
        }
        if self.operation == Operation::Any {
            return Err(InvalidAcl::Operation);
        }
        if self.permission == Permission::Any {
            return Err(InvalidAcl::Permission);
        }
        if self.resource_name.is_empty() || self.host.is_empty() {
            return Err(InvalidAcl::Empty);
        }
        if self.resource_type == ResourceType::Cluster
            && self.resource_name != CLUSTER_RESOURCE_NAME
        {
            return Err(InvalidAcl::ClusterName);
        }
        if self.pattern == PatternType::Prefixed && self.resource_name == WILDCARD {
            return Err(InvalidAcl::PrefixedWildcard);
        }
        Ok(())
    }

    /// Whether this binding is about `resource_type` `name`.
    fn covers(&self, name: &str) -> bool {
        match self.pattern {
            PatternType::Literal => self.resource_name == name || self.resource_name == WILDCARD,
            PatternType::Prefixed => name.starts_with(self.resource_name.as_str()),
            PatternType::Any | PatternType::Match => false,
        }
    }

    fn applies_to(&self, principal: &Principal, host: &str) -> bool {
        self.principal.kind == principal.kind
            && (self.principal.name == principal.name || self.principal.name == WILDCARD)
            && (self.host == host || self.host == WILDCARD)
    }
}

/// A DescribeAcls or DeleteAcls filter; `None` matches anything.
#[derive(Debug, Clone)]
pub struct AclFilter {
    pub resource_type: ResourceType,
    pub resource_name: Option<String>,
    pub pattern: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclFilter {
    pub fn matches(&self, acl: &Acl) -> bool {
        let resource_type =
            self.resource_type == ResourceType::Any || self.resource_type == acl.resource_type;
        let name = match (&self.resource_name, self.pattern) {
            (None, PatternType::Any | PatternType::Match) => true,
            (None, pattern) => pattern == acl.pattern,
            (Some(name), PatternType::Any) => *name == acl.resource_name,
            (Some(name), PatternType::Match) => acl.covers(name),
            (Some(name), pattern) => pattern == acl.pattern && *name == acl.resource_name,
        };
        let principal = self
            .principal
            .as_ref()
            .is_none_or(|p| *p == acl.principal.to_string());
        let host = self.host.as_ref().is_none_or(|h| *h == acl.host);
        let operation = self.operation == Operation::Any || self.operation == acl.operation;
        let permission = self.permission == Permission::Any || self.permission == acl.permission;
        resource_type && name && principal && host && operation && permission
    }
}

/// Every ACL binding, by resource type.
#[derive(Debug, Clone, Default)]
pub struct AclTable {
    by_type: BTreeMap<ResourceType, Vec<Acl>>,
    count: usize,
}

impl AclTable {
    pub fn iter(&self) -> impl Iterator<Item = &Acl> {
        self.by_type.values().flatten()
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Kafka's authorizer rules: a matching DENY wins; otherwise a matching
    /// ALLOW (with implied operations) allows; no ALLOW (including no ACL
    /// at all on the resource) denies. Walks the table; allocates nothing.
    pub fn allows(
        &self,
        principal: &Principal,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        let Some(acls) = self.by_type.get(&resource_type) else {
            return false;
        };
        let mut allowed = false;
        for acl in acls {
            if !acl.covers(name) || !acl.applies_to(principal, host) {
                continue;
            }
            match acl.permission {
                Permission::Deny
                    if acl.operation == operation || acl.operation == Operation::All =>
                {
                    return false
                }
                Permission::Allow if operation.allowed_by(acl.operation) => allowed = true,
                _ => {}
            }
        }
        allowed
    }

    /// KIP-679's "authorize by resource type": whether `operation` is
    /// allowed on some resource of `resource_type`: an applicable ALLOW
    /// exists and no applicable DENY covers every name (the wildcard).
    /// Allocates nothing.
    pub fn allows_some(
        &self,
        principal: &Principal,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
    ) -> bool {
        let Some(acls) = self.by_type.get(&resource_type) else {
            return false;
        };
        let applicable = || acls.iter().filter(|acl| acl.applies_to(principal, host));
        let denied_everywhere = applicable().any(|acl| {
            acl.permission == Permission::Deny
                && (acl.operation == operation || acl.operation == Operation::All)
                && acl.pattern == PatternType::Literal
                && acl.resource_name == WILDCARD
        });
        !denied_everywhere
            && applicable().any(|acl| {
                acl.permission == Permission::Allow && operation.allowed_by(acl.operation)
            })
    }

    fn from_acls(acls: impl IntoIterator<Item = Acl>) -> AclTable {
        let mut table = AclTable::default();
        for acl in acls {
            let list = table.by_type.entry(acl.resource_type).or_default();
            if !list.contains(&acl) {
                list.push(acl);
                table.count += 1;
            }
        }
        table
    }
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct StoredAcl {
    resource_type: i8,
    resource_name: String,
    pattern: i8,
    principal: String,
    host: String,
    operation: i8,
    permission: i8,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct StoredAcls {
    acls: Vec<StoredAcl>,
}

/// The persisted writer of the ACL table (lives on the metadata shard).
pub struct AclStore {
    path: PathBuf,
    table: Arc<AclTable>,
}

impl AclStore {
    pub fn load(data_dir: &Path) -> Result<AclStore, StoreError> {
        let path = data_dir.join(ACLS_FILE);
        let table = stored::load(&path, decode)?;
        Ok(AclStore {
            path,
            table: Arc::new(table),
        })
    }

    pub fn table(&self) -> Arc<AclTable> {
        self.table.clone()
    }

    /// Adds `added` and removes every binding `removed` matches; stores the
    /// result before it becomes the table. Returns the removed bindings.
    pub fn change(
        &mut self,
        added: Vec<Acl>,
        removed: &[AclFilter],
    ) -> Result<(Arc<AclTable>, Vec<Acl>), StoreError> {
        let (gone, kept): (Vec<Acl>, Vec<Acl>) = self
            .table
            .iter()
            .cloned()
            .partition(|acl| removed.iter().any(|f| f.matches(acl)));
        let table = AclTable::from_acls(kept.into_iter().chain(added));
        if table.len() > ACLS_MAX {
            return Err(StoreError::TooMany {
                what: "ACLs",
                max: ACLS_MAX,
            });
        }
        stored::store(&self.path, &encode(&table))?;
        self.table = Arc::new(table);
        Ok((self.table.clone(), gone))
    }
}

fn encode(table: &AclTable) -> Vec<u8> {
    let stored = StoredAcls {
        acls: table
            .iter()
            .map(|acl| StoredAcl {
                resource_type: acl.resource_type.code(),
                resource_name: acl.resource_name.clone(),
                pattern: acl.pattern.code(),
                principal: acl.principal.to_string(),
                host: acl.host.clone(),
                operation: acl.operation.code(),
                permission: acl.permission.code(),
            })
            .collect(),
    };
    rkyv::to_bytes::<rkyv::rancor::Error>(&stored)
        .expect("serializing plain owned data into memory cannot fail")
        .to_vec()
}

fn decode(bytes: &[u8]) -> Result<AclTable, String> {
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(bytes);
    let stored =
        rkyv::from_bytes::<StoredAcls, rkyv::rancor::Error>(&aligned).map_err(|e| e.to_string())?;
    let mut acls = Vec::with_capacity(stored.acls.len());
    for s in stored.acls {
        let bad = |what: &str| format!("bad {what} in a stored ACL");
        acls.push(Acl {
            resource_type: ResourceType::from_code(s.resource_type)
                .ok_or_else(|| bad("resource type"))?,
            resource_name: s.resource_name,
            pattern: PatternType::from_code(s.pattern).ok_or_else(|| bad("pattern type"))?,
            principal: Principal::parse(&s.principal).ok_or_else(|| bad("principal"))?,
            host: s.host,
            operation: Operation::from_code(s.operation).ok_or_else(|| bad("operation"))?,
            permission: Permission::from_code(s.permission).ok_or_else(|| bad("permission"))?,
        });
    }
    Ok(AclTable::from_acls(acls))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        name: &str,
        pattern: PatternType,
        principal: &str,
        operation: Operation,
        permission: Permission,
    ) -> Acl {
        Acl {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern,
            principal: Principal::parse(principal).unwrap(),
            host: WILDCARD.into(),
            operation,
            permission,
        }
    }

    #[test]
    fn deny_wins_prefixes_match_and_no_acl_denies() {
        let alice = Principal::user("alice");
        let table = AclTable::from_acls([
            acl(
                "orders-",
                PatternType::Prefixed,
                "User:alice",
                Operation::Read,
                Permission::Allow,
            ),
            acl(
                "orders-secret",
                PatternType::Literal,
                "User:*",
                Operation::All,
                Permission::Deny,
            ),
        ]);
        let read = |name| {
            table.allows(
                &alice,
                "127.0.0.1",
                Operation::Read,
                ResourceType::Topic,
                name,
            )
        };
        assert!(read("orders-eu"));
        assert!(!read("orders-secret"), "DENY wins");
        assert!(!read("payments"), "no ACL: denied");
        assert!(
            table.allows(
                &alice,
                "h",
                Operation::Describe,
                ResourceType::Topic,
                "orders-eu"
            ),
            "READ implies DESCRIBE"
        );
        assert!(!table.allows(
            &alice,
            "h",
            Operation::Write,
            ResourceType::Topic,
            "orders-eu"
        ));
        assert!(!table.allows(
            &Principal::user("bob"),
            "h",
            Operation::Read,
            ResourceType::Topic,
            "orders-eu"
        ));
        assert!(!table.allows(
            &alice,
            "h",
            Operation::Read,
            ResourceType::Group,
            "orders-eu"
        ));
    }

    #[test]
    fn filters_match_like_kafkas() {
        let prefixed = acl(
            "orders-",
            PatternType::Prefixed,
            "User:alice",
            Operation::Read,
            Permission::Allow,
        );
        let filter = |name: Option<&str>, pattern| AclFilter {
            resource_type: ResourceType::Any,
            resource_name: name.map(str::to_string),
            pattern,
            principal: None,
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        };
        assert!(filter(None, PatternType::Any).matches(&prefixed));
        assert!(filter(Some("orders-eu"), PatternType::Match).matches(&prefixed));
        assert!(!filter(Some("orders-eu"), PatternType::Any).matches(&prefixed));
        assert!(filter(Some("orders-"), PatternType::Prefixed).matches(&prefixed));
        assert!(!filter(Some("orders-"), PatternType::Literal).matches(&prefixed));
    }

    #[test]
    fn acls_survive_a_reload_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = AclStore::load(dir.path()).unwrap();
        let binding = acl(
            "t",
            PatternType::Literal,
            "User:a",
            Operation::Write,
            Permission::Allow,
        );
        store
            .change(vec![binding.clone(), binding.clone()], &[])
            .unwrap();
        let table = AclStore::load(dir.path()).unwrap().table();
        assert_eq!(
            table.iter().cloned().collect::<Vec<_>>(),
            vec![binding.clone()]
        );
        let mut bad = binding.clone();
        bad.pattern = PatternType::Match;
        assert_eq!(bad.check(), Err(InvalidAcl::Pattern));
        let mut bad = binding;
        bad.resource_type = ResourceType::Cluster;
        assert_eq!(bad.check(), Err(InvalidAcl::ClusterName));
    }
}
