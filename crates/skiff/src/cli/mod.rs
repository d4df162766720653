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
    /// Run a cluster: the Kubernetes API, registry, controllers, scheduler and this node.
    Server(server::ServerArgs),
    /// Join a cluster as a node (pods run as containers here), or add simulated nodes.
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
