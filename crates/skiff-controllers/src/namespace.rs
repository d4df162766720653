//! Namespaces: a `default` ServiceAccount and the cluster CA (`root_ca`) in every active
//! namespace, and the deletion of a
//! terminating namespace — every namespaced object in it is deleted (all resources the API
//! lists as namespaced and deletable, found by discovery), and once none remain the
//! namespace's `kubernetes` finalizer is removed through `namespaces/<name>/finalize`, which
//! lets the API server delete it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, ObjectMeta, PostParams};
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use skiff_apimachinery::names::ROOT_CA_CONFIGMAP;
use skiff_client::{Change, Informer, InformerFactory, Store, WorkQueue};

use crate::{Error, RETRY_AFTER};

/// The spec finalizer the API server puts on every namespace.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";

/// How often an active namespace is looked at again without any change (the default
/// ServiceAccount is recreated if someone deleted it).
const RESYNC: Duration = Duration::from_secs(300);
const WORKERS: usize = 2;

pub struct NamespaceController {
    client: Client,
    namespaces: Store<Namespace>,
    accounts: Store<ServiceAccount>,
    /// Every namespace's copy of the cluster CA, from an informer of its own (it watches
    /// one name in every namespace, not every ConfigMap), which `run` starts.
    root_cas: Store<ConfigMap>,
    root_ca_informer: std::sync::Mutex<Option<Informer<ConfigMap>>>,
    root_ca_pem: Option<String>,
    queue: WorkQueue,
}

impl NamespaceController {
    pub fn new(
        client: Client,
        root_ca_pem: Option<String>,
        informers: &mut InformerFactory,
    ) -> Arc<Self> {
        let queue = WorkQueue::new();
        let namespaces = informers.all::<Namespace>();
        let q = queue.clone();
        namespaces.on_change(move |c| q.add(c.object().name_any()));
        let namespaces = namespaces.store();
        // A ServiceAccount change re-examines its namespace (its `default` may be gone).
        let accounts = informers.all::<ServiceAccount>();
        accounts.on_change(queue_its_namespace(&queue));
        let accounts = accounts.store();
        // So does a change to its copy of the cluster CA.
        let mut root_cas = Informer::new(
            Api::<ConfigMap>::all(client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={ROOT_CA_CONFIGMAP}")),
        );
        root_cas.on_change(queue_its_namespace(&queue));
        Arc::new(NamespaceController {
            client,
            namespaces,
            accounts,
            root_cas: root_cas.store(),
            root_ca_informer: std::sync::Mutex::new(Some(root_cas)),
            root_ca_pem,
            queue,
        })
    }

    /// Runs the workers (the shared informers must have started).
    pub async fn run(self: Arc<Self>) {
        let informer = skiff_client::lock(&self.root_ca_informer).take();
        let _root_cas = match informer {
            Some(informer) => {
                let synced = informer.synced();
                let task = informer.start();
                synced.wait().await;
                Some(task)
            }
            None => None,
        };
        self.queue.run_reconciler(WORKERS, self.clone()).await;
    }

    async fn sync(&self, name: &str) -> Result<Option<Duration>, Error> {
        let Some(ns) = self.namespaces.get(name) else {
            return Ok(None);
        };
        if ns.metadata.deletion_timestamp.is_some() {
            return finish_deletion(&self.client, &ns, name).await;
        }
        if self.accounts.get(&format!("{name}/default")).is_none() {
            create_default_service_account(&self.client, name).await?;
        }
        if let Some(ca) = &self.root_ca_pem {
            let current = self.root_cas.get(&format!("{name}/{ROOT_CA_CONFIGMAP}"));
            crate::root_ca::ensure(&self.client, name, ca, current.as_deref()).await?;
        }
        Ok(Some(RESYNC))
    }
}

/// A handler queueing the namespace its object is in.
fn queue_its_namespace<K: kube::Resource>(
    queue: &WorkQueue,
) -> impl Fn(&Change<K>) + Send + Sync + 'static {
    let queue = queue.clone();
    move |change| {
        if let Some(ns) = change.object().namespace() {
            queue.add(ns);
        }
    }
}

impl skiff_client::Reconcile for NamespaceController {
    type Error = Error;

    fn reconcile(
        &self,
        key: &str,
    ) -> impl std::future::Future<Output = Result<Option<Duration>, Error>> + Send {
        self.sync(key)
    }
}

/// Creates the namespace's `default` ServiceAccount (its absence from the informer's store
/// is the cue; one made meanwhile is as good).
async fn create_default_service_account(client: &Client, ns: &str) -> Result<(), Error> {
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), ns);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("default".into()),
            namespace: Some(ns.into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    match accounts.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(()),
        // Created meanwhile (another reconcile or a user): that is the goal.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        // The namespace started terminating under us: nothing to do.
        Err(kube::Error::Api(e)) if e.code == 403 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes everything in a terminating namespace, then finalizes it. Requeues while
/// objects remain (pods stopping, finalizers pending).
async fn finish_deletion(
    client: &Client,
    ns: &Namespace,
    name: &str,
) -> Result<Option<Duration>, Error> {
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == NAMESPACE_FINALIZER) {
        // Not ours to finish (or already finished).
        return Ok(None);
    }
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(Error::Discovery)?;
    let mut remaining = 0;
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::DELETE_COLLECTION)
                || !caps.supports_operation(verbs::LIST)
            {
                continue;
            }
            let api = Api::<DynamicObject>::namespaced_with(client.clone(), name, &resource);
            api.delete_collection(&DeleteParams::background(), &ListParams::default())
                .await?;
            remaining += api.list(&ListParams::default().limit(1)).await?.items.len();
        }
    }
    if remaining > 0 {
        return Ok(Some(RETRY_AFTER));
    }
    let mut finalized = ns.clone();
    if let Some(spec) = finalized.spec.as_mut() {
        spec.finalizers = Some(
            finalizers
                .into_iter()
                .filter(|f| f != NAMESPACE_FINALIZER)
                .collect(),
        );
    }
    let namespaces = Api::<Namespace>::all(client.clone());
    match namespaces
        .replace_subresource("finalize", name, &PostParams::default(), &finalized)
        .await
    {
        Ok(_) => Ok(None),
        // Gone already, or changed meanwhile: the next event decides.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(None),
        Err(e) => Err(e.into()),
    }
}
