//! The Deployment controller, following upstream's: each Deployment owns ReplicaSets (one
//! per pod template, named `<deployment>-<template hash>`); a rollout scales the new one up
//! and the old ones down within maxSurge/maxUnavailable (RollingUpdate) or all old ones to
//! zero first (Recreate). Scaling mid-rollout is shared out proportionally. Revisions live
//! in annotations (`kubectl rollout history/undo` read them), old ReplicaSets beyond
//! `revisionHistoryLimit` are deleted, and status carries the Available and Progressing
//! conditions (`kubectl rollout status` reads them).

mod progress;
mod rollout;
mod util;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::{Client, ResourceExt};
use skiff_client::informer::{key_of, split_key};
use skiff_client::objects::{
    controller_of, controller_reference, is_deleting, selector_matches, set_owner_references,
};
use skiff_client::{Change, EventRecorder, InformerFactory, Store, WorkQueue};

use crate::Error;
use util::*;

const WORKERS: usize = 5;
const CONFLICT_RESYNC: Duration = Duration::from_secs(1);

pub struct DeploymentController {
    client: Client,
    deployments: Store<Deployment>,
    sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    queue: WorkQueue,
    events: EventRecorder,
}

impl DeploymentController {
    pub fn new(client: Client, informers: &mut InformerFactory) -> Arc<Self> {
        let c = Arc::new(DeploymentController {
            events: EventRecorder::new(client.clone(), "deployment-controller", None),
            client,
            deployments: informers.all::<Deployment>().store(),
            sets: informers.all::<ReplicaSet>().store(),
            pods: informers.all::<Pod>().store(),
            queue: WorkQueue::new(),
        });
        let me = c.clone();
        informers
            .all::<Deployment>()
            .on_change(move |change| me.queue.add(key_of(change.object().as_ref())));
        let me = c.clone();
        informers
            .all::<ReplicaSet>()
            .on_change(move |change| me.replicaset_changed(change));
        let me = c.clone();
        informers.all::<Pod>().on_change(move |change| {
            // A Recreate rollout waits for the old pods to be gone.
            if let Change::Deleted(pod) = change
                && let Some(rs_ref) = controller_of(pod.as_ref()).filter(|r| r.kind == "ReplicaSet")
            {
                let ns = pod.namespace().unwrap_or_default();
                if let Some(rs) = me.sets.get(&format!("{ns}/{}", rs_ref.name))
                    && let Some(d) = me.owner_key(&rs)
                {
                    me.queue.add(d);
                }
            }
        });
        c
    }

    fn owner_key(&self, rs: &ReplicaSet) -> Option<String> {
        let owner = controller_of(rs).filter(|r| r.kind == "Deployment")?;
        Some(format!(
            "{}/{}",
            rs.namespace().unwrap_or_default(),
            owner.name
        ))
    }

    fn replicaset_changed(&self, change: &Change<ReplicaSet>) {
        if let Change::Updated { old, .. } = change
            && let Some(key) = self.owner_key(old)
        {
            self.queue.add(key);
        }
        let rs = change.object();
        match self.owner_key(rs) {
            Some(key) => self.queue.add(key),
            None if !matches!(change, Change::Deleted(_)) => {
                // An orphan: a Deployment whose selector matches may adopt it.
                for d in self
                    .deployments
                    .in_namespace(&rs.namespace().unwrap_or_default())
                {
                    if d.spec
                        .as_ref()
                        .is_some_and(|s| selector_matches(&s.selector, rs.metadata.labels.as_ref()))
                    {
                        self.queue.add(key_of(d.as_ref()));
                    }
                }
            }
            None => {}
        }
    }

    pub async fn run(self: Arc<Self>) {
        self.queue.run_reconciler(WORKERS, self.clone()).await;
    }

    /// A conflict means a copy here was stale: the informer is about to deliver the newer
    /// version, and that event syncs again. It is no failure, so it does not back off (the
    /// resync after a second is only a safety net).
    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        match self.sync_once(key).await {
            Err(Error::Api(e)) if skiff_client::is_status(&e, 409) => Ok(Some(CONFLICT_RESYNC)),
            other => other,
        }
    }

    async fn sync_once(&self, key: &str) -> Result<Option<Duration>, Error> {
        let Some(d) = self.deployments.get(key) else {
            return Ok(None);
        };
        let d: Deployment = (*d).clone();
        let (ns, _) = split_key(key);
        let selector_empty = d.spec.as_ref().is_none_or(|s| {
            s.selector
                .match_labels
                .as_ref()
                .is_none_or(|m| m.is_empty())
                && s.selector
                    .match_expressions
                    .as_ref()
                    .is_none_or(|m| m.is_empty())
        });
        if selector_empty {
            self.events.warning(
                &d,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            );
            return Ok(None);
        }
        let sets = self.claim_replicasets(&d, ns).await?;
        let mut sync = rollout::Rollout {
            c: self,
            api: Api::namespaced(self.client.clone(), ns),
            d,
            sets,
        };
        sync.run().await
    }

    /// The ReplicaSets this Deployment controls, after adopting matching orphans and
    /// releasing owned ones that no longer match.
    async fn claim_replicasets(&self, d: &Deployment, ns: &str) -> Result<Vec<ReplicaSet>, Error> {
        let uid = d.uid().unwrap_or_default();
        let Some(selector) = d.spec.as_ref().map(|s| &s.selector) else {
            return Ok(Vec::new());
        };
        let api = Api::<ReplicaSet>::namespaced(self.client.clone(), ns);
        let mut claimed = Vec::new();
        for rs in self.sets.controlled_by(&uid) {
            if selector_matches(selector, rs.metadata.labels.as_ref()) || is_deleting(d) {
                claimed.push((*rs).clone());
            } else {
                let refs: Vec<_> = rs
                    .owner_references()
                    .iter()
                    .filter(|r| r.uid != uid)
                    .cloned()
                    .collect();
                set_owner_references(&api, rs.as_ref(), &refs).await?;
            }
        }
        if is_deleting(d) {
            return Ok(claimed);
        }
        for rs in self.sets.in_namespace(ns) {
            if controller_of(rs.as_ref()).is_some()
                || is_deleting(rs.as_ref())
                || !selector_matches(selector, rs.metadata.labels.as_ref())
            {
                continue;
            }
            let mut refs = rs.owner_references().to_vec();
            refs.push(controller_reference(d));
            if set_owner_references(&api, rs.as_ref(), &refs).await? {
                claimed.push((*rs).clone());
            }
        }
        Ok(claimed)
    }
}

/// A new ReplicaSet for the deployment's current template.
fn new_replicaset(d: &Deployment, hash: &str, replicas: i32, revision: i64) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.into(), hash.into());
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.into(), hash.into());
    let mut annotations = copied_annotations(d);
    annotations.insert(REVISION.into(), revision.to_string());
    annotations.insert(DESIRED_REPLICAS.into(), util::replicas(d).to_string());
    annotations.insert(
        MAX_REPLICAS.into(),
        (util::replicas(d) + max_surge(d)).to_string(),
    );
    let mut rs = ReplicaSet {
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template.clone()),
        }),
        ..ReplicaSet::default()
    };
    rs.metadata.name = Some(format!("{}-{hash}", d.name_any()));
    rs.metadata.namespace = d.namespace();
    rs.metadata.labels = template.metadata.and_then(|m| m.labels);
    rs.metadata.annotations = Some(annotations);
    rs.metadata.owner_references = Some(vec![controller_reference(d)]);
    rs
}

impl skiff_client::Reconcile for DeploymentController {
    type Error = Error;

    fn reconcile(&self, key: &str) -> impl Future<Output = Result<Option<Duration>, Error>> + Send {
        self.sync(key)
    }
}
