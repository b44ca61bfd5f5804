//! The admin subcommands (`ringlog topic|group|cluster ...`): a Kafka
//! protocol client for any Kafka-compatible broker, on `ringlog::client`.
//!
//! # Layout
//!
//! - [`session`]: connections to the bootstrap broker, leaders and coordinators; metadata.
//! - [`topic`]: create, list, delete, alter-config, add-partitions; [`topic_describe`]: describe.
//! - [`produce`] and [`partitioner`]: stdin lines to records, placed as Kafka's partitioner does.
//! - [`consume`], [`record_format`], [`progress`]: Fetch, print records, show catch-up progress.
//! - [`group`] and [`reset`]: list, describe (lag), delete, reset-offsets.
//! - [`committed`]: a group's committed offsets, read and written.
//! - [`offsets`]: beginning, end, offset or time into offsets (ListOffsets).
//! - [`cluster`]: cluster info.
//! - [`output`]: tables or JSON; [`error`]: one message and an exit code per failure.

mod cluster;
mod committed;
mod consume;
mod error;
mod group;
mod member;
mod offsets;
mod output;
mod partitioner;
mod produce;
mod progress;
mod record_format;
mod reset;
mod session;
mod topic;
mod topic_describe;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use ringlog::client::ClientSecurity;

use error::CliError;
use output::Format;
use session::Session;

/// Where the tool connects unless `--bootstrap` says otherwise: the
/// broker's own default listener.
const BOOTSTRAP_DEFAULT: &str = ringlog::config::LISTEN_DEFAULT;
/// How long a connect or one request may take unless `--timeout-ms` says otherwise.
const TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// The shortest `--timeout-ms`: a fetch waits at the broker for up to half a second.
const TIMEOUT_MS_MIN: u64 = 1_000;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Manage topics, produce to them and consume from them.
    Topic {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: topic::TopicCommand,
    },
    /// Manage consumer groups and their committed offsets.
    Group {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: group::GroupCommand,
    },
    /// Show the cluster's brokers.
    Cluster {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
}

/// Flags every admin command takes.
#[derive(Args)]
pub struct Common {
    /// A broker of the cluster.
    #[arg(long, global = true, value_name = "HOST:PORT", default_value = BOOTSTRAP_DEFAULT)]
    bootstrap: String,
    /// table, json, or for topic consume a template such as '%k:%v' (%k key,
    /// %v value, %p partition, %o offset, %T timestamp, %t topic, %h headers).
    #[arg(long, global = true, value_name = "FORMAT", default_value = "table")]
    format: Format,
    /// Bound on connecting and on each request.
    #[arg(long, global = true, value_name = "MS", default_value_t = TIMEOUT_MS_DEFAULT)]
    timeout_ms: u64,
    /// A Kafka client setting (repeatable): security.protocol, sasl.mechanism,
    /// sasl.username, sasl.password, ssl.ca.location.
    #[arg(short = 'X', global = true, value_name = "KEY=VALUE")]
    settings: Vec<String>,
}

impl Common {
    fn session(&self) -> Result<Session, CliError> {
        if self.timeout_ms < TIMEOUT_MS_MIN {
            return Err(CliError::usage(format!(
                "--timeout-ms must be at least {TIMEOUT_MS_MIN}"
            )));
        }
        let security = ClientSecurity::from_properties(&self.settings).map_err(CliError::usage)?;
        Session::connect(
            &self.bootstrap,
            Duration::from_millis(self.timeout_ms),
            security,
        )
    }
}

/// Runs one admin command; a failure is one line on stderr and a non-zero exit.
pub fn run(command: AdminCommand) -> ExitCode {
    let result = match command {
        AdminCommand::Topic { common, command } => topic::run(&common, command),
        AdminCommand::Group { common, command } => group::run(&common, command),
        AdminCommand::Cluster { common, command } => cluster::run(&common, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout went away (`| head`): nothing more to say.
        Err(error) if error.is_broken_pipe() => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ringlog: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
