//! Subcommands.

mod agent;
mod datastore;
mod image;
mod progress;
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
    /// Images in the cluster's registry: import archives, pull, list, remove.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// skiff's own helper processes (not for people).
    #[command(subcommand, hide = true)]
    Internal(InternalCommand),
}

#[derive(Subcommand)]
pub enum InternalCommand {
    /// The monitor of one container (see skiff_runtime::monitor).
    ContainerMonitor {
        #[arg(num_args = 0.., allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

impl Command {
    pub async fn run(self) -> Result<()> {
        match self {
            Command::Server(args) => args.run().await,
            Command::Agent(args) => args.run().await,
            Command::Datastore(command) => command.run().await,
            Command::Image(command) => command.run().await,
            Command::Internal(_) => {
                anyhow::bail!("internal commands run on their own, before the runtime")
            }
        }
    }
}
