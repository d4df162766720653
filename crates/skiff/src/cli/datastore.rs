//! `skiff datastore …`: read the cluster state straight from the datastore, for debugging and
//! recovery. The embedded file is locked while a server uses it, so these commands read the
//! embedded store of a stopped server, or etcd at any time.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use skiff_store::{DatastoreConfig, EtcdConfig, EventKind, RangeRequest, Revision, Store};

/// Where the cluster state lives. `skiff server` takes the same flags.
#[derive(Args, Clone, Debug)]
pub struct DatastoreArgs {
    /// Directory for the server's state; the embedded datastore is `db/state.redb` inside it.
    #[arg(long, env = "SKIFF_DATA_DIR", default_value = "/var/lib/skiff")]
    pub data_dir: PathBuf,
    /// Use etcd instead of the embedded datastore: http(s)://host:2379[,http(s)://host2:2379…]
    #[arg(long, env = "SKIFF_DATASTORE_ENDPOINT")]
    pub datastore_endpoint: Option<String>,
    /// CA bundle for https etcd endpoints.
    #[arg(long, requires = "datastore_endpoint")]
    pub datastore_cafile: Option<PathBuf>,
    /// Client certificate for etcd.
    #[arg(long, requires = "datastore_endpoint")]
    pub datastore_certfile: Option<PathBuf>,
    /// Client key for etcd.
    #[arg(long, requires = "datastore_endpoint")]
    pub datastore_keyfile: Option<PathBuf>,
}

impl DatastoreArgs {
    pub fn config(&self) -> DatastoreConfig {
        match &self.datastore_endpoint {
            Some(endpoints) => {
                let mut config = EtcdConfig::new(endpoints);
                config.ca_file = self.datastore_cafile.clone();
                config.cert_file = self.datastore_certfile.clone();
                config.key_file = self.datastore_keyfile.clone();
                DatastoreConfig::Etcd(config)
            }
            None => DatastoreConfig::embedded(self.data_dir.join("db").join("state.redb")),
        }
    }

    pub async fn open(&self) -> Result<std::sync::Arc<dyn Store>> {
        let config = self.config();
        if let DatastoreConfig::Embedded { path, .. } = &config
            && !path.exists()
        {
            anyhow::bail!(
                "no datastore at {}: pass the --data-dir of an existing skiff server",
                path.display()
            );
        }
        Ok(skiff_store::open(config).await?)
    }
}

#[derive(Subcommand)]
pub enum DatastoreCommand {
    /// Backend, newest revision and how many keys it holds.
    Status {
        #[command(flatten)]
        datastore: DatastoreArgs,
    },
    /// Print one key's value to stdout.
    Get {
        key: String,
        #[command(flatten)]
        datastore: DatastoreArgs,
    },
    /// List the keys under a prefix with their revisions and sizes.
    List {
        #[arg(default_value = "/")]
        prefix: String,
        #[command(flatten)]
        datastore: DatastoreArgs,
    },
    /// Print every change under a prefix as it happens (after --from, or from now).
    Watch {
        #[arg(default_value = "/")]
        prefix: String,
        /// Start after this revision (replaying history since then).
        #[arg(long)]
        from: Option<Revision>,
        #[command(flatten)]
        datastore: DatastoreArgs,
    },
}

impl DatastoreCommand {
    pub async fn run(self) -> Result<()> {
        match self {
            DatastoreCommand::Status { datastore } => {
                let store = datastore.open().await?;
                let all = store.range(RangeRequest::prefix("/")).await?;
                let bytes: usize = all.kvs.iter().map(|kv| kv.value.len()).sum();
                println!("backend:   {}", store.describe());
                println!("revision:  {}", all.revision);
                println!("keys:      {}", all.kvs.len());
                println!("values:    {bytes} bytes");
            }
            DatastoreCommand::Get { key, datastore } => {
                let store = datastore.open().await?;
                let kv =
                    store.get(&key).await?.kv.with_context(|| {
                        format!("key {key:?} not found in {}", store.describe())
                    })?;
                std::io::stdout().write_all(&kv.value)?;
            }
            DatastoreCommand::List { prefix, datastore } => {
                let store = datastore.open().await?;
                let result = store.range(RangeRequest::prefix(prefix)).await?;
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "{:>10} {:>10} {:>9}  KEY",
                    "CREATED", "MODIFIED", "BYTES"
                )?;
                for kv in result.kvs {
                    writeln!(
                        out,
                        "{:>10} {:>10} {:>9}  {}",
                        kv.create_revision,
                        kv.mod_revision,
                        kv.value.len(),
                        kv.key
                    )?;
                }
            }
            DatastoreCommand::Watch {
                prefix,
                from,
                datastore,
            } => {
                let store = datastore.open().await?;
                let from = match from {
                    Some(from) => from,
                    None => store.current_revision().await?,
                };
                let mut watch = store.watch(&prefix, from).await?;
                while let Some(event) = watch.next().await {
                    let event = event?;
                    let kind = match (event.kind, event.is_create()) {
                        (EventKind::Put, true) => "CREATE",
                        (EventKind::Put, false) => "UPDATE",
                        (EventKind::Delete, _) => "DELETE",
                    };
                    println!(
                        "{:>10} {kind:<6} {} ({} bytes)",
                        event.revision(),
                        event.kv.key,
                        event.kv.value.len()
                    );
                }
            }
        }
        Ok(())
    }
}
