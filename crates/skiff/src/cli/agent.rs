//! `skiff agent`: nodes for a cluster. Today: simulated nodes (`--simulated-nodes N`), which
//! play kubelet for their pods without running containers; the agent that runs real
//! containers on this machine is the node agent issue's.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use skiff_agent::simulated::SimulatedConfig;

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// Kubeconfig of the cluster to join (as `skiff server --write-kubeconfig` writes it).
    #[arg(long, default_value = "/etc/skiff/kubeconfig.yaml")]
    kubeconfig: PathBuf,
    /// Register this many simulated nodes instead of running containers here.
    #[arg(long, value_name = "N")]
    simulated_nodes: Option<usize>,
    /// Simulated nodes are named PREFIX0, PREFIX1, …
    #[arg(long, default_value = "sim-node-", value_name = "PREFIX")]
    node_name_prefix: String,
    /// How long each node's lease is valid; it is renewed every quarter of this.
    #[arg(long, default_value_t = skiff_agent::simulated::LEASE_DURATION_SECONDS, value_name = "SECONDS")]
    node_lease_duration_seconds: i32,
}

impl AgentArgs {
    pub async fn run(self) -> Result<()> {
        let Some(nodes) = self.simulated_nodes else {
            bail!(
                "running real containers on this machine is not available yet; \
                 use --simulated-nodes N for nodes that simulate their pods"
            );
        };
        if nodes == 0 {
            bail!("--simulated-nodes must be at least 1");
        }
        let client = skiff_client::client_from_kubeconfig_file(&self.kubeconfig)
            .await
            .with_context(|| {
                format!(
                    "cannot use the kubeconfig {} (pass the server's with --kubeconfig)",
                    self.kubeconfig.display()
                )
            })?;
        let mut config = SimulatedConfig::new(nodes, &self.node_name_prefix);
        config.lease_duration_seconds = self.node_lease_duration_seconds.max(1);
        eprintln!(
            "registering {nodes} simulated nodes ({}0…)",
            self.node_name_prefix
        );
        let agent = skiff_agent::simulated::run(client, config, |done, total| {
            eprintln!("  {done}/{total} nodes registered");
        });
        tokio::select! {
            result = agent => result.context("simulated nodes")?,
            _ = tokio::signal::ctrl_c() => eprintln!("stopping: the nodes stop reporting"),
        }
        Ok(())
    }
}
