//! Subcommands.

mod agent;
mod datastore;
mod server;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    /// Run a cluster: the Kubernetes API over the datastore, and its controllers.
    Server(server::ServerArgs),
    /// Add nodes to a cluster (today: simulated nodes, for tests and scale benchmarks).
    Agent(agent::AgentArgs),
    /// Inspect the cluster's datastore directly (embedded file or etcd).
    #[command(subcommand)]
    Datastore(datastore::DatastoreCommand),
}

impl Command {
    pub async fn run(self) -> Result<()> {
        match self {
            Command::Server(args) => args.run().await,
            Command::Agent(args) => args.run().await,
            Command::Datastore(command) => command.run().await,
        }
    }
}
