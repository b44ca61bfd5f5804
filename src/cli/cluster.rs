//! `ringlog cluster info`: the cluster id, its brokers, the controller and
//! how many topics there are, from one Metadata answer.

use clap::Subcommand;
use serde::Serialize;

use super::error::CliError;
use super::output::{Out, Table};
use super::Common;

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Show the cluster id, brokers, controller and topic count.
    Info,
}

#[derive(Serialize)]
struct Info {
    cluster_id: Option<String>,
    controller: i32,
    topics: usize,
    brokers: Vec<Broker>,
}

#[derive(Serialize)]
struct Broker {
    id: i32,
    host: String,
    port: i32,
    rack: Option<String>,
}

pub fn run(common: &Common, command: ClusterCommand) -> Result<(), CliError> {
    let ClusterCommand::Info = command;
    let mut session = common.session()?;
    let response = session.metadata(None)?;
    let mut brokers: Vec<Broker> = response
        .brokers
        .iter()
        .map(|b| Broker {
            id: b.node_id.0,
            host: b.host.to_string(),
            port: b.port,
            rack: b.rack.as_ref().map(|r| r.to_string()),
        })
        .collect();
    brokers.sort_by_key(|b| b.id);
    let info = Info {
        cluster_id: response.cluster_id.as_ref().map(|c| c.to_string()),
        controller: response.controller_id.0,
        topics: response.topics.iter().filter(|t| t.error_code == 0).count(),
        brokers,
    };
    let mut summary = Table::new(&["CLUSTER-ID", "CONTROLLER", "BROKERS", "TOPICS"]);
    summary.row(vec![
        info.cluster_id.clone().unwrap_or_else(|| "-".into()),
        info.controller.to_string(),
        info.brokers.len().to_string(),
        info.topics.to_string(),
    ]);
    let mut brokers = Table::new(&["ID", "HOST", "PORT", "RACK"]);
    for b in &info.brokers {
        brokers.row(vec![
            b.id.to_string(),
            b.host.clone(),
            b.port.to_string(),
            b.rack.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    Out::new().answer(&common.format, &info, &[summary, brokers])
}
