//! Cluster settings with KRaft's names: `node.id`, `controller.quorum.voters`
//! (`1@HOST:PORT,2@HOST:PORT,...`, each voter's inter-broker address) and this
//! node's own inter-broker listener. Without them the broker runs alone.

use std::net::{SocketAddr, ToSocketAddrs};

use super::ConfigError;

/// Voters a controller quorum may have (a Raft group larger than this only
/// slows commits down).
pub const VOTERS_MAX: usize = 9;
/// `default.replication.factor`: replicas of a topic created without one.
pub const DEFAULT_REPLICATION_FACTOR_DEFAULT: i16 = 1;
/// `offsets.topic.num.partitions`: Kafka's default is 50; fewer suit a
/// small machine, where every partition is a Raft group on each replica.
pub const OFFSETS_TOPIC_NUM_PARTITIONS_DEFAULT: u32 = 8;
/// Most partitions the offsets topic may be given.
pub const OFFSETS_TOPIC_NUM_PARTITIONS_MAX: u32 = 1000;
/// `offsets.topic.replication.factor` (capped by the number of voters).
pub const OFFSETS_TOPIC_REPLICATION_FACTOR_DEFAULT: i16 = 3;
/// `auto.leader.rebalance.enable`.
pub const AUTO_LEADER_REBALANCE_DEFAULT: bool = true;

/// One voter of the controller quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub node_id: i32,
    pub address: SocketAddr,
}

/// A node of a cluster: who it is, where the voters are, where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub node_id: i32,
    pub voters: Vec<Voter>,
    pub listen: SocketAddr,
    pub default_replication_factor: i16,
    /// Partitions of `__consumer_offsets`, fixed when the cluster forms.
    pub offsets_topic_num_partitions: u32,
    /// Replicas of `__consumer_offsets` (at most the voters).
    pub offsets_topic_replication_factor: i16,
    /// Preferred replicas reclaim leadership on their own (otherwise only
    /// through ElectLeaders).
    pub auto_leader_rebalance: bool,
}

impl ClusterConfig {
    pub fn peers(&self) -> impl Iterator<Item = &Voter> {
        self.voters.iter().filter(|v| v.node_id != self.node_id)
    }
}

/// What the flags and the file say, before validation.
#[derive(Debug, Default)]
pub struct ClusterSettings {
    pub node_id: Option<i32>,
    pub voters: Option<String>,
    pub listen: Option<String>,
    pub default_replication_factor: Option<i16>,
    pub offsets_topic_num_partitions: Option<u32>,
    pub offsets_topic_replication_factor: Option<i16>,
    pub auto_leader_rebalance: Option<bool>,
}

/// `None` when no cluster flag is given (the single-node broker); all three
/// or an error otherwise.
pub fn build_cluster(settings: ClusterSettings) -> Result<Option<ClusterConfig>, ConfigError> {
    let rf = settings
        .default_replication_factor
        .unwrap_or(DEFAULT_REPLICATION_FACTOR_DEFAULT);
    if rf < 1 {
        return Err(ConfigError::Cluster(format!(
            "--default-replication-factor {rf}: must be at least 1"
        )));
    }
    let offsets_partitions = settings
        .offsets_topic_num_partitions
        .unwrap_or(OFFSETS_TOPIC_NUM_PARTITIONS_DEFAULT);
    if !(1..=OFFSETS_TOPIC_NUM_PARTITIONS_MAX).contains(&offsets_partitions) {
        return Err(ConfigError::Cluster(format!(
            "--offsets-topic-num-partitions {offsets_partitions}: must be in 1..={OFFSETS_TOPIC_NUM_PARTITIONS_MAX}"
        )));
    }
    let offsets_rf = settings
        .offsets_topic_replication_factor
        .unwrap_or(OFFSETS_TOPIC_REPLICATION_FACTOR_DEFAULT);
    if offsets_rf < 1 {
        return Err(ConfigError::Cluster(format!(
            "--offsets-topic-replication-factor {offsets_rf}: must be at least 1"
        )));
    }
    let (node_id, voters, listen) = match (settings.node_id, settings.voters, settings.listen) {
        (None, None, None) => return Ok(None),
        (Some(node_id), Some(voters), Some(listen)) => (node_id, voters, listen),
        _ => {
            return Err(ConfigError::Cluster(
                "--node-id, --controller-quorum-voters and --cluster-listen go together".into(),
            ))
        }
    };
    if node_id < 1 {
        return Err(ConfigError::Cluster(format!(
            "--node-id {node_id}: must be at least 1"
        )));
    }
    let voters = parse_voters(&voters)?;
    if !voters.iter().any(|v| v.node_id == node_id) {
        return Err(ConfigError::Cluster(format!(
            "--node-id {node_id} is not one of --controller-quorum-voters: every node is a voter"
        )));
    }
    let listen = resolve(&listen).ok_or_else(|| {
        ConfigError::Cluster(format!("--cluster-listen {listen:?}: expected HOST:PORT"))
    })?;
    Ok(Some(ClusterConfig {
        node_id,
        voters,
        listen,
        default_replication_factor: rf,
        offsets_topic_num_partitions: offsets_partitions,
        offsets_topic_replication_factor: offsets_rf,
        auto_leader_rebalance: settings
            .auto_leader_rebalance
            .unwrap_or(AUTO_LEADER_REBALANCE_DEFAULT),
    }))
}

/// `1@127.0.0.1:9093,2@127.0.0.1:9094` into voters, sorted by node id.
pub fn parse_voters(text: &str) -> Result<Vec<Voter>, ConfigError> {
    let bad =
        |why: &str| ConfigError::Cluster(format!("--controller-quorum-voters {text:?}: {why}"));
    let mut voters = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (id, address) = part
            .split_once('@')
            .ok_or_else(|| bad("expected ID@HOST:PORT,..."))?;
        let node_id: i32 = id
            .trim()
            .parse()
            .map_err(|_| bad("a node id is not a number"))?;
        if node_id < 1 {
            return Err(bad("node ids start at 1"));
        }
        let address = resolve(address.trim()).ok_or_else(|| bad("expected ID@HOST:PORT"))?;
        voters.push(Voter { node_id, address });
    }
    voters.sort_by_key(|v| v.node_id);
    if voters.windows(2).any(|w| w[0].node_id == w[1].node_id) {
        return Err(bad("a node id is given twice"));
    }
    if voters.len() > VOTERS_MAX {
        return Err(bad("too many voters"));
    }
    Ok(voters)
}

fn resolve(text: &str) -> Option<SocketAddr> {
    text.to_socket_addrs().ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(node: i32, voters: &str) -> ClusterSettings {
        ClusterSettings {
            node_id: Some(node),
            voters: Some(voters.into()),
            listen: Some("127.0.0.1:9093".into()),
            default_replication_factor: None,
            offsets_topic_num_partitions: None,
            offsets_topic_replication_factor: None,
            auto_leader_rebalance: None,
        }
    }

    #[test]
    fn no_cluster_flags_is_a_single_node() {
        assert_eq!(build_cluster(ClusterSettings::default()).unwrap(), None);
    }

    #[test]
    fn voters_parse_sorted_and_the_node_must_be_one() {
        let config = build_cluster(settings(2, "3@127.0.0.1:3,1@127.0.0.1:1,2@localhost:2"))
            .unwrap()
            .unwrap();
        let ids: Vec<i32> = config.voters.iter().map(|v| v.node_id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(config.peers().count(), 2);
        assert!(build_cluster(settings(4, "1@127.0.0.1:1")).is_err());
        assert!(build_cluster(settings(1, "1@127.0.0.1:1,1@127.0.0.1:2")).is_err());
        assert!(build_cluster(settings(1, "1-127.0.0.1:1")).is_err());
        assert!(build_cluster(settings(1, "x@127.0.0.1:1")).is_err());
    }

    #[test]
    fn offsets_topic_settings_are_bounded() {
        let zero = ClusterSettings {
            offsets_topic_num_partitions: Some(0),
            ..settings(1, "1@127.0.0.1:1")
        };
        assert!(build_cluster(zero).is_err());
        let no_replicas = ClusterSettings {
            offsets_topic_replication_factor: Some(0),
            ..settings(1, "1@127.0.0.1:1")
        };
        assert!(build_cluster(no_replicas).is_err());
        let built = build_cluster(settings(1, "1@127.0.0.1:1"))
            .unwrap()
            .unwrap();
        assert_eq!(
            built.offsets_topic_num_partitions,
            OFFSETS_TOPIC_NUM_PARTITIONS_DEFAULT
        );
    }

    #[test]
    fn cluster_flags_go_together() {
        let partial = ClusterSettings {
            node_id: Some(1),
            ..Default::default()
        };
        assert!(build_cluster(partial).is_err());
    }
}
