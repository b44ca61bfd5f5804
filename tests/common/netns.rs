//! Network partitions between brokers on one machine: one network namespace
//! per broker, joined by a veth pair to a bridge in the root namespace
//! (addresses 10.77.S.N, the bridge 10.77.S.254), brokers started through
//! `ip netns exec`, clients in the root namespace. A partition is a pair of
//! blackhole routes, one in each namespace; healing deletes them.
//!
//! Names carry this process's id, so parallel tests and runs never share
//! them; what a killed run left behind (its process is gone) is removed
//! before a new network is made. Dropping a [`Network`] removes its
//! namespaces (their veth pairs go with them) and its bridge, also when the
//! test failed.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::skip;

/// First three octets of every subnet: 10.77.S.0/24.
const SUBNET_PREFIX: &str = "10.77";
/// The bridge's host number in each subnet.
const BRIDGE_HOST: u8 = 254;
/// Prefix of every namespace this harness makes: `rlf-<pid>x<n>-<node>`.
const NAMESPACE_PREFIX: &str = "rlf-";
/// Prefix of every bridge this harness makes: `rb<pid>x<n>`.
const BRIDGE_PREFIX: &str = "rb";
/// Prefix of every root-side veth: `rv<pid>x<n>n<node>`.
const VETH_PREFIX: &str = "rv";

/// Networks are made one at a time within this process (subnet choice).
static CREATING: Mutex<()> = Mutex::new(());
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Runs `ip ARGS`; the error names the command and what it printed.
fn ip(args: &[&str]) -> Result<String, String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn in_namespace(namespace: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["netns", "exec", namespace, "ip"];
    all.extend_from_slice(args);
    ip(&all)
}

/// Whether process `pid` is alive.
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid in a name `PREFIX<pid>x...`, if it is one of ours.
fn owner(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, _) = rest.split_once('x')?;
    pid.parse().ok()
}

/// Removes namespaces and bridges whose creating process is gone.
fn remove_leftovers() {
    if let Ok(list) = ip(&["netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if owner(name, NAMESPACE_PREFIX).is_some_and(|pid| !alive(pid)) {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
    if let Ok(links) = ip(&["-o", "link", "show"]) {
        for line in links.lines() {
            // "7: rb123x0: <BROADCAST,...": the name is the second field.
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            let ours = owner(name, BRIDGE_PREFIX).or_else(|| owner(name, VETH_PREFIX));
            if ours.is_some_and(|pid| !alive(pid)) {
                let _ = ip(&["link", "del", name]);
            }
        }
    }
}

/// Subnets (the S of 10.77.S.0/24) some interface of the root namespace uses.
fn subnets_in_use() -> BTreeSet<u8> {
    let Ok(addresses) = ip(&["-4", "-o", "addr", "show"]) else {
        return BTreeSet::new();
    };
    addresses
        .split_whitespace()
        .filter_map(|word| word.strip_prefix(&format!("{SUBNET_PREFIX}.")))
        .filter_map(|rest| rest.split('.').next()?.parse().ok())
        .collect()
}

/// Namespaces and a bridge for `nodes` brokers. Node ids start at 1.
pub struct Network {
    subnet: u8,
    bridge: String,
    namespaces: Vec<String>,
    /// Blackhole routes in place: (in the namespace of node, towards node).
    blackholes: Mutex<BTreeSet<(i32, i32)>>,
}

impl Network {
    /// Makes the network, or records `test` as skipped and returns `None`
    /// where this process may not (not root, no `ip netns`).
    pub fn create(test: &str, nodes: usize) -> Option<Network> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            skip::skip(test, "network namespaces need root");
            return None;
        }
        match Network::try_create(nodes) {
            Ok(network) => Some(network),
            Err(error) => {
                skip::skip(test, &format!("cannot make network namespaces: {error}"));
                None
            }
        }
    }

    fn try_create(nodes: usize) -> Result<Network, String> {
        let _one_at_a_time = CREATING.lock().unwrap_or_else(|e| e.into_inner());
        remove_leftovers();
        let tag = format!(
            "{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let used = subnets_in_use();
        let start = (std::process::id() as usize + NEXT.load(Ordering::Relaxed) * 7) % 250;
        let subnet = (0..250)
            .map(|i| ((start + i) % 250 + 1) as u8)
            .find(|s| !used.contains(s))
            .ok_or("every 10.77.S.0/24 subnet is in use")?;
        let mut network = Network {
            subnet,
            bridge: format!("{BRIDGE_PREFIX}{tag}"),
            namespaces: Vec::new(),
            blackholes: Mutex::new(BTreeSet::new()),
        };
        // From here on, Drop removes whatever was made, also on error.
        ip(&["link", "add", &network.bridge, "type", "bridge"])?;
        let bridge_address = format!("{SUBNET_PREFIX}.{subnet}.{BRIDGE_HOST}/24");
        ip(&["addr", "add", &bridge_address, "dev", &network.bridge])?;
        ip(&["link", "set", &network.bridge, "up"])?;
        for node in 1..=nodes {
            let namespace = format!("{NAMESPACE_PREFIX}{tag}-{node}");
            ip(&["netns", "add", &namespace])?;
            network.namespaces.push(namespace.clone());
            let outside = format!("{VETH_PREFIX}{tag}n{node}");
            let inside = format!("{outside}i");
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ])?;
            ip(&["link", "set", &inside, "netns", &namespace])?;
            ip(&["link", "set", &outside, "master", &network.bridge])?;
            ip(&["link", "set", &outside, "up"])?;
            let address = format!("{}/24", network.ip(node as i32));
            in_namespace(&namespace, &["addr", "add", &address, "dev", &inside])?;
            in_namespace(&namespace, &["link", "set", &inside, "up"])?;
            in_namespace(&namespace, &["link", "set", "lo", "up"])?;
        }
        Ok(network)
    }

    /// Node `node`'s address (brokers listen on it, clients connect to it).
    pub fn ip(&self, node: i32) -> String {
        format!("{SUBNET_PREFIX}.{}.{node}", self.subnet)
    }

    /// The namespace of node `node`.
    pub fn namespace(&self, node: i32) -> &str {
        &self.namespaces[node as usize - 1]
    }

    /// What starts a process in node `node`'s namespace.
    pub fn launcher(&self, node: i32) -> [&str; 4] {
        ["ip", "netns", "exec", self.namespace(node)]
    }

    /// Cuts every link between the nodes of `side` and the nodes of `other`,
    /// both ways. Clients in the root namespace still reach every node.
    pub fn partition(&self, side: &[i32], other: &[i32]) {
        for &a in side {
            for &b in other {
                self.blackhole(a, b);
                self.blackhole(b, a);
            }
        }
    }

    /// Cuts `node` off from every node in `others`.
    pub fn isolate(&self, node: i32, others: &[i32]) {
        self.partition(&[node], others);
    }

    fn blackhole(&self, from: i32, to: i32) {
        let mut installed = self.blackholes.lock().unwrap_or_else(|e| e.into_inner());
        if installed.insert((from, to)) {
            let target = format!("{}/32", self.ip(to));
            in_namespace(
                self.namespace(from),
                &["route", "add", "blackhole", &target],
            )
            .unwrap_or_else(|e| panic!("partitioning node {from} from node {to}: {e}"));
        }
    }

    /// Removes every blackhole route: every node reaches every other again.
    pub fn heal(&self) {
        let mut installed = self.blackholes.lock().unwrap_or_else(|e| e.into_inner());
        for (from, to) in std::mem::take(&mut *installed) {
            let target = format!("{}/32", self.ip(to));
            in_namespace(
                self.namespace(from),
                &["route", "del", "blackhole", &target],
            )
            .unwrap_or_else(|e| panic!("healing node {from} towards node {to}: {e}"));
        }
    }

    /// The blackhole routes in node `node`'s namespace, as `ip route` lists them.
    pub fn blackholes_of(&self, node: i32) -> Vec<String> {
        in_namespace(
            self.namespace(node),
            &["route", "show", "type", "blackhole"],
        )
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// Names of the namespaces and links this network made (for tests of the teardown).
    pub fn names(&self) -> (Vec<String>, String) {
        (self.namespaces.clone(), self.bridge.clone())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for namespace in &self.namespaces {
            if let Err(error) = ip(&["netns", "del", namespace]) {
                eprintln!("removing namespace {namespace}: {error}");
            }
        }
        if let Err(error) = ip(&["link", "del", &self.bridge]) {
            eprintln!("removing bridge {}: {error}", self.bridge);
        }
    }
}

/// Whether a namespace named `name` exists.
pub fn namespace_exists(name: &str) -> bool {
    ip(&["netns", "list"]).is_ok_and(|list| {
        list.lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    })
}

/// Whether a link named `name` exists in the root namespace.
pub fn link_exists(name: &str) -> bool {
    ip(&["link", "show", name]).is_ok()
}
