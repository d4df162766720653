//! Subcommands.

mod datastore;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    /// Inspect the cluster's datastore directly (embedded file or etcd).
    #[command(subcommand)]
    Datastore(datastore::DatastoreCommand),
}

impl Command {
    pub async fn run(self) -> Result<()> {
        match self {
            Command::Datastore(command) => command.run().await,
        }
    }
}
