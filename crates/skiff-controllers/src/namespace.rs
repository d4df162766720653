//! Namespaces: a `default` ServiceAccount and the cluster CA (`root_ca`) in every active
//! namespace, and the deletion of a
//! terminating namespace — every namespaced object in it is deleted (all resources the API
//! lists as namespaced and deletable, found by discovery), and once none remain the
//! namespace's `kubernetes` finalizer is removed through `namespaces/<name>/finalize`, which
//! lets the API server delete it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, ObjectMeta, PostParams};
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::{Error, RETRY_AFTER};

/// The spec finalizer the API server puts on every namespace.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";

/// How often an active namespace is looked at again without any change (the default
/// ServiceAccount is recreated if someone deleted it).
const RESYNC: Duration = Duration::from_secs(300);

struct Context {
    client: Client,
    root_ca_pem: Option<String>,
}

pub async fn run(client: Client, root_ca_pem: Option<String>) {
    let namespaces = Api::<Namespace>::all(client.clone());
    let accounts = Api::<ServiceAccount>::all(client.clone());
    Controller::new(namespaces, watcher::Config::default())
        // A ServiceAccount change re-examines its namespace (its `default` may be gone).
        .watches(accounts, watcher::Config::default(), |sa| {
            sa.metadata
                .namespace
                .map(|ns| ObjectRef::<Namespace>::new(&ns))
        })
        // So does a change to its copy of the cluster CA.
        .watches(
            Api::<ConfigMap>::all(client.clone()),
            watcher::Config::default().fields(&format!(
                "metadata.name={}",
                skiff_api::admission::ROOT_CA_CONFIGMAP
            )),
            |cm| {
                cm.metadata
                    .namespace
                    .map(|ns| ObjectRef::<Namespace>::new(&ns))
            },
        )
        .run(
            reconcile,
            error_policy,
            Arc::new(Context {
                client,
                root_ca_pem,
            }),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "namespace reconcile");
            }
        })
        .await;
}

fn error_policy(_: Arc<Namespace>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(%error, "namespace controller: retrying");
    Action::requeue(RETRY_AFTER)
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = ns.metadata.name.clone().unwrap_or_default();
    if ns.metadata.deletion_timestamp.is_some() {
        return finish_deletion(&ctx.client, &ns, &name).await;
    }
    ensure_default_service_account(&ctx.client, &name).await?;
    if let Some(ca) = &ctx.root_ca_pem {
        crate::root_ca::ensure(&ctx.client, &name, ca).await?;
    }
    Ok(Action::requeue(RESYNC))
}

async fn ensure_default_service_account(client: &Client, ns: &str) -> Result<(), Error> {
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), ns);
    if accounts.get_opt("default").await?.is_some() {
        return Ok(());
    }
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
async fn finish_deletion(client: &Client, ns: &Namespace, name: &str) -> Result<Action, Error> {
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == NAMESPACE_FINALIZER) {
        // Not ours to finish (or already finished).
        return Ok(Action::await_change());
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
        return Ok(Action::requeue(RETRY_AFTER));
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
        Ok(_) => Ok(Action::await_change()),
        // Gone already, or changed meanwhile: the next event decides.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}
