//! skiff's API server: the Kubernetes API over HTTPS on top of the datastore.
//!
//! [`start`] makes or loads the cluster's credentials, creates the built-in objects, writes
//! the admin kubeconfig and serves until the returned [`RunningServer`] is dropped. It is the
//! only component that touches the datastore; everything else is an API client.

mod address_repair;
mod allocators;
pub mod authn;
mod authz;
pub use allocators::ServiceNetwork;
mod bootstrap;
mod continue_token;
mod crd_controller;
mod csr_signer;
mod event_ttl;
mod field_validation;
pub(crate) mod handlers;
mod kubeconfig;
mod list_snapshots;
mod negotiate;
mod node_stream;
mod openapi_docs;
pub mod pki;
mod proxy;
mod query;
pub(crate) mod quota;
pub mod registry;
mod request;
mod routes;
pub mod sa_token;
mod state;
mod storage;
mod strategy;
mod watch;
mod watch_cache;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use skiff_store::Store;
use tokio::net::TcpListener;

pub use bootstrap::BUILT_IN_NAMESPACES;
pub use event_ttl::DEFAULT_EVENT_TTL;
pub use pki::PkiError;

/// How the server is set up (the `skiff server` flags).
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    /// 0 picks a free port (tests).
    pub https_port: u16,
    /// Where to write the admin kubeconfig, if anywhere.
    pub write_kubeconfig: Option<PathBuf>,
    /// The address the `kubernetes` Service's endpoints name, which pods reach the API at
    /// (`--advertise-address`); `None`: the bind address, or loopback for a wildcard bind.
    pub advertise_address: Option<IpAddr>,
    /// The cluster DNS Service's address (`kube-system/kube-dns`), made at start if set.
    pub cluster_dns: Option<std::net::Ipv4Addr>,
    /// Where Services' cluster IPs and node ports come from.
    pub service_network: allocators::ServiceNetwork,
    pub store: Arc<dyn Store>,
    /// How long events are kept after they were last seen (`--event-ttl`).
    pub event_ttl: std::time::Duration,
    /// How long new pods tolerate a not-ready node (`--default-not-ready-toleration-seconds`).
    pub not_ready_toleration_seconds: i64,
    /// How long new pods tolerate an unreachable node
    /// (`--default-unreachable-toleration-seconds`).
    pub unreachable_toleration_seconds: i64,
}

/// Upstream's default for both toleration flags.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(
        "cannot listen on {addr}: {source} (is another server using the port? choose another with --https-port)"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("creating the built-in objects: {0}")]
    Bootstrap(skiff_api::ApiError),
}

/// A serving API server; dropping it stops it.
pub struct RunningServer {
    pub local_addr: SocketAddr,
    /// `https://host:port` as the kubeconfig names it.
    pub url: String,
    /// The admin kubeconfig's contents.
    pub kubeconfig: String,
    pub admin_token: String,
    pub ca_pem: String,
    auth: Arc<authn::Auth>,
    accept_loop: tokio::task::JoinHandle<()>,
    event_expiry: tokio::task::JoinHandle<()>,
    address_repair: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Whether the server accepts a bearer token (the admin token, or a ServiceAccount
    /// token it signed): the check the cluster's other endpoints (the registry) share.
    pub fn token_check(&self) -> Arc<dyn Fn(&str) -> bool + Send + Sync> {
        let auth = self.auth.clone();
        Arc::new(move |token: &str| auth.accepts(token))
    }

    /// Waits until the server stops (it only stops on error or when dropped elsewhere).
    pub async fn wait(mut self) {
        let _ = (&mut self.accept_loop).await;
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.accept_loop.abort();
        self.event_expiry.abort();
        self.address_repair.abort();
    }
}

/// Starts the API server; it is ready (`/readyz` answers ok) when this returns.
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    let requested = SocketAddr::new(config.bind_address, config.https_port);
    let listener = TcpListener::bind(requested)
        .await
        .map_err(|source| ServerError::Bind {
            addr: requested,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: requested,
        source,
    })?;
    // Clients on this machine reach a wildcard bind through loopback.
    let local_ip = if config.bind_address.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        config.bind_address
    };
    let local = SocketAddr::new(local_ip, local_addr.port());
    let advertise = SocketAddr::new(
        config.advertise_address.unwrap_or(local_ip),
        local_addr.port(),
    );

    // Pods reach the API at the `kubernetes` Service's cluster IP and at the advertised
    // address: both are names the certificate must hold.
    let names = pki::serving_names(
        config.bind_address,
        &[
            config.service_network.address(1).to_string(),
            advertise.ip().to_string(),
        ],
    );
    let creds = {
        let data_dir = config.data_dir.clone();
        tokio::task::spawn_blocking(move || pki::load_or_create(&data_dir, &names))
            .await
            .map_err(|e| ServerError::Tls(format!("credential task failed: {e}")))??
    };

    let objects = storage::Objects::new(config.store.clone());
    let services =
        allocators::ServiceAllocator::new(config.store.clone(), config.service_network.clone());
    let registry = Arc::new(registry::Registry::builtin());
    let migrated = address_repair::migrate_old_ip_keys(objects.store())
        .await
        .map_err(ServerError::Bootstrap)?;
    if migrated > 0 {
        tracing::info!(
            addresses = migrated,
            "cluster IPs are IPAddress objects now"
        );
    }
    bootstrap::run(
        &objects,
        &services,
        &registry,
        advertise,
        config.cluster_dns,
    )
    .await
    .map_err(ServerError::Bootstrap)?;

    let url = format!("https://{local}");
    let kubeconfig = kubeconfig::render(&url, &creds.ca_pem, &creds.admin_token);
    if let Some(path) = &config.write_kubeconfig {
        kubeconfig::write(path, &kubeconfig)?;
    }

    let tokens = {
        let data_dir = config.data_dir.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || sa_token::TokenIssuer::load_or_create(&data_dir))
                .await
                .map_err(|e| ServerError::Tls(format!("credential task failed: {e}")))??,
        )
    };
    let event_expiry = tokio::spawn(event_ttl::run(objects.clone(), config.event_ttl));
    let address_repair = tokio::spawn(address_repair::run(
        objects.clone(),
        address_repair::REPAIR_EVERY,
    ));
    let caches = watch_cache::Caches::new(objects.clone(), registry.clone());
    let auth = Arc::new(authn::Auth {
        admin_token: creds.admin_token.clone(),
        tokens,
    });
    let state = Arc::new(state::ApiState {
        registry: registry.clone(),
        objects,
        caches,
        services,
        tolerations: state::DefaultTolerations {
            not_ready_seconds: config.not_ready_toleration_seconds,
            unreachable_seconds: config.unreachable_toleration_seconds,
        },
        auth: auth.clone(),
        namespace_deletions: Default::default(),
        quota_in_flight: Default::default(),
        nodes: node_stream::NodeDialer::new(
            &creds.kubelet_client_cert_pem,
            &creds.kubelet_client_key_pem,
        )
        .map_err(|e| ServerError::Tls(format!("the node agents' client certificate: {e}")))?,
    });
    // Definitions already stored are served before the first request, so their objects
    // are there the moment the server answers.
    if let Err(e) = crd_controller::reconcile_all(&state).await {
        tracing::warn!(error = %e, "serving the stored CustomResourceDefinitions (the controller will retry)");
    }
    tokio::spawn(crd_controller::run(state.clone()));
    tokio::spawn(quota::run(state.clone()));
    let ca = {
        let data_dir = config.data_dir.clone();
        tokio::task::spawn_blocking(move || pki::ca_issuer(&data_dir))
            .await
            .map_err(|e| ServerError::Tls(format!("credential task failed: {e}")))??
    };
    tokio::spawn(csr_signer::run(state.clone(), Arc::new(ca)));
    let warm = state.clone();
    tokio::spawn(async move { warm.caches.start_all().await });
    let info = Arc::new(routes::ServerInfo {
        address: advertise.to_string(),
        registry,
    });
    let app = routes::router(state, auth.clone(), info);
    let acceptor = skiff_tls::acceptor(&creds.serving_cert_pem, &creds.serving_key_pem, None)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let accept_loop = tokio::spawn(skiff_tls::serve(listener, acceptor, app));
    tracing::info!(%url, datastore = %config.store.describe(), "API server ready");
    Ok(RunningServer {
        local_addr,
        url,
        kubeconfig,
        admin_token: creds.admin_token,
        ca_pem: creds.ca_pem,
        auth,
        accept_loop,
        event_expiry,
        address_repair,
    })
}
