//! `skiff server`: a whole cluster in one process. Today that is the API server over the
//! datastore (with its compactor), and the controllers and the scheduler as API clients;
//! the node agent joins it as it lands.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use skiff_apiserver::ServerConfig;

use super::datastore::DatastoreArgs;

#[derive(Args, Debug)]
pub struct ServerArgs {
    #[command(flatten)]
    datastore: DatastoreArgs,
    /// Address to serve the Kubernetes API on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// Port of the Kubernetes API (HTTPS).
    #[arg(long, default_value_t = 6443)]
    https_port: u16,
    /// Where to write the admin kubeconfig (mode 0600).
    #[arg(long, default_value = "/etc/skiff/kubeconfig.yaml")]
    write_kubeconfig: PathBuf,
    /// How long events are kept after they were last seen (seconds).
    #[arg(long, default_value_t = skiff_apiserver::DEFAULT_EVENT_TTL.as_secs(), value_name = "SECONDS")]
    event_ttl: u64,
    /// Run without this machine's node agent. Until the node agent lands this is the only
    /// mode, so the flag is accepted and changes nothing.
    #[arg(long)]
    disable_agent: bool,
}

impl ServerArgs {
    pub async fn run(self) -> Result<()> {
        let data_dir = &self.datastore.data_dir;
        std::fs::create_dir_all(data_dir.join("db")).with_context(|| {
            format!(
                "cannot create the data directory {} (run as root, or choose one with --data-dir)",
                data_dir.display()
            )
        })?;
        let store = skiff_store::open(self.datastore.config())
            .await
            .context("opening the datastore")?;
        let _compactor =
            skiff_store::spawn_compactor(store.clone(), skiff_store::DEFAULT_COMPACTION_INTERVAL);
        let server = skiff_apiserver::start(ServerConfig {
            data_dir: data_dir.clone(),
            bind_address: self.bind_address,
            https_port: self.https_port,
            write_kubeconfig: Some(self.write_kubeconfig.clone()),
            store,
            event_ttl: std::time::Duration::from_secs(self.event_ttl),
        })
        .await?;
        let client = skiff_controllers::client_from_kubeconfig(&server.kubeconfig)
            .await
            .context("connecting the controllers to the API")?;
        let _controllers = tokio::spawn(skiff_controllers::run(client.clone()));
        let _scheduler = tokio::spawn(skiff_scheduler::run(client));
        eprintln!(
            "skiff server ready at {}; kubeconfig written to {}",
            server.url,
            self.write_kubeconfig.display()
        );
        tokio::select! {
            _ = server.wait() => anyhow::bail!("the API server stopped"),
            _ = tokio::signal::ctrl_c() => {
                eprintln!("shutting down");
                Ok(())
            }
        }
    }
}
