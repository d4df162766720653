//! Subcommands.

mod datastore;
mod server;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    /// Run a cluster: the Kubernetes API over the datastore, and its controllers.
    Server(server::ServerArgs),
    /// Inspect the cluster's datastore directly (embedded file or etcd).
    #[command(subcommand)]
    Datastore(datastore::DatastoreCommand),
}

impl Command {
    pub async fn run(self) -> Result<()> {
        match self {
            Command::Server(args) => args.run().await,
            Command::Datastore(command) => command.run().await,
        }
    }
}
