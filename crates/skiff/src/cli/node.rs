//! `skiff node`: this machine as a node, outside the cluster's API. `reset` takes back
//! everything the node agent made (see `skiff_agent::kubelet::reset`).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum NodeCommand {
    /// Stop every container of this node and remove what the node agent made: mounts,
    /// cgroups, the pod bridge, run files. The data directory stays unless --data.
    /// Refused while a skiff server or agent runs on it. Safe to run again.
    Reset(ResetArgs),
}

#[derive(Args)]
pub struct ResetArgs {
    /// The server's data directory, or an agent's --data-dir.
    #[arg(long, env = "SKIFF_DATA_DIR", default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// The network namespace of the node's pod bridge (the agent's --node-netns).
    #[arg(long, value_name = "FILE")]
    node_netns: Option<PathBuf>,
    /// Also remove the data directory: the datastore, images and credentials.
    #[arg(long)]
    data: bool,
}

impl NodeCommand {
    pub fn run(self) -> Result<()> {
        match self {
            NodeCommand::Reset(args) => args.run(),
        }
    }
}

impl ResetArgs {
    fn run(self) -> Result<()> {
        let reset = skiff_agent::kubelet::reset::Reset {
            data_dir: self.data_dir,
            node_netns: match self.node_netns {
                Some(path) => skiff_net::Netns::Path(path),
                None => skiff_net::Netns::Current,
            },
            remove_data: self.data,
        };
        reset.run(|step| eprintln!("{step} …"))?;
        eprintln!("node reset: nothing of skiff's runs here any more");
        Ok(())
    }
}
