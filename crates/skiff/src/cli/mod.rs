//! Subcommands.

mod agent;
mod datastore;
mod image;
mod network;
mod node;
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
    /// This machine as a node: reset it to a machine without skiff's containers.
    #[command(subcommand)]
    Node(node::NodeCommand),
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
    /// The PID 1 of a pod's shared PID namespace (see skiff_runtime::pod_init).
    PodInit { pid_file: std::path::PathBuf },
}

impl Command {
    pub async fn run(self) -> Result<()> {
        match self {
            Command::Server(args) => args.run().await,
            Command::Agent(args) => args.run().await,
            Command::Datastore(command) => command.run().await,
            Command::Image(command) => command.run().await,
            Command::Node(command) => command.run(),
            Command::Internal(_) => {
                anyhow::bail!("internal commands run on their own, before the runtime")
            }
        }
    }
}

/// A duration as Kubernetes flags write them: `40s`, `2m`, `1h`, or plain seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (use e.g. 40s, 2m or 1h)"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?} is not a duration (use e.g. 40s, 2m or 1h)")),
    };
    Ok(std::time::Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_as_kubernetes_flags_write_them() {
        assert_eq!(parse_duration("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
